import CZeroMQ

/// The socket types this package uses.
public enum ZMQSocketType: Sendable {
    case router, dealer, rep, req, pair

    var rawValue: Int32 {
        switch self {
        case .router: ZMQ_ROUTER
        case .dealer: ZMQ_DEALER
        case .rep: ZMQ_REP
        case .req: ZMQ_REQ
        case .pair: ZMQ_PAIR
        }
    }
}

/// An owning handle on one libzmq socket; `zmq_close` runs in `deinit`.
///
/// Not `Sendable`: libzmq sockets must be used from one thread at a time. The endpoints create a socket
/// and hand it to the one I/O thread that uses it from then on.
public final class ZMQSocket {
    let handle: UnsafeMutableRawPointer
    /// Keeps the context alive for as long as this socket exists (see `ZMQContext`).
    public let context: ZMQContext
    public let type: ZMQSocketType

    /// The linger every socket gets at creation so closing never blocks for long on unsent messages.
    public static let defaultLingerMilliseconds: Int32 = 250

    public init(context: ZMQContext, type: ZMQSocketType) throws(ZMQError) {
        guard let handle = zmq_socket(context.handle, type.rawValue) else {
            throw ZMQError.last("zmq_socket(\(type))")
        }
        self.handle = handle
        self.context = context
        self.type = type
        try setOption(ZMQ_LINGER, Self.defaultLingerMilliseconds, name: "ZMQ_LINGER")
    }

    /// The monitor started with ``startMonitor(events:)``; closed after this socket.
    public private(set) var monitor: ZMQSocketMonitor?

    deinit { zmq_close(handle) }

    /// Starts publishing this socket's `events` (a `ZMQ_EVENT_*` mask) to a new ``monitor``,
    /// replacing any earlier one. Connection events then arrive whatever the peer's application does,
    /// e.g. a refused CURVE key, which the socket itself only reports as silence.
    @discardableResult
    public func startMonitor(events: Int32) throws(ZMQError) -> ZMQSocketMonitor {
        let started = try ZMQSocketMonitor(monitoring: self, events: events)
        monitor = started
        return started
    }

    /// Stops and closes the ``monitor`` (e.g. after it failed), leaving the socket as it is.
    public func stopMonitor() {
        guard monitor != nil else { return }
        zmq_socket_monitor(handle, nil, 0)
        monitor = nil
    }

    // MARK: Options

    /// Sets an integer option; `name` appears in the error.
    public func setOption(_ option: Int32, _ value: Int32, name: String) throws(ZMQError) {
        var value = value
        try zmqCheck(zmq_setsockopt(handle, option, &value, MemoryLayout<Int32>.size), "zmq_setsockopt(\(name))")
    }

    /// Sets a 64-bit integer option such as `ZMQ_MAXMSGSIZE`.
    public func setOption(_ option: Int32, int64 value: Int64, name: String) throws(ZMQError) {
        var value = value
        try zmqCheck(zmq_setsockopt(handle, option, &value, MemoryLayout<Int64>.size), "zmq_setsockopt(\(name))")
    }

    /// Sets a binary or string option (routing id, CURVE keys as Z85, ZAP domain).
    public func setOption(_ option: Int32, bytes: [UInt8], name: String) throws(ZMQError) {
        let rc = bytes.withUnsafeBytes { raw in zmq_setsockopt(handle, option, raw.baseAddress, raw.count) }
        try zmqCheck(rc, "zmq_setsockopt(\(name))")
    }

    /// Reads an integer option.
    public func intOption(_ option: Int32, name: String) throws(ZMQError) -> Int32 {
        var value: Int32 = 0
        var size = MemoryLayout<Int32>.size
        try zmqCheck(zmq_getsockopt(handle, option, &value, &size), "zmq_getsockopt(\(name))")
        return value
    }

    /// Reads a string option such as `ZMQ_LAST_ENDPOINT`.
    public func stringOption(_ option: Int32, name: String) throws(ZMQError) -> String {
        var buffer = [UInt8](repeating: 0, count: 512)
        var size = buffer.count
        try zmqCheck(zmq_getsockopt(handle, option, &buffer, &size), "zmq_getsockopt(\(name))")
        let end = buffer.prefix(size).firstIndex(of: 0) ?? size
        return String(decoding: buffer[..<end], as: UTF8.self)
    }

    /// The endpoint the last `bind` resolved to (useful with `tcp://127.0.0.1:*`).
    public var lastEndpoint: String {
        get throws(ZMQError) { try stringOption(ZMQ_LAST_ENDPOINT, name: "ZMQ_LAST_ENDPOINT") }
    }

    // MARK: Connections

    public func bind(_ endpoint: String) throws(ZMQError) {
        try zmqCheck(zmq_bind(handle, endpoint), "zmq_bind(\(endpoint))")
    }

