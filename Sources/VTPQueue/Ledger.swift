import Foundation
import Logging
import VTPConcurrency
import VTPVocabulary

/// The coordinator's source of truth: jobs, shards, items and workers in PostgreSQL.
///
/// Each `Ledger` owns one connection on its own thread; give concurrent claimers their own
/// `Ledger` (connections are cheap next to the work per shard). Every operation is one
/// statement or one short transaction, so a broken connection never leaves it half-applied;
/// operations that are safe to repeat are retried once on a fresh connection.
public final class Ledger: Sendable {
    /// The channel `enqueue`, `resume` and `retryFailed` notify.
    public static let workChannel = "vtp_work"

    /// Where this ledger connects (prints redacted).
    public let database: DatabaseURL
    /// Lease length and backoff used by claims, heartbeats and lease releases.
    public let leasePolicy: LeasePolicy
    /// How a lost connection is retried.
    public let reconnect: ReconnectPolicy
    let session: DatabaseSession
    let logger: Logger

    /// Creates a ledger; nothing is sent until the first operation (see `verifySchema`).
    public init(database: DatabaseURL, leasePolicy: LeasePolicy = LeasePolicy(),
                reconnect: ReconnectPolicy = ReconnectPolicy(), logger: Logger = Logger(label: "vtp.ledger")) {
        self.database = database
        self.leasePolicy = leasePolicy
        self.reconnect = reconnect
        self.logger = logger
        session = DatabaseSession(url: database, name: "vtp-ledger", reconnect: reconnect, logger: logger)
    }

    /// Connects and checks that the schema is exactly the version this binary knows.
    /// - Throws: `LedgerError.schemaTooNew` or `.schemaOutdated`.
    public func verifySchema() async throws {
        let version = try await session.run("read schema version") { try Migrator.schemaVersion($0) }
        let known = Migration.latestVersion
        if version > known { throw LedgerError.schemaTooNew(databaseVersion: version, binaryVersion: known) }
        if version < known { throw LedgerError.schemaOutdated(databaseVersion: version, binaryVersion: known) }
    }

    // MARK: Enqueue

    /// Enqueues a job over `items` and notifies idle coordinators; returns the job id. See
    /// ``enqueue(_:listing:end:)``, which this calls with `skipped` and `listingDigest` known upfront.
    public func enqueue<Items: Sequence<JobItem>>(_ spec: JobSpec, items: sending Items, skipped: [SkippedSample] = [],
                                                  listingDigest: String? = nil) async throws -> Int64 {
        try await enqueue(spec, listing: items) { ListingEnd(skipped: skipped, listingDigest: listingDigest) }
    }

    /// Enqueues a job whose items come from `listing`, which is read once, in order, as the items
    /// are cut into shards: the items of each shard go to its manifest file
    /// (``ShardManifest``, under the job's output) as soon as the shard is full, so an enqueue holds
    /// one shard of items at a time however long the listing is (it may be generated lazily).
    /// Items get their listing positions as ordinals. `end` is called after the last item and
    /// supplies what a streaming listing knows only then: the samples it skipped (recorded as
    /// failed items after the real ones, in no shard, so the job's counts, `failures` and the
    /// finalizer report them) and the listing's fingerprint (``ListingDigest``).
    ///
    /// The job exists in state ``JobState/listing`` while its manifests are written and becomes
    /// claimable in one transaction with all its shards, so an enqueue that dies part-way leaves
    /// nothing runnable: the job is deleted on the way out when possible, and otherwise stays a
    /// listing job that `vtp run` discards on its next run (``discardListingJob(_:)``).
    ///
    /// Not retried after a connection loss: the commit may have happened, so the caller decides.
    public func enqueue<Items: Sequence<JobItem>>(_ spec: JobSpec, listing: sending Items,
                                                  end: @escaping @Sendable () throws -> ListingEnd) async throws -> Int64 {
        try spec.validate()
        let jobID = try await session.run("create job", retry: .never) { connection in
            try connection.query("""
                INSERT INTO jobs (type, parameters, model, input_location, output_location, priority, max_attempts, state)
                VALUES ($1, $2::jsonb, $3, $4, $5, $6, $7, 'listing') RETURNING id
                """, [spec.type, spec.parametersJSON, spec.model, spec.inputLocation, spec.outputLocation,
                      String(spec.priority), String(spec.maxAttempts)], operation: "insert job").int64(0, 0)
        }
        do {
            let written = try await Self.writeManifests(listing, job: jobID, outputLocation: spec.outputLocation,
                                                        shardSize: spec.shardSize, firstShard: 0, firstOrdinal: 0, end: end)
            guard written.items > 0 else { throw LedgerError.invalidArgument(field: "items", expected: "at least one item") }
            try await session.run("publish job", retry: .never) { connection in
                try connection.transaction(operation: "publish job \(jobID)") {
                    try Self.insertShards(job: jobID, firstShard: 0, firstOrdinal: 0, written: written, shardSize: spec.shardSize,
                                          connection: connection)
                    try Self.copyListingFailures(written.end.skipped, job: jobID, firstOrdinal: written.items, connection: connection)
                    try connection.query("""
                        UPDATE jobs SET state = 'pending', shard_count = $2, item_count = $3, items_failed = $4,
                                        listing_digest = $5, updated_at = now()
                         WHERE id = $1 AND state = 'listing'
                        """, [String(jobID), String(written.shards), String(written.items + Int64(written.end.skipped.count)),
                              String(written.end.skipped.count), written.end.listingDigest], operation: "publish job \(jobID)")
                    try connection.query("SELECT pg_notify($1, $2)", [Self.workChannel, String(jobID)],
                                         operation: "notify new work")
                }
            }
        } catch {
            _ = try? await discardListingJob(jobID)
            throw error
        }
        return jobID
    }

