import Foundation
import Testing
import VTPVocabulary
import VTPQueue
import VTPTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// `--log-format json` on the real services: `vtp coordinator` and `vtp worker` processes on a real
/// PostgreSQL print nothing but JSON lines, and the lease, shard and worker events a collector
/// filters on carry their ids as keys.
struct StructuredLogTests {
    /// Every line of `text` as a JSON object with the four keys every line has; records an issue
    /// naming `source` and the line for any other line.
    static func jsonLines(_ text: String, source: String) -> [[String: Any]] {
        var objects: [[String: Any]] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) where !line.isEmpty {
            guard let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] else {
                Issue.record("\(source): not a JSON object: \(line)")
                continue
            }
            for key in ["ts", "level", "logger", "msg"] where !(object[key] is String) {
                Issue.record("\(source): no string '\(key)': \(line)")
            }
            objects.append(object)
        }
        return objects
    }

    static func events(_ lines: [[String: Any]], _ name: String) -> [[String: Any]] {
        lines.filter { $0["event"] as? String == name }
    }

    @Test(.timeLimit(.minutes(3)))
    func coordinatorAndWorkerPrintOnlyJSONLinesCarryingLeaseShardAndWorkerEvents() async throws {
        let cluster = try await LocalCluster("e2e-json-logs")
        defer { cluster.tearDown() }
        let dir = cluster.dir
        _ = try RunCommandTests.makeInput(dir.file("in"), copies: 1)
        try cluster.startServices(workerID: "json-w1", arguments: ["--log-format", "json"])
        let worker = try #require(cluster.worker), coordinator = try #require(cluster.coordinator)

        let submitted = try VTPExecutable.run(["submit", "latents", "--config", cluster.config, "--model", Fixtures.path("vtp-tiny"),
                                               "--input", dir.file("in"), "--output", dir.file("out"), "--shard-size", "5",
                                               "--image-size", "64", "--json"])
        try #require(submitted.status == 0, "\(submitted.stderr)")
        let document = try JSONSerialization.jsonObject(with: Data(submitted.stdout.utf8)) as? [String: Any]
        let jobID = try #require((document?["job_id"] as? NSNumber)?.int64Value)
        let shardCount = try #require((document?["shards"] as? NSNumber)?.intValue)

        let ledger = Ledger(database: cluster.server.databaseURL)
        try #require(try await cluster.waitForFinish(job: jobID, ledger: ledger, output: dir.file("out")), "\(cluster.logs)")
        kill(worker.pid, SIGTERM)
        #expect(try await worker.wait(seconds: 20) == .exited(0))
        kill(coordinator.pid, SIGTERM)
        #expect(try await coordinator.wait(seconds: 20) == .exited(0))

        // Nothing but JSON on either stream of either process.
        let coordinatorLines = Self.jsonLines(cluster.log("coordinator.out"), source: "coordinator stdout")
            + Self.jsonLines(cluster.log("coordinator.err"), source: "coordinator stderr")
        let workerLines = Self.jsonLines(cluster.log("worker.out"), source: "worker stdout")
            + Self.jsonLines(cluster.log("worker.err"), source: "worker stderr")

        let job = String(jobID)
        let allShards = Set((0..<shardCount).map(String.init))
        func ids(_ line: [String: Any]) -> (job: String?, shard: String?, worker: String?) {
            (line["job"] as? String, line["shard"] as? String, line["worker"] as? String)
        }
        // Coordinator: every shard leased and done, each line naming job, shard and worker.
        let granted = Self.events(coordinatorLines, "lease_granted")
        // A lease may be granted twice (one that expired on a loaded machine), never less than once per shard.
        #expect(granted.count >= shardCount, "\(granted)")
        #expect(granted.allSatisfy { ids($0).job == job && ids($0).worker == "json-w1" && $0["msg"] as? String == "lease granted" })
        #expect(Set(granted.compactMap { ids($0).shard }) == allShards)
        let done = Self.events(coordinatorLines, "shard_done")
        #expect(done.count == shardCount, "\(done)")
        #expect(done.allSatisfy { ids($0).job == job && ids($0).worker == "json-w1" && $0["level"] as? String == "info" })
        #expect(Set(done.compactMap { ids($0).shard }) == allShards)
        #expect(done.compactMap { Int($0["items_ok"] as? String ?? "") }.reduce(0, +) == 13)
        let joined = Self.events(coordinatorLines, "worker_joined"), left = Self.events(coordinatorLines, "worker_left")
        #expect(!joined.isEmpty && joined.allSatisfy { $0["worker"] as? String == "json-w1" && $0["host"] is String }, "\(joined)")
        #expect(!left.isEmpty && left.allSatisfy { $0["worker"] as? String == "json-w1" }, "\(left)")

        // Worker: each shard received and done, under its own id.
        for name in ["shard_received", "shard_done"] {
            let lines = Self.events(workerLines, name)
            #expect(lines.allSatisfy { ids($0).job == job && ids($0).worker == "json-w1" }, "\(name): \(lines)")
            #expect(Set(lines.compactMap { ids($0).shard }) == allShards, "\(name): \(lines)")
        }
    }

    @Test func aFatalErrorIsAJSONLineTooAndTheOptionWinsOverTheFile() throws {
        let dir = try TemporaryDirectory("json-fatal")
        defer { dir.remove() }
        // No database anywhere: the coordinator cannot start.
        let config = dir.file("vtp.toml")
        try "[logging]\nformat = \"logfmt\"\n".write(toFile: config, atomically: true, encoding: .utf8)
        let refused = try VTPExecutable.run(["coordinator", "--config", config, "--log-format", "json"],
                                            environment: ["VTP_DATABASE_URL": ""])
        #expect(refused.status != 0)
        #expect(refused.stdout.isEmpty, "\(refused.stdout)")
        let lines = Self.jsonLines(refused.stderr, source: "coordinator stderr")
        let last = try #require(lines.last, "no line: \(refused.stderr)")
        #expect(last["level"] as? String == "critical" && last["event"] as? String == "fatal_error")
        #expect((last["error"] as? String)?.contains("no database") == true, "\(last)")

        // A value the file cannot have: the error names the key and the allowed values, as JSON when asked.
        try "[logging]\nformat = \"xml\"\n".write(toFile: config, atomically: true, encoding: .utf8)
        let badFile = try VTPExecutable.run(["worker", "--config", config, "--log-format", "json"])
        #expect(badFile.status != 0)
        let error = Self.jsonLines(badFile.stderr, source: "worker stderr").last?["error"] as? String
        #expect(error?.contains("logging.format: must be one of text, logfmt, json, got 'xml'") == true, "\(badFile.stderr)")

        // A bad option value is refused before anything starts, naming the option and the choices.
        let badOption = try VTPExecutable.run(["worker", "--log-format", "xml"])
        #expect(badOption.status != 0 && badOption.stderr.contains("--log-format: 'xml' is not one of text, logfmt, json"),
                "\(badOption.stderr)")
        let badLevel = try VTPExecutable.run(["coordinator", "--log-level", "loud"])
        #expect(badLevel.status != 0 && badLevel.stderr.contains("--log-level: 'loud' is not one of trace, debug"), "\(badLevel.stderr)")
    }
}
