import Foundation
import Testing
import VTPVocabulary
@testable import VTPQueue

/// The ledger layout of migration 0007 (items in shard manifests, failure rows in the database):
/// moving a ledger written before it, and a manifest that went bad on its storage.
@Suite("Shard manifests against a real PostgreSQL")
struct ShardManifestLedgerTests {
    /// The items of the pre-0007 job below: every field a manifest carries, escapes included.
    static let oldItems: [JobItem] = [
        JobItem(ordinal: 0, sourceId: "img-0", location: .file(path: "/data/in/0.jpg"), label: 3),
        JobItem(ordinal: 1, sourceId: "img-1", location: .file(path: "/data/in/1.jpg")),
        JobItem(ordinal: 2, sourceId: "img-2", location: .file(path: "/data/in/2 with\ttab.jpg"), label: 7,
                caption: "a\tcat\nwith \\ escapes", metadata: #"{"url": "https://example.org/2.jpg", "width": 640}"#),
        JobItem(ordinal: 3, sourceId: "shards/00000.tar/k3", location: .tarMember(tarPath: "/data/in/00000.tar", offset: 1536, size: 99)),
        JobItem(ordinal: 4, sourceId: "img-4", location: .file(path: "/data/in/4.jpg")),
        JobItem(ordinal: 5, sourceId: "img-5", location: .file(path: "/data/in/5.jpg"), caption: "último"),
    ]

    @Test func aLedgerWithItemRowsFromMigration0006MovesToManifestsAndItsJobCompletesOnce() async throws {
        try await withLedgerDatabase(migrate: false) { url in
            let before = try await Migrator.migrate(database: url, migrations: Array(EmbeddedMigrations.all.prefix(6)))
            #expect(before.version == 6)
            let ledger = Ledger(database: url, leasePolicy: quickLeases(30))
            let output = scratchOutput()
            defer { try? FileManager.default.removeItem(atPath: output) }

            // A job as the 0006 enqueue and completion left it: shard 0 done with one item failed,
            // shards 1 and 2 pending, and a sample the listing skipped (shard -1).
            let inserted = try await ledger.scalar("""
                INSERT INTO jobs (type, parameters, model, input_location, output_location, max_attempts, shard_count,
                                  item_count, shards_done, items_done, items_failed, state, started_at, listing_digest)
                VALUES ('encode', '{"resolution": 256}', 'vtp-tiny', '/data/in', $1, 3, 3, 7, 1, 1, 2, 'running', now(), 'v1:7:x')
                RETURNING id
                """, [output])
            let job = try #require(inserted.flatMap { Int64($0) })
            _ = try await ledger.sql("""
                INSERT INTO shards (job_id, shard_index, priority, first_item, last_item, state, attempts, items_ok, items_failed,
                                    completed_at, result_summary)
                VALUES ($1, 0, 0, 0, 1, 'done', 1, 1, 1, now(), '{"shard": 0}'), ($1, 1, 0, 2, 3, 'pending', 0, 0, 0, NULL, NULL),
                       ($1, 2, 0, 4, 5, 'pending', 0, 0, 0, NULL, NULL)
                """, [String(job)])
            for item in Self.oldItems {
                let (state, outputLocation, error): (String, String?, String?) = switch item.ordinal {
                case 0: ("done", "latents_rank00_shard000.safetensors#0", nil)
                case 1: ("failed", nil, "decode error: truncated")
                default: ("pending", nil, nil)
                }
                _ = try await ledger.sql("""
                    INSERT INTO items (job_id, ordinal, shard_index, source_id, path, label, caption, metadata, state, output_location, error)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $10, $11)
                    """, [String(job), String(item.ordinal), String(item.ordinal / 2), item.sourceId, item.location.encoded,
                          item.label.map(String.init), item.caption, item.metadata, state, outputLocation, error])
            }
            _ = try await ledger.sql("""
                INSERT INTO items (job_id, ordinal, shard_index, source_id, path, state, error)
                VALUES ($1, 6, -1, 'shards/00000.tar/k9', '', 'failed', 'no image member')
                """, [String(job)])

            // 0007 copies the failure rows and flags the job; its shards wait for their manifests.
            let migrated = try await Migrator.migrate(database: url)
            #expect(migrated.applied == [7] && migrated.version == Migration.latestVersion)
            try await ledger.verifySchema()
            #expect(try await ledger.scalar("SELECT item_rows::text FROM jobs WHERE id = $1", [String(job)]) == "true")
            #expect(try await ledger.scalar("""
                SELECT string_agg(ordinal || ':' || shard_index || ':' || error, ',' ORDER BY ordinal) FROM failed_items WHERE job_id = $1
                """, [String(job)]) == "1:0:decode error: truncated,6:-1:no image member")
            #expect(try await ledger.claimNextShard(owner: "w") == nil, "a job whose items are still rows is not claimable")

            // The startup step writes the manifests and drops the rows; a second run has nothing to do.
            #expect(try await ledger.moveItemRowsToManifests() == [job])
            #expect(try await ledger.moveItemRowsToManifests() == [])
            #expect(try await ledger.scalar("SELECT count(*) FROM items") == "0")
            #expect(try await ledger.scalar("SELECT item_rows::text FROM jobs WHERE id = $1", [String(job)]) == "false")
            let files = try FileManager.default.contentsOfDirectory(atPath: ShardManifest.directory(outputLocation: output, job: job))
            #expect(files.sorted() == ["0.items", "1.items", "2.items"])
            var moved: [Int: [JobItem]] = [:]
            try await ledger.forEachShardItems(job: job) { index, shardItems in moved[index] = shardItems }
            let flat = (0..<3).flatMap { moved[$0] ?? [] }
            func withoutMetadata(_ items: [JobItem]) -> [JobItem] { items.map { var item = $0; item.metadata = nil; return item } }
            #expect(withoutMetadata(flat) == withoutMetadata(Self.oldItems))
            // jsonb normalised the metadata text when it was a row; its fields survive the move.
            #expect(flat.map(\.metadataFields) == Self.oldItems.map(\.metadataFields))
            #expect(try await ledger.sourceIDs(job: job) == Set(Self.oldItems.map(\.sourceId) + ["shards/00000.tar/k9"]))

            // The job resumes where it stood: shard 0 is not run again, the others run once each.
            var claimed: [Int32] = []
            while let lease = try await ledger.claimNextShard(owner: "w", job: job) {
                claimed.append(lease.shard.index)
                #expect(lease.items == Array(flat[Int(lease.firstItem)...Int(lease.lastItem)]))
                #expect(try await ledger.completeShard(lease.shard, token: lease.leaseToken,
                                                       results: lease.items.map { .success($0.ordinal, output: "o") }) == .applied)
            }
            #expect(claimed == [1, 2])
            let record = try await ledger.job(job)
            #expect(record.state == .completedWithFailures && record.shardsDone == 3 && record.itemCount == 7)
            #expect(record.itemsDone == 5 && record.itemsFailed == 2)
            #expect(try await ledger.recordedItems(job: job).map(\.state) == ["done", "failed", "done", "done", "done", "done", "failed"])
            let failures = try await ledger.failures(job: job)
            #expect(failures.map(\.ordinal) == [1, 6])
            #expect(failures.map(\.sourceID) == ["img-1", "shards/00000.tar/k9"])
            #expect(failures.map(\.error) == ["decode error: truncated", "no image member"])
        }
    }

    @Test func aCorruptedManifestFailsOnlyItsShardNamingTheFileAndLineAndARetryAfterTheRepairRunsIt() async throws {
        try await withLedgerDatabase { url in
            let ledger = Ledger(database: url, leasePolicy: quickLeases(30))
            let spec = testJob(shardSize: 2, maxAttempts: 2)
            defer { try? FileManager.default.removeItem(atPath: spec.outputLocation) }
            let listed = items(8)
            let job = try await ledger.enqueue(spec, items: listed)

            // Shard 1: one byte of an item changed (the checksum no longer matches). Shard 2: the
            // file cut short (no end line). Shard 3: gone.
            let flipped = ShardManifest.path(outputLocation: spec.outputLocation, job: job, shard: 1)
            var bytes = try #require(FileManager.default.contents(atPath: flipped))
            let at = try #require(bytes.range(of: Data("img-3".utf8))).upperBound - 1
            bytes[at] = UInt8(ascii: "8")
            try bytes.write(to: URL(fileURLWithPath: flipped))
            let truncated = ShardManifest.path(outputLocation: spec.outputLocation, job: job, shard: 2)
            let whole = try #require(FileManager.default.contents(atPath: truncated))
            try whole.prefix(whole.count - 10).write(to: URL(fileURLWithPath: truncated))
            let missing = ShardManifest.path(outputLocation: spec.outputLocation, job: job, shard: 3)
            try FileManager.default.removeItem(atPath: missing)

            // The claim hands out the good shard and spends the bad ones' attempts on the way.
            let good = try #require(try await ledger.claimNextShard(owner: "w", job: job))
            #expect(good.shard.index == 0 && good.items == Array(listed[0..<2]))
            #expect(try await ledger.completeShard(good.shard, token: good.leaseToken,
                                                   results: good.items.map { .success($0.ordinal, output: "o") }) == .applied)
            // That claim leases nothing and names the job the failures finished (a coordinator finalizes it).
            #expect(try await ledger.claim(owner: "w", job: job) == Ledger.ClaimResult(shard: nil, finishedJobs: [job]))
            #expect(try await ledger.sql("SELECT state || ':' || attempts FROM shards WHERE job_id = $1 ORDER BY shard_index",
                                         [String(job)]) == ["done:1", "failed:2", "failed:2", "failed:2"])
            let errors = try await ledger.sql("SELECT last_error FROM shards WHERE job_id = $1 AND shard_index > 0 ORDER BY shard_index",
                                              [String(job)]).map { $0 ?? "" }
            #expect(errors[0].contains("shard manifest \(flipped), line 4, field crc32") && errors[0].contains("corrupted"), "\(errors[0])")
            #expect(errors[1].contains("shard manifest \(truncated), line 4, field end") && errors[1].contains("truncated"), "\(errors[1])")
            #expect(errors[2] == "shard manifest \(missing) does not exist", "\(errors[2])")
            var record = try await ledger.job(job)
            #expect(record.state == .completedWithFailures && record.itemsDone == 2 && record.itemsFailed == 6 && record.shardsFailed == 3)
            // Their items are listed as failures, each saying why it cannot be named.
            let failures = try await ledger.failures(job: job)
            #expect(failures.map(\.ordinal) == Array(2..<8))
            #expect(failures[0].error.contains("shard failed after 2 attempts") && failures[0].error.contains(flipped), "\(failures[0])")

            // Storage repaired: a retry runs exactly the three shards again.
            for shard in 1...3 {
                try ShardManifest.write(job: job, shard: shard, first: Int64(2 * shard), items: listed[(2 * shard)..<(2 * shard + 2)],
                                        outputLocation: spec.outputLocation)
            }
            #expect(try await ledger.retryFailed(job: job) == 6)
            var claimed: [Int32] = []
            while let lease = try await ledger.claimNextShard(owner: "w", job: job) {
                claimed.append(lease.shard.index)
                #expect(lease.items == Array(listed[Int(lease.firstItem)...Int(lease.lastItem)]))
                _ = try await ledger.completeShard(lease.shard, token: lease.leaseToken,
                                                   results: lease.items.map { .success($0.ordinal, output: "o") })
            }
            #expect(claimed == [1, 2, 3])
            record = try await ledger.job(job)
            #expect(record.state == .completed && record.itemsDone == 8 && record.itemsFailed == 0)
        }
    }
}