    /// Deletes `job` and its shard manifests if it is still ``JobState/listing`` (its enqueue
    /// died before publishing it); true when it was. Safe to call on any job: others are kept.
    @discardableResult
    public func discardListingJob(_ job: Int64) async throws -> Bool {
        let output = try await session.run("discard listing job", retry: .never) { connection -> String? in
            let result = try connection.query("DELETE FROM jobs WHERE id = $1 AND state = 'listing' RETURNING output_location",
                                              [String(job)], operation: "discard listing job \(job)")
            return result.rowCount == 0 ? nil : try result.string(0, 0)
        }
        guard let output else { return false }
        ShardManifest.removeAll(job: job, outputLocation: output)
        return true
    }

    /// Adds items to an existing job (its input grew: `vtp run --update`) as new shards after its
    /// last one, so nothing already done runs again. The new items' ordinals follow the job's
    /// last; their own `ordinal` fields are ignored. Their manifests are written first (streaming,
    /// like ``enqueue(_:listing:end:)``) and the shards appear in one transaction, which refuses
    /// if the job grew meanwhile (the files it wrote are then overwritten by the next append). A
    /// finished job runs again for them (and is finalized again, over everything). `afterItems`
    /// runs once the items are written and before any shard appears: a throw (the input changed
    /// while it was read) adds nothing. Returns how many shards were added.
    @discardableResult
    public func appendItems<Items: Sequence<JobItem>>(job: Int64, items: sending Items, skipped: [SkippedSample] = [],
                                                      shardSize: Int, listingDigest: String?,
                                                      afterItems: @escaping @Sendable () throws -> Void = {}) async throws -> Int {
        guard shardSize > 0 else { throw LedgerError.invalidArgument(field: "shardSize", expected: "a positive shard size") }
        let current = try await session.run("read job") { connection -> (Int64, Int, String)? in
            let r = try connection.query("SELECT item_count, shard_count, output_location FROM jobs WHERE id = $1",
                                         [String(job)], operation: "read job \(job)")
            return r.rowCount == 0 ? nil : (try r.int64(0, 0), Int(try r.int64(0, 1)), try r.string(0, 2))
        }
        guard let (firstOrdinal, firstShard, output) = current else { throw LedgerError.jobNotFound(job) }
        let written = try await Self.writeManifests(items, job: job, outputLocation: output, shardSize: shardSize,
                                                    firstShard: firstShard, firstOrdinal: firstOrdinal) {
            try afterItems()
            return ListingEnd(skipped: skipped, listingDigest: listingDigest)
        }
        guard firstShard + written.shards <= Int(Int32.max) else {
            throw LedgerError.invalidArgument(field: "job.shardSize", expected: "fewer than 2^31 shards")
        }
        return try await session.run("append items", retry: .never) { connection in
            try connection.transaction(operation: "append items to job \(job)") {
                let locked = try connection.query("SELECT item_count, shard_count FROM jobs WHERE id = $1 FOR UPDATE",
                                                  [String(job)], operation: "lock job \(job)")
                guard locked.rowCount > 0 else { throw LedgerError.jobNotFound(job) }
                guard try locked.int64(0, 0) == firstOrdinal, Int(try locked.int64(0, 1)) == firstShard else {
                    throw LedgerError.invalidJobState(job: job, state: "grown by another update meanwhile", operation: "append items to")
                }
                try Self.insertShards(job: job, firstShard: firstShard, firstOrdinal: firstOrdinal, written: written,
                                      shardSize: shardSize, connection: connection)
                try Self.copyListingFailures(skipped, job: job, firstOrdinal: firstOrdinal + written.items, connection: connection)
                let newShards = written.shards
                try connection.query("""
                    UPDATE jobs
                       SET shard_count = shard_count + $2, item_count = item_count + $3, items_failed = items_failed + $4,
                           listing_digest = $5,
                           state = CASE WHEN $2 > 0 AND state IN ('completed', 'completed_with_failures') THEN 'running' ELSE state END,
                           finished_at = CASE WHEN $2 > 0 AND state IN ('completed', 'completed_with_failures') THEN NULL ELSE finished_at END,
                           updated_at = now()
                     WHERE id = $1
                    """, [String(job), String(newShards), String(written.items + Int64(skipped.count)), String(skipped.count),
                          listingDigest], operation: "update job \(job)")
                try connection.query("SELECT pg_notify($1, $2)", [Self.workChannel, String(job)], operation: "notify new work")
                return newShards
            }
        }
    }

    /// What ``writeManifests`` wrote: shards and items, and the listing's end.
    struct WrittenListing: Sendable {
        var shards: Int
        var items: Int64
        var end: ListingEnd
    }

    /// Streams `listing` into shard manifests on a thread of its own (file writes block).
    private static func writeManifests<Items: Sequence<JobItem>>(
        _ listing: sending Items, job: Int64, outputLocation: String, shardSize: Int, firstShard: Int, firstOrdinal: Int64,
        end: @escaping @Sendable () throws -> ListingEnd) async throws -> WrittenListing {
        // The caller sent the sequence away; only the one thread below ever iterates it.
        let transfer = UncheckedTransfer(AnyIterator(listing.makeIterator()))
        return try await BlockingWork.run(name: "vtp-enqueue") {
            var writer = ShardManifestWriter(job: job, outputLocation: outputLocation, shardSize: shardSize,
                                             firstShard: firstShard, firstOrdinal: firstOrdinal)
            while let item = transfer.value.next() { try writer.add(item) }
            try writer.finish()
            guard firstShard + writer.shardsWritten <= Int(Int32.max) else {
                throw LedgerError.invalidArgument(field: "job.shardSize", expected: "fewer than 2^31 shards")
            }
            return WrittenListing(shards: writer.shardsWritten, items: writer.itemsWritten, end: try end())
        }
    }

    /// Inserts the shard rows for items `firstOrdinal..<firstOrdinal + written.items` (full shards
    /// of `shardSize`, the last possibly shorter): one statement however many shards.
    private static func insertShards(job: Int64, firstShard: Int, firstOrdinal: Int64, written: WrittenListing, shardSize: Int,
                                     connection: PGConnection) throws {
        guard written.shards > 0 else { return }
        try connection.query("""
            INSERT INTO shards (job_id, shard_index, priority, first_item, last_item)
            SELECT j.id, $2 + g, j.priority, $3 + g::bigint * $4, $3 + least((g::bigint + 1) * $4, $5) - 1
              FROM jobs j, generate_series(0, $6 - 1) AS g WHERE j.id = $1
            """, [String(job), String(firstShard), String(firstOrdinal), String(shardSize), String(written.items),
                  String(written.shards)], operation: "insert shards of job \(job)")
    }

