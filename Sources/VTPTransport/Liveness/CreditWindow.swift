/// Coordinator-side flow control for one worker.
///
/// Protocol: after `register` the worker sends `credit(prefetch)`, then `credit(1)` for each shard it
/// finishes. The coordinator may assign a shard only while it holds credit, and never holds more
/// outstanding shards plus unused credit than the worker's announced `prefetch`, even if a faulty
/// worker over-grants.
public struct CreditWindow: Sendable, Equatable {
    public enum Refusal: Error, Equatable, Sendable {
        /// The worker has granted no free slot.
        case noCredit
        /// This shard is already outstanding on this worker.
        case alreadyOutstanding(Int64)
    }

    /// The most shards the worker wants queued (outstanding + credit).
    public private(set) var prefetch: UInt32
    /// Free slots the worker has granted and the coordinator has not filled.
    public private(set) var credits: UInt32 = 0
    /// Shards assigned and not yet done or failed.
    public private(set) var outstanding: Set<Int64> = []

    public init(prefetch: UInt32) { self.prefetch = prefetch }

    /// Adds `n` credits from the worker, clamped so `credits + outstanding <= prefetch`. Returns the number
    /// of credits actually accepted.
    @discardableResult
    public mutating func grant(_ n: UInt32) -> UInt32 {
        let room = UInt32(max(0, Int(prefetch) - outstanding.count - Int(credits)))
        let accepted = min(n, room)
        credits += accepted
        return accepted
    }

    /// Whether a shard may be assigned now.
    public var canAssign: Bool { credits > 0 }

    /// Consumes one credit for `shardID`.
    public mutating func assign(_ shardID: Int64) throws(Refusal) {
        guard !outstanding.contains(shardID) else { throw .alreadyOutstanding(shardID) }
        guard credits > 0 else { throw .noCredit }
        credits -= 1
        outstanding.insert(shardID)
    }

    /// Marks `shardID` done or failed. Returns `false` when it was not outstanding here (a stale or
    /// duplicate report the caller should ignore).
    @discardableResult
    public mutating func complete(_ shardID: Int64) -> Bool {
        outstanding.remove(shardID) != nil
    }

    /// The worker re-registered with a new prefetch: unused credit above the new bound is dropped.
    public mutating func updatePrefetch(_ newPrefetch: UInt32) {
        prefetch = newPrefetch
        credits = UInt32(max(0, min(Int(credits), Int(prefetch) - outstanding.count)))
    }

    /// The worker died or disconnected: returns the shards to requeue and clears all credit.
    public mutating func reset() -> [Int64] {
        defer {
            outstanding = []
            credits = 0
        }
        return outstanding.sorted()
    }
}
