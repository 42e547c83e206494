import CZeroMQ
import Synchronization

/// A connection event of a monitored socket (libzmq's `zmq_socket_monitor`), for the events vtp
/// acts on; the rest arrive as `.other`.
public enum ZMQSocketEvent: Sendable, Equatable {
    /// The ZMTP handshake with the peer at `endpoint` completed (security included).
    case handshakeSucceeded(endpoint: String)
    /// The peer's ZAP handler refused this socket's credentials (for CURVE: its public key);
    /// `status` is the ZAP status code the peer sent (400 for "not authorized").
    case handshakeFailedAuthentication(endpoint: String, status: UInt32)
    /// The handshake broke the ZMTP or security-mechanism protocol (e.g. a wrong server key);
    /// `code` is libzmq's `ZMQ_PROTOCOL_ERROR_*` value.
    case handshakeFailedProtocol(endpoint: String, code: UInt32)
    /// The handshake failed without detail; `code` is the errno libzmq saw.
    case handshakeFailedNoDetail(endpoint: String, code: UInt32)
    /// Any other event (`ZMQ_EVENT_*` number and its value).
    case other(event: UInt16, value: UInt32, endpoint: String)

    /// The `zmq_socket_monitor` mask of the handshake events.
    public static let handshakeEvents: Int32 = ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH
        | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL

    /// Decodes the two frames libzmq sends per event: 2 bytes event number and 4 bytes value
    /// (host byte order), then the endpoint address.
    init?(frames: [[UInt8]]) {
        guard frames.count == 2, frames[0].count == 6 else { return nil }
        let (event, value) = frames[0].withUnsafeBytes { raw in
            (raw.loadUnaligned(fromByteOffset: 0, as: UInt16.self), raw.loadUnaligned(fromByteOffset: 2, as: UInt32.self))
        }
        let endpoint = String(decoding: frames[1], as: UTF8.self)
        switch Int32(event) {
        case ZMQ_EVENT_HANDSHAKE_SUCCEEDED: self = .handshakeSucceeded(endpoint: endpoint)
        case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH: self = .handshakeFailedAuthentication(endpoint: endpoint, status: value)
        case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL: self = .handshakeFailedProtocol(endpoint: endpoint, code: value)
        case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL: self = .handshakeFailedNoDetail(endpoint: endpoint, code: value)
        default: self = .other(event: event, value: value, endpoint: endpoint)
        }
    }
}

/// The receiving end of a socket monitor: a PAIR socket connected to the inproc address libzmq
/// publishes the monitored socket's events on. Owned by its ``ZMQSocket`` (see
/// ``ZMQSocket/startMonitor(events:)``) and, like it, used by one thread at a time.
public final class ZMQSocketMonitor {
    /// Poll this for readability; then drain with ``nextEvent()``.
    public let socket: ZMQSocket

    /// inproc addresses must be unique per context; one counter for the process suffices.
    private static let sequence = Atomic<UInt64>(0)

    init(monitoring monitored: ZMQSocket, events: Int32) throws(ZMQError) {
        let number = Self.sequence.add(1, ordering: .relaxed).newValue
        let address = "inproc://vtp-monitor-\(number)"
        try zmqCheck(zmq_socket_monitor(monitored.handle, address, events), "zmq_socket_monitor(\(address))")
        let pair = try ZMQSocket(context: monitored.context, type: .pair)
        // Monitor events are advisory: never let a backlog of them hold the socket's close.
        try pair.setOption(ZMQ_LINGER, 0, name: "ZMQ_LINGER")
        try pair.connect(address)
        socket = pair
    }

    /// The next queued event, or nil when none is waiting (never blocks).
    public func nextEvent() throws(ZMQError) -> ZMQSocketEvent? {
        while let message = try socket.receive(dontWait: true, maxFrames: 2) {
            if let event = ZMQSocketEvent(frames: message.frames) { return event }
        }
        return nil
    }
}
