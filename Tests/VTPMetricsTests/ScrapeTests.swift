import Foundation
import Testing
import VTPVocabulary
@testable import VTPMetrics
#if canImport(Glibc)
import Glibc
let streamSocket = Int32(SOCK_STREAM.rawValue)
let sendFlags = Int32(MSG_NOSIGNAL)
#elseif canImport(Darwin)
import Darwin
let streamSocket = SOCK_STREAM
let sendFlags: Int32 = 0
#endif

/// A plain TCP client: connects to 127.0.0.1:port, sends `request`, reads until the server closes.
func rawExchange(port: Int, request: [UInt8], readTimeoutSeconds: Int = 5) throws -> String {
    let fd = socket(AF_INET, streamSocket, 0)
    guard fd >= 0 else { throw SocketError(operation: "test socket", code: errno, reason: "socket failed") }
    defer { close(fd) }
    var timeout = timeval(tv_sec: readTimeoutSeconds, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = UInt16(port).bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else { throw SocketError(operation: "test connect", code: errno, reason: String(cString: strerror(errno))) }
    var sent = 0
    while sent < request.count {
        let n = request[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, sendFlags) }
        if n <= 0 { break }  // the server may close early on an oversized request
        sent += n
    }
    var received = [UInt8]()
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = recv(fd, &buffer, buffer.count, 0)
        if n <= 0 { break }
        received += buffer[0..<n]
    }
    return String(decoding: received, as: UTF8.self)
}

func get(_ port: Int, _ path: String, method: String = "GET") throws -> String {
    try rawExchange(port: port, request: Array("\(method) \(path) HTTP/1.1\r\nHost: localhost\r\nUser-Agent: test\r\n\r\n".utf8))
}

@Suite("Metrics server over loopback TCP")
struct ScrapeTests {
    @Test func scrapeReturnsTheExpositionWithContentTypeAndLength() throws {
        let metrics = try CoordinatorMetrics()
        metrics.itemsProcessed.increment(by: 42)
        metrics.stageDuration(.decode).observe(0.003)
        let server = try MetricsServer(registry: metrics.registry, address: "127.0.0.1", port: 0)
        defer { server.stop() }
        #expect(server.port > 0)
        let response = try get(server.port, "/metrics")
        let parts = response.components(separatedBy: "\r\n\r\n")
        #expect(parts.count == 2)
        let head = parts[0].components(separatedBy: "\r\n")
        #expect(head[0] == "HTTP/1.1 200 OK")
        #expect(head.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8"))
        #expect(head.contains("Content-Length: \(parts[1].utf8.count)"))
        #expect(head.contains("Connection: close"))
        #expect(parts[1] == metrics.registry.render())
        #expect(parts[1].contains("vtp_items_processed_total 42\n"))
        #expect(parts[1].contains("vtp_stage_duration_seconds_bucket{stage=\"decode\",le=\"0.005\"} 1\n"))

        // Values change between scrapes: the body is rendered per request.
        metrics.itemsProcessed.increment()
        #expect(try get(server.port, "/metrics").contains("vtp_items_processed_total 43\n"))
        let head2 = try get(server.port, "/metrics", method: "HEAD")
        #expect(head2.hasPrefix("HTTP/1.1 200 OK"))
        #expect(head2.hasSuffix("\r\n\r\n"))
    }

    @Test func otherPathsMethodsAndBadRequestsGetErrors() throws {
        let server = try MetricsServer(address: "127.0.0.1", port: 0) { "x 1\n" }
        defer { server.stop() }
        #expect(try get(server.port, "/").hasPrefix("HTTP/1.1 404 Not Found\r\n"))
        #expect(try get(server.port, "/metricsx").hasPrefix("HTTP/1.1 404 "))
        #expect(try get(server.port, "/metrics", method: "POST").hasPrefix("HTTP/1.1 404 "))
        #expect(try rawExchange(port: server.port, request: Array("nonsense\r\n\r\n".utf8)).hasPrefix("HTTP/1.1 400 "))
        let huge = Array("GET /metrics HTTP/1.1\r\nX-Pad: ".utf8) + Array(repeating: UInt8(ascii: "a"), count: 20_000)
        #expect(try rawExchange(port: server.port, request: huge).hasPrefix("HTTP/1.1 431 "))
        // The server is still healthy afterwards.
        #expect(try get(server.port, "/metrics").hasSuffix("\r\n\r\nx 1\n"))
    }

    @Test func aSilentClientTimesOutWithoutBlockingLaterScrapes() throws {
        let server = try MetricsServer(address: "127.0.0.1", port: 0,
                                       limits: .init(maximumRequestBytes: 8192, ioTimeoutMilliseconds: 300)) { "y 2\n" }
        defer { server.stop() }
        let start = Date()
        // Sends half a request and waits for the server's verdict.
        let partial = try rawExchange(port: server.port, request: Array("GET /metrics HTTP/1.1\r\n".utf8))
        #expect(partial.hasPrefix("HTTP/1.1 408 "))
        #expect(Date().timeIntervalSince(start) < 3)
        #expect(try get(server.port, "/metrics").hasSuffix("y 2\n"))
    }

    @Test func concurrentScrapesAllSucceed() async throws {
        let registry = MetricsRegistry()
        let counter = try registry.counter("scrapes_seen_total", help: "x")
        counter.increment(by: 9)
        let server = try MetricsServer(registry: registry)
        defer { server.stop() }
        let port = server.port
        let results = try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<16 {
                group.addTask { try get(port, "/metrics") }
            }
            var all: [String] = []
            for try await response in group { all.append(response) }
            return all
        }
        #expect(results.count == 16)
        #expect(results.allSatisfy { $0.hasPrefix("HTTP/1.1 200 OK") && $0.hasSuffix("scrapes_seen_total 9\n") })
    }

    @Test func stopClosesTheListenerAndIsIdempotent() throws {
        let server = try MetricsServer(address: "127.0.0.1", port: 0) { "z 3\n" }
        let port = server.port
        #expect(try get(port, "/metrics").hasSuffix("z 3\n"))
        server.stop()
        server.stop()
        // Usually the connection is refused; other suites running in parallel bind ephemeral ports
        // too and may take this one, so the check is that the stopped server no longer answers.
        let after = try? get(port, "/metrics")
        #expect(after == nil || !after!.contains("z 3"), "the stopped server still answered: \(after ?? "")")
    }

    @Test func bindingErrorsNameTheAddress() throws {
        let first = try MetricsServer(address: "127.0.0.1", port: 0) { "" }
        defer { first.stop() }
        do {
            _ = try MetricsServer(address: "127.0.0.1", port: first.port) { "" }
            Issue.record("binding a port in use must fail")
        } catch let error as SocketError {
            #expect(error.description.contains("127.0.0.1:\(first.port)"))
            #expect(error.code == EADDRINUSE)
        }
        #expect(throws: SocketError.self) { try MetricsServer(address: "192.0.2.1", port: 0) { "" } }
        #expect(throws: SocketError.self) { try MetricsServer(address: "127.0.0.1", port: 70000) { "" } }
    }
}
