import CZeroMQ

/// A failed libzmq call: which operation, the `zmq_errno()` code and libzmq's text for it.
public struct ZMQError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The call that failed, e.g. `zmq_bind(tcp://127.0.0.1:5555)`.
    public let operation: String
    /// The `errno` value libzmq reported.
    public let code: Int32
    /// `zmq_strerror(code)`.
    public let message: String

    public init(operation: String, code: Int32) {
        self.operation = operation
        self.code = code
        self.message = String(cString: zmq_strerror(code))
    }

    public var description: String { "\(operation) failed: \(message) (errno \(code))" }

    /// The error libzmq left for the calling thread after `operation` returned a failure code.
    static func last(_ operation: @autoclosure () -> String) -> ZMQError {
        ZMQError(operation: operation(), code: zmq_errno())
    }

    /// True when a non-blocking call would have blocked; callers treat this as "try later", not failure.
    var wouldBlock: Bool { code == EAGAIN }
    /// True when a ROUTER with `ZMQ_ROUTER_MANDATORY` was asked to route to a peer it does not know.
    var hostUnreachable: Bool { code == EHOSTUNREACH }
    /// True when the context is being terminated under a blocking call.
    var contextTerminated: Bool { code == ETERM }
    /// True when a signal interrupted a blocking call; callers simply retry.
    var interrupted: Bool { code == EINTR }
}

/// The one place libzmq return codes become Swift errors: every wrapper funnels its `rc` through here
/// so error text and errno capture are uniform.
@discardableResult
func zmqCheck(_ rc: Int32, _ operation: @autoclosure () -> String) throws(ZMQError) -> Int32 {
    if rc < 0 { throw ZMQError.last(operation()) }
    return rc
}
