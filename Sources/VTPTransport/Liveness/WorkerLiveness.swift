/// Coordinator-side liveness of every connected worker (the "Paranoid Pirate" queue side).
///
/// A pure state machine: feed it what was heard and when, call `tick(at:)` regularly (at the latest at
/// `nextDeadline`), and carry out the actions it returns. Any message from a worker counts as a sign of
/// life; a worker silent for `missedHeartbeatsBeforeDead` intervals is declared dead and forgotten.
public struct WorkerLiveness<Peer: Hashable & Sendable>: Sendable {
    public struct Configuration: Sendable, Equatable {
        /// How often the coordinator heartbeats each worker, and how often it expects to hear from one.
        public var heartbeatInterval: Duration
        /// Intervals of silence after which a worker is dead.
        public var missedHeartbeatsBeforeDead: Int

        /// Validates the values (they usually come from a configuration file).
        public init(heartbeatInterval: Duration, missedHeartbeatsBeforeDead: Int = 3) throws(LivenessConfigurationError) {
            guard heartbeatInterval > .zero else { throw .init(field: "heartbeatInterval", reason: "must be positive") }
            guard missedHeartbeatsBeforeDead > 0 else { throw .init(field: "missedHeartbeatsBeforeDead", reason: "must be at least 1") }
            self.heartbeatInterval = heartbeatInterval
            self.missedHeartbeatsBeforeDead = missedHeartbeatsBeforeDead
        }

        private init(unchecked interval: Duration, missed: Int) {
            heartbeatInterval = interval
            missedHeartbeatsBeforeDead = missed
        }

        /// One-second heartbeats, dead after three missed.
        public static var standard: Configuration { Configuration(unchecked: .seconds(1), missed: 3) }

        var deadAfter: Duration { heartbeatInterval * missedHeartbeatsBeforeDead }
    }

    public enum Action: Hashable, Sendable {
        /// Send a heartbeat to this worker now.
        case sendHeartbeat(Peer)
        /// The worker is dead: requeue its shards; it is no longer tracked.
        case declareDead(Peer)
    }

    private struct Entry: Sendable {
        var lastHeard: MonotonicInstant
        var lastSent: MonotonicInstant
    }

    public let configuration: Configuration
    private var entries: [Peer: Entry] = [:]
    /// Insertion order, so `tick` returns actions deterministically.
    private var order: [Peer] = []

    public init(configuration: Configuration = .standard) { self.configuration = configuration }

    /// Records that `peer` was heard from. Returns `true` when the peer was not tracked before (a new or
    /// returning worker).
    @discardableResult
    public mutating func heard(from peer: Peer, at now: MonotonicInstant) -> Bool {
        if let entry = entries[peer] {
            entries[peer]!.lastHeard = max(entry.lastHeard, now)
            return false
        }
        // A fresh worker gets a heartbeat on the next tick, so its own liveness clock starts at once.
        entries[peer] = Entry(lastHeard: now, lastSent: MonotonicInstant(nanoseconds: .min / 2))
        order.append(peer)
        return true
    }

    /// Records that something was sent to `peer` (which replaces a heartbeat for that interval).
    public mutating func sent(to peer: Peer, at now: MonotonicInstant) {
        guard let entry = entries[peer] else { return }
        entries[peer]!.lastSent = max(entry.lastSent, now)
    }

    /// Stops tracking `peer` (orderly disconnect).
    public mutating func forget(_ peer: Peer) {
        if entries.removeValue(forKey: peer) != nil { order.removeAll { $0 == peer } }
    }

    /// Advances time: declares silent workers dead and asks for heartbeats that are due.
    public mutating func tick(at now: MonotonicInstant) -> [Action] {
        var actions: [Action] = []
        var dead: [Peer] = []
        for peer in order {
            guard let entry = entries[peer] else { continue }
            if now - entry.lastHeard >= configuration.deadAfter {
                dead.append(peer)
                actions.append(.declareDead(peer))
            } else if now - entry.lastSent >= configuration.heartbeatInterval {
                entries[peer]!.lastSent = now
                actions.append(.sendHeartbeat(peer))
            }
        }
        for peer in dead { forget(peer) }
        return actions
    }

    /// When `tick` next has something to do; `nil` when no worker is tracked.
    public var nextDeadline: MonotonicInstant? {
        entries.values.map { min($0.lastHeard + configuration.deadAfter, $0.lastSent + configuration.heartbeatInterval) }.min()
    }

    /// Whether `peer` is currently tracked as alive.
    public func isAlive(_ peer: Peer) -> Bool { entries[peer] != nil }

    /// The tracked workers, oldest first.
    public var workers: [Peer] { order }
}

/// A liveness setting outside its domain.
public struct LivenessConfigurationError: Error, Equatable, Sendable, CustomStringConvertible {
    public let field: String
    public let reason: String

    public var description: String { "invalid liveness setting \(field): \(reason)" }
}