    /// Records the listing's skipped samples as failed items in no shard (`shard_index` -1).
    private static func copyListingFailures(_ skipped: [SkippedSample], job: Int64, firstOrdinal: Int64,
                                            connection: PGConnection) throws {
        guard !skipped.isEmpty else { return }
        try connection.copyIn("COPY failed_items (job_id, ordinal, shard_index, source_id, path, error) FROM STDIN",
                              operation: "copy listing failures") { send in
            var encoder = CopyTextEncoder(reservingCapacity: 1 << 16)
            for (k, sample) in skipped.enumerated() {
                encoder.appendField(job)
                encoder.appendField(firstOrdinal + Int64(k))
                encoder.appendField(-1)
                encoder.appendField(sample.sourceId)
                encoder.appendField("")
                encoder.appendField(sample.reason)
                encoder.endRow()
                if encoder.bytes.count >= 1 << 20 {
                    try encoder.bytes.withUnsafeBytes { try send($0) }
                    encoder.reset()
                }
            }
            try encoder.bytes.withUnsafeBytes { try send($0) }
        }
    }

    /// The source id of every item of `job`, the listing's skipped samples included (they have
    /// ordinals too), for comparing the job with a new listing of its input. Read from the shard
    /// manifests one shard at a time.
    public func sourceIDs(job: Int64) async throws -> Set<String> {
        var ids = Set<String>()
        try await forEachShardItems(job: job) { _, items in
            for item in items { ids.insert(item.sourceId) }
        }
        for failure in try await listingFailures(job: job) { ids.insert(failure.sourceID) }
        return ids
    }

    /// Calls `body` with each shard of `job` (by index) and its items, read from its manifest,
    /// in shard order: a walk over every item of a job in the memory of one shard.
    /// - Throws: ``ShardManifestError`` for a missing or broken manifest.
    public func forEachShardItems(job: Int64, _ body: (Int, [JobItem]) throws -> Void) async throws {
        let record = try await self.job(job)
        var after = -1
        while true {
            let from = after
            let page = try await session.run("list shards") { connection -> [(Int, Int64, Int64)] in
                let r = try connection.query("""
                    SELECT shard_index, first_item, last_item FROM shards WHERE job_id = $1 AND shard_index > $2
                     ORDER BY shard_index LIMIT 1000
                    """, [String(job), String(from)], operation: "list shards of job \(job)")
                return try (0..<r.rowCount).map { (Int(try r.int64($0, 0)), try r.int64($0, 1), try r.int64($0, 2)) }
            }
            guard let last = page.last else { return }
            for (index, first, lastItem) in page {
                let items = try await BlockingWork.run(name: "vtp-manifest") {
                    try ShardManifest.read(job: job, shard: index, first: first, last: lastItem, outputLocation: record.outputLocation)
                }
                try body(index, items)
            }
            after = last.0
        }
    }

    // MARK: Leases

    /// Leases the next eligible shard — highest priority, then oldest job, then lowest index —
    /// skipping rows other claimers hold, and returns it with its items, read from its shard
    /// manifest; nil when no shard is eligible. The lease token and expiry are set in the same
    /// statement.
    ///
    /// A shard whose manifest is missing or broken is failed under its new lease with the
    /// manifest's error (the usual backoff and attempts: shared storage may come back), and the
    /// claim moves on to the next shard, so one bad file never stops the coordinator.
    ///
    /// - Parameter job: restrict the claim to one job (benchmarks, tests, job-pinned workers).
    public func claimNextShard(owner: String, job: Int64? = nil) async throws -> ClaimedShard? {
        try await claim(owner: owner, job: job).shard
    }

    /// What ``claim(owner:job:)`` did: the shard it leased, if any, and the jobs that ended on
    /// the way, when a shard it could not run used its job's last open attempt.
    public struct ClaimResult: Sendable, Equatable {
        public var shard: ClaimedShard?
        /// Jobs now finished (``JobState/isFinalizable``) by a manifest failure of this claim;
        /// no completion will come for them, so the caller finalizes them.
        public var finishedJobs: [Int64] = []
    }

    /// ``claimNextShard(owner:job:)`` for a coordinator: also names the jobs that the claim's
    /// manifest failures finished, which no worker's completion would announce.
    public func claim(owner: String, job: Int64? = nil) async throws -> ClaimResult {
        let lease = leasePolicy.leaseSeconds
        var finished: [Int64] = []
        for _ in 0..<64 {
            // Retrying after a lost connection is safe: a claim whose reply was lost just expires.
            let claimed = try await session.run("claim next shard") { connection in
                let result = try connection.query(Self.claimSQL, [owner, String(lease), job.map { String($0) }],
                                                  operation: "claim next shard")
                return try Self.decodeClaim(result)
            }
            guard var shard = claimed else { return ClaimResult(shard: nil, finishedJobs: finished) }
            do {
                let (jobID, index, first, last, output) = (shard.shard.jobID, Int(shard.shard.index), shard.firstItem,
                                                           shard.lastItem, shard.job.outputLocation)
                let items = try await BlockingWork.run(name: "vtp-manifest") {
                    try ShardManifest.read(job: jobID, shard: index, first: first, last: last, outputLocation: output)
                }
                let excluded = Dictionary(shard.excluded.map { ($0.ordinal, $0) }, uniquingKeysWith: { a, _ in a })
                shard.items = items.filter { excluded[$0.ordinal] == nil }
                shard.excluded = items.compactMap { item in
                    excluded[item.ordinal].map { ExcludedItem(ordinal: $0.ordinal, sourceId: item.sourceId, reason: $0.reason) }
                }
                return ClaimResult(shard: shard, finishedJobs: finished)
            } catch let error as ShardManifestError {
                logger.error("shard \(shard.shard) cannot run: \(error)")
                let outcome = try await failShard(shard.shard, token: shard.leaseToken, error: error.description)
                if outcome == .failed, try await self.job(shard.shard.jobID).state.isFinalizable, !finished.contains(shard.shard.jobID) {
                    finished.append(shard.shard.jobID)
                }
            }
        }
        return ClaimResult(shard: nil, finishedJobs: finished)
    }

