/// A many-producer, one-consumer queue of events for a component's run loop: socket readers,
/// timers, ledger calls and signals all `post`, and the loop takes events one at a time so the
/// state machine is only ever touched from one task.
public struct EventQueue<Event: Sendable>: Sendable {
    public let events: AsyncStream<Event>
    private let continuation: AsyncStream<Event>.Continuation

    public init() {
        (events, continuation) = AsyncStream.makeStream(of: Event.self)
    }

    /// Adds an event; ignored once the queue is finished.
    public func post(_ event: Event) { continuation.yield(event) }

    /// Ends the stream; the consumer's loop then finishes.
    public func finish() { continuation.finish() }
}
