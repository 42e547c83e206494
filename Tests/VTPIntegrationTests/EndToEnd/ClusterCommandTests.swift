import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing
import VTPVocabulary
import VTPQueue
import VTPTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// `vtp coordinator`, `vtp worker` and `vtp submit` as separate processes sharing one
/// configuration file and a real PostgreSQL, as on a cluster.
struct ClusterCommandTests {
    @Test(.timeLimit(.minutes(3)))
    func submittedJobIsProcessedAndBothServicesExitCleanlyOnSIGTERM() async throws {
        let cluster = try await LocalCluster("e2e-cluster", metrics: true)
        defer { cluster.tearDown() }
        let dir = cluster.dir, config = cluster.config, metricsPort = cluster.metricsPort, server = cluster.server
        let expected = try RunCommandTests.makeInput(dir.file("in"), copies: 1)
        try cluster.startServices(workerID: "cli-w1")
        let worker = try #require(cluster.worker), coordinator = try #require(cluster.coordinator)

        let submitted = try VTPExecutable.run(["submit", "latents", "--config", config, "--model", Fixtures.path("vtp-tiny"),
                                               "--input", dir.file("in"), "--output", dir.file("out"), "--shard-size", "3",
                                               "--image-size", "64", "--json"])
        #expect(submitted.status == 0, "\(submitted.stderr)")
        let document = try JSONSerialization.jsonObject(with: Data(submitted.stdout.utf8)) as? [String: Any]
        let jobID = try #require((document?["job_id"] as? NSNumber)?.int64Value)
        #expect((document?["items"] as? NSNumber)?.intValue == 13)
        #expect((document?["shards"] as? NSNumber)?.intValue == 5)

        let ledger = Ledger(database: server.databaseURL)
        #expect(try await cluster.waitForFinish(job: jobID, ledger: ledger, output: dir.file("out")), "\(cluster.logs)")
        let job = try await ledger.job(jobID)
        #expect(job.state == .completed && job.itemsDone == 13 && job.shardsDone == 5)
        #expect(Set(try RunCommandTests.writtenIDs(dir.file("out"))) == expected)
        #expect(try await ledger.listWorkers().map(\.report.id) == ["cli-w1"])

        // The coordinator's Prometheus endpoint counted the work.
        let (body, _) = try await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(metricsPort)/metrics")!)
        let metrics = String(decoding: body, as: UTF8.self)
        #expect(metrics.contains("vtp_shards_completed_total 5"), "\(metrics)")
        #expect(metrics.contains("vtp_items_processed_total 13"))
        #expect(metrics.contains("vtp_workers 1"))
        #expect(metrics.contains("vtp_stage_duration_seconds_count{stage=\"infer\"} 13"))
        // Exactly the documented metrics, with their types and labels: dashboards depend on them.
        let documented = try MetricsDocumentation.documented(), exposed = MetricsDocumentation.exposed(metrics)
        #expect(documented.count == 13 && Set(exposed.keys) == Set(documented.keys), "exposed: \(exposed.keys.sorted())")
        for (name, entry) in documented {
            #expect(exposed[name]?.type == entry.type && exposed[name]?.labels == entry.labels, "\(name)")
        }

        kill(worker.pid, SIGTERM)
        #expect(try await worker.wait(seconds: 20) == .exited(0))
        kill(coordinator.pid, SIGTERM)
        #expect(try await coordinator.wait(seconds: 20) == .exited(0))
        #expect(try await ledger.listWorkers().first?.report.state == .offline)
    }

