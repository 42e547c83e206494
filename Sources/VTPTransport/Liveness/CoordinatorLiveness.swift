import VTPRandom

/// Worker-side liveness of the coordinator (the "Paranoid Pirate" worker side).
///
/// A pure state machine. The worker reports every message it receives (`received(at:)`) and sends
/// (`sent(at:)`), and calls `tick(at:)` at the latest at `nextDeadline`. When the coordinator has been
/// silent for `missedHeartbeatsBeforeLost` intervals the machine reports it lost and, after an exponential
/// backoff with jitter (never above `maxBackoff`), asks the worker to reconnect. The backoff resets, and a
/// pending reconnect is cancelled, once the coordinator is heard again.
public struct CoordinatorLiveness: Sendable {
    public struct Configuration: Sendable, Equatable {
        public var heartbeatInterval: Duration
        public var missedHeartbeatsBeforeLost: Int
        /// Delay before the first reconnect; doubles with each further failure.
        public var initialBackoff: Duration
        /// Upper bound of any reconnect delay, jitter included.
        public var maxBackoff: Duration
        /// Fraction (0...1) of each delay that is randomised, so a fleet of workers does not reconnect in
        /// lock-step after a coordinator restart.
        public var jitterFraction: Double

        /// Validates the values (they usually come from a configuration file).
        public init(heartbeatInterval: Duration, missedHeartbeatsBeforeLost: Int = 3, initialBackoff: Duration,
                    maxBackoff: Duration, jitterFraction: Double = 0.25) throws(LivenessConfigurationError) {
            guard heartbeatInterval > .zero else { throw .init(field: "heartbeatInterval", reason: "must be positive") }
            guard missedHeartbeatsBeforeLost > 0 else { throw .init(field: "missedHeartbeatsBeforeLost", reason: "must be at least 1") }
            guard initialBackoff > .zero else { throw .init(field: "initialBackoff", reason: "must be positive") }
            guard maxBackoff >= initialBackoff else { throw .init(field: "maxBackoff", reason: "must be at least initialBackoff") }
            guard (0...1).contains(jitterFraction) else { throw .init(field: "jitterFraction", reason: "must be within 0...1") }
            self.heartbeatInterval = heartbeatInterval
            self.missedHeartbeatsBeforeLost = missedHeartbeatsBeforeLost
            self.initialBackoff = initialBackoff
            self.maxBackoff = maxBackoff
            self.jitterFraction = jitterFraction
        }

        private init() {
            heartbeatInterval = .seconds(1)
            missedHeartbeatsBeforeLost = 3
            initialBackoff = .seconds(1)
            maxBackoff = .seconds(32)
            jitterFraction = 0.25
        }

        /// One-second heartbeats, lost after three missed, reconnect backoff 1 s doubling to 32 s, 25 % jitter.
        public static let standard = Configuration()
    }

    public enum State: Hashable, Sendable {
        /// Connected (or reconnecting and waiting for the first reply).
        case connected(lastHeard: MonotonicInstant, lastSent: MonotonicInstant)
        /// The coordinator was lost; reconnect at `reconnectAt`.
        case waiting(reconnectAt: MonotonicInstant)
    }

    public enum Action: Hashable, Sendable {
        /// Send a heartbeat to the coordinator.
        case sendHeartbeat
        /// The coordinator stopped answering. A reconnect follows after `reconnectAfter`, unless the
        /// coordinator is heard first.
        case coordinatorLost(reconnectAfter: Duration)
        /// Open a new socket, connect and register again.
        case reconnect
    }

    public let configuration: Configuration
    public private(set) var state: State
    /// Losses since the coordinator was last heard; drives the backoff.
    public private(set) var consecutiveFailures = 0
    private var random: SplitMix64

    /// Starts connected at `now`; `seed` makes the jitter reproducible.
    public init(configuration: Configuration = .standard, now: MonotonicInstant, seed: UInt64) {
        self.configuration = configuration
        self.state = .connected(lastHeard: now, lastSent: now)
        self.random = SplitMix64(seed: seed)
    }

    /// Anything from the coordinator proves it alive and resets the backoff.
    ///
    /// Heard while waiting to reconnect, it also cancels the reconnect: the worker keeps its socket
    /// through the backoff and libzmq reconnects it underneath, so a coordinator that answers on it
    /// is reachable, and replacing that working socket would drop what is in flight on it (an
    /// assignment sent then is lost until its lease expires). The heartbeat is due at once, since
    /// none went out while waiting.
    public mutating func received(at now: MonotonicInstant) {
        consecutiveFailures = 0
        switch state {
        case .connected(let lastHeard, let lastSent):
            state = .connected(lastHeard: max(lastHeard, now), lastSent: lastSent)
        case .waiting:
            state = .connected(lastHeard: now, lastSent: now + (.zero - configuration.heartbeatInterval))
        }
    }

    /// Anything sent to the coordinator replaces a heartbeat for that interval.
    public mutating func sent(at now: MonotonicInstant) {
        guard case .connected(let lastHeard, let lastSent) = state else { return }
        state = .connected(lastHeard: lastHeard, lastSent: max(lastSent, now))
    }

    public mutating func tick(at now: MonotonicInstant) -> [Action] {
        switch state {
        case .connected(let lastHeard, let lastSent):
            if now - lastHeard >= configuration.heartbeatInterval * configuration.missedHeartbeatsBeforeLost {
                let delay = backoff(forFailure: consecutiveFailures)
                consecutiveFailures += 1
                state = .waiting(reconnectAt: now + delay)
                return [.coordinatorLost(reconnectAfter: delay)]
            }
            if now - lastSent >= configuration.heartbeatInterval {
                state = .connected(lastHeard: lastHeard, lastSent: now)
                return [.sendHeartbeat]
            }
            return []
        case .waiting(let reconnectAt):
            guard now >= reconnectAt else { return [] }
            // The new connection gets a full silence allowance; the register sent on reconnect counts as sent.
            state = .connected(lastHeard: now, lastSent: now)
            return [.reconnect]
        }
    }

    /// When `tick` next has something to do.
    public var nextDeadline: MonotonicInstant {
        switch state {
        case .connected(let lastHeard, let lastSent):
            min(lastHeard + configuration.heartbeatInterval * configuration.missedHeartbeatsBeforeLost,
                lastSent + configuration.heartbeatInterval)
        case .waiting(let reconnectAt):
            reconnectAt
        }
    }

    /// `initialBackoff * 2^failure`, capped at `maxBackoff`, minus a random share of up to `jitterFraction`.
    private mutating func backoff(forFailure failure: Int) -> Duration {
        let initial = Double(configuration.initialBackoff.nanoseconds)
        let cap = Double(configuration.maxBackoff.nanoseconds)
        let exponential = min(cap, initial * Double(sign: .plus, exponent: min(failure, 62), significand: 1))
        let jittered = exponential * (1 - configuration.jitterFraction * random.nextUnitInterval())
        return .nanoseconds(Int64(jittered))
    }
}

