import CoreMetrics
import Foundation
import Testing
import VTPTestSupport
@testable import VTPMetrics
#if canImport(Glibc)
import Glibc
#endif

/// A plain TCP client: connects to 127.0.0.1:port, sends `request`, reads until the server closes
/// or `readTimeoutSeconds` pass with nothing new.
func rawExchange(port: Int, request: String, readTimeoutSeconds: Int = 5) throws -> String {
    struct ClientError: Error { var what: String }
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw ClientError(what: "socket failed") }
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
    guard connected == 0 else { throw ClientError(what: "connect: \(String(cString: strerror(errno)))") }
    let bytes = Array(request.utf8)
    _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    var received = [UInt8]()
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = recv(fd, &buffer, buffer.count, 0)
        if n <= 0 { break }
        received += buffer[0..<n]
        // One response per connection is all a scrape needs; stop once its body is complete.
        if let text = String(bytes: received, encoding: .utf8), let split = text.range(of: "\r\n\r\n"),
           let length = text[..<split.lowerBound].split(separator: "\r\n")
               .first(where: { $0.lowercased().hasPrefix("content-length:") })
               .flatMap({ Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) }),
           text.utf8.distance(from: split.upperBound.samePosition(in: text.utf8)!, to: text.utf8.endIndex) >= length {
            break
        }
    }
    return String(decoding: received, as: UTF8.self)
}

/// One request on a thread of its own: the blocking client must not hold a thread of the
/// cooperative pool, on which the server under test runs.
func get(_ port: Int, _ path: String, method: String = "GET") async throws -> String {
    try await withCheckedThrowingContinuation { continuation in
        Thread {
            continuation.resume(with: Result {
                try rawExchange(port: port, request: "\(method) \(path) HTTP/1.1\r\nHost: localhost\r\nUser-Agent: test\r\nConnection: close\r\n\r\n")
            })
        }.start()
    }
}

func body(of response: String) -> String {
    response.range(of: "\r\n\r\n").map { String(response[$0.upperBound...]) } ?? ""
}

@Suite("Metrics server over loopback TCP", .serialized)
struct ScrapeTests {
    @Test func scrapeReturnsTheExpositionWithItsContentType() async throws {
        let metrics = CoordinatorMetrics()
        metrics.itemsProcessed.increment(by: 42)
        metrics.stageDuration(.decode).record(0.003)
        let server = try await MetricsServer.start(registry: metrics.factory.registry)
        #expect(server.port > 0)
        let response = try await get(server.port, "/metrics")
        let head = response.components(separatedBy: "\r\n\r\n")[0].components(separatedBy: "\r\n")
        #expect(head[0] == "HTTP/1.1 200 OK", "\(response)")
        #expect(head.contains { $0.lowercased() == "content-type: text/plain; version=0.0.4; charset=utf-8" }, "\(head)")
        let exposition = body(of: response)
        #expect(exposition.contains("vtp_items_processed_total 42\n"), "\(exposition)")
        #expect(exposition.contains("vtp_stage_duration_seconds_bucket{stage=\"decode\",le=\"0.005\"} 1\n"), "\(exposition)")
        #expect(exposition.contains("# HELP vtp_items_processed_total Items processed successfully.\n"))
        // Values change between scrapes: the body is rendered per request.
        metrics.itemsProcessed.increment()
        #expect(body(of: try await get(server.port, "/metrics")).contains("vtp_items_processed_total 43\n"))
        #expect(try await get(server.port, "/metrics", method: "HEAD").hasPrefix("HTTP/1.1 200 OK"))
        #expect(try await get(server.port, "/").hasPrefix("HTTP/1.1 404 "))
        let post = try await get(server.port, "/metrics", method: "POST")
        #expect(post.hasPrefix("HTTP/1.1 404 ") || post.hasPrefix("HTTP/1.1 405 "), "\(post)")
        await server.stop()
        await server.stop()
        let after = try? await get(server.port, "/metrics")
        #expect(after == nil || !after!.contains("vtp_items_processed_total"), "the stopped server still answered")
    }

