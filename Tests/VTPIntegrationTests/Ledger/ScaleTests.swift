import Foundation
import Testing
import VTPBenchmarks
import VTPVocabulary
@testable import VTPQueue

@Suite("Ledger at scale")
struct ScaleTests {
    @Test func enqueuesOneMillionItemsInUnderAMinute() async throws {
        try await withLedgerDatabase { url in
            let ledger = Ledger(database: url)
            let many = (0..<1_000_000).map {
                JobItem(ordinal: $0, sourceId: "imagenet/train/\($0)",
                        location: .file(path: "/datasets/imagenet/train/n\($0 % 1000)/\($0).JPEG"), label: $0 % 1000)
            }
            let start = ContinuousClock.now
            let job = try await ledger.enqueue(testJob(shardSize: 1000), items: many)
            let elapsed = ContinuousClock.now - start
            print("enqueued 1,000,000 items (1,000 shards) in \(elapsed)")
            #expect(elapsed < .seconds(60))
            let record = try await ledger.job(job)
            #expect(record.itemCount == 1_000_000 && record.shardCount == 1000)
            #expect(try await ledger.scalar("SELECT count(*) FROM items WHERE job_id = $1", [String(job)]) == "1000000")
            #expect(try await ledger.scalar("SELECT source_id FROM items WHERE job_id = $1 AND ordinal = 999999",
                                            [String(job)]) == "imagenet/train/999999")
            let last = try await ledger.sql("SELECT first_item || '-' || last_item FROM shards WHERE job_id = $1 AND shard_index = 999",
                                            [String(job)])
            #expect(last == ["999000-999999"])
            let claim = try #require(try await ledger.claimNextShard(owner: "w"))
            #expect(claim.items.count == 1000 && claim.items.last?.ordinal == 999)
        }
    }

    @Test func benchmarkReportsClaimAndCompletionRate() async throws {
        try await SharedPostgres.withDatabase { url, connection in
            let report = try await LedgerBenchmark.run(database: connection, shards: 2000)
            print("ledger benchmark: \(report)")
            #expect(report.shards == 2000)
            #expect(report.operationsPerSecond > 0 && report.seconds > 0)
            #expect(try await Ledger(database: url).listJobs().isEmpty, "the benchmark job is removed")
        }
    }
}