    static let claimSQL = """
        WITH candidate AS (
            SELECT job_id, shard_index FROM shards
             WHERE state = 'pending' AND next_eligible_at <= now()
               AND ($3::bigint IS NULL OR job_id = $3::bigint)
               -- A shard requeued (expired, handed back) while its job is paused or failed waits, and
               -- so do the shards of a job whose items are still rows (0007 moves them at startup).
               AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = shards.job_id
                                  AND (j.state IN ('paused', 'failed', 'cancelled', 'listing') OR j.item_rows))
             ORDER BY priority DESC, job_id, shard_index
             LIMIT 1
               FOR UPDATE SKIP LOCKED
        ), claimed AS (
            UPDATE shards s
               SET state = 'leased', attempts = s.attempts + 1, lease_owner = $1,
                   lease_token = gen_random_uuid(),
                   lease_expires_at = now() + make_interval(secs => $2::float8)
              FROM candidate c
             WHERE s.job_id = c.job_id AND s.shard_index = c.shard_index
            RETURNING s.job_id, s.shard_index, s.first_item, s.last_item, s.attempts, s.lease_token,
                      s.lease_expires_at, s.isolated
        ), started AS (
            UPDATE jobs j SET state = 'running', started_at = coalesce(j.started_at, now()), updated_at = now()
              FROM claimed c WHERE j.id = c.job_id AND j.state = 'pending'
            RETURNING j.id
        )
        SELECT c.job_id, c.shard_index, c.first_item, c.last_item, c.attempts, c.lease_token,
               extract(epoch FROM c.lease_expires_at)::float8,
               j.type, j.parameters::text, j.model, j.input_location, j.output_location,
               c.isolated, f.ordinal, f.error
          FROM claimed c
          JOIN jobs j ON j.id = c.job_id
          -- A claimable shard has failure rows only for items that crashed workers (retries drop
          -- the rows of the shards they re-open): those come along as excluded.
          LEFT JOIN failed_items f ON f.job_id = c.job_id AND f.shard_index = c.shard_index
         ORDER BY f.ordinal
        """

    private static func decodeClaim(_ result: PGResult) throws -> ClaimedShard? {
        guard result.rowCount > 0 else { return nil }
        let jobID = try result.int64(0, 0)
        var shard = ClaimedShard(
            shard: ShardRef(jobID: jobID, index: try result.int32(0, 1)),
            job: JobDescriptor(id: jobID, type: try result.string(0, 7), parametersJSON: try result.string(0, 8),
                               model: result.value(0, 9), inputLocation: try result.string(0, 10),
                               outputLocation: try result.string(0, 11)),
            firstItem: try result.int64(0, 2), lastItem: try result.int64(0, 3), attempt: try result.int32(0, 4),
            leaseToken: try result.uuid(0, 5), leaseExpiresAt: try result.date(0, 6), items: [])
        shard.isolated = try result.string(0, 12) == "t"
        for row in 0..<result.rowCount where result.value(row, 13) != nil {
            // The source id is filled from the manifest by the caller.
            shard.excluded.append(ExcludedItem(ordinal: Int(try result.int64(row, 13)), sourceId: "",
                                               reason: result.value(row, 14) ?? "crashed workers"))
        }
        return shard
    }

    /// Extends a lease; returns the new expiry, or nil when the lease is no longer held
    /// (expired and re-issued, completed, or the job was cancelled) and the worker should stop.
    public func heartbeat(_ shard: ShardRef, token: UUID) async throws -> Date? {
        let lease = leasePolicy.leaseSeconds
        return try await session.run("extend lease") { connection in
            let result = try connection.query("""
                UPDATE shards SET lease_expires_at = now() + make_interval(secs => $4::float8)
                 WHERE job_id = $1 AND shard_index = $2 AND lease_token = $3::uuid AND state = 'leased'
                RETURNING extract(epoch FROM lease_expires_at)::float8
                """, [String(shard.jobID), String(shard.index), token.uuidString, String(lease)],
                operation: "extend lease")
            return result.rowCount == 0 ? nil : try result.date(0, 0)
        }
    }

    /// Records a shard's per-item results if `token` is still its live lease; otherwise nothing
    /// changes and the rejection is counted on the job. Failed items and items missing from
    /// `results` get a failure row; every other item of the shard is done (no row: success is
    /// implied); per-item failures never fail the shard. Finishes the job after its last shard.
    ///
    /// The results' output locations are not stored. They are `<shard file>#<row>` and follow
    /// from the shard's summary file, which its worker writes beside its outputs (the file it
    /// wrote, in item order, with an ids sidecar naming each row's source id): keeping them per
    /// item would put one row per item back into the ledger for something the output already says.
    ///
    /// Retried after a lost connection: if the first attempt had committed, the retry reports
    /// `.duplicate` (and counts it) instead of applying twice.
    public func completeShard(_ shard: ShardRef, token: UUID, results: [ItemResult],
                              summaryJSON: String? = nil) async throws -> CompletionOutcome {
        // The row shape vtp_complete_shard reads.
        struct Row: Encodable { var ordinal: Int64, ok: Bool, output: String?, error: String? }
        let encoded = try JSONEncoder().encode(results.map {
            Row(ordinal: Int64($0.ordinal), ok: $0.ok, output: $0.outputLocation, error: $0.error)
        })
        let resultsJSON = String(decoding: encoded, as: UTF8.self)
        return try await session.run("complete shard") { connection in
            let result = try connection.query(
                "SELECT vtp_complete_shard($1, $2, $3::uuid, $4::jsonb, $5::jsonb)",
                [String(shard.jobID), String(shard.index), token.uuidString, resultsJSON, summaryJSON],
                operation: "complete shard \(shard)")
            return try result.enumValue(0, 0, as: CompletionOutcome.self)
        }
    }

