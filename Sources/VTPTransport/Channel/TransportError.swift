/// Errors of the endpoints and their configuration.
public enum TransportError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A libzmq call failed.
    case zmq(ZMQError)
    /// An endpoint string is malformed.
    case invalidEndpoint(String, reason: String)
    /// A server socket without CURVE keys was asked to bind a non-loopback endpoint.
    case insecureBind(String)
    /// The ROUTER does not know this peer (`EHOSTUNREACH` under `ZMQ_ROUTER_MANDATORY`): it never
    /// connected or has gone.
    case unknownPeer(PeerIdentity)
    /// The message could not be queued without blocking (no connection yet, or the peer's high-water mark).
    case wouldBlock
    /// The endpoint has been shut down.
    case shutDown
    /// A message could not be encoded.
    case encode(WireEncodeError)
    /// A CURVE key is malformed.
    case invalidKey(String)
    /// A key file cannot be read or written.
    case keyFile(path: String, reason: String)
    /// A routing identity is outside libzmq's rules (1...255 bytes, first byte not 0).
    case invalidIdentity(String)

    public var description: String {
        switch self {
        case .zmq(let error): "\(error)"
        case .invalidEndpoint(let endpoint, let reason): "invalid endpoint '\(endpoint)': \(reason)"
        case .insecureBind(let endpoint):
            "refusing to bind '\(endpoint)' without CURVE keys: only loopback addresses (tcp://127.0.0.1, tcp://[::1], tcp://localhost or a name resolving to one), ipc:// and inproc:// may be bound unencrypted"
        case .unknownPeer(let peer): "no connected peer with identity \(peer)"
        case .wouldBlock: "message not queued: no connected peer or high-water mark reached"
        case .shutDown: "endpoint has been shut down"
        case .encode(let error): "\(error)"
        case .invalidKey(let reason): "invalid CURVE key: \(reason)"
        case .keyFile(let path, let reason): "key file \(path): \(reason)"
        case .invalidIdentity(let reason): "invalid routing identity: \(reason)"
        }
    }
}

/// The routing identity of a peer as a ROUTER sees it (the DEALER's `ZMQ_ROUTING_ID`).
public struct PeerIdentity: Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]

    public init(bytes: [UInt8]) { self.bytes = bytes }

    /// An identity from a worker id; validated when used as a DEALER routing id.
    public init(_ string: String) { self.bytes = Array(string.utf8) }

    /// Checks libzmq's rules for an explicit routing id.
    func validateAsRoutingID() throws(TransportError) {
        guard (1...255).contains(bytes.count) else {
            throw .invalidIdentity("length must be 1...255 bytes, got \(bytes.count)")
        }
        guard bytes[0] != 0 else { throw .invalidIdentity("first byte must not be 0 (reserved by libzmq)") }
    }

    public var description: String {
        if let text = String(validating: bytes, as: UTF8.self), text.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7F }) {
            return text
        }
        return "0x" + bytes.map { String($0, radix: 16).leftPadded(to: 2) }.joined()
    }
}

extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
