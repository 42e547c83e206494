import Foundation
import Testing
import VTPVocabulary
import VTPQueue
import VTPTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The chaos run's same-id restart on the shipped binaries: `vtp coordinator` on
/// `tcp://localhost:PORT` (a host name, resolved before binding) and a `vtp worker` that is
/// SIGKILLed while it holds shards and restarted under the same `--worker-id`, as systemd does (a
/// Kubernetes pod restart repeats the default `host-pid` id the same way).
struct WorkerRestartTests {
    @Test(.timeLimit(.minutes(4)))
    func aWorkerKilledAndRestartedUnderTheSameIDFinishesTheJobExactlyOnce() async throws {
        let port = Int.random(in: 20_000...60_000)
        // Leases of two minutes: the job can only finish in time if the killed process's leases
        // are released when its successor registers (they used to be renewed by the successor's
        // heartbeats forever). One-second heartbeats: the restart registers before liveness
        // would declare the old session dead.
        let cluster = try await LocalCluster("e2e-restart", endpoint: "tcp://localhost:\(port)", heartbeatMilliseconds: 1000,
                                             leaseSeconds: 120, prefetch: 3)
        defer { cluster.tearDown() }
        let dir = cluster.dir
        let expected = try RunCommandTests.makeInput(dir.file("in"), copies: 3)
        try cluster.startServices(workerID: "steady-id")
        let ledger = Ledger(database: cluster.server.databaseURL)
        let submitted = try VTPExecutable.run(["submit", "latents", "--config", cluster.config, "--model", Fixtures.path("vtp-tiny"),
                                               "--input", dir.file("in"), "--output", dir.file("out"), "--shard-size", "2",
                                               "--image-size", "64", "--json"])
        #expect(submitted.status == 0, "\(submitted.stderr)")
        let document = try JSONSerialization.jsonObject(with: Data(submitted.stdout.utf8)) as? [String: Any]
        let jobID = try #require((document?["job_id"] as? NSNumber)?.int64Value)
        let job = try await ledger.job(jobID)

        // Kill it mid-job, while it holds leases (one shard running, more queued).
        var holding = false
        for _ in 0..<600 {
            let state = try await ledger.job(jobID)
            let leased = try await ledger.queueCounts().leased
            if state.shardsDone >= 2 && leased > 0 { holding = true; break }
            try await Task.sleep(for: .milliseconds(50))
        }
        try #require(holding, "the worker never held shards: \(cluster.log("worker.err"))\n\(cluster.log("coordinator.err"))")
        let killed = try #require(cluster.worker)
        kill(killed.pid, SIGKILL)
        #expect(try await killed.wait(seconds: 10) == .signalled(SIGKILL))
        try cluster.startWorker(workerID: "steady-id")

        var finished = false
        for _ in 0..<900 {
            let record = try await ledger.job(jobID)
            if record.state.isFinished && FileManager.default.fileExists(atPath: dir.file("out/manifest.json")) {
                finished = true
                break
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        let record = try await ledger.job(jobID)
        #expect(finished, "the job stalled after the restart: \(record)\ncoordinator: \(cluster.log("coordinator.err"))\nworker: \(cluster.log("worker-2.err"))")
        #expect(record.state == .completed && record.itemsDone == Int64(expected.count) && record.shardsDone == job.shardCount)
        // Every input written exactly once.
        let written = try RunCommandTests.writtenIDs(dir.file("out"))
        #expect(written.count == expected.count && Set(written) == expected)
        // Released when the successor registered (or, had it started slower than the liveness
        // limit, when the old session was declared dead): never by waiting out the lease.
        let log = cluster.log("coordinator.err")
        #expect(log.contains("steady-id restarted") || log.contains("steady-id stopped responding"), "\(log)")
        #expect(!log.contains("lease expired"))

        let worker = try #require(cluster.worker), coordinator = try #require(cluster.coordinator)
        kill(worker.pid, SIGTERM)
        #expect(try await worker.wait(seconds: 20) == .exited(0))
        kill(coordinator.pid, SIGTERM)
        #expect(try await coordinator.wait(seconds: 20) == .exited(0))
    }
}