    /// Gives up a lease after a shard-level error: back to pending with exponential backoff, or
    /// `failed` (keeping `error`) once the job's `maxAttempts` are used.
    public func failShard(_ shard: ShardRef, token: UUID, error: String) async throws -> CompletionOutcome {
        try await leaseCall("vtp_fail_shard", shard, token: token,
                            [error, String(leasePolicy.backoffBaseSeconds), String(leasePolicy.backoffCapSeconds)],
                            name: "fail shard", operation: "fail shard \(shard)")
    }

    /// Fails the whole job because the holder of `shard` under `token` found that nothing of it
    /// can run (``JobState/failed``, with `error`): its unfinished shards are parked, no item is
    /// failed, and ``retryFailed(job:)`` starts it again. `.jobFailed` (also when another worker
    /// had failed it already), or `.leaseLost` when the lease is no longer held under `token`.
    public func failJob(_ shard: ShardRef, token: UUID, error: String) async throws -> CompletionOutcome {
        try await leaseCall("vtp_fail_job", shard, token: token, [error], name: "fail job",
                            operation: "fail job \(shard.jobID) from shard \(shard)")
    }

    /// Takes back a lease its worker gave up on purpose (it was interrupted or shut down): the
    /// shard is pending again at once and its attempt is refunded, so stopping a run never uses
    /// up `maxAttempts`. `.requeued`, or `.leaseLost` when the lease is no longer held under
    /// `token` (nothing changes).
    public func handBackShard(_ shard: ShardRef, token: UUID, reason: String) async throws -> CompletionOutcome {
        try await leaseCall("vtp_hand_back_shard", shard, token: token, [reason], name: "hand back shard",
                            operation: "hand back shard \(shard)")
    }

    /// One of the SQL lease functions, `function(job, shard, token, arguments...)`, each of which
    /// checks the lease (`vtp_lock_lease`) and answers with a ``CompletionOutcome``.
    private func leaseCall(_ function: String, _ shard: ShardRef, token: UUID, _ arguments: [String], name: String,
                           operation: String) async throws -> CompletionOutcome {
        let placeholders = (["$1", "$2", "$3::uuid"] + arguments.indices.map { "$\($0 + 4)" }).joined(separator: ", ")
        return try await session.run(name) { connection in
            let result = try connection.query("SELECT \(function)(\(placeholders))",
                                              [String(shard.jobID), String(shard.index), token.uuidString] + arguments,
                                              operation: operation)
            return try result.enumValue(0, 0, as: CompletionOutcome.self)
        }
    }

    /// ``handBackShard(_:token:reason:)`` for every shard of `job` still leased by an owner whose
    /// id starts with `ownerPrefix`: for a run that killed its own workers (they can report
    /// nothing any more), so its shards need not wait for their leases to expire. Returns how many.
    public func handBackLeases(job: Int64, ownerPrefix: String) async throws -> Int {
        try await session.run("hand back leases") { connection in
            let pattern = ownerPrefix.replacingOccurrences(of: "\\", with: "\\\\")
                .replacingOccurrences(of: "%", with: "\\%").replacingOccurrences(of: "_", with: "\\_") + "%"
            let result = try connection.query(
                """
                WITH handed AS (
                    UPDATE shards SET state = 'pending', lease_expires_at = NULL, next_eligible_at = '-infinity',
                                      attempts = greatest(attempts - 1, 0)
                     WHERE job_id = $1 AND state = 'leased' AND lease_owner LIKE $2
                    RETURNING 1)
                SELECT count(*) FROM handed
                """,
                [String(job), pattern], operation: "hand back leases of job \(job)")
            return Int(try result.int64(0, 0))
        }
    }

    /// Returns every expired lease to pending with backoff, or fails shards out of attempts.
    public func releaseExpiredLeases() async throws -> [ReleasedLease] {
        let policy = leasePolicy
        return try await session.run("release expired leases") { connection in
            let result = try connection.query(
                "SELECT job_id, shard_index, lease_token, outcome FROM vtp_release_expired_leases($1, $2)",
                [String(policy.backoffBaseSeconds), String(policy.backoffCapSeconds)], operation: "release expired leases")
            return try Self.decodeReleased(result)
        }
    }

    /// Hands back leases whose holder is gone (its worker session ended) without waiting for them
    /// to expire: each shard still leased under its token goes back to pending with the usual
    /// backoff, or is failed once out of attempts, with `reason` as its error. The attempt counts,
    /// as for an expired lease: the shard may be what stopped the worker. Leases no longer held
    /// under that token are skipped, so a repeat changes nothing. Returns the leases released.
    ///
    /// Every released shard is flagged isolated: its next runs go one item at a time. A lease that
    /// names the item its isolated run was processing is not counted as an attempt (it found
    /// something; at most twice the shard's size times), and an item named by two such releases in
    /// a row is failed with `reason`: later claims return it as excluded and the shard goes on
    /// without it.
    ///
    /// Retried after a lost connection: a committed first attempt makes the retry a no-op.
    public func releaseLeases(_ leases: [SessionLease], reason: String) async throws -> [ReleasedLease] {
        guard !leases.isEmpty else { return [] }
        struct Row: Encodable { var job: Int64, shard: Int32, token: String, item: Int64? }
        let rows = String(decoding: try JSONEncoder().encode(leases.map {
            Row(job: $0.shard.jobID, shard: $0.shard.index, token: $0.token.uuidString.lowercased(), item: $0.itemInHand.map(Int64.init))
        }), as: UTF8.self)
        let policy = leasePolicy
        return try await session.run("release leases") { connection in
            let result = try connection.query(
                "SELECT job_id, shard_index, lease_token, outcome FROM vtp_release_leases($1::jsonb, $2, $3, $4)",
                [rows, reason, String(policy.backoffBaseSeconds), String(policy.backoffCapSeconds)],
                operation: "release \(leases.count) lease(s)")
            return try Self.decodeReleased(result)
        }
    }