    /// `vtp worker --metrics-port`: the worker's own series, scraped from the process after it
    /// processed a job, are exactly docs/monitoring.md's worker table and count that job's work.
    @Test(.timeLimit(.minutes(3)))
    func workerServesItsOwnMetricsAndTheEndpointEndsWithIt() async throws {
        let cluster = try await LocalCluster("e2e-worker-metrics")
        defer { cluster.tearDown() }
        let dir = cluster.dir, server = cluster.server
        let port = Int.random(in: 20_000...60_000)
        _ = try RunCommandTests.makeInput(dir.file("in"), copies: 1)
        try cluster.startServices(workerID: "metrics-w1", workerArguments: ["--metrics-port", String(port)])
        let worker = try #require(cluster.worker)

        var before = ""
        for _ in 0..<300 where before.isEmpty {
            before = (try? await Self.scrape(port)) ?? ""
            if before.isEmpty { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(before.contains("vtp_worker_shards_completed_total{job_type=\"latents\"} 0"), "worker: \(cluster.log("worker.err"))")
        #expect(before.contains("vtp_worker_busy 0.0"))

        let submitted = try VTPExecutable.run(["submit", "latents", "--config", cluster.config, "--model", Fixtures.path("vtp-tiny"),
                                               "--input", dir.file("in"), "--output", dir.file("out"), "--shard-size", "3",
                                               "--image-size", "64", "--json"])
        #expect(submitted.status == 0, "\(submitted.stderr)")
        let document = try JSONSerialization.jsonObject(with: Data(submitted.stdout.utf8)) as? [String: Any]
        let jobID = try #require((document?["job_id"] as? NSNumber)?.int64Value)
        let ledger = Ledger(database: server.databaseURL)
        var finished = false
        for _ in 0..<600 where !finished {
            finished = try await ledger.job(jobID).state.isFinished
            if !finished { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(finished, "coordinator: \(cluster.log("coordinator.err"))\nworker: \(cluster.log("worker.err"))")
        #expect(try await ledger.job(jobID).itemsDone == 13)

        let metrics = try await Self.scrape(port)
        #expect(metrics.contains("vtp_worker_shards_completed_total{job_type=\"latents\"} 5\n"), "\(metrics)")
        #expect(metrics.contains("vtp_worker_items_processed_total{job_type=\"latents\"} 13\n"))
        #expect(metrics.contains("vtp_worker_items_failed_total{job_type=\"latents\"} 0\n"))
        #expect(metrics.contains("vtp_worker_shards_failed_total{job_type=\"latents\"} 0\n"))
        #expect(metrics.contains("vtp_worker_stage_duration_seconds_count{job_type=\"latents\",stage=\"infer\"} 13\n"))
        #expect(metrics.contains("vtp_worker_stage_duration_seconds_count{job_type=\"latents\",stage=\"decode\"} 13\n"))
        // One model, loaded once and kept for every shard; shards of 3 are one model call each.
        #expect(metrics.contains("vtp_worker_model_load_seconds_count 1\n"))
        #expect(metrics.contains("vtp_worker_batch_size_count{job_type=\"latents\"} 5\n"))
        #expect(metrics.contains("vtp_worker_batch_size_sum{job_type=\"latents\"} 13"))
        #expect(metrics.contains("vtp_worker_busy 0.0\n"))
        let memory = metrics.split(separator: "\n").first { $0.hasPrefix("vtp_worker_resident_memory_bytes ") }
        #expect((memory.flatMap { Double($0.split(separator: " ")[1]) } ?? 0) > 1e6, "\(memory ?? "no memory gauge")")
        #expect(!metrics.contains("ordinal") && !metrics.contains("shard=") && !metrics.contains("job=\""), "ids are never labels")

        let documented = try MetricsDocumentation.documented(section: MetricsDocumentation.workerSection)
        let exposed = MetricsDocumentation.exposed(metrics)
        #expect(documented.count == 10 && Set(exposed.keys) == Set(documented.keys), "exposed: \(exposed.keys.sorted())")
        for (name, entry) in documented {
            #expect(exposed[name]?.type == entry.type && exposed[name]?.labels == entry.labels, "\(name)")
        }
        if let report = try Promtool.check(metrics) { #expect(report.status == 0, "promtool: \(report.output)") }

        kill(worker.pid, SIGTERM)
        #expect(try await worker.wait(seconds: 20) == .exited(0))
        #expect((try? await Self.scrape(port)) == nil, "the endpoint stops with the worker")
    }

    /// The body of `GET /metrics` on 127.0.0.1:`port`.
    static func scrape(_ port: Int) async throws -> String {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)/metrics")!)
        request.timeoutInterval = 2
        let (body, _) = try await URLSession.shared.data(for: request)
        return String(decoding: body, as: UTF8.self)
    }
}
