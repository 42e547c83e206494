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
        var finished = false
        for _ in 0..<600 {
            let job = try await ledger.job(jobID)
            if job.state.isFinished && FileManager.default.fileExists(atPath: dir.file("out/manifest.json")) {
                finished = true
                break
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(finished, "coordinator: \(cluster.log("coordinator.err"))\nworker: \(cluster.log("worker.err"))")
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
}