    private static func decodeReleased(_ result: PGResult) throws -> [ReleasedLease] {
        try (0..<result.rowCount).map { row in
            ReleasedLease(shard: ShardRef(jobID: try result.int64(row, 0), index: try result.int32(row, 1)),
                          token: try result.uuid(row, 2), failed: try result.string(row, 3) == "failed")
        }
    }

    /// Seconds until the earliest pending shard becomes eligible (0 if one is eligible now),
    /// or nil when nothing is pending: how long an idle coordinator may sleep.
    public func secondsUntilNextEligibleShard() async throws -> Double? {
        try await session.run("next eligible shard") { connection in
            let result = try connection.query("""
                SELECT CASE WHEN min(next_eligible_at) IS NULL THEN NULL
                            ELSE greatest(0, extract(epoch FROM min(next_eligible_at) - now()))::float8 END
                  FROM shards WHERE state = 'pending'
                """, operation: "next eligible shard")
            return result.value(0, 0) == nil ? nil : try result.double(0, 0)
        }
    }

    // MARK: Job control

    /// Stops a job: no further claims, and outstanding leases are revoked (their completions are rejected).
    public func cancel(job: Int64) async throws {
        try await control(job, function: "vtp_cancel_job", operation: "cancel")
    }

    /// Holds a job's pending shards back from claims; leased shards may still complete.
    public func pause(job: Int64) async throws {
        try await control(job, function: "vtp_pause_job", operation: "pause")
    }

    /// Makes a paused job's shards claimable again and wakes listeners.
    public func resume(job: Int64) async throws {
        try await control(job, function: "vtp_resume_job", operation: "resume")
    }

    private func control(_ job: Int64, function: String, operation: String) async throws {
        let outcome = try await session.run("\(operation) job") { connection in
            try connection.query("SELECT \(function)($1)", [String(job)], operation: "\(operation) job \(job)")
                .string(0, 0)
        }
        if outcome == "ok" { return }
        if outcome == "not_found" { throw LedgerError.jobNotFound(job) }
        throw LedgerError.invalidJobState(job: job, state: outcome, operation: operation)
    }

    /// Requeues, with fresh attempts, every shard of a job that failed or finished with failed
    /// items, and all items of those shards (a shard's outputs are rewritten whole, so its good
    /// rows are redone too); a failed job (``JobState/failed``) also gets its parked shards back
    /// and runs again. Returns how many items will run again.
    @discardableResult
    public func retryFailed(job: Int64) async throws -> Int64 {
        let (reset, state) = try await session.run("retry failed") { connection -> (Int64?, String) in
            let result = try connection.query("SELECT items_reset, job_state FROM vtp_retry_failed($1)",
                                              [String(job)], operation: "retry failed items of job \(job)")
            return (try result.optionalInt64(0, 0), try result.string(0, 1))
        }
        if state == "not_found" { throw LedgerError.jobNotFound(job) }
        guard let reset else { throw LedgerError.invalidJobState(job: job, state: state, operation: "retry") }
        return reset
    }

    /// Deletes a job with its shards, failure rows and shard manifests.
    public func deleteJob(_ job: Int64) async throws {
        let output = try await session.run("delete job") { connection -> String? in
            let r = try connection.query("DELETE FROM jobs WHERE id = $1 RETURNING output_location", [String(job)],
                                         operation: "delete job \(job)")
            return r.rowCount == 0 ? nil : try r.string(0, 0)
        }
        guard let output else { throw LedgerError.jobNotFound(job) }
        ShardManifest.removeAll(job: job, outputLocation: output)
    }

    // MARK: Queries

    static let jobColumns = """
        id, type, parameters::text, model, input_location, output_location, state, priority, max_attempts,
        shard_count, item_count, shards_done, shards_failed, items_done, items_failed, rejected_completions,
        extract(epoch FROM created_at)::float8, extract(epoch FROM started_at)::float8,
        extract(epoch FROM finished_at)::float8, error, listing_digest
        """

    static func decodeJob(_ r: PGResult, _ row: Int) throws -> JobRecord {
        JobRecord(id: try r.int64(row, 0), type: try r.string(row, 1), parametersJSON: try r.string(row, 2),
                  model: r.value(row, 3), inputLocation: try r.string(row, 4), outputLocation: try r.string(row, 5),
                  state: try r.enumValue(row, 6, as: JobState.self), priority: try r.int32(row, 7),
                  maxAttempts: try r.int32(row, 8), shardCount: Int(try r.int64(row, 9)), itemCount: try r.int64(row, 10),
                  shardsDone: Int(try r.int64(row, 11)), shardsFailed: Int(try r.int64(row, 12)),
                  itemsDone: try r.int64(row, 13), itemsFailed: try r.int64(row, 14),
                  rejectedCompletions: try r.int64(row, 15), createdAt: try r.date(row, 16),
                  startedAt: try r.optionalDate(row, 17), finishedAt: try r.optionalDate(row, 18), error: r.value(row, 19),
                  listingDigest: r.value(row, 20))
    }

    /// One job.
    public func job(_ id: Int64) async throws -> JobRecord {
        let record = try await session.run("read job") { connection -> JobRecord? in
            let result = try connection.query("SELECT \(Self.jobColumns) FROM jobs WHERE id = $1", [String(id)],
                                              operation: "read job \(id)")
            return result.rowCount == 0 ? nil : try Self.decodeJob(result, 0)
        }
        guard let record else { throw LedgerError.jobNotFound(id) }
        return record
    }

    /// Jobs, newest first.
    public func listJobs(limit: Int = 100) async throws -> [JobRecord] {
        try await session.run("list jobs") { connection in
            let result = try connection.query("SELECT \(Self.jobColumns) FROM jobs ORDER BY id DESC LIMIT $1",
                                              [String(limit)], operation: "list jobs")
            return try (0..<result.rowCount).map { try Self.decodeJob(result, $0) }
        }
    }

