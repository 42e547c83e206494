import Foundation
import Testing
import VTPVocabulary
@testable import VTPQueue

/// Counts completions shared by the claimer tasks.
private actor Tally {
    var applied = 0
    var duplicates = 0
    func record(_ outcome: CompletionOutcome) {
        if outcome == .applied { applied += 1 }
        if outcome == .duplicate { duplicates += 1 }
    }
}

@Suite("Connection loss and server restarts")
struct ResilienceTests {
    @Test func terminatedBackendIsReplacedTransparently() async throws {
        try await withLedgerDatabase { url in
            let ledger = Ledger(database: url)
            let killer = Ledger(database: url)
            let job = try await ledger.enqueue(testJob(shardSize: 1), items: items(2))
            let pid = try #require(try await ledger.scalar("SELECT pg_backend_pid()"))
            #expect(try await killer.scalar("SELECT pg_terminate_backend($1::int)", [pid]) == "t")
            let lease = try #require(try await ledger.claimNextShard(owner: "w"))
            #expect(lease.shard == ShardRef(jobID: job, index: 0))
            #expect(try await ledger.session.reconnectCount == 1)
            #expect(try await ledger.scalar("SELECT pg_backend_pid()") != pid)
        }
    }

    @Test func enqueueIsNotHalfAppliedWhenItsConnectionDies() async throws {
        try await withLedgerDatabase { url in
            let ledger = Ledger(database: url)
            let killer = Ledger(database: url)
            // Make the enqueue transaction stall after inserting its job row, then kill its backend.
            _ = try await killer.sql("""
                CREATE FUNCTION stall() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN PERFORM pg_sleep(30); RETURN NULL; END $$
                """)
            _ = try await killer.sql("CREATE TRIGGER stall AFTER INSERT ON shards FOR EACH STATEMENT EXECUTE FUNCTION stall()")
            let enqueue = Task { try await ledger.enqueue(testJob(), items: items(50)) }
            var pid: String?
            for _ in 0..<200 where pid == nil {
                try await Task.sleep(for: .milliseconds(50))
                pid = try await killer.scalar("""
                    SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND query LIKE '%INSERT INTO shards%'
                    """)
            }
            let victim = try #require(pid)
            _ = try await killer.sql("SELECT pg_terminate_backend($1::int)", [victim])
            await #expect(throws: PostgresError.self) { _ = try await enqueue.value }
            _ = try await killer.sql("DROP TRIGGER stall ON shards")
            #expect(try await killer.scalar("SELECT count(*) FROM jobs") == "0")
            #expect(try await killer.scalar("SELECT count(*) FROM shards") == "0")
            // The ledger recovers for the next operation.
            let job = try await ledger.enqueue(testJob(), items: items(5))
            #expect(try await ledger.job(job).itemCount == 5)
        }
    }

    @Test func serverRestartDuringAClaimLoopLosesNothing() async throws {
        try await withPrivateLedgerServer { server, url in
            let policy = quickLeases(1.0)
            let admin = Ledger(database: url, leasePolicy: policy)
            let total = 300
            let job = try await admin.enqueue(testJob(shardSize: 2, maxAttempts: 50), items: items(total * 2))
            let tally = Tally()
            let ledgers = (0..<3).map { _ in Ledger(database: url, leasePolicy: policy) }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (n, ledger) in ledgers.enumerated() {
                    group.addTask {
                        let deadline = ContinuousClock.now + .seconds(60)
                        while ContinuousClock.now < deadline {
                            if let lease = try await ledger.claimNextShard(owner: "w\(n)") {
                                let results = lease.items.map { ItemResult.success($0.ordinal, output: "/o/\($0.ordinal)") }
                                // The summary names the shard, so the check below sees which completion landed where.
                                await tally.record(try await ledger.completeShard(lease.shard, token: lease.leaseToken, results: results,
                                                                                  summaryJSON: #"{"shard": \#(lease.shard.index)}"#))
                                continue
                            }
                            if try await ledger.job(job).state.isFinished { return }
                            // A claim whose reply was lost during the restart leaves a lease to expire.
                            _ = try await ledger.releaseExpiredLeases()
                            try await Task.sleep(for: .milliseconds(100))
                        }
                    }
                }
                group.addTask {
                    while await tally.applied < total / 4 { try await Task.sleep(for: .milliseconds(10)) }
                    try await server.restart()
                    print("restarted the server after \(await tally.applied) completions")
                }
                try await group.waitForAll()
            }
            let record = try await admin.job(job)
            #expect(record.state == .completed)
            #expect(record.shardsDone == total && record.itemsDone == Int64(total * 2) && record.itemsFailed == 0)
            // A completion whose reply was lost in the restart is retried and reported as a duplicate.
            #expect(await tally.applied + tally.duplicates == total)
            // Every item done exactly once: each shard completed once, with its own results, and no
            // item of any shard failed or went missing (a lost one would have a failure row).
            #expect(try await admin.scalar("""
                SELECT count(*) FROM shards WHERE state = 'done' AND items_ok = 2 AND items_failed = 0
                   AND (result_summary->>'shard')::int = shard_index
                """) == "\(total)")
            #expect(try await admin.scalar("SELECT count(*) FROM failed_items") == "0")
            var listed = 0
            try await admin.forEachShardItems(job: job) { index, shardItems in
                #expect(shardItems.map(\.ordinal) == [2 * index, 2 * index + 1])
                listed += shardItems.count
            }
            #expect(listed == total * 2)
            var reconnects = 0
            for ledger in ledgers { reconnects += try await ledger.session.reconnectCount }
            #expect(reconnects >= 3, "every claimer lived through the restart")
        }
    }
}
