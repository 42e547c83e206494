import Foundation
import Synchronization

/// A minimal HTTP/1.1 server for Prometheus scrapes: `GET /metrics` answers 200 with the
/// registry's exposition, anything else 404. It runs on its own thread (never the cooperative
/// pool), serves one connection at a time (scrapes are rare and cheap), bounds request heads and
/// slow clients, and closes every connection after its response.
public final class MetricsServer: Sendable {
    /// Limits applied to each connection.
    public struct Limits: Sendable, Equatable {
        /// Largest request head accepted; larger requests get 431.
        public var maximumRequestBytes: Int
        /// How long a client may take to send its request or accept the response.
        public var ioTimeoutMilliseconds: Int32

        public init(maximumRequestBytes: Int = 8192, ioTimeoutMilliseconds: Int32 = 2000) {
            self.maximumRequestBytes = maximumRequestBytes
            self.ioTimeoutMilliseconds = ioTimeoutMilliseconds
        }
    }

    /// The address the server was asked to bind.
    public let address: String
    /// The bound port (the kernel's choice when 0 was requested).
    public let port: Int
    private let loop: ServerLoop

    /// Binds `address:port` (port 0 = ephemeral) and starts serving `body()` on `/metrics`.
    /// - Throws: `SocketError` naming the address when it cannot be resolved or bound.
    public init(address: String = "127.0.0.1", port: Int = 0, limits: Limits = Limits(),
                body: @escaping @Sendable () -> String) throws {
        let listener = try POSIXSocket.listen(address: address, port: port)
        self.address = address
        self.port = try POSIXSocket.boundPort(listener.raw)
        loop = try ServerLoop(listener: listener, limits: limits, body: body)
        let thread = Thread { [loop] in loop.run() }
        thread.name = "vtp-metrics-http"
        thread.start()
    }

    /// Serves `registry`.
    public convenience init(registry: MetricsRegistry, address: String = "127.0.0.1", port: Int = 0,
                            limits: Limits = Limits()) throws {
        try self.init(address: address, port: port, limits: limits, body: { registry.render() })
    }

    /// Finishes the response in progress (if any), closes the listener and waits for the thread to end.
    /// Safe to call more than once.
    public func stop() { loop.stop() }

    deinit { loop.stop() }
}

/// The server thread's state.
///
/// `@unchecked Sendable` is safe because `listener` is only touched by the server thread (after
/// init), the wake pipe's read end likewise; `stop()` from other threads only writes one byte to
/// the wake pipe and waits on `finished`, and `stopRequested` is atomic.
final class ServerLoop: @unchecked Sendable {
    /// Closed (set to nil) by the server thread as it exits, so a stopped server refuses connections.
    private var listener: OwnedDescriptor?
    private let wake: (read: OwnedDescriptor, write: OwnedDescriptor)
    private let limits: MetricsServer.Limits
    private let body: @Sendable () -> String
    private let finished = DispatchSemaphore(value: 0)
    private let stopRequested = Atomic<Bool>(false)

    init(listener: OwnedDescriptor, limits: MetricsServer.Limits, body: @escaping @Sendable () -> String) throws {
        self.listener = listener
        self.limits = limits
        self.body = body
        wake = try POSIXSocket.pipePair()
    }

    func stop() {
        // Only the first caller signals and waits.
        guard !stopRequested.exchange(true, ordering: .acquiringAndReleasing) else { return }
        var byte: UInt8 = 1
        _ = write(wake.write.raw, &byte, 1)
        finished.wait()
    }

    func run() {
        defer {
            listener = nil
            finished.signal()
        }
        guard let listening = listener?.raw else { return }
        while true {
            guard let ready = try? POSIXSocket.waitReadable([listening, wake.read.raw], timeoutMilliseconds: -1),
                  !ready[1] else { return }
            guard ready[0] else { continue }
            // Drain every pending connection, one at a time.
            while let client = try? POSIXSocket.accept(listening) {
                if !serve(client) { return }
            }
        }
    }

    /// Serves one connection; returns false when a stop was requested while waiting on the client.
    private func serve(_ client: OwnedDescriptor) -> Bool {
        do {
            try POSIXSocket.setNonBlocking(client.raw, "client")
        } catch {
            return true
        }
        var parser = HTTPRequestParser(maximumHeadBytes: limits.maximumRequestBytes)
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 1)
        defer { chunk.deallocate() }
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(limits.ioTimeoutMilliseconds) * 1_000_000
        while true {
            let now = DispatchTime.now().uptimeNanoseconds
            guard now < deadline else {
                respond(client, status: 408, reason: "Request Timeout", text: "request timed out\n")
                return true
            }
            let remaining = Int32(clamping: (deadline - now) / 1_000_000 + 1)
            guard let ready = try? POSIXSocket.waitReadable([client.raw, wake.read.raw], timeoutMilliseconds: remaining)
            else { return true }
            if ready[1] { return false }
            guard ready[0] else { continue }
            let count: Int
            do {
                guard let received = try POSIXSocket.read(client.raw, into: chunk) else { continue }  // spurious wakeup
                count = received
            } catch {
                return true  // reset by the peer: nothing to answer
            }
            if count == 0 { return true }  // the client hung up before finishing its request
            switch parser.feed(UnsafeRawBufferPointer(rebasing: chunk[0..<count])) {
            case .needMore:
                continue
            case .reject(let status, let reason):
                respond(client, status: status, reason: reason, text: reason.lowercased() + "\n")
                return true
            case .request(let request):
                route(request, client)
                return true
            }
        }
    }

    private func route(_ request: HTTPRequestParser.Request, _ client: OwnedDescriptor) {
        let isHead = request.method == "HEAD"
        if request.path == "/metrics" && (request.method == "GET" || isHead) {
            let response = HTTPResponse.make(status: 200, reason: "OK", contentType: Exposition.contentType,
                                             body: body(), includeBody: !isHead)
            try? POSIXSocket.writeAll(client.raw, response, timeoutMilliseconds: limits.ioTimeoutMilliseconds)
        } else {
            respond(client, status: 404, reason: "Not Found", text: "not found; metrics are served at /metrics\n")
        }
    }

    private func respond(_ client: OwnedDescriptor, status: Int, reason: String, text: String) {
        let response = HTTPResponse.make(status: status, reason: reason, contentType: "text/plain; charset=utf-8", body: text)
        try? POSIXSocket.writeAll(client.raw, response, timeoutMilliseconds: limits.ioTimeoutMilliseconds)
    }
}
