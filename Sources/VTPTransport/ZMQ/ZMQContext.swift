import CZeroMQ

/// An owning handle on a libzmq context (`zmq_ctx_new` / `zmq_ctx_term`).
///
/// Every `ZMQSocket` keeps its context alive, so `zmq_ctx_term` in `deinit` only runs after all sockets
/// are closed and therefore returns within the sockets' bounded linger.
///
/// `@unchecked Sendable`: a libzmq context is documented as thread-safe, and this class only holds an
/// immutable pointer to it.
public final class ZMQContext: @unchecked Sendable {
    let handle: UnsafeMutableRawPointer

    /// Creates a context with `ioThreads` libzmq I/O threads.
    public init(ioThreads: Int32 = 1) throws(ZMQError) {
        guard let handle = zmq_ctx_new() else { throw ZMQError.last("zmq_ctx_new") }
        self.handle = handle
        if ioThreads != 1 {
            try zmqCheck(zmq_ctx_set(handle, ZMQ_IO_THREADS, ioThreads), "zmq_ctx_set(ZMQ_IO_THREADS)")
        }
    }

    deinit {
        // Retry on EINTR: a signal must not leak the context.
        while zmq_ctx_term(handle) != 0 && zmq_errno() == EINTR {}
    }

    /// Whether the linked libzmq supports a capability such as `"curve"` or `"ipc"`.
    public static func has(_ capability: String) -> Bool { zmq_has(capability) == 1 }

    /// The linked libzmq version as (major, minor, patch).
    public static var version: (major: Int32, minor: Int32, patch: Int32) {
        var major: Int32 = 0, minor: Int32 = 0, patch: Int32 = 0
        zmq_version(&major, &minor, &patch)
        return (major, minor, patch)
    }
}
