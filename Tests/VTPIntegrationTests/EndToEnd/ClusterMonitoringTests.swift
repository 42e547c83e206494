import Foundation
import Testing
import VTPVocabulary
import VTPQueue
import VTPTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The monitoring commands against a running cluster: `vtp coordinator` and `vtp worker` processes,
/// jobs submitted with `vtp submit`, watched with `vtp status`/`vtp workers --json`, then cancelled
/// and retried with `vtp job`.
struct ClusterMonitoringTests {
    func json(_ result: (status: Int32, stdout: String, stderr: String)) throws -> [String: Any] {
        #expect(result.status == 0, "\(result.stderr)")
        return try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
    }

    @Test(.timeLimit(.minutes(4)))
    func submitWatchCancelAndRetryThroughTheCLI() async throws {
        let local = try await LocalCluster("e2e-monitor")
        defer { local.tearDown() }
        let dir = local.dir
        let cluster = ["--config", local.config]

        // Job A: the fixture images plus one corrupt file; it will finish with one failed item.
        let good = try RunCommandTests.makeInput(dir.file("a"), copies: 1)
        try Data("this is not an image".utf8).write(to: URL(fileURLWithPath: dir.file("a/class00/broken.jpg")))
        // Job B: many small shards, cancelled while the worker is still busy with job A.
        let jobBItems = try RunCommandTests.makeInput(dir.file("b"), copies: 4).count

        try local.startServices(workerID: "mon-w1")
        let worker = try #require(local.worker), coordinator = try #require(local.coordinator)
        func submit(_ input: String, _ output: String, shardSize: Int, priority: Int) throws -> Int64 {
            let doc = try json(try VTPExecutable.run(["submit", "latents", "--model", Fixtures.path("vtp-tiny"), "--input", input,
                                                      "--output", output, "--shard-size", String(shardSize), "--image-size", "64",
                                                      "--priority", String(priority), "--json"] + cluster))
            return try #require((doc["job_id"] as? NSNumber)?.int64Value)
        }
        let jobA = try submit(dir.file("a"), dir.file("out-a"), shardSize: 4, priority: 10)
        let jobB = try submit(dir.file("b"), dir.file("out-b"), shardSize: 1, priority: 0)

        // vtp job cancel: job B never gets further than the shards already handed out.
        let cancelled = try json(try VTPExecutable.run(["job", "cancel", String(jobB), "--json"] + cluster))
        #expect(cancelled["state"] as? String == "cancelled")
        // How far B got before the cancel landed: a fast worker can finish a few one-item shards
        // of B while the cancel command starts (A has priority, but may already be all handed out).
        let doneAtCancel = Int(try await Ledger(database: local.server.databaseURL).job(jobB).itemsDone)

        func jobState(_ id: Int64) throws -> (state: String, done: Int, failed: Int) {
            let doc = try json(try VTPExecutable.run(["job", "show", String(id), "--json"] + cluster))
            let job = try #require(doc["job"] as? [String: Any])
            let items = try #require(job["items"] as? [String: Any])
            return (job["state"] as? String ?? "", (items["done"] as? NSNumber)?.intValue ?? -1,
                    (items["failed"] as? NSNumber)?.intValue ?? -1)
        }
        func waitForFinish(_ id: Int64) async throws -> (state: String, done: Int, failed: Int) {
            for _ in 0..<300 {
                let state = try jobState(id)
                if ["completed", "completed_with_failures"].contains(state.state),
                   FileManager.default.fileExists(atPath: dir.file("out-a/manifest.json")) { return state }
                try await Task.sleep(for: .milliseconds(200))
            }
            return try jobState(id)
        }

        // vtp status / vtp workers --json while the cluster works.
        var sawWorker = false
        for _ in 0..<100 where !sawWorker {
            let workers = try json(try VTPExecutable.run(["workers", "--json"] + cluster))
            let list = workers["workers"] as? [[String: Any]] ?? []
            sawWorker = list.contains { $0["id"] as? String == "mon-w1" && ($0["heartbeat_age_seconds"] as? NSNumber) != nil }
            if !sawWorker { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(sawWorker, "vtp workers --json never listed mon-w1")
        let status = try json(try VTPExecutable.run(["status", "--all", "--json"] + cluster))
        let listed = (status["jobs"] as? [[String: Any]] ?? []).compactMap { ($0["job"] as? [String: Any])?["id"] as? NSNumber }
        #expect(Set(listed.map(\.int64Value)) == [jobA, jobB])

        let finished = try await waitForFinish(jobA)
        #expect(finished.state == "completed_with_failures" && finished.done == good.count && finished.failed == 1,
                "\(finished)\n\(local.log("worker.err"))")
        let failures = try json(try VTPExecutable.run(["failures", String(jobA), "--json"] + cluster))
        #expect((failures["failures"] as? [[String: Any]])?.compactMap { $0["source_id"] as? String } == ["class00/broken.jpg"])

        // Job B stayed cancelled: at most the shards in the worker's hands when it was cancelled
        // (one running, one prefetched) finished after the cancel.
        let afterCancel = try jobState(jobB)
        #expect(afterCancel.state == "cancelled")
        #expect(afterCancel.done <= doneAtCancel + 2, "\(afterCancel), \(doneAtCancel) done at the cancel")
        #expect(afterCancel.done < jobBItems, "job B did not run to its end")

        // vtp job retry: the shard holding the broken file runs again, whole; the good rows survive.
        try FileManager.default.removeItem(atPath: dir.file("out-a/manifest.json"))
        let retried = try json(try VTPExecutable.run(["job", "retry", String(jobA), "--json"] + cluster))
        #expect(retried["action"] as? String == "retry")
        #expect(((retried["items_reset"] as? NSNumber)?.intValue ?? 0) >= 1)
        let again = try await waitForFinish(jobA)
        #expect(again.state == "completed_with_failures" && again.done == good.count && again.failed == 1)
        #expect(try RunCommandTests.writtenIDs(dir.file("out-a")).sorted() == good.sorted(), "every good image exactly once")

        kill(worker.pid, SIGTERM)
        #expect(try await worker.wait(seconds: 20) == .exited(0))
        kill(coordinator.pid, SIGTERM)
        #expect(try await coordinator.wait(seconds: 20) == .exited(0))
    }
}
