/// Decides how long to wait between reconnection attempts: exponential backoff with a cap,
/// giving up once the total wait would exceed a deadline. A pure state machine, fed attempt
/// outcomes, so it is tested without a server.
public struct ReconnectPolicy: Sendable, Equatable {
    /// What the caller should do next.
    public enum Action: Sendable, Equatable {
        /// Sleep this many seconds, then try again.
        case retry(afterSeconds: Double)
        /// Stop and report the last error.
        case giveUp
    }

    /// First delay in seconds.
    public var initialDelay: Double
    /// Largest single delay in seconds.
    public var maximumDelay: Double
    /// Total seconds of waiting before giving up.
    public var deadline: Double

    private var waited: Double = 0
    private var nextDelay: Double

    /// A policy with the given backoff shape.
    public init(initialDelay: Double = 0.05, maximumDelay: Double = 2, deadline: Double = 30) {
        self.initialDelay = initialDelay
        self.maximumDelay = maximumDelay
        self.deadline = deadline
        nextDelay = initialDelay
    }

    /// Records a failed attempt and returns what to do next.
    public mutating func attemptFailed() -> Action {
        guard waited < deadline else { return .giveUp }
        let delay = min(nextDelay, maximumDelay, deadline - waited)
        waited += delay
        nextDelay = min(nextDelay * 2, maximumDelay)
        return .retry(afterSeconds: delay)
    }

    /// Records a successful connection: the next outage starts from the initial delay again.
    public mutating func connected() {
        waited = 0
        nextDelay = initialDelay
    }
}
