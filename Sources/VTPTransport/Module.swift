/// ZeroMQ transport and wire protocol of the cluster runtime.
///
/// Layers, bottom up:
/// - `ZMQContext`, `ZMQSocket`, `ZMQPoll`: owning libzmq wrappers; every failure is a `ZMQError`.
/// - `WireMessage`: the versioned binary protocol (`encoded()` / `decode(_:)`), validated field by field.
/// - `WorkerLiveness`, `CoordinatorLiveness`, `CreditWindow`: pure state machines for heartbeats,
///   reconnect backoff and flow control; the services drive them with `MonotonicInstant.now()`.
/// - `RouterEndpoint` (coordinator) and `DealerEndpoint` (worker): each owns an I/O thread, offers
///   `async` sends and an `AsyncStream` of decoded messages or decode errors, and `shutdown()`.
/// - `CurveKeyPair`, `ZAPHandler`: CURVE encryption with an allow-list of worker keys.
///
/// A service loop on the coordinator typically: for each `RouterInbound`, log-and-drop decode errors,
/// call `WorkerLiveness.heard(from:at:)`, handle the message (credit → `CreditWindow.grant`, done/failed
/// → `CreditWindow.complete`), then at `nextDeadline` call `tick(at:)` and act: heartbeat or requeue the
/// dead worker's `CreditWindow.reset()`. A worker mirrors it with `CoordinatorLiveness`, calling
/// `DealerEndpoint.reconnect()` and re-sending `register` and `credit(prefetch)` on `.reconnect`.
public enum VTPTransportModule {
    /// Human-readable module name, used in version output.
    public static let name = "VTPTransport"
}
