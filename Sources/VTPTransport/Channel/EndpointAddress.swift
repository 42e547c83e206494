/// A validated ZeroMQ endpoint string (`tcp://host:port`, `ipc://path`, `inproc://name`).
///
/// Validation exists so a misconfigured coordinator fails at start-up with a clear message, and so the
/// coordinator can refuse to expose an unauthenticated socket beyond this machine.
public struct EndpointAddress: Sendable, Hashable, CustomStringConvertible {
    public enum Transport: String, Sendable { case tcp, ipc, inproc }

    public let transport: Transport
    /// For tcp: the host part without brackets (`127.0.0.1`, `::1`, `localhost`, `*`, a name or address).
    public let host: String
    /// For tcp: the port, or `nil` for an ephemeral `*` port.
    public let port: UInt16?
    /// For ipc/inproc: the path or name.
    public let path: String
    /// The original string, handed to libzmq unchanged.
    public let description: String

    public init(_ string: String) throws(TransportError) {
        func invalid(_ reason: String) -> TransportError { .invalidEndpoint(string, reason: reason) }
        guard let separator = string.firstRange(of: "://") else { throw invalid("expected transport://address") }
        let scheme = String(string[..<separator.lowerBound])
        let rest = String(string[separator.upperBound...])
        guard let transport = Transport(rawValue: scheme) else {
            throw invalid("transport must be tcp, ipc or inproc, got '\(scheme)'")
        }
        guard !rest.isEmpty else { throw invalid("address after \(scheme):// is empty") }
        guard !rest.contains(where: { $0.isWhitespace || $0 == "\0" }) else {
            throw invalid("address contains whitespace or NUL")
        }
        self.transport = transport
        self.description = string
        switch transport {
        case .ipc, .inproc:
            host = ""
            port = nil
            path = rest
        case .tcp:
            path = ""
            let hostPart: Substring
            let portPart: Substring
            if rest.hasPrefix("[") {
                guard let close = rest.firstIndex(of: "]") else { throw invalid("unterminated IPv6 '['") }
                hostPart = rest[rest.index(after: rest.startIndex)..<close]
                let afterHost = rest[rest.index(after: close)...]
                guard afterHost.hasPrefix(":") else { throw invalid("expected ':port' after ']'") }
                portPart = afterHost.dropFirst()
            } else {
                guard let colon = rest.lastIndex(of: ":") else { throw invalid("expected host:port") }
                hostPart = rest[..<colon]
                portPart = rest[rest.index(after: colon)...]
                if hostPart.contains(":") { throw invalid("IPv6 hosts must be written in brackets: tcp://[::1]:port") }
            }
            guard !hostPart.isEmpty else { throw invalid("host is empty") }
            host = String(hostPart)
            if portPart == "*" {
                port = nil
            } else if let value = UInt16(portPart), value > 0 {
                port = value
            } else {
                throw invalid("port must be 1...65535 or '*', got '\(portPart)'")
            }
        }
    }

    /// True when the endpoint can only be reached from this machine: ipc, inproc, or tcp on a loopback
    /// address (`127.0.0.1`, `::1`, `localhost`).
    public var isLocalOnly: Bool {
        switch transport {
        case .ipc, .inproc: true
        case .tcp: host == "127.0.0.1" || host == "::1" || host == "localhost"
        }
    }

    /// True when libzmq needs `ZMQ_IPV6` to use this endpoint.
    var needsIPv6: Bool { transport == .tcp && host.contains(":") }
}
