import Foundation
import Testing
import VTPVocabulary
import VTPConsole
import VTPQueue
import VTPTestSupport

/// Parses a command's JSON output.
func jsonObject(_ text: String) throws -> [String: Any] {
    let parsed = try JSONSerialization.jsonObject(with: Data(text.utf8))
    return try #require(parsed as? [String: Any], "not a JSON object: \(text)")
}

/// Runs `vtp` and requires success, reporting stderr otherwise.
func vtpOK(_ arguments: [String]) throws -> String {
    let result = try VTPExecutable.run(arguments)
    #expect(result.status == 0, "vtp \(arguments.joined(separator: " ")) failed: \(result.stderr)")
    return result.stdout
}

/// The monitoring commands against a real PostgreSQL, run as subprocesses. One server for the
/// whole scenario keeps the test at a few seconds.
@Suite("vtp monitoring commands end to end")
struct CLIEndToEndTests {
    @Test func statusJobsWorkersFailuresAndJobControl() async throws {
        let server = try EmbeddedPostgres.temporary()
        defer { try? server.stopBlocking() }
        try await server.start()
        _ = try await Migrator.migrate(database: server.databaseURL)
        let db = ["--database", server.connectionURL]
        let ledger = Ledger(database: server.databaseURL)

        // Job A: 25 items in shards of 10; shard 0 completes with two failed items.
        let items = (0..<25).map { JobItem(ordinal: $0, sourceId: "img-\($0)", location: .file(path: "/data/a/\($0).jpg")) }
        let jobA = try await ledger.enqueue(JobSpec(type: "encode", model: "vtp-tiny", inputLocation: "/data/a",
                                                    outputLocation: scratchOutput(), shardSize: 10), items: items)
        let claim = try #require(try await ledger.claimNextShard(owner: "w1", job: jobA))
        let results = claim.items.map { item in
            item.ordinal == 3 || item.ordinal == 7
                ? ItemResult.failure(item.ordinal, error: "decode error: truncated JPEG in \(item.sourceId)")
                : ItemResult.success(item.ordinal, output: "/out/a/\(item.ordinal).safetensors")
        }
        let inFlight = try await ledger.queueCounts()
        #expect(inFlight.pending == 2 && inFlight.leased == 1)
        #expect(try await ledger.completeShard(claim.shard, token: claim.leaseToken, results: results) == .applied)
        let jobB = try await ledger.enqueue(JobSpec(type: "clip", inputLocation: "/data/b", outputLocation: scratchOutput()),
                                            items: [JobItem(ordinal: 0, sourceId: "b-0", location: .file(path: "/data/b/0.png"))])
        try await ledger.upsertWorker(WorkerReport(id: "w1", host: "node-1", state: .busy,
                                                   currentShard: ShardRef(jobID: jobA, index: 1), itemsDone: 8,
                                                   itemsFailed: 2, imagesPerSecond: 12.5, memoryBytes: 3 << 30))

        let queued = try await ledger.queueCounts()
        #expect(queued.pending == 3 && queued.leased == 0)
        let before = try await ledger.databaseTime()
        #expect(abs(before.timeIntervalSinceNow) < 60)

        // vtp status --json
        let status = try jsonObject(try vtpOK(["status", "--json"] + db))
        let statusJobs = try #require(status["jobs"] as? [[String: Any]])
        #expect(statusJobs.count == 2)
        let a = try #require(statusJobs.first { ($0["job"] as? [String: Any])?["id"] as? Int == Int(jobA) })
        let aJob = try #require(a["job"] as? [String: Any])
        #expect(aJob["state"] as? String == "running")
        #expect(aJob["items"] as? [String: Int] == ["total": 25, "done": 8, "failed": 2, "pending": 15])
        #expect(a["progress"] as? Double == 0.4)
        #expect(a["shard_states"] as? [String: Int] == ["done": 1, "pending": 2])
        #expect((a["items_per_second"] as? Double ?? 0) > 0)
        #expect((a["eta_seconds"] as? Double ?? -1) > 0)
        #expect(status["workers"] as? [String: Int] == ["total": 1, "busy": 1, "idle": 0, "draining": 0, "offline": 0])
        #expect((status["items_per_second"] as? Double ?? 0) > 0)

        // Human status: a progress bar and the percentage.
        let statusText = try vtpOK(["status"] + db)
        #expect(statusText.contains("40.0%"))
        #expect(statusText.contains("10/25"))
        #expect(statusText.contains("█"))

        // vtp jobs --json: newest first.
        let jobs = try #require(try jsonObject(try vtpOK(["jobs", "--json"] + db))["jobs"] as? [[String: Any]])
        #expect(jobs.map { $0["id"] as? Int } == [Int(jobB), Int(jobA)])
        #expect(jobs[0]["type"] as? String == "clip")
        #expect(jobs[0]["state"] as? String == "pending")
        #expect(jobs[1]["model"] as? String == "vtp-tiny")

        // vtp workers --json
        let workers = try #require(try jsonObject(try vtpOK(["workers", "--json"] + db))["workers"] as? [[String: Any]])
        #expect(workers.count == 1)
        #expect(workers[0]["id"] as? String == "w1")
        #expect(workers[0]["host"] as? String == "node-1")
        #expect(workers[0]["state"] as? String == "busy")
        #expect(workers[0]["current_job"] as? Int == Int(jobA))
        #expect(workers[0]["current_shard"] as? Int == 1)
        #expect(workers[0]["images_per_second"] as? Double == 12.5)
        #expect(workers[0]["memory_bytes"] as? Int == 3 << 30)
        let age = try #require(workers[0]["heartbeat_age_seconds"] as? Double)
        #expect(age >= 0 && age < 60)

        // vtp failures ID --json, paginated.
        let page1 = try jsonObject(try vtpOK(["failures", String(jobA), "--json", "--limit", "1"] + db))
        let failures1 = try #require(page1["failures"] as? [[String: Any]])
        #expect(failures1.count == 1)
        #expect(failures1[0]["ordinal"] as? Int == 3)
        #expect(failures1[0]["source_id"] as? String == "img-3")
        #expect(failures1[0]["path"] as? String == "/data/a/3.jpg")
        #expect(failures1[0]["error"] as? String == "decode error: truncated JPEG in img-3")
        #expect(page1["next_after"] as? Int == 3)
        let page2 = try jsonObject(try vtpOK(["failures", String(jobA), "--json", "--limit", "1", "--after", "3"] + db))
        #expect((page2["failures"] as? [[String: Any]])?.map { $0["ordinal"] as? Int } == [7])
        #expect(page2["next_after"] is NSNull)
        #expect(try vtpOK(["failures", String(jobA)] + db).contains("truncated JPEG"))

        // vtp job retry ID: the shard with the two failed items goes back to the queue whole
        // (its 10 items), since a shard's outputs are rewritten from all of its items.
        let retried = try vtpOK(["job", "retry", String(jobA)] + db)
        #expect(retried.contains("10 item(s) of failed shards requeued"))
        let afterRetry = try await ledger.job(jobA)
        #expect(afterRetry.itemsFailed == 0)
        #expect(afterRetry.itemsDone == 0)
        #expect(try await ledger.failures(job: jobA).isEmpty)

        // vtp job pause / resume / cancel
        let paused = try jsonObject(try vtpOK(["job", "pause", String(jobB), "--json"] + db))
        #expect(paused["state"] as? String == "paused")
        #expect(try await ledger.job(jobB).state == .paused)
        #expect(try vtpOK(["job", "resume", String(jobB)] + db).contains("state pending"))
        let cancelled = try jsonObject(try vtpOK(["job", "cancel", String(jobB), "--json"] + db))
        #expect(cancelled["job"] as? Int == Int(jobB))
        #expect(cancelled["action"] as? String == "cancel")
        #expect(cancelled["state"] as? String == "cancelled")
        #expect(cancelled["items_reset"] is NSNull)
        #expect(try await ledger.job(jobB).state == .cancelled)
        // Pausing a cancelled job is refused with the reason.
        let pauseCancelled = try VTPExecutable.run(["job", "pause", String(jobB)] + db)
        #expect(pauseCancelled.status != 0)
        #expect(pauseCancelled.stderr.contains("cannot pause job \(jobB) in state cancelled"))

        // vtp job show, and status hides finished jobs unless --all.
        let shown = try jsonObject(try vtpOK(["job", "show", String(jobA), "--json"] + db))
        #expect((shown["job"] as? [String: Any])?["id"] as? Int == Int(jobA))
        #expect(shown["parameters"] as? String == "{}")
        let active = try #require(try jsonObject(try vtpOK(["status", "--json"] + db))["jobs"] as? [[String: Any]])
        #expect(active.count == 1)
        let everything = try #require(try jsonObject(try vtpOK(["status", "--json", "--all"] + db))["jobs"] as? [[String: Any]])
        #expect(everything.count == 2)

        // Unknown job ids are clear errors for every per-job command.
        for arguments in [["job", "show", "999"], ["job", "cancel", "999"], ["job", "retry", "999"], ["failures", "999"]] {
            let result = try VTPExecutable.run(arguments + db)
            #expect(result.status != 0)
            #expect(result.stderr.contains("job 999 does not exist"), "\(arguments): \(result.stderr)")
            #expect(result.stdout.isEmpty)
        }

        // vtp top draws frames in the alternate screen and restores the terminal.
        let top = try vtpOK(["top", "--iterations", "2", "--interval", "0.1"] + db)
        #expect(top.hasPrefix(TerminalControl.enter))
        #expect(top.hasSuffix(TerminalControl.leave))
        #expect(top.components(separatedBy: TerminalControl.redraw).count == 3)
        #expect(top.contains("node-1"))
        try topRestoresTheTerminalOnSIGINT(db)

        // The database URL may come from the environment-free config file too.
        let config = try TemporaryDirectory("monitor-config")
        defer { config.remove() }
        try "[database]\nurl = \"\(server.connectionURL)\"\n".write(toFile: config.file("vtp.toml"), atomically: true, encoding: .utf8)
        let viaConfig = try jsonObject(try vtpOK(["jobs", "--json", "--config", config.file("vtp.toml")]))
        #expect((viaConfig["jobs"] as? [[String: Any]])?.count == 2)

        try await server.stop()
    }