    /// Counts by state, items per second over the last minute and an ETA.
    public func progress(job id: Int64) async throws -> JobProgress {
        let row = try await session.run("job progress") { connection -> (JobRecord, String, Double, Double, Int64)? in
            let result = try connection.query("""
                SELECT \(Self.jobColumns),
                       (SELECT coalesce(json_object_agg(state, n), '{}')::text
                          FROM (SELECT state, count(*) AS n FROM shards WHERE job_id = $1 GROUP BY state) s),
                       (SELECT coalesce(sum(items_ok + items_failed), 0)::float8 FROM shards
                         WHERE job_id = $1 AND completed_at > now() - interval '60 seconds'),
                       extract(epoch FROM least(interval '60 seconds', now() - coalesce(started_at, now())))::float8,
                       (SELECT coalesce(sum(items_in_progress), 0)::bigint FROM workers
                         WHERE current_job_id = $1 AND state <> 'offline')
                  FROM jobs WHERE id = $1
                """, [String(id)], operation: "job progress \(id)")
            guard result.rowCount > 0 else { return nil }
            return (try Self.decodeJob(result, 0), try result.string(0, 21), try result.double(0, 22),
                    try result.double(0, 23), try result.int64(0, 24))
        }
        guard let (job, shardJSON, recentItems, window, inProgress) = row else { throw LedgerError.jobNotFound(id) }
        let counts = try JSONDecoder().decode([String: Int].self, from: Data(shardJSON.utf8))
        var shards: [ShardState: Int] = [:]
        for (name, count) in counts {
            guard let state = ShardState(rawValue: name) else {
                throw LedgerError.malformedRow(column: "shards.state", expected: "a shard state", value: name)
            }
            shards[state] = count
        }
        let rate = window > 0 ? recentItems / window : 0
        var progress = JobProgress(job: job, shards: shards, itemsPerSecond: rate, etaSeconds: nil)
        if !job.state.isFinished { progress.itemsInProgress = inProgress }
        if !job.state.isFinished && rate > 0 { progress.etaSeconds = Double(progress.itemsPending) / rate }
        return progress
    }

    /// Items resolved per time bucket across all jobs over the last `windowSeconds`.
    public func throughput(windowSeconds: Double = 600, bucketSeconds: Double = 60) async throws -> [ThroughputSample] {
        guard bucketSeconds > 0 else { throw LedgerError.invalidArgument(field: "bucketSeconds", expected: "> 0") }
        return try await session.run("throughput") { connection in
            let result = try connection.query("""
                SELECT floor(extract(epoch FROM completed_at) / $2::float8) * $2::float8 AS bucket,
                       sum(items_ok + items_failed), count(*)
                  FROM shards WHERE completed_at > now() - make_interval(secs => $1::float8)
                 GROUP BY 1 ORDER BY 1
                """, [String(windowSeconds), String(bucketSeconds)], operation: "throughput")
            return try (0..<result.rowCount).map { row in
                ThroughputSample(bucketStart: try result.date(row, 0), items: try result.int64(row, 1),
                                 shards: Int(try result.int64(row, 2)))
            }
        }
    }

    /// Failed items of a job in ordinal order, starting after `afterOrdinal`. Their errors come
    /// from the failure rows; source ids and paths the rows leave out (failures reported by a
    /// worker or a failed shard) from the shard manifests.
    public func failures(job: Int64, limit: Int = 100, afterOrdinal: Int64 = -1) async throws -> [ItemFailure] {
        let rows = try await session.run("list failures") { connection in
            let result = try connection.query("""
                SELECT ordinal, shard_index, source_id, path, error FROM failed_items
                 WHERE job_id = $1 AND ordinal > $2 ORDER BY ordinal LIMIT $3
                """, [String(job), String(afterOrdinal), String(limit)], operation: "list failures of job \(job)")
            return try Self.decodeFailureRows(result)
        }
        return try await named(rows, job: job)
    }

    /// A failure row: what `failed_items` holds of one item.
    struct FailureRow: Sendable {
        var ordinal: Int64
        var shard: Int
        var sourceID: String?
        var path: String?
        var error: String
    }

    static func decodeFailureRows(_ result: PGResult) throws -> [FailureRow] {
        try (0..<result.rowCount).map {
            FailureRow(ordinal: try result.int64($0, 0), shard: Int(try result.int64($0, 1)), sourceID: result.value($0, 2),
                       path: result.value($0, 3), error: try result.string($0, 4))
        }
    }

    /// `rows` as ``ItemFailure``s, naming each item from its shard's manifest where the row does
    /// not. A manifest that cannot be read leaves its items unnamed and says why in their errors,
    /// so listing failures never fails for it.
    func named(_ rows: [FailureRow], job: Int64) async throws -> [ItemFailure] {
        let shards = Set(rows.filter { $0.sourceID == nil && $0.shard >= 0 }.map(\.shard)).sorted()
        var names: [Int64: JobItem] = [:]
        var unreadable: [Int: String] = [:]
        if !shards.isEmpty {
            let (output, ranges) = try await session.run("read shard ranges") { connection -> (String, [(Int, Int64, Int64)]) in
                let r = try connection.query("""
                    SELECT s.shard_index, s.first_item, s.last_item, j.output_location FROM shards s JOIN jobs j ON j.id = s.job_id
                     WHERE s.job_id = $1 AND s.shard_index = ANY ($2::int[])
                    """, [String(job), "{" + shards.map(String.init).joined(separator: ",") + "}"],
                    operation: "read shard ranges of job \(job)")
                return (r.rowCount == 0 ? "" : try r.string(0, 3),
                        try (0..<r.rowCount).map { (Int(try r.int64($0, 0)), try r.int64($0, 1), try r.int64($0, 2)) })
            }
            for (index, first, last) in ranges {
                do {
                    let items = try await BlockingWork.run(name: "vtp-manifest") {
                        try ShardManifest.read(job: job, shard: index, first: first, last: last, outputLocation: output)
                    }
                    for item in items { names[Int64(item.ordinal)] = item }
                } catch let error as ShardManifestError {
                    unreadable[index] = error.description
                }
            }
        }
        return rows.map { row in
            if let sourceID = row.sourceID {
                return ItemFailure(ordinal: row.ordinal, sourceID: sourceID, path: row.path ?? "", error: row.error)
            }
            if let item = names[row.ordinal] {
                return ItemFailure(ordinal: row.ordinal, sourceID: item.sourceId, path: item.location.encoded, error: row.error)
            }
            let why = unreadable[row.shard] ?? "its shard manifest does not hold it"
            return ItemFailure(ordinal: row.ordinal, sourceID: "#\(row.ordinal)", path: "",
                               error: row.error + " (the item cannot be named: \(why))")
        }
    }

