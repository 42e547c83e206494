import Foundation

/// Where an isolated shard's executor thread waits for the coordinator to acknowledge the progress
/// it reported, so that it starts item `n` only once the coordinator knows item `n` is the one in
/// hand: if the process then dies, the coordinator blames exactly that item.
///
/// The executor runs on a thread of its own (never the cooperative pool), so blocking it is fine.
/// `@unchecked Sendable`: all state is guarded by `condition`.
final class ProgressAcknowledgements: @unchecked Sendable {
    // NSCondition, not Mutex: threads sleep on it until another signals (Mutex has no condition variable).
    private let condition = NSCondition()
    /// Highest acknowledged count per shard dispatch id (`.max`: stop waiting for this shard).
    private var acknowledged: [Int64: UInt32] = [:]

    /// Records an acknowledgement and wakes the waiter.
    func acknowledge(shardID: Int64, itemsDone: UInt32) {
        condition.lock()
        acknowledged[shardID] = max(acknowledged[shardID] ?? 0, itemsDone)
        condition.broadcast()
        condition.unlock()
    }

    /// Blocks until `itemsDone` of `shardID` is acknowledged. Every `resendAfter` without it,
    /// `resend` is called (the report or its echo may have been lost to a reconnect); after
    /// `giveUpAfter` the wait ends anyway: a coordinator that never answers (a restarted one that
    /// does not know the lease) must not stall the shard, at worst a crash then goes unattributed.
    /// Returns whether the acknowledgement came.
    @discardableResult
    func wait(shardID: Int64, itemsDone: UInt32, resendAfter: Double = 2, giveUpAfter: Double = 30,
              resend: () -> Void) -> Bool {
        let giveUp = Date(timeIntervalSinceNow: giveUpAfter)
        condition.lock()
        defer { condition.unlock() }
        while (acknowledged[shardID] ?? 0) < itemsDone || acknowledged[shardID] == nil {
            let now = Date()
            guard now < giveUp else { return false }
            if !condition.wait(until: min(giveUp, now.addingTimeInterval(resendAfter))), Date() < giveUp {
                condition.unlock()
                resend()
                condition.lock()
            }
        }
        return true
    }

    /// Forgets a finished shard.
    func forget(shardID: Int64) {
        condition.lock()
        acknowledged[shardID] = nil
        condition.unlock()
    }
}
