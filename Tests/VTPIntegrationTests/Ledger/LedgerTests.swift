import Foundation
import Testing
import VTPVocabulary
@testable import VTPQueue

@Suite("Ledger operations against a real PostgreSQL")
struct LedgerTests {
    @Test func eightConcurrentClaimersClaimEachOfTenThousandShardsOnce() async throws {
        try await withLedgerDatabase { url in
            let admin = Ledger(database: url)
            let job = try await admin.enqueue(testJob(shardSize: 1), items: items(10_000))
            let start = ContinuousClock.now
            let claimed = try await withThrowingTaskGroup(of: [ShardRef].self) { group in
                for claimer in 0..<8 {
                    group.addTask {
                        let ledger = Ledger(database: url)
                        var mine: [ShardRef] = []
                        while let shard = try await ledger.claimNextShard(owner: "claimer-\(claimer)") {
                            mine.append(shard.shard)
                        }
                        return mine
                    }
                }
                return try await group.reduce(into: [[ShardRef]]()) { $0.append($1) }
            }
            let all = claimed.flatMap { $0 }
            print("8 claimers took \(ContinuousClock.now - start) for \(all.count) claims")
            #expect(all.count == 10_000)
            #expect(Set(all).count == 10_000)
            #expect(Set(all.map(\.index)) == Set(0..<10_000))
            #expect(all.allSatisfy { $0.jobID == job })
            #expect(claimed.filter { !$0.isEmpty }.count > 1, "claims were spread over several claimers")
            #expect(try await admin.scalar("SELECT count(*) FROM shards WHERE state = 'leased' AND attempts = 1") == "10000")
            #expect(try await admin.job(job).state == .running)
        }
    }

    @Test func claimReturnsJobAndItemsAndHonoursPriorityThenAgeThenIndex() async throws {
        try await withLedgerDatabase { url in
            let ledger = Ledger(database: url)
            let low = try await ledger.enqueue(testJob(shardSize: 2, priority: 0), items: items(4, prefix: "low"))
            let high = try await ledger.enqueue(testJob(shardSize: 2, priority: 5), items: items(3, prefix: "high"))
            let highLater = try await ledger.enqueue(testJob(shardSize: 2, priority: 5), items: items(2, prefix: "later"))
            var order: [ShardRef] = []
            while let shard = try await ledger.claimNextShard(owner: "w") { order.append(shard.shard) }
            #expect(order == [ShardRef(jobID: high, index: 0), ShardRef(jobID: high, index: 1),
                              ShardRef(jobID: highLater, index: 0),
                              ShardRef(jobID: low, index: 0), ShardRef(jobID: low, index: 1)])

