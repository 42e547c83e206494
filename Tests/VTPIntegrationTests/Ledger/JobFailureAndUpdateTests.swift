import Foundation
import Testing
import VTPVocabulary
@testable import VTPQueue

@Suite("Job-level failures and input updates against a real PostgreSQL")
struct JobFailureAndUpdateTests {
    @Test func aJobFailureParksTheJobWithoutFailingItemsAndARetryRunsItAgain() async throws {
        try await withLedgerDatabase { url in
            let ledger = Ledger(database: url)
            let job = try await ledger.enqueue(testJob(shardSize: 2, maxAttempts: 3), items: items(6))
            let first = try #require(try await ledger.claimNextShard(owner: "w1", job: job))
            let second = try #require(try await ledger.claimNextShard(owner: "w2", job: job))
            let reason = "/models/m: cannot load model: model.safetensors: truncated"
            #expect(try await ledger.failJob(first.shard, token: first.leaseToken, error: reason) == .jobFailed)
            var record = try await ledger.job(job)
            #expect(record.state == .failed && record.error == reason && record.finishedAt != nil)
            #expect(record.itemsFailed == 0 && record.shardsFailed == 0)
            #expect(try await ledger.scalar("SELECT count(*) FROM failed_items WHERE job_id = \(job)") == "0")
            #expect(try await ledger.recordedItems(job: job).allSatisfy { $0.state == "pending" })
            #expect(try await ledger.scalar("SELECT string_agg(state || ':' || attempts, ',' ORDER BY shard_index) FROM shards WHERE job_id = \(job)")
                == "paused:0,paused:0,paused:0")
            // The other holder's lease stopped matching; a second report of the same cause is no new failure.
            #expect(try await ledger.completeShard(second.shard, token: second.leaseToken,
                                                   results: second.items.map { .success($0.ordinal, output: "o") }) == .leaseLost)
            #expect(try await ledger.failJob(second.shard, token: second.leaseToken, error: reason) == .leaseLost)
            #expect(try await ledger.claimNextShard(owner: "w3", job: job) == nil)

            #expect(try await ledger.retryFailed(job: job) == 6)
            record = try await ledger.job(job)
            #expect(record.state == .running && record.error == nil && record.finishedAt == nil)
            var done = 0
            while let lease = try await ledger.claimNextShard(owner: "w", job: job) {
                #expect(lease.attempt == 1)
                #expect(try await ledger.completeShard(lease.shard, token: lease.leaseToken,
                                                       results: lease.items.map { .success($0.ordinal, output: "o") }) == .applied)
                done += 1
            }
            #expect(done == 3)
            record = try await ledger.job(job)
            #expect(record.state == .completed && record.itemsDone == 6)
        }
    }

    @Test func aShardRequeuedWhileItsJobIsPausedWaitsForTheResume() async throws {
        try await withLedgerDatabase { url in
            let ledger = Ledger(database: url)
            let job = try await ledger.enqueue(testJob(shardSize: 2), items: items(4))
            let lease = try #require(try await ledger.claimNextShard(owner: "w", job: job))
            try await ledger.pause(job: job)
            #expect(try await ledger.handBackShard(lease.shard, token: lease.leaseToken, reason: "worker stopped") == .requeued)
            #expect(try await ledger.claimNextShard(owner: "w") == nil)
            try await ledger.resume(job: job)
            #expect(try await ledger.claimNextShard(owner: "w")?.shard == lease.shard)
        }
    }

    @Test func appendedItemsBecomeNewShardsAfterTheLastAndReopenAFinishedJob() async throws {
        try await withLedgerDatabase { url in
            let ledger = Ledger(database: url)
            let job = try await ledger.enqueue(testJob(shardSize: 2), items: items(3),
                                               skipped: [SkippedSample(sourceId: "bad-row", reason: "unreadable")],
                                               listingDigest: "v1:4:old")
            while let lease = try await ledger.claimNextShard(owner: "w", job: job) {
                _ = try await ledger.completeShard(lease.shard, token: lease.leaseToken,
                                                   results: lease.items.map { .success($0.ordinal, output: "o") })
            }
            var record = try await ledger.job(job)
            #expect(record.state == .completedWithFailures && record.itemCount == 4 && record.listingDigest == "v1:4:old")
            #expect(try await ledger.sourceIDs(job: job) == ["img-0", "img-1", "img-2", "bad-row"])

            let added = items(3, prefix: "new")
            #expect(try await ledger.appendItems(job: job, items: added, skipped: [SkippedSample(sourceId: "bad-2", reason: "no")],
                                                 shardSize: 2, listingDigest: "v1:8:new") == 2)
            record = try await ledger.job(job)
            #expect(record.state == .running && record.finishedAt == nil && record.listingDigest == "v1:8:new")
            #expect(record.shardCount == 4 && record.itemCount == 8 && record.itemsFailed == 2 && record.itemsDone == 3)
            // Ordinals continue after the skipped sample (3); the new skipped one follows the new items.
            #expect(try await ledger.recordedItems(job: job).map { "\($0.sourceId)@\($0.ordinal)/\($0.shardIndex)" }.joined(separator: ",")
                == "img-0@0/0,img-1@1/0,img-2@2/1,bad-row@3/-1,new-0@4/2,new-1@5/2,new-2@6/3,bad-2@7/-1")
            var claimed: [Int32] = []
            while let lease = try await ledger.claimNextShard(owner: "w", job: job) {
                claimed.append(lease.shard.index)
                #expect(lease.items.map(\.sourceId).allSatisfy { $0.hasPrefix("new-") })
                _ = try await ledger.completeShard(lease.shard, token: lease.leaseToken,
                                                   results: lease.items.map { .success($0.ordinal, output: "o") })
            }
            #expect(claimed == [2, 3])
            record = try await ledger.job(job)
            #expect(record.state == .completedWithFailures && record.itemsDone == 6 && record.itemsFailed == 2)
            // Only the digest changes when nothing is added.
            #expect(try await ledger.appendItems(job: job, items: [], shardSize: 2, listingDigest: "v1:8:same") == 0)
            #expect(try await ledger.job(job).state == .completedWithFailures)
        }
    }

    @Test func progressCountsWhatRunningWorkersReportedUntilTheyGoOffline() async throws {
        try await withLedgerDatabase { url in
            let ledger = Ledger(database: url)
            let job = try await ledger.enqueue(testJob(shardSize: 4), items: items(8))
            let lease = try #require(try await ledger.claimNextShard(owner: "w1", job: job))
            try await ledger.upsertWorker(WorkerReport(id: "w1", host: "h", state: .busy, currentShard: lease.shard, itemsInProgress: 3))
            try await ledger.upsertWorker(WorkerReport(id: "w2", host: "h", state: .idle, itemsInProgress: 5))  // holds no shard
            #expect(try await ledger.progress(job: job).itemsInProgress == 3)
            #expect(try await ledger.markSilentWorkersOffline(olderThanSeconds: -1).sorted() == ["w1", "w2"])
            #expect(try await ledger.progress(job: job).itemsInProgress == 0)
        }
    }
}