    @Test func everyDocumentedMetricIsExportedWithItsTypeAndLabelsFromTheStart() throws {
        let documented = try MetricsDocumentation.documented()
        #expect(documented.count == 13, "docs/monitoring.md lists \(documented.count) metrics")
        let exposed = MetricsDocumentation.exposed(CoordinatorMetrics().render())
        #expect(Set(exposed.keys) == Set(documented.keys), "exposed \(exposed.keys.sorted()), documented \(documented.keys.sorted())")
        for (name, entry) in documented {
            #expect(exposed[name]?.type == entry.type, "\(name): exposed \(exposed[name]?.type ?? "-"), documented \(entry.type)")
            #expect(exposed[name]?.labels == entry.labels, "\(name): labels \(exposed[name]?.labels ?? [])")
        }
        for name in CoordinatorMetrics.Name.allNames { #expect(documented[name] != nil, "\(name) is not documented") }
    }

    @Test func everyDocumentedWorkerMetricIsExportedWithItsTypeAndLabelsFromTheStart() throws {
        let documented = try MetricsDocumentation.documented(section: MetricsDocumentation.workerSection)
        #expect(documented.count == 10, "docs/monitoring.md lists \(documented.count) worker metrics")
        let exposed = MetricsDocumentation.exposed(WorkerMetrics().render())
        #expect(Set(exposed.keys) == Set(documented.keys), "exposed \(exposed.keys.sorted()), documented \(documented.keys.sorted())")
        for (name, entry) in documented {
            #expect(exposed[name]?.type == entry.type, "\(name): exposed \(exposed[name]?.type ?? "-"), documented \(entry.type)")
            #expect(exposed[name]?.labels == entry.labels, "\(name): labels \(exposed[name]?.labels ?? [])")
        }
        for name in WorkerMetrics.Name.allNames { #expect(documented[name] != nil, "\(name) is not documented") }
        // The two tables never share a name: one Prometheus may scrape both kinds of process.
        #expect(Set(documented.keys).isDisjoint(with: try MetricsDocumentation.documented().keys))
    }

    @Test func workerSeriesAreLabelledByJobTypeOnly() {
        let metrics = WorkerMetrics()
        metrics.itemsProcessed(jobType: "latents").increment(by: 3)
        metrics.itemsProcessed(jobType: "latents").increment()
        metrics.shardsFailed(jobType: "some-future-type").increment()
        metrics.stageDuration(.infer, jobType: "clip-embed").record(0.02)
        metrics.batchSize(jobType: "features").record(8)
        metrics.modelLoad.record(1.5)
        metrics.busy.record(1)
        let text = metrics.render()
        #expect(text.contains("vtp_worker_items_processed_total{job_type=\"latents\"} 4\n"), "\(text)")
        #expect(text.contains("vtp_worker_items_processed_total{job_type=\"features\"} 0\n"))
        #expect(text.contains("vtp_worker_shards_failed_total{job_type=\"other\"} 1\n"), "an unknown type is not a label value of its own")
        #expect(!text.contains("some-future-type"))
        #expect(text.contains("vtp_worker_stage_duration_seconds_bucket{job_type=\"clip-embed\",stage=\"infer\",le=\"0.025\"} 1\n"), "\(text)")
        #expect(text.contains("vtp_worker_batch_size_bucket{job_type=\"features\",le=\"8.0\"} 1\n"), "\(text)")
        #expect(text.contains("vtp_worker_model_load_seconds_count 1\n"))
        #expect(text.contains("vtp_worker_busy 1.0\n"))
    }

    @Test func promtoolAcceptsTheWorkerExposition() throws {
        let metrics = WorkerMetrics()
        metrics.stageDuration(.decode, jobType: "latents").record(0.004)
        metrics.batchSize(jobType: "latents").record(3)
        metrics.modelLoad.record(0.7)
        metrics.residentMemory.record(123_456_789)
        try checkWithPromtool(metrics.render())
    }

    @Test func promtoolAcceptsTheExposition() throws {
        let metrics = CoordinatorMetrics()
        metrics.stageDuration(.infer).record(0.2)
        try checkWithPromtool(metrics.render())
    }

    /// `promtool check metrics` on `exposition`, when promtool is installed (else nothing to check it with).
    func checkWithPromtool(_ exposition: String) throws {
        guard let promtool = ["/usr/bin/promtool", "/usr/local/bin/promtool"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            return
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: promtool)
        process.arguments = ["check", "metrics"]
        let input = Pipe(), output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = output
        try process.run()
        input.fileHandleForWriting.write(Data(exposition.utf8))
        try input.fileHandleForWriting.close()
        let report = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "promtool: \(report)")
    }

    @Test func concurrentScrapesAllSucceed() async throws {
        let metrics = CoordinatorMetrics()
        metrics.workers.record(9)
        let server = try await MetricsServer.start(registry: metrics.factory.registry)
        let port = server.port
        let results = try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<16 { group.addTask { try await get(port, "/metrics") } }
            var all: [String] = []
            for try await response in group { all.append(response) }
            return all
        }
        await server.stop()
        #expect(results.count == 16)
        #expect(results.allSatisfy { $0.hasPrefix("HTTP/1.1 200 OK") && $0.contains("vtp_workers 9.0\n") })
    }

    @Test func startErrorsNameTheAddress() async throws {
        let first = try await MetricsServer.start(address: "127.0.0.1", port: 0) { "" }
        do {
            _ = try await MetricsServer.start(address: "127.0.0.1", port: first.port) { "" }
            Issue.record("binding a port in use must fail")
        } catch let error as MetricsServer.StartError {
            #expect(error.description.contains("127.0.0.1:\(first.port)"), "\(error)")
        }
        await first.stop()
        await #expect(throws: MetricsServer.StartError.self) { try await MetricsServer.start(address: "127.0.0.1", port: 70000) { "" } }
        // Not an address of this machine.
        await #expect(throws: MetricsServer.StartError.self) { try await MetricsServer.start(address: "192.0.2.1", port: 0) { "" } }
        // Names resolve: localhost is a loopback address.
        let named = try await MetricsServer.start(address: "localhost", port: 0) { "n 1\n" }
        #expect(body(of: try await get(named.port, "/metrics")) == "n 1\n")
        await named.stop()
    }
}
