import FlyingFox
import FlyingSocks
import Foundation
import Logging
import Prometheus
import Synchronization
import VTPVocabulary
#if canImport(Glibc)
import Glibc
#endif

/// The `/metrics` endpoint: FlyingFox's HTTP server answering `GET /metrics` (and `HEAD`) with a
/// registry's Prometheus exposition, 404 elsewhere. Its connections are tasks on FlyingFox's
/// non-blocking socket pool; its own log lines go to swift-log, so they follow `--log-format`.
public final class MetricsServer: Sendable {
    /// Why the server could not start.
    public struct StartError: Error, CustomStringConvertible, Sendable {
        public var address: String
        public var port: Int
        public var reason: String
        public var description: String { "metrics endpoint \(address):\(port): \(reason)" }
    }

    /// The address the server was asked to bind.
    public let address: String
    /// The bound port (the kernel's choice when 0 was requested).
    public let port: Int
    private let server: HTTPServer
    private let serving: Task<Void, Never>
    private let stopping: StopFlag

    private init(address: String, port: Int, server: HTTPServer, serving: Task<Void, Never>, stopping: StopFlag) {
        self.address = address
        self.port = port
        self.server = server
        self.serving = serving
        self.stopping = stopping
    }

    /// Binds `address:port` (an IPv4 or IPv6 literal, or a host name resolved once; port 0 for an
    /// ephemeral one), starts serving `body()` on `/metrics` and returns once it listens.
    public static func start(address: String = "127.0.0.1", port: Int = 0, logger: Logger = Logger(label: "vtp.metrics"),
                             body: @escaping @Sendable () -> String) async throws -> MetricsServer {
        guard (0...65535).contains(port) else { throw StartError(address: address, port: port, reason: "not a port number") }
        let socketAddress = try resolve(address, port: UInt16(port))
        let stopping = StopFlag()
        let server = HTTPServer(address: socketAddress, timeout: 5, logger: SwiftLogBridge(logger: logger, stopping: stopping))
        await server.appendRoute("GET,HEAD /metrics") { _ in
            HTTPResponse(statusCode: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                         body: Data(body().utf8))
        }
        let failure = FailureBox()
        let serving = Task {
            do { try await server.run() } catch { failure.set(error) }
        }
        // Until it listens or fails to: a bind error ends `run()` at once, which
        // `waitUntilListening` would only notice at its timeout.
        let deadline = ContinuousClock.now + .seconds(5)
        while await !server.isListening {
            if let error = failure.get() { throw StartError(address: address, port: port, reason: "\(error)") }
            guard ContinuousClock.now < deadline else {
                serving.cancel()
                throw StartError(address: address, port: port, reason: "not listening after 5 s")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        let bound: Int
        switch await server.listeningAddress {
        case let .ip4(_, listening)?, let .ip6(_, listening)?: bound = Int(listening)
        default: bound = port
        }
        return MetricsServer(address: address, port: bound, server: server, serving: serving, stopping: stopping)
    }

    /// Serves a Prometheus registry.
    public static func start(registry: PrometheusCollectorRegistry, address: String = "127.0.0.1", port: Int = 0,
                             logger: Logger = Logger(label: "vtp.metrics")) async throws -> MetricsServer {
        try await start(address: address, port: port, logger: logger) { registry.emitToString() }
    }

    /// Finishes responses in flight (for at most 0.2 s: a scrape is one small response), closes
    /// the listener and returns when the server has stopped. Safe to call more than once.
    public func stop() async {
        stopping.raise()
        await server.stop(timeout: 0.2)
        serving.cancel()
        await serving.value
    }

    /// A numeric address as is; a name resolved once, IPv4 first, as the coordinator's endpoint is.
    static func resolve(_ address: String, port: UInt16) throws -> any SocketAddress {
        let numeric = isNumeric(address) ? address : HostAddress.numeric(address)
        if let numeric, let v4 = try? sockaddr_in.inet(ip4: numeric, port: port) { return v4 }
        if let numeric, let v6 = try? sockaddr_in6.inet6(ip6: numeric, port: port) { return v6 }
        throw StartError(address: address, port: Int(port), reason: "cannot resolve it to an IPv4 or IPv6 address")
    }

    private static func isNumeric(_ address: String) -> Bool {
        var v4 = in_addr(), v6 = in6_addr()
        return inet_pton(AF_INET, address, &v4) == 1 || inet_pton(AF_INET6, address, &v6) == 1
    }
}

/// FlyingFox's log lines into swift-log (its per-connection chatter at debug and below). Its
/// `run()` reports the cancellation that ends it as a critical error; once stopping, that is
/// only debug.
private struct SwiftLogBridge: FlyingSocks.Logging {
    let logger: Logger
    let stopping: StopFlag
    func logDebug(_ debug: @autoclosure () -> String) { logger.trace("\(debug())") }
    func logInfo(_ info: @autoclosure () -> String) { logger.debug("\(info())") }
    func logWarning(_ warning: @autoclosure () -> String) { logger.warning("\(warning())") }
    func logError(_ error: @autoclosure () -> String) { logger.log(level: stopping.isRaised ? .debug : .error, "\(error())") }
    func logCritical(_ critical: @autoclosure () -> String) { logger.log(level: stopping.isRaised ? .debug : .error, "\(critical())") }
}

/// Raised when ``MetricsServer/stop()`` begins.
private final class StopFlag: Sendable {
    private let raised = Mutex(false)
    func raise() { raised.withLock { $0 = true } }
    var isRaised: Bool { raised.withLock { $0 } }
}

/// The error `run()` ended with, read by the starter when listening never began.
private final class FailureBox: Sendable {
    private let error = Mutex<(any Error)?>(nil)
    func set(_ value: any Error) { error.withLock { $0 = value } }
    func get() -> (any Error)? { error.withLock { $0 } }
}