            let otherSpec = testJob(shardSize: 2)
            let other = try await ledger.enqueue(otherSpec, items: [
                JobItem(ordinal: 0, sourceId: "s0", location: .file(path: "/p/0.jpg"), label: 7, caption: "a\tcat\nwith \\ escapes",
                        metadata: #"{"url": "https://example.org/0.jpg", "width": 640}"#),
                JobItem(ordinal: 1, sourceId: "s1", location: .tarMember(tarPath: "/p/00000.tar", offset: 512, size: 99)),
                JobItem(ordinal: 2, sourceId: "s2", location: .file(path: "/p/2.jpg")),
            ])
            let claim = try #require(try await ledger.claimNextShard(owner: "w", job: other))
            #expect(claim.shard == ShardRef(jobID: other, index: 0))
            #expect(claim.job.type == "encode" && claim.job.model == "vtp-tiny" && claim.job.outputLocation == otherSpec.outputLocation)
            #expect(claim.job.parametersJSON.contains("256"))
            #expect(claim.attempt == 1 && claim.firstItem == 0 && claim.lastItem == 1)
            #expect(claim.items.map(\.ordinal) == [0, 1])
            #expect(claim.items[0].location == .file(path: "/p/0.jpg") && claim.items[0].label == 7
                    && claim.items[0].caption == "a\tcat\nwith \\ escapes")
            // jsonb normalises the text; the fields survive.
            #expect(claim.items[0].metadataFields == ["url": .string("https://example.org/0.jpg"), "width": .integer(640)])
            #expect(claim.items[1] == JobItem(ordinal: 1, sourceId: "s1", location: .tarMember(tarPath: "/p/00000.tar", offset: 512, size: 99)))
            #expect(claim.leaseExpiresAt > Date().addingTimeInterval(200))
            let last = try #require(try await ledger.claimNextShard(owner: "w", job: other))
            #expect(last.items.map(\.sourceId) == ["s2"] && last.lastItem == 2)
        }
    }

    @Test func listingFailuresAreFailedItemsInNoShard() async throws {
        try await withLedgerDatabase { url in
            let ledger = Ledger(database: url)
            let job = try await ledger.enqueue(testJob(shardSize: 2), items: items(3),
                                               skipped: [SkippedSample(sourceId: "a.tar/k9", reason: "no image member")])
            let record = try await ledger.job(job)
            #expect(record.itemCount == 4 && record.itemsFailed == 1 && record.shardCount == 2)
            let failures = try await ledger.failures(job: job)
            #expect(failures.map(\.sourceID) == ["a.tar/k9"] && failures.map(\.error) == ["no image member"])
            #expect(try await ledger.listingFailures(job: job).map(\.ordinal) == [3])
            // Claims carry only the real items; finishing every shard finishes the job with failures.
            while let shard = try await ledger.claimNextShard(owner: "w", job: job) {
                #expect(!shard.items.contains { $0.sourceId == "a.tar/k9" })
                _ = try await ledger.completeShard(shard.shard, token: shard.leaseToken,
                                                   results: shard.items.map { .success($0.ordinal, output: "o") })
            }
            let done = try await ledger.job(job)
            #expect(done.state == .completedWithFailures && done.itemsDone == 3 && done.itemsFailed == 1)
            // A retry re-runs nothing: the listing failure belongs to no shard.
            #expect(try await ledger.retryFailed(job: job) == 0)
            #expect(try await ledger.failures(job: job).count == 1)
        }
    }

    @Test func expiredLeaseIsReclaimedAndTheOldOwnersCompletionIsRejected() async throws {
        try await withLedgerDatabase { url in
            let ledger = Ledger(database: url, leasePolicy: quickLeases(0.3))
            let job = try await ledger.enqueue(testJob(shardSize: 3), items: items(3))
            let first = try #require(try await ledger.claimNextShard(owner: "slow"))
            #expect(try await ledger.heartbeat(first.shard, token: first.leaseToken) != nil)
            #expect(try await ledger.claimNextShard(owner: "fast") == nil, "a live lease is not claimable")
            try await Task.sleep(for: .milliseconds(500))
            #expect(try await ledger.releaseExpiredLeases() == [ReleasedLease(shard: first.shard, token: first.leaseToken, failed: false)])

            let second = try #require(try await ledger.claimNextShard(owner: "fast"))
            #expect(second.shard == first.shard)
            #expect(second.attempt == 2)
            #expect(second.leaseToken != first.leaseToken)
            #expect(try await ledger.heartbeat(first.shard, token: first.leaseToken) == nil)

            // The stale owner reports every item failed, so a stale completion that landed would leave failure rows.
            let stale = first.items.map { ItemResult.failure($0.ordinal, error: "stale owner's result") }
            #expect(try await ledger.completeShard(first.shard, token: first.leaseToken, results: stale) == .leaseLost)
            let fresh = second.items.map { ItemResult.success($0.ordinal, output: "/out/fresh/\($0.ordinal)") }
            #expect(try await ledger.completeShard(second.shard, token: second.leaseToken, results: fresh) == .applied)
            #expect(try await ledger.completeShard(second.shard, token: second.leaseToken, results: fresh) == .duplicate)
            #expect(try await ledger.completeShard(first.shard, token: first.leaseToken, results: stale) == .leaseLost)

            let record = try await ledger.job(job)
            #expect(record.rejectedCompletions == 3)
            #expect(record.state == .completed)
            #expect(record.itemsDone == 3 && record.itemsFailed == 0)
            #expect(try await ledger.scalar("SELECT count(*) FROM failed_items WHERE job_id = $1", [String(job)]) == "0")
            #expect(try await ledger.recordedItems(job: job).map(\.state) == ["done", "done", "done"])
        }
    }

    @Test func maxAttemptsFailsTheShardKeepsTheErrorAndRetryRequeuesIt() async throws {
        try await withLedgerDatabase { url in
            let ledger = Ledger(database: url, leasePolicy: quickLeases(0.2))
            let job = try await ledger.enqueue(testJob(shardSize: 2, maxAttempts: 2), items: items(4))
            // Shard 0 is lost twice by a crashing worker; shard 1 completes normally.
            for attempt in 1...2 {
                let lease = try #require(try await ledger.claimNextShard(owner: "crashy-\(attempt)", job: job))
                #expect(lease.shard.index == 0 && lease.attempt == Int32(attempt))
                try await Task.sleep(for: .milliseconds(300))
                let released = try await ledger.releaseExpiredLeases()
                #expect(released == [ReleasedLease(shard: lease.shard, token: lease.leaseToken, failed: attempt == 2)])
            }
            let good = try #require(try await ledger.claimNextShard(owner: "good", job: job))
            #expect(good.shard.index == 1)
            #expect(try await ledger.claimNextShard(owner: "good", job: job) == nil, "the failed shard is not reissued")
            #expect(try await ledger.completeShard(good.shard, token: good.leaseToken,
                                                   results: good.items.map { .success($0.ordinal, output: "o") }) == .applied)

            let failedShard = try await ledger.sql("""
                SELECT state || '|' || attempts || '|' || last_error FROM shards WHERE job_id = $1 AND shard_index = 0
                """, [String(job)])
            #expect(failedShard == ["failed|2|lease expired (owner crashy-2)"])
            var record = try await ledger.job(job)
            #expect(record.state == .completedWithFailures)
            #expect(record.shardsFailed == 1 && record.shardsDone == 1 && record.itemsDone == 2 && record.itemsFailed == 2)
            let failures = try await ledger.failures(job: job)
            #expect(failures.map(\.sourceID) == ["img-0", "img-1"])
            #expect(failures.allSatisfy { $0.error.contains("shard failed after 2 attempts: lease expired") })
            let failedShards = try await ledger.failedShards(job: job)
            #expect(failedShards.map(\.index) == [0])
            #expect(failedShards.first?.error == "lease expired (owner crashy-2)")
            #expect(failedShards.first?.items.map(\.sourceID) == ["img-0", "img-1"])

            #expect(try await ledger.retryFailed(job: job) == 2)
            record = try await ledger.job(job)
            #expect(record.state == .running && record.shardsFailed == 0 && record.itemsFailed == 0)
            let retry = try #require(try await ledger.claimNextShard(owner: "good", job: job))
            #expect(retry.shard.index == 0 && retry.attempt == 1 && retry.items.count == 2)
            #expect(try await ledger.completeShard(retry.shard, token: retry.leaseToken,
                                                   results: retry.items.map { .success($0.ordinal, output: "o") }) == .applied)
            record = try await ledger.job(job)
            #expect(record.state == .completed && record.itemsDone == 4 && record.itemsFailed == 0)
            #expect(record.finishedAt != nil)
        }
    }

    @Test func aHandedBackShardIsClaimableAtOnceWithoutSpendingAnAttempt() async throws {
        try await withLedgerDatabase { url in
            let policy = LeasePolicy(leaseSeconds: 60, backoffBaseSeconds: 30, backoffCapSeconds: 600)
            let ledger = Ledger(database: url, leasePolicy: policy)
            let job = try await ledger.enqueue(testJob(shardSize: 5, maxAttempts: 1), items: items(10))
            // Handed back more times than the job has attempts: it is never failed, never backs off.
            for round in 0..<3 {
                let lease = try #require(try await ledger.claimNextShard(owner: "w", job: job))
                #expect(lease.shard.index == 0 && lease.attempt == 1, "round \(round)")
                #expect(try await ledger.handBackShard(lease.shard, token: lease.leaseToken,
                                                       reason: "handed back: worker interrupted") == .requeued)
                #expect(try await ledger.handBackShard(lease.shard, token: lease.leaseToken, reason: "again") == .leaseLost)
            }
            var record = try await ledger.job(job)
            #expect(record.shardsFailed == 0 && record.itemsFailed == 0 && record.rejectedCompletions == 0)
            // A run that killed its workers hands back what they still held, and only theirs.
            let mine = try #require(try await ledger.claimNextShard(owner: "run1-42-0-0", job: job))
            let theirs = try #require(try await ledger.claimNextShard(owner: "run1-420-0-0", job: job))
            #expect(try await ledger.handBackLeases(job: job, ownerPrefix: "run1-42-") == 1)
            #expect(try await ledger.completeShard(theirs.shard, token: theirs.leaseToken,
                                                   results: theirs.items.map { .success($0.ordinal, output: "o") }) == .applied)
            let again = try #require(try await ledger.claimNextShard(owner: "w", job: job))
            #expect(again.shard == mine.shard && again.attempt == 1)
            #expect(try await ledger.completeShard(again.shard, token: again.leaseToken,
                                                   results: again.items.map { .success($0.ordinal, output: "o") }) == .applied)
            record = try await ledger.job(job)
            #expect(record.state == .completed && record.itemsDone == 10)
        }
    }

    @Test func workerReportedShardFailureBacksOffThenFails() async throws {
        try await withLedgerDatabase { url in
            let policy = LeasePolicy(leaseSeconds: 60, backoffBaseSeconds: 30, backoffCapSeconds: 600)
            let ledger = Ledger(database: url, leasePolicy: policy)
            let job = try await ledger.enqueue(testJob(shardSize: 5, maxAttempts: 2), items: items(5))
            let lease = try #require(try await ledger.claimNextShard(owner: "w"))
            #expect(try await ledger.failShard(lease.shard, token: lease.leaseToken, error: "input unreadable") == .requeued)
            #expect(try await ledger.failShard(lease.shard, token: lease.leaseToken, error: "again") == .leaseLost)
            #expect(try await ledger.claimNextShard(owner: "w") == nil, "backoff keeps the shard out of reach")
            let wait = try #require(try await ledger.secondsUntilNextEligibleShard())
            #expect(wait > 25 && wait <= 30)
            // Skip the backoff rather than sleep through it.
            _ = try await ledger.sql("UPDATE shards SET next_eligible_at = now() WHERE job_id = $1", [String(job)])
            let second = try #require(try await ledger.claimNextShard(owner: "w"))
            #expect(second.attempt == 2)
            #expect(try await ledger.failShard(second.shard, token: second.leaseToken, error: "still unreadable") == .failed)
            #expect(try await ledger.scalar("SELECT last_error FROM shards WHERE job_id = $1", [String(job)]) == "still unreadable")
            #expect(try await ledger.job(job).state == .completedWithFailures)
            #expect(try await ledger.secondsUntilNextEligibleShard() == nil)
        }
    }

    @Test func perItemFailuresDoNotFailTheShard() async throws {
        try await withLedgerDatabase { url in
            let ledger = Ledger(database: url)
            let job = try await ledger.enqueue(testJob(shardSize: 4), items: items(4))
            let lease = try #require(try await ledger.claimNextShard(owner: "w"))
            let results: [ItemResult] = [.success(0, output: "/o/0"), .failure(1, error: "corrupt JPEG"), .success(2, output: "/o/2")]
            #expect(try await ledger.completeShard(lease.shard, token: lease.leaseToken, results: results,
                                                   summaryJSON: #"{"seconds": 1.5}"#) == .applied)
            let record = try await ledger.job(job)
            #expect(record.state == .completedWithFailures)
            #expect(record.shardsDone == 1 && record.shardsFailed == 0)
            #expect(record.itemsDone == 2 && record.itemsFailed == 2)
            let failures = try await ledger.failures(job: job)
            #expect(failures.map(\.ordinal) == [1, 3])
            #expect(failures.map(\.error) == ["corrupt JPEG", "worker reported no result for this item"])
            #expect(try await ledger.scalar("SELECT result_summary->>'seconds' FROM shards WHERE job_id = $1", [String(job)]) == "1.5")

            // Retrying re-runs the whole shard: its outputs are files rewritten from the items it is
            // given, so the two good rows must be redone with the two failed ones.
            #expect(try await ledger.retryFailed(job: job) == 4)
            #expect(try await ledger.job(job).itemsDone == 0)
            let retry = try #require(try await ledger.claimNextShard(owner: "w"))
            #expect(retry.items.map(\.ordinal) == [0, 1, 2, 3])
            _ = try await ledger.completeShard(retry.shard, token: retry.leaseToken,
                                               results: retry.items.map { .success($0.ordinal, output: "/o/\($0.ordinal)") })
            let done = try await ledger.job(job)
            #expect(done.state == .completed && done.itemsDone == 4 && done.itemsFailed == 0)
            #expect(try await ledger.scalar("SELECT items_ok FROM shards WHERE job_id = $1", [String(job)]) == "4")
        }
    }

    /// A worker session ended (restart, goodbye, death): its leases go back at once, long before
    /// they would expire, the attempt counts, late results are refused, and a repeat changes nothing.
    @Test func releasedLeasesAreRequeuedAtOnceOrFailedWhenOutOfAttempts() async throws {
        try await withLedgerDatabase { url in
            let ledger = Ledger(database: url, leasePolicy: LeasePolicy(leaseSeconds: 600, backoffBaseSeconds: 0, backoffCapSeconds: 0))
            let job = try await ledger.enqueue(testJob(shardSize: 2, maxAttempts: 2), items: items(4))
            let a = try #require(try await ledger.claimNextShard(owner: "w1", job: job))
            let b = try #require(try await ledger.claimNextShard(owner: "w1", job: job))
            let reason = "worker w1 restarted (a new process registered under its id) while holding this shard"
            // A token that is not the live lease (a lease the worker lost long ago) is skipped.
            let released = try await ledger.releaseLeases([SessionLease(shard: a.shard, token: a.leaseToken), SessionLease(shard: b.shard, token: b.leaseToken),
                                                           SessionLease(shard: b.shard, token: UUID())],
                                                          reason: reason)
            #expect(released == [ReleasedLease(shard: a.shard, token: a.leaseToken, failed: false),
                                 ReleasedLease(shard: b.shard, token: b.leaseToken, failed: false)])
            #expect(try await ledger.releaseLeases([SessionLease(shard: a.shard, token: a.leaseToken)], reason: reason).isEmpty, "a repeat is a no-op")
            #expect(try await ledger.completeShard(a.shard, token: a.leaseToken, results: [.success(0, output: "late")]) == .leaseLost)

            // Claimable again at once (a 600 s lease did not have to run out), on the second attempt.
            let again = try #require(try await ledger.claimNextShard(owner: "w1-new", job: job))
            #expect(again.shard == a.shard && again.attempt == 2)
            let shardState = try await ledger.sql("SELECT state || '|' || last_error FROM shards WHERE job_id = $1 AND shard_index = 1",
                                                  [String(job)])
            #expect(shardState == ["pending|\(reason)"])
            // The second loss of shard 0 spends its last attempt: the shard fails with the reason, items included.
            #expect(try await ledger.releaseLeases([SessionLease(shard: again.shard, token: again.leaseToken)], reason: "worker w1-new stopped responding")
                    == [ReleasedLease(shard: again.shard, token: again.leaseToken, failed: true)])
            let failures = try await ledger.failures(job: job)
            #expect(failures.map(\.sourceID) == ["img-0", "img-1"])
            #expect(failures.allSatisfy { $0.error == "shard failed after 2 attempts: worker w1-new stopped responding" })
            #expect(try await ledger.releaseLeases([], reason: "nothing").isEmpty)
        }
    }

    /// Crash isolation in the ledger: a released or expired lease isolates its shard; a release
    /// naming the item an isolated run crashed on fails that item alone, gives the attempt back and
    /// returns the item as excluded from then on, and the rest of the shard completes.
    @Test func theItemAnIsolatedRunCrashedOnIsFailedAloneAndExcluded() async throws {
        try await withLedgerDatabase { url in
            let ledger = Ledger(database: url, leasePolicy: LeasePolicy(leaseSeconds: 600, backoffBaseSeconds: 0, backoffCapSeconds: 0))
            let job = try await ledger.enqueue(testJob(shardSize: 4, maxAttempts: 2), items: items(4))
            let first = try #require(try await ledger.claimNextShard(owner: "w1", job: job))
            #expect(!first.isolated && first.excluded.isEmpty)
            // A batched run's crash names no item (several were in flight): the attempt counts, the shard is isolated.
            _ = try await ledger.releaseLeases([SessionLease(shard: first.shard, token: first.leaseToken)], reason: "worker w1 crashed")
            let second = try #require(try await ledger.claimNextShard(owner: "w2", job: job))
            #expect(second.isolated && second.attempt == 2)

            // The isolated run crashes on item 2: failed alone, and the attempt is given back (2 of 2 would fail the shard).
            let crash = "worker w2 crashed (signal 4, SIGILL)"
            #expect(try await ledger.releaseLeases([SessionLease(shard: second.shard, token: second.leaseToken, itemInHand: 2)],
                                                   reason: crash) == [ReleasedLease(shard: second.shard, token: second.leaseToken, failed: false)])
            let failures = try await ledger.failures(job: job)
            #expect(failures.map(\.sourceID) == ["img-2"])
            #expect(failures.first?.error.hasPrefix(crash + " while processing this item") == true, "\(failures)")

            let third = try #require(try await ledger.claimNextShard(owner: "w3", job: job))
            #expect(third.isolated && third.attempt == 2 && third.items.map(\.ordinal) == [0, 1, 3])
            #expect(third.excluded.map(\.ordinal) == [2] && third.excluded.first?.sourceId == "img-2")
            #expect(try await ledger.completeShard(third.shard, token: third.leaseToken,
                                                   results: third.items.map { .success($0.ordinal, output: "o") }) == .applied)
            let record = try await ledger.job(job)
            #expect(record.state == .completedWithFailures && record.itemsDone == 3 && record.itemsFailed == 1)
            #expect(try await ledger.scalar("SELECT items_ok || '/' || items_failed FROM shards WHERE job_id = $1", [String(job)]) == "3/1")
        }
    }

    /// Every item crashing its run: each is failed in turn, and the shard ends done with no item
    /// left, never looping. With one attempt, the first abnormal end fails the shard outright.
    @Test func aShardWhoseEveryItemCrashesEndsWithEveryItemFailed() async throws {
        try await withLedgerDatabase { url in
            let ledger = Ledger(database: url, leasePolicy: LeasePolicy(leaseSeconds: 600, backoffBaseSeconds: 0, backoffCapSeconds: 0))
            let job = try await ledger.enqueue(testJob(shardSize: 2, maxAttempts: 1), items: items(2))
            let only = try #require(try await ledger.claimNextShard(owner: "w", job: job))
            #expect(try await ledger.releaseLeases([SessionLease(shard: only.shard, token: only.leaseToken)], reason: "gone").first?.failed == true)

            let other = try await ledger.enqueue(testJob(shardSize: 2, maxAttempts: 2), items: items(2, prefix: "o"))
            let a = try #require(try await ledger.claimNextShard(owner: "w", job: other))
            _ = try await ledger.releaseLeases([SessionLease(shard: a.shard, token: a.leaseToken)], reason: "crashed")
            for ordinal in 0..<2 {
                let lease = try #require(try await ledger.claimNextShard(owner: "w", job: other))
                #expect(lease.items.first?.ordinal == ordinal && lease.excluded.count == ordinal)
                #expect(try await ledger.releaseLeases([SessionLease(shard: lease.shard, token: lease.leaseToken, itemInHand: ordinal)],
                                                       reason: "crashed").first?.failed == false)
            }
            let last = try #require(try await ledger.claimNextShard(owner: "w", job: other))
            #expect(last.items.isEmpty && last.excluded.map(\.sourceId) == ["o-0", "o-1"])
            #expect(try await ledger.completeShard(last.shard, token: last.leaseToken, results: []) == .applied)
            let record = try await ledger.job(other)
            #expect(record.state == .completedWithFailures && record.itemsFailed == 2 && record.itemsDone == 0)
        }
    }

    @Test func anExpiredLeaseIsolatesItsShard() async throws {
        try await withLedgerDatabase { url in
            let ledger = Ledger(database: url, leasePolicy: LeasePolicy(leaseSeconds: 0.2, backoffBaseSeconds: 0, backoffCapSeconds: 0))
            let job = try await ledger.enqueue(testJob(shardSize: 2), items: items(2))
            _ = try #require(try await ledger.claimNextShard(owner: "w", job: job))
            try await Task.sleep(for: .milliseconds(400))
            #expect(try await ledger.releaseExpiredLeases().count == 1)
            #expect(try #require(try await ledger.claimNextShard(owner: "w", job: job)).isolated)
        }
    }

    @Test func cancelledShardsAreReportedForTheFinalizerAndTheCancelIsNotified() async throws {
        try await withLedgerDatabase { url in
            let ledger = Ledger(database: url)
            let notifier = WorkNotifier(database: url)
            try await notifier.start()
            let job = try await ledger.enqueue(testJob(shardSize: 2), items: items(4))
            #expect(try await notifier.waitForNotification(timeout: 5) == .newWork(jobID: job))
            let first = try #require(try await ledger.claimNextShard(owner: "w", job: job))
            #expect(try await ledger.completeShard(first.shard, token: first.leaseToken,
                                                   results: first.items.map { .success($0.ordinal, output: "o") }) == .applied)
            try await ledger.cancel(job: job)
            #expect(try await notifier.waitForNotification(timeout: 5) == .newWork(jobID: job))
            let unprocessed = try await ledger.failedShards(job: job)
            #expect(unprocessed.map(\.index) == [1])
            #expect(unprocessed.first?.error == FailedShard.cancelledError)
            #expect(unprocessed.first?.items.map(\.sourceID) == ["img-2", "img-3"])
        }
    }

    @Test func cancelStopsClaimsAndRevokesLeases() async throws {
        try await withLedgerDatabase { url in
            let ledger = Ledger(database: url)
            let job = try await ledger.enqueue(testJob(shardSize: 1), items: items(10))
            let other = try await ledger.enqueue(testJob(shardSize: 1, priority: -1), items: items(1))
            let lease = try #require(try await ledger.claimNextShard(owner: "w"))
            #expect(lease.shard.jobID == job)
            try await ledger.cancel(job: job)
            let next = try await ledger.claimNextShard(owner: "w")
            #expect(next?.shard.jobID == other, "only the other job's work is claimable")
            #expect(try await ledger.claimNextShard(owner: "w") == nil)
            #expect(try await ledger.heartbeat(lease.shard, token: lease.leaseToken) == nil)
            #expect(try await ledger.completeShard(lease.shard, token: lease.leaseToken,
                                                   results: [.success(0, output: "x")]) == .leaseLost)
            let record = try await ledger.job(job)
            #expect(record.state == .cancelled && record.itemsDone == 0 && record.rejectedCompletions == 1)
            await #expect(throws: LedgerError.invalidJobState(job: job, state: "cancelled", operation: "cancel")) {
                try await ledger.cancel(job: job)
            }
            await #expect(throws: LedgerError.jobNotFound(9999)) { try await ledger.cancel(job: 9999) }
        }
    }

    @Test func pauseHoldsWorkBackAndResumeReleasesIt() async throws {
        try await withLedgerDatabase { url in
            let ledger = Ledger(database: url)
            let job = try await ledger.enqueue(testJob(shardSize: 1), items: items(3))
            let leased = try #require(try await ledger.claimNextShard(owner: "w"))
            try await ledger.pause(job: job)
            #expect(try await ledger.claimNextShard(owner: "w") == nil)
            #expect(try await ledger.completeShard(leased.shard, token: leased.leaseToken,
                                                   results: [.success(0, output: "x")]) == .applied,
                    "work leased before the pause may finish")
            var progress = try await ledger.progress(job: job)
            #expect(progress.job.state == .paused && progress.shards == [.done: 1, .paused: 2])
            try await ledger.resume(job: job)
            #expect(try await ledger.job(job).state == .running)
            #expect(try await ledger.claimNextShard(owner: "w")?.shard == ShardRef(jobID: job, index: 1))
            progress = try await ledger.progress(job: job)
            #expect(progress.shards == [.done: 1, .leased: 1, .pending: 1])
            await #expect(throws: LedgerError.invalidJobState(job: job, state: "running", operation: "resume")) {
                try await ledger.resume(job: job)
            }
        }
    }

    @Test func progressThroughputAndWorkerRegistry() async throws {
        try await withLedgerDatabase { url in
            let ledger = Ledger(database: url)
            let job = try await ledger.enqueue(testJob(shardSize: 10), items: items(100))
            for _ in 0..<4 {
                let lease = try #require(try await ledger.claimNextShard(owner: "w"))
                _ = try await ledger.completeShard(lease.shard, token: lease.leaseToken,
                                                   results: lease.items.map { .success($0.ordinal, output: nil) })
            }
            try await Task.sleep(for: .milliseconds(200))
            let progress = try await ledger.progress(job: job)
            #expect(progress.shards == [.done: 4, .pending: 6])
            #expect(progress.itemsPending == 60)
            #expect(progress.itemsPerSecond > 0)
            let eta = try #require(progress.etaSeconds)
            #expect(abs(eta - 60 / progress.itemsPerSecond) < 1e-6)
            let samples = try await ledger.throughput(windowSeconds: 300, bucketSeconds: 60)
            #expect(samples.map(\.items).reduce(0, +) == 40)
            #expect(samples.map(\.shards).reduce(0, +) == 4)

            try await ledger.upsertWorker(WorkerReport(id: "w1", host: "node-a", capabilitiesJSON: #"{"threads": 8}"#))
            try await ledger.upsertWorker(WorkerReport(id: "w0", host: "node-b"))
            try await ledger.upsertWorker(WorkerReport(
                id: "w1", host: "node-a", capabilitiesJSON: #"{"threads": 8}"#, state: .busy,
                currentShard: ShardRef(jobID: job, index: 4), itemsDone: 40, itemsFailed: 1, imagesPerSecond: 12.5,
                memoryBytes: 1 << 30))
            let workers = try await ledger.listWorkers()
            #expect(workers.map(\.report.id) == ["w0", "w1"])
            #expect(workers[1].report.state == .busy && workers[1].report.itemsDone == 40)
            #expect(workers[1].report.currentShard == ShardRef(jobID: job, index: 4))
            #expect(workers[1].report.imagesPerSecond == 12.5 && workers[1].report.memoryBytes == 1 << 30)
            #expect(workers[1].lastHeartbeat >= workers[1].registeredAt)
            try await Task.sleep(for: .milliseconds(100))
            try await ledger.upsertWorker(WorkerReport(id: "w0", host: "node-b"))
            #expect(try await ledger.markSilentWorkersOffline(olderThanSeconds: 0.09) == ["w1"])

            // Many workers in one statement (the coordinator's batched heartbeats); a worker named
            // twice gets its last report, and a rate that is not finite is stored as 0.
            try await ledger.upsertWorkers([
                WorkerReport(id: "w2", host: "node-c", state: .busy, currentShard: ShardRef(jobID: job, index: 5), itemsInProgress: 3),
                WorkerReport(id: "w0", host: "node-b", state: .draining, imagesPerSecond: .nan),
                WorkerReport(id: "w2", host: "node-c", capabilitiesJSON: #"{"threads": 2}"#, state: .idle, itemsDone: 7),
            ])
            let batch = try await ledger.listWorkers()
            #expect(batch.map(\.report.id) == ["w0", "w1", "w2"])
            #expect(batch[0].report.state == .draining && batch[0].report.imagesPerSecond == 0)
            #expect(batch[2].report.state == .idle && batch[2].report.itemsDone == 7 && batch[2].report.currentShard == nil)
            #expect(batch[2].report.capabilitiesJSON.contains("threads"), "\(batch[2].report.capabilitiesJSON)")
        }
    }

    @Test func notificationsWakeAnIdleCoordinator() async throws {
        try await withLedgerDatabase { url in
            let notifier = WorkNotifier(database: url)
            try await notifier.start()
            let start = ContinuousClock.now
            #expect(try await notifier.waitForNotification(timeout: 0.3) == nil)
            #expect(ContinuousClock.now - start >= .milliseconds(290))

            let ledger = Ledger(database: url)
            async let woke = notifier.waitForNotification(timeout: 20)
            try await Task.sleep(for: .milliseconds(100))
            let job = try await ledger.enqueue(testJob(), items: items(3))
            let wakeStart = ContinuousClock.now
            #expect(try await woke == .newWork(jobID: job))
            #expect(ContinuousClock.now - wakeStart < .seconds(5))

            try await ledger.pause(job: job)
            try await ledger.resume(job: job)
            #expect(try await notifier.waitForNotification(timeout: 5) == .newWork(jobID: job))

            // A terminated listening connection is reported so the coordinator rescans, then listening resumes.
            _ = try await ledger.sql("""
                SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE pid <> pg_backend_pid() AND query LIKE 'LISTEN%'
                """)
            #expect(try await notifier.waitForNotification(timeout: 5) == .reconnected)
            let second = try await ledger.enqueue(testJob(), items: items(1))
            #expect(try await notifier.waitForNotification(timeout: 10) == .newWork(jobID: second))

            // Cancelling the waiting task ends a long wait early.
            let waiter = Task { try await notifier.waitForNotification(timeout: 30) }
            try await Task.sleep(for: .milliseconds(100))
            let cancelStart = ContinuousClock.now
            waiter.cancel()
            #expect(try await waiter.value == nil)
            #expect(ContinuousClock.now - cancelStart < .seconds(5))
        }
    }
}