    /// SIGINT while `vtp top` waits between frames: exit 0 with the cursor and screen restored.
    func topRestoresTheTerminalOnSIGINT(_ db: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: VTPExecutable.path)
        process.arguments = ["top", "--interval", "0.2"] + db
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        // Wait for the first frame before interrupting.
        var seen = Data()
        while !String(decoding: seen, as: UTF8.self).contains("node-1") {
            let chunk = out.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            seen += chunk
        }
        process.interrupt()
        seen += out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: seen, as: UTF8.self)
        #expect(process.terminationReason == .exit)
        #expect(process.terminationStatus == 0)
        #expect(text.hasSuffix(TerminalControl.leave))
    }

    @Test func unreachableDatabaseFailsFastWithoutPrintingThePassword() throws {
        let start = Date()
        let result = try VTPExecutable.run(["status", "--json", "--database", "postgresql://vtp:hunter2secret@127.0.0.1:1/vtp"])
        #expect(result.status != 0)
        #expect(result.stdout.isEmpty)
        #expect(result.stderr.contains("cannot reach the job ledger at postgresql://vtp:***@127.0.0.1:1/vtp"))
        #expect(!result.stderr.contains("hunter2secret"))
        #expect(Date().timeIntervalSince(start) < 10)

        let missing = try VTPExecutable.run(["workers", "--config", "/nonexistent/vtp.toml"])
        #expect(missing.status != 0)
        #expect(missing.stderr.contains("/nonexistent/vtp.toml"))

        let badLimit = try VTPExecutable.run(["failures", "1", "--limit", "0", "--database", "postgresql://x@h/db"])
        #expect(badLimit.status != 0)
        #expect(badLimit.stderr.contains("--limit must be at least 1"))
    }
}
