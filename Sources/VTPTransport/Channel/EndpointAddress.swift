#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import VTPVocabulary

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

    private init(transport: Transport, host: String, port: UInt16?, path: String, description: String) {
        self.transport = transport
        self.host = host
        self.port = port
        self.path = path
        self.description = description
    }

    /// True when the endpoint can only be reached from this machine: ipc, inproc, or tcp on a loopback
    /// address (`127.0.0.0/8`, `::1`) or `localhost`. Check it on `resolvedForBinding()` so a name
    /// is judged by the address actually bound.
    public var isLocalOnly: Bool {
        switch transport {
        case .ipc, .inproc: true
        case .tcp: host == "localhost" || Self.isLoopbackAddress(host)
        }
    }

    /// This endpoint with a tcp host name replaced by the numeric address it resolves to, the form
    /// `zmq_bind` needs: libzmq binds an address or an interface name, and takes any other name
    /// (`localhost` included) for a missing interface (ENODEV). When the name has IPv4 and IPv6
    /// addresses the first IPv4 one is bound. Addresses, `*`, ipc and inproc come back unchanged,
    /// and so does a name that does not resolve (it may be an interface name such as `eth0`, which
    /// libzmq understands). Connecting needs none of this: libzmq resolves names on connect, and
    /// again on every reconnect.
    ///
    /// Resolution may consult DNS; the coordinator does it once, while binding at start-up.
    public func resolvedForBinding() -> EndpointAddress {
        guard transport == .tcp, host != "*", !Self.isNumericAddress(host), let address = HostAddress.numeric(host) else { return self }
        let hostPart = address.contains(":") ? "[\(address)]" : address
        return EndpointAddress(transport: .tcp, host: address, port: port, path: "",
                               description: "tcp://\(hostPart):\(port.map(String.init) ?? "*")")
    }

    static func isNumericAddress(_ host: String) -> Bool {
        var v4 = in_addr(), v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
    }

    static func isLoopbackAddress(_ host: String) -> Bool {
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 { return UInt32(bigEndian: v4.s_addr) >> 24 == 127 }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, host, &v6) == 1 else { return false }
        return withUnsafeBytes(of: &v6) { Array($0) } == [UInt8](repeating: 0, count: 15) + [1]
    }

    /// True when libzmq needs `ZMQ_IPV6` to use this endpoint.
    var needsIPv6: Bool { transport == .tcp && host.contains(":") }
}