    public func connect(_ endpoint: String) throws(ZMQError) {
        try zmqCheck(zmq_connect(handle, endpoint), "zmq_connect(\(endpoint))")
    }

    public func unbind(_ endpoint: String) throws(ZMQError) {
        try zmqCheck(zmq_unbind(handle, endpoint), "zmq_unbind(\(endpoint))")
    }

    public func disconnect(_ endpoint: String) throws(ZMQError) {
        try zmqCheck(zmq_disconnect(handle, endpoint), "zmq_disconnect(\(endpoint))")
    }

    // MARK: Messages

    /// Sends `frames` as one multipart message.
    ///
    /// With `dontWait` the call returns `false` instead of blocking when the message cannot be queued
    /// (no peer, or high-water mark reached). Other failures, including `EHOSTUNREACH` from a ROUTER with
    /// `ZMQ_ROUTER_MANDATORY`, throw. An empty `frames` sends nothing.
    @discardableResult
    public func send(_ frames: [[UInt8]], dontWait: Bool = false) throws(ZMQError) -> Bool {
        for (index, frame) in frames.enumerated() {
            var flags: Int32 = dontWait ? ZMQ_DONTWAIT : 0
            if index < frames.count - 1 { flags |= ZMQ_SNDMORE }
            let rc = frame.withUnsafeBytes { raw in zmq_send(handle, raw.baseAddress, raw.count, flags) }
            if rc < 0 {
                let error = ZMQError.last("zmq_send(\(type), frame \(index))")
                // libzmq queues multipart messages atomically, so a refusal can only happen on the first frame.
                if error.wouldBlock && index == 0 { return false }
                throw error
            }
        }
        return true
    }

    /// Receives one multipart message; `nil` when `dontWait` is set and nothing is waiting.
    ///
    /// At most `maxFrames` frames are kept; the rest of an oversized message is still drained (so the next
    /// receive starts at a message boundary) and reported through `truncatedFrames`.
    public func receive(dontWait: Bool = false, maxFrames: Int = 16) throws(ZMQError) -> ReceivedMessage? {
        var frames: [[UInt8]] = []
        var dropped = 0
        var message = zmq_msg_t()
        zmq_msg_init(&message)
        defer { zmq_msg_close(&message) }
        while true {
            let flags: Int32 = (dontWait && frames.isEmpty && dropped == 0) ? ZMQ_DONTWAIT : 0
            let rc = zmq_msg_recv(&message, handle, flags)
            if rc < 0 {
                let error = ZMQError.last("zmq_msg_recv(\(type))")
                if error.wouldBlock && frames.isEmpty && dropped == 0 { return nil }
                if error.interrupted { continue }
                throw error
            }
            if frames.count < maxFrames {
                let size = zmq_msg_size(&message)
                if size == 0 {
                    frames.append([])
                } else {
                    let base = zmq_msg_data(&message)!.assumingMemoryBound(to: UInt8.self)
                    frames.append(Array(UnsafeBufferPointer(start: base, count: size)))
                }
            } else {
                dropped += 1
            }
            if zmq_msg_more(&message) == 0 { break }
        }
        return ReceivedMessage(frames: frames, truncatedFrames: dropped)
    }
}

/// One received multipart message.
public struct ReceivedMessage: Sendable, Equatable {
    public var frames: [[UInt8]]
    /// Frames beyond the receive cap that were drained and discarded.
    public var truncatedFrames: Int
}

/// `zmq_poll` over sockets and plain file descriptors, for readability.
public enum ZMQPoll {
    /// Which of the polled sockets and descriptors are readable.
    public struct Readiness: Sendable, Equatable {
        public var sockets: [Bool]
        public var fileDescriptors: [Bool]
    }

    /// Blocks the calling thread until one of the items is readable or `timeoutMilliseconds` passes
    /// (`-1` waits forever). An interrupting signal returns with nothing readable.
    ///
    /// Call only from threads you own: this blocks.
    public static func readable(sockets: [ZMQSocket], fileDescriptors: [Int32] = [],
                                timeoutMilliseconds: Int) throws(ZMQError) -> Readiness {
        var items: [zmq_pollitem_t] = sockets.map {
            zmq_pollitem_t(socket: $0.handle, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0)
        }
        items += fileDescriptors.map {
            zmq_pollitem_t(socket: nil, fd: $0, events: Int16(ZMQ_POLLIN), revents: 0)
        }
        let rc = zmq_poll(&items, Int32(items.count), timeoutMilliseconds)
        if rc < 0 {
            let error = ZMQError.last("zmq_poll")
            if error.interrupted {
                return Readiness(sockets: sockets.map { _ in false }, fileDescriptors: fileDescriptors.map { _ in false })
            }
            throw error
        }
        let flags = items.map { $0.revents & Int16(ZMQ_POLLIN) != 0 }
        return Readiness(sockets: Array(flags.prefix(sockets.count)), fileDescriptors: Array(flags.dropFirst(sockets.count)))
    }
}
