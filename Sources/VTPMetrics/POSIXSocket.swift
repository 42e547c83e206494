#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A failed socket call: which operation and the `errno` text.
public struct SocketError: Error, CustomStringConvertible, Sendable, Equatable {
    /// What was being done, e.g. "bind 127.0.0.1:9464".
    public let operation: String
    /// `errno` at the failure (0 when the failure was not a system call's).
    public let code: Int32
    /// Human-readable reason.
    public let reason: String

    public var description: String { "\(operation): \(reason)" }

    /// The single place a POSIX return value becomes a Swift error: negative means failure, read `errno`.
    @discardableResult
    static func check<T: BinaryInteger>(_ result: T, _ operation: @autoclosure () -> String) throws -> T {
        guard result < 0 else { return result }
        let code = errno
        throw SocketError(operation: operation(), code: code, reason: String(cString: strerror(code)))
    }
}

/// Owns one file descriptor and closes it exactly once.
///
/// `@unchecked Sendable` is safe because the descriptor number never changes after init and the
/// server thread is the only one that reads or writes through it; other threads only hold it alive.
final class OwnedDescriptor: @unchecked Sendable {
    let raw: Int32
    init(_ raw: Int32) { self.raw = raw }
    deinit { close(raw) }
}

/// The few socket operations the metrics server needs, with raw pointers confined here.
enum POSIXSocket {
    /// A listening TCP socket bound to `address:port` (port 0 picks a free one).
    static func listen(address: String, port: Int, backlog: Int32 = 16) throws -> OwnedDescriptor {
        let endpoint = "\(address):\(port)"
        guard (0...65535).contains(port) else {
            throw SocketError(operation: "bind \(endpoint)", code: EINVAL, reason: "port must be in 0...65535")
        }
        var hints = addrinfo()
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        hints.ai_family = AF_UNSPEC
        #if canImport(Glibc)
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        #else
        hints.ai_socktype = SOCK_STREAM
        #endif
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(address.isEmpty ? nil : address, String(port), &hints, &list)
        guard status == 0, let first = list else {
            throw SocketError(operation: "resolve \(endpoint)", code: 0, reason: String(cString: gai_strerror(status)))
        }
        defer { freeaddrinfo(list) }
        let fd = OwnedDescriptor(try SocketError.check(socket(first.pointee.ai_family, first.pointee.ai_socktype,
                                                              first.pointee.ai_protocol), "socket for \(endpoint)"))
        var one: Int32 = 1
        try SocketError.check(setsockopt(fd.raw, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size)),
                              "SO_REUSEADDR on \(endpoint)")
        try SocketError.check(bind(fd.raw, first.pointee.ai_addr, first.pointee.ai_addrlen), "bind \(endpoint)")
        try SocketError.check(cListen(fd.raw, backlog), "listen on \(endpoint)")
        try setNonBlocking(fd.raw, "listener \(endpoint)")
        return fd
    }

    /// The port a socket is bound to.
    static func boundPort(_ fd: Int32) throws -> Int {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = try withUnsafeMutablePointer(to: &storage) { pointer in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                try SocketError.check(getsockname(fd, $0, &length), "getsockname")
            }
        }
        switch Int32(storage.ss_family) {
        case AF_INET:
            return withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
            }
        case AF_INET6:
            return withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin6_port)) }
            }
        default:
            throw SocketError(operation: "getsockname", code: 0, reason: "unexpected address family \(storage.ss_family)")
        }
    }

    /// Accepts one pending connection; nil when none is waiting (the listener is non-blocking).
    static func accept(_ listener: Int32) throws -> OwnedDescriptor? {
        while true {
            let fd = cAccept(listener, nil, nil)
            if fd >= 0 {
                #if canImport(Darwin)
                var one: Int32 = 1
                _ = setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, socklen_t(MemoryLayout<Int32>.size))
                #endif
                return OwnedDescriptor(fd)
            }
            switch errno {
            case EINTR: continue
            // The client gave up between poll and accept, or nothing is pending: not an error of ours.
            case EAGAIN, EWOULDBLOCK, ECONNABORTED, EPROTO: return nil
            default: try SocketError.check(fd, "accept")
            }
        }
    }

    static func setNonBlocking(_ fd: Int32, _ what: String) throws {
        let flags = try SocketError.check(fcntl(fd, F_GETFL), "fcntl(F_GETFL) on \(what)")
        try SocketError.check(fcntl(fd, F_SETFL, flags | O_NONBLOCK), "fcntl(F_SETFL) on \(what)")
    }

    /// Waits until one of `fds` is readable or `timeoutMilliseconds` pass; returns which are readable.
    static func waitReadable(_ fds: [Int32], timeoutMilliseconds: Int32) throws -> [Bool] {
        var entries = fds.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        while true {
            let n = poll(&entries, nfds_t(entries.count), timeoutMilliseconds)
            if n < 0 && errno == EINTR { continue }
            try SocketError.check(n, "poll")
            return entries.map { $0.revents != 0 }
        }
    }

    /// Reads what is available (up to `capacity`); 0 means the peer closed, nil means try again.
    static func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) throws -> Int? {
        while true {
            let n = recv(fd, buffer.baseAddress, buffer.count, 0)
            if n >= 0 { return n }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK { return nil }
            try SocketError.check(n, "recv")
        }
    }

    /// Sends everything, waiting up to `timeoutMilliseconds` whenever the peer's window is full.
    static func writeAll(_ fd: Int32, _ bytes: [UInt8], timeoutMilliseconds: Int32) throws {
        try bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                #if canImport(Glibc)
                let flags = Int32(MSG_NOSIGNAL)
                #else
                let flags: Int32 = 0
                #endif
                let n = send(fd, raw.baseAddress! + offset, raw.count - offset, flags)
                if n > 0 { offset += n; continue }
                if n < 0 && errno == EINTR { continue }
                if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                    var entry = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                    let ready = poll(&entry, 1, timeoutMilliseconds)
                    if ready == 0 { throw SocketError(operation: "send", code: ETIMEDOUT, reason: "peer stopped reading") }
                    if ready < 0 && errno != EINTR { try SocketError.check(ready, "poll for send") }
                    continue
                }
                try SocketError.check(n, "send")
            }
        }
    }

    /// A pipe whose write end wakes a thread blocked in `poll` on the read end.
    static func pipePair() throws -> (read: OwnedDescriptor, write: OwnedDescriptor) {
        var fds: [Int32] = [0, 0]
        try SocketError.check(pipe(&fds), "pipe")
        let pair = (OwnedDescriptor(fds[0]), OwnedDescriptor(fds[1]))
        try setNonBlocking(fds[0], "wake pipe")
        try setNonBlocking(fds[1], "wake pipe")
        return pair
    }
}

// The module's own `listen`/`accept` names shadow the C functions inside `POSIXSocket`.
private func cListen(_ fd: Int32, _ backlog: Int32) -> Int32 { listen(fd, backlog) }
private func cAccept(_ fd: Int32, _ address: UnsafeMutablePointer<sockaddr>?,
                          _ length: UnsafeMutablePointer<socklen_t>?) -> Int32 { accept(fd, address, length) }
