import Foundation
import Testing
import VTPVocabulary
@testable import VTPConsole
@testable import VTPQueue

@Suite("Console formatting")
struct FormattingTests {
    @Test func durations() {
        #expect(HumanFormat.duration(nil) == "-")
        #expect(HumanFormat.duration(-1) == "-")
        #expect(HumanFormat.duration(.infinity) == "-")
        #expect(HumanFormat.duration(0) == "0s")
        #expect(HumanFormat.duration(59.4) == "59s")
        #expect(HumanFormat.duration(59.6) == "1m00s")
        #expect(HumanFormat.duration(185) == "3m05s")
        #expect(HumanFormat.duration(7380) == "2h03m")
        #expect(HumanFormat.duration(3 * 86_400 + 4 * 3600 + 59) == "3d04h")
    }

    @Test func ratesSizesCountsPercents() {
        #expect(HumanFormat.rate(0) == "0/s")
        #expect(HumanFormat.rate(.nan) == "0/s")
        #expect(HumanFormat.rate(0.5234) == "0.52/s")
        #expect(HumanFormat.rate(12.34) == "12.3/s")
        #expect(HumanFormat.rate(845.2) == "845/s")
        #expect(HumanFormat.rate(999.7) == "1k/s")
        #expect(HumanFormat.rate(12_480) == "12.5k/s")
        #expect(HumanFormat.rate(3_200_000) == "3.2M/s")
        #expect(HumanFormat.bytes(0) == "0 B")
        #expect(HumanFormat.bytes(1023) == "1023 B")
        #expect(HumanFormat.bytes(1536) == "1.5 KiB")
        #expect(HumanFormat.bytes(3 << 30 + 1 << 28) == "3.25 GiB")
        #expect(HumanFormat.bytes(500 << 20) == "500 MiB")
        #expect(HumanFormat.count(0) == "0")
        #expect(HumanFormat.count(999) == "999")
        #expect(HumanFormat.count(1000) == "1,000")
        #expect(HumanFormat.count(-1_234_567) == "-1,234,567")
        #expect(HumanFormat.percent(0.425) == "42.5%")
        #expect(HumanFormat.percent(1.7) == "100.0%")
        #expect(HumanFormat.percent(.nan) == "0.0%")
    }

    @Test func progressBars() {
        #expect(ProgressBar.render(fraction: 0, width: 4) == "░░░░")
        #expect(ProgressBar.render(fraction: 1, width: 4) == "████")
        #expect(ProgressBar.render(fraction: 0.5, width: 4) == "██░░")
        #expect(ProgressBar.render(fraction: 0.3, width: 4) == "█▏░░")  // 1.2 cells: one full, one eighth
        #expect(ProgressBar.render(fraction: 2, width: 3) == "███")
        #expect(ProgressBar.render(fraction: .nan, width: 3, style: .ascii) == "...")
        #expect(ProgressBar.render(fraction: 0.66, width: 10, style: .ascii) == "######....")
        for fraction in stride(from: 0.0, through: 1.0, by: 0.01) {
            #expect(ProgressBar.render(fraction: fraction, width: 17).count == 17)
        }
    }

