import Foundation
import Testing
import VTPVocabulary
import VTPQueue
import VTPTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// A shard manifest that went bad on the output storage between `vtp submit` and the run, with
/// `vtp coordinator` and `vtp worker` as separate processes: only that shard fails.
struct CorruptManifestTests {
    @Test(.timeLimit(.minutes(3)))
    func aCorruptedManifestFailsItsShardAfterItsAttemptsAndTheWorkerRunsEveryOtherShard() async throws {
        let cluster = try await LocalCluster("e2e-bad-manifest")
        defer { cluster.tearDown() }
        let dir = cluster.dir, config = cluster.config, server = cluster.server
        let expected = try RunCommandTests.makeInput(dir.file("in"), copies: 1)
        let submitted = try VTPExecutable.run(["submit", "latents", "--config", config, "--model", Fixtures.path("vtp-tiny"),
                                               "--input", dir.file("in"), "--output", dir.file("out"), "--shard-size", "3",
                                               "--max-attempts", "2", "--image-size", "64", "--json"])
        #expect(submitted.status == 0, "\(submitted.stderr)")
        let document = try JSONSerialization.jsonObject(with: Data(submitted.stdout.utf8)) as? [String: Any]
        let jobID = try #require((document?["job_id"] as? NSNumber)?.int64Value)
        let ledger = Ledger(database: server.databaseURL)
        let output = try await ledger.job(jobID).outputLocation

        // One byte of shard 1's manifest changes on the storage before any worker runs.
        let path = ShardManifest.path(outputLocation: output, job: jobID, shard: 1)
        let lost = try ShardManifest.read(job: jobID, shard: 1, first: 3, last: 5, outputLocation: output).map(\.sourceId)
        var bytes = try #require(FileManager.default.contents(atPath: path))
        let at = try #require(bytes.range(of: Data(lost[1].utf8))).lowerBound
        bytes[at] = bytes[at] == UInt8(ascii: "x") ? UInt8(ascii: "y") : UInt8(ascii: "x")
        try bytes.write(to: URL(fileURLWithPath: path))

        try cluster.startServices(workerID: "bad-manifest-w1")
        let worker = try #require(cluster.worker)
        #expect(try await cluster.waitForFinish(job: jobID, ledger: ledger, output: dir.file("out")), "\(cluster.logs)")
        let job = try await ledger.job(jobID)
        #expect(job.state == .completedWithFailures && job.shardsDone == 4 && job.shardsFailed == 1, "\(job)")
        #expect(job.itemsDone == 10 && job.itemsFailed == 3)
        // The bad shard used its two attempts (with the usual backoff) and says which file and line.
        #expect(try await ledger.sql("SELECT state || ':' || attempts FROM shards WHERE job_id = $1 ORDER BY shard_index",
                                     [String(jobID)]) == ["done:1", "failed:2", "done:1", "done:1", "done:1"])
        let error = try #require(try await ledger.failures(job: jobID).first?.error)
        #expect(error.contains("shard manifest \(path), line 5, field crc32"), "\(error)")
        #expect(cluster.log("coordinator.err").contains(path), "the coordinator logs the file")
        // The worker never saw the bad shard, is still running, and wrote every other image once.
        #expect(worker.poll() == nil, "worker: \(cluster.log("worker.err"))")
        let written = try RunCommandTests.writtenIDs(dir.file("out"))
        #expect(written.count == 10 && Set(written) == expected.subtracting(lost))
    }
}