    // MARK: Workers

    /// Registers a worker or records its heartbeat and counters.
    public func upsertWorker(_ report: WorkerReport) async throws {
        try await upsertWorkers([report])
    }

    /// Registers workers or records their heartbeats and counters, in one statement: a
    /// coordinator of a thousand workers has a thousand heartbeats a second to write, which one
    /// round trip per worker cannot keep up with. A worker named twice gets its last report (one
    /// statement may not update a row twice).
    public func upsertWorkers(_ reports: [WorkerReport]) async throws {
        guard !reports.isEmpty else { return }
        var lastIndex: [String: Int] = [:]
        for (index, report) in reports.enumerated() { lastIndex[report.id] = index }
        let rows: [[String: Any]] = lastIndex.values.sorted().map { Self.workerRow(reports[$0]) }
        let json = String(decoding: try JSONSerialization.data(withJSONObject: rows), as: UTF8.self)
        let operation = rows.count == 1 ? "upsert worker \(reports[reports.count - 1].id)" : "upsert \(rows.count) workers"
        try await session.run("worker heartbeat") { connection in
            _ = try connection.query("""
                INSERT INTO workers (id, host, capabilities, state, current_job_id, current_shard_index,
                                     items_done, items_failed, images_per_second, memory_bytes, items_in_progress, last_heartbeat)
                SELECT r.id, r.host, r.capabilities::jsonb, r.state, r.job, r.shard, r.done, r.failed, r.rate, r.memory,
                       r.in_progress, now()
                  FROM jsonb_to_recordset($1::jsonb) AS r(id text, host text, capabilities text, state text, job bigint,
                                                          shard integer, done bigint, failed bigint, rate float8,
                                                          memory bigint, in_progress bigint)
                ON CONFLICT (id) DO UPDATE SET
                    host = EXCLUDED.host, capabilities = EXCLUDED.capabilities, state = EXCLUDED.state,
                    current_job_id = EXCLUDED.current_job_id, current_shard_index = EXCLUDED.current_shard_index,
                    items_done = EXCLUDED.items_done, items_failed = EXCLUDED.items_failed,
                    images_per_second = EXCLUDED.images_per_second, memory_bytes = EXCLUDED.memory_bytes,
                    items_in_progress = EXCLUDED.items_in_progress, last_heartbeat = now()
                """, [json], operation: operation)
        }
    }

    /// One worker's report as the JSON object `upsertWorkers` reads with jsonb_to_recordset.
    private static func workerRow(_ report: WorkerReport) -> [String: Any] {
        var row: [String: Any] = [:]
        row["id"] = report.id
        row["host"] = report.host
        row["capabilities"] = report.capabilitiesJSON
        row["state"] = report.state.rawValue
        row["job"] = report.currentShard.map { NSNumber(value: $0.jobID) } ?? NSNull()
        row["shard"] = report.currentShard.map { NSNumber(value: $0.index) } ?? NSNull()
        row["done"] = NSNumber(value: report.itemsDone)
        row["failed"] = NSNumber(value: report.itemsFailed)
        // JSON has no NaN or infinity; a rate that is not finite is no rate.
        row["rate"] = NSNumber(value: report.imagesPerSecond.isFinite ? report.imagesPerSecond : 0)
        row["memory"] = NSNumber(value: report.memoryBytes)
        row["in_progress"] = NSNumber(value: report.currentShard == nil ? 0 : report.itemsInProgress)
        return row
    }

    /// Every registered worker, by id.
    public func listWorkers() async throws -> [WorkerRecord] {
        try await session.run("list workers") { connection in
            let r = try connection.query("""
                SELECT id, host, capabilities::text, state, current_job_id, current_shard_index, items_done,
                       items_failed, images_per_second, memory_bytes, extract(epoch FROM registered_at)::float8,
                       extract(epoch FROM last_heartbeat)::float8
                  FROM workers ORDER BY id
                """, operation: "list workers")
            return try (0..<r.rowCount).map { row in
                var shard: ShardRef?
                if let job = try r.optionalInt64(row, 4), let index = try r.optionalInt64(row, 5) {
                    shard = ShardRef(jobID: job, index: Int32(truncatingIfNeeded: index))
                }
                let report = WorkerReport(
                    id: try r.string(row, 0), host: try r.string(row, 1), capabilitiesJSON: try r.string(row, 2),
                    state: try r.enumValue(row, 3, as: WorkerState.self), currentShard: shard,
                    itemsDone: try r.int64(row, 6), itemsFailed: try r.int64(row, 7),
                    imagesPerSecond: try r.double(row, 8), memoryBytes: try r.int64(row, 9))
                return WorkerRecord(report: report, registeredAt: try r.date(row, 10), lastHeartbeat: try r.date(row, 11))
            }
        }
    }

    /// Marks workers silent for longer than `seconds` offline; returns their ids.
    public func markSilentWorkersOffline(olderThanSeconds seconds: Double) async throws -> [String] {
        try await session.run("mark silent workers") { connection in
            let r = try connection.query("""
                UPDATE workers SET state = 'offline', current_job_id = NULL, current_shard_index = NULL, items_in_progress = 0
                 WHERE state <> 'offline' AND last_heartbeat < now() - make_interval(secs => $1::float8)
                RETURNING id
                """, [String(seconds)], operation: "mark silent workers offline")
            return try (0..<r.rowCount).map { try r.string($0, 0) }.sorted()
        }
    }
}