    @Test func tablesAlignColumnsWithoutTrailingSpaces() {
        var table = TextTable(headers: ["ID", "NAME", "N"], alignments: [.right, .left, .right])
        table.append(["7", "alpha", "1,000"])
        table.append(["123", "b"])
        #expect(table.render() == """
             ID  NAME       N
              7  alpha  1,000
            123  b

            """)
    }

    @Test func credentialsAreScrubbed() {
        let url = "postgresql://bob:s3cr%21t@db.example:5432/vtp?sslmode=require"
        #expect(CredentialScrubber.passwords(in: url).contains("s3cr%21t"))
        #expect(CredentialScrubber.passwords(in: url).contains("s3cr!t"))
        #expect(CredentialScrubber.scrub("auth failed for s3cr!t at \(url)", connection: url)
                == "auth failed for *** at postgresql://bob:***@db.example:5432/vtp?sslmode=require")
        let keywords = "host=db user=x password='a b\\'c' dbname=v"
        #expect(CredentialScrubber.passwords(in: keywords) == ["a b'c"])
        #expect(CredentialScrubber.scrub("x a b'c y", connection: keywords) == "x *** y")
        #expect(CredentialScrubber.passwords(in: "postgresql://u@h/db?password=zz&x=1") == ["zz"])
        #expect(CredentialScrubber.passwords(in: "postgresql://u@h/db").isEmpty)
    }

    static func record(state: JobState = .running, started: Bool = true) -> JobRecord {
        JobRecord(id: 7, type: "encode", parametersJSON: #"{"resolution":256}"#, model: nil, inputLocation: "/in",
                  outputLocation: "/out", state: state, priority: 2, maxAttempts: 3, shardCount: 4, itemCount: 100,
                  shardsDone: 1, shardsFailed: 0, itemsDone: 20, itemsFailed: 5, rejectedCompletions: 1,
                  createdAt: Date(timeIntervalSince1970: 1_764_381_296.789),
                  startedAt: started ? Date(timeIntervalSince1970: 1_764_381_300) : nil, finishedAt: nil)
    }

    @Test func jobJSONShapeIsStableWithNulls() throws {
        let progress = JobProgress(job: Self.record(started: false), shards: [.done: 1, .pending: 3],
                                   itemsPerSecond: 2.5, etaSeconds: nil)
        let json = try ConsoleJSON.encode(JobStatus(progress))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        #expect(Set(object.keys) == ["job", "progress", "items_in_progress", "items_per_second", "eta_seconds", "shard_states"])
        #expect(object["eta_seconds"] is NSNull)
        #expect(object["progress"] as? Double == 0.25)
        #expect(object["shard_states"] as? [String: Int] == ["done": 1, "pending": 3])
        let job = try #require(object["job"] as? [String: Any])
        #expect(Set(job.keys) == ["id", "type", "state", "priority", "model", "input", "output", "max_attempts", "shards",
                                  "items", "rejected_completions", "created_at", "started_at", "finished_at", "error"])
        #expect(job["error"] is NSNull)
        #expect(job["model"] is NSNull)
        #expect(job["started_at"] is NSNull)
        #expect(job["created_at"] as? String == "2025-11-29T01:54:56.789Z")
        #expect(job["items"] as? [String: Int] == ["total": 100, "done": 20, "failed": 5, "pending": 75])
        #expect(job["shards"] as? [String: Int] == ["total": 4, "done": 1, "failed": 0])
    }

    @Test func workerViewMeasuresHeartbeatAgeAgainstTheGivenClock() throws {
        let beat = Date(timeIntervalSince1970: 1_000_000)
        let record = WorkerRecord(report: WorkerReport(id: "w1", host: "node-a", state: .busy,
                                                       currentShard: ShardRef(jobID: 7, index: 2), itemsDone: 40,
                                                       imagesPerSecond: 12.5, memoryBytes: 3 << 30),
                                  registeredAt: beat.addingTimeInterval(-100), lastHeartbeat: beat)
        let view = WorkerSummary(record, now: beat.addingTimeInterval(4.5))
        #expect(view.heartbeatAgeSeconds == 4.5)
        #expect(WorkerSummary(record, now: beat.addingTimeInterval(-3)).heartbeatAgeSeconds == 0)
        let table = ConsoleRenderer.workersTable([view])
        #expect(table.contains("w1"))
        #expect(table.contains("7/2"))
        #expect(table.contains("5s ago"))  // 4.5 rounds half up
        #expect(table.contains("3 GiB"))
        #expect(table.contains("12.5"))
    }

    @Test func statusTextShowsBarPercentRateAndEta() {
        let progress = JobProgress(job: Self.record(), shards: [.leased: 1], itemsPerSecond: 12.34, etaSeconds: 185)
        let status = ClusterStatus(now: Date(timeIntervalSince1970: 0), jobs: [JobStatus(progress)], workers: [],
                                   itemsPerSecond: 3)
        let text = ConsoleRenderer.status(status, barWidth: 8, style: .ascii)
        #expect(text.contains("##......  25.0%"))
        #expect(text.contains("25/100"))
        #expect(text.contains("12.3/s"))
        #expect(text.contains("3m05s"))
        #expect(text.contains("workers: 0 (0 busy, 0 idle, 0 draining, 0 offline)  cluster: 3/s"))
        #expect(status.workers == ["total": 0, "idle": 0, "busy": 0, "draining": 0, "offline": 0])
    }

    @Test func screensAreClippedToTheTerminal() {
        let screen = "abcdef\nxy\n123456789\nlast\n"
        #expect(TerminalControl.fit(screen, columns: nil, rows: nil) == screen)
        #expect(TerminalControl.fit(screen, columns: 4, rows: nil) == "abcd\nxy\n1234\nlast\n")
        #expect(TerminalControl.fit(screen, columns: 3, rows: 3) == "abc\nxy\n")
        #expect(TerminalControl.fit("no newline", columns: 2, rows: 5) == "no")
    }

    @Test func failurePagesTruncateErrorsAndPointToTheNextPage() {
        let long = String(repeating: "x", count: 200) + "\nsecond line"
        let page = FailurePage(job: 3, failures: [ItemFailure(ordinal: 4, sourceID: "img-4", path: "/d/4.jpg", error: long)],
                               nextAfter: 4)
        let text = ConsoleRenderer.failuresTable(page, errorWidth: 20)
        #expect(text.contains(String(repeating: "x", count: 19) + "…"))
        #expect(!text.contains("second line"))
        #expect(text.hasSuffix("more failures: vtp failures 3 --after 4\n"))
        #expect(ConsoleRenderer.failuresTable(FailurePage(job: 3, failures: [], nextAfter: nil)) == "job 3: no failed items\n")
    }
}
