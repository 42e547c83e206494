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
            // The items are in 1,000 shard manifests beside the output, none in the database.
            let folder = ShardManifest.directory(outputLocation: record.outputLocation, job: job)
            defer { try? FileManager.default.removeItem(atPath: record.outputLocation) }
            let files = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasSuffix(".items") }
            #expect(files.count == 1000)
            let lastShard = try ShardManifest.read(job: job, shard: 999, first: 999_000, last: 999_999,
                                                   outputLocation: record.outputLocation)
            #expect(lastShard.count == 1000 && lastShard.last?.sourceId == "imagenet/train/999999" && lastShard.last?.label == 999)
            #expect(try await ledger.scalar("SELECT count(*) FROM items") == "0")
            #expect(try await ledger.scalar("SELECT count(*) FROM failed_items") == "0")
            // The ledger grows with shards: its tables hold a row per shard, well under a byte per item
            // (the old layout kept about 200 bytes of item rows per item).
            let ledgerSize = try #require(try await ledger.scalar("""
                SELECT pg_total_relation_size('jobs') + pg_total_relation_size('shards') + pg_total_relation_size('failed_items')
                     + pg_total_relation_size('items')
                """))
            let ledgerBytes = Double(ledgerSize) ?? .infinity
            var manifestBytes = 0
            for file in files {
                manifestBytes += (try FileManager.default.attributesOfItem(atPath: folder + "/" + file)[.size] as? Int) ?? 0
            }
            print("ledger: \(ledgerBytes / 1e6) bytes per item in PostgreSQL, \(Double(manifestBytes) / 1e6) bytes per item in manifests")
            #expect(ledgerBytes / 1e6 < 2)
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
