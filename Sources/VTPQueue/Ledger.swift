import Foundation
import Logging
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
    private let logger: Logger

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

    /// Inserts a job, its shards and its items in one transaction (items streamed with COPY),
    /// and notifies idle coordinators. Returns the job id.
    ///
    /// `items[i].ordinal` must be `i`. `skipped` (samples the listing could not turn into items)
    /// are recorded as failed items after the real ones, in no shard, so the job's counts,
    /// `failures` and the finalizer report them.
    ///
    /// Not retried after a connection loss: the commit may have happened, so the caller decides.
    /// `listingDigest` fingerprints the listing the items came from (``ListingDigest``), so a
    /// later run can tell whether the input changed without reading every item back.
    public func enqueue(_ spec: JobSpec, items: [JobItem], skipped: [SkippedSample] = [],
                        listingDigest: String? = nil) async throws -> Int64 {
        try spec.validate()
        guard !items.isEmpty else { throw LedgerError.invalidArgument(field: "items", expected: "at least one item") }
        if let bad = items.indices.first(where: { items[$0].ordinal != $0 }) {
            throw LedgerError.invalidArgument(field: "items[\(bad)].ordinal", expected: "\(bad) (ordinals are the listing positions)")
        }
        let shardSize = spec.shardSize
        let shardCount = (items.count + shardSize - 1) / shardSize
        guard shardCount <= Int(Int32.max) else {
            throw LedgerError.invalidArgument(field: "job.shardSize", expected: "fewer than 2^31 shards")
        }
        return try await session.run("enqueue job", retry: .never) { connection in
            try connection.transaction(operation: "enqueue job") {
                let inserted = try connection.query("""
                    INSERT INTO jobs (type, parameters, model, input_location, output_location, priority,
                                      max_attempts, shard_count, item_count, items_failed, listing_digest)
                    VALUES ($1, $2::jsonb, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id
                    """, [spec.type, spec.parametersJSON, spec.model, spec.inputLocation, spec.outputLocation,
                          String(spec.priority), String(spec.maxAttempts), String(shardCount),
                          String(items.count + skipped.count), String(skipped.count), listingDigest],
                    operation: "insert job")
                let jobID = try inserted.int64(0, 0)
                try connection.query("""
                    INSERT INTO shards (job_id, shard_index, priority, first_item, last_item)
                    SELECT $1, g, $2, g::bigint * $3, least((g::bigint + 1) * $3, $4) - 1
                      FROM generate_series(0, $5 - 1) AS g
                    """, [String(jobID), String(spec.priority), String(shardSize), String(items.count),
                          String(shardCount)], operation: "insert shards")
                try Self.copyItems(items, skipped: skipped, jobID: jobID, shardSize: shardSize, connection: connection)
                try connection.query("SELECT pg_notify($1, $2)", [Self.workChannel, String(jobID)],
                                     operation: "notify new work")
                return jobID
            }
        }
    }

    /// Adds items to an existing job (its input grew: `vtp run --update`) as new shards after its
    /// last one, so nothing already done runs again. The new items' ordinals follow the job's
    /// last; their own `ordinal` fields are ignored. A finished job runs again for them (and is
    /// finalized again, over everything). Returns how many shards were added.
    @discardableResult
    public func appendItems(job: Int64, items: [JobItem], skipped: [SkippedSample] = [], shardSize: Int,
                            listingDigest: String?) async throws -> Int {
        guard shardSize > 0 else { throw LedgerError.invalidArgument(field: "shardSize", expected: "a positive shard size") }
        return try await session.run("append items", retry: .never) { connection in
            try connection.transaction(operation: "append items to job \(job)") {
                let current = try connection.query(
                    "SELECT item_count, shard_count FROM jobs WHERE id = $1 FOR UPDATE", [String(job)],
                    operation: "lock job \(job)")
                guard current.rowCount > 0 else { throw LedgerError.jobNotFound(job) }
                let firstOrdinal = try current.int64(0, 0), firstShard = Int(try current.int64(0, 1))
                let newShards = (items.count + shardSize - 1) / shardSize
                guard firstShard + newShards <= Int(Int32.max) else {
                    throw LedgerError.invalidArgument(field: "job.shardSize", expected: "fewer than 2^31 shards")
                }
                if newShards > 0 {
                    try connection.query("""
                        INSERT INTO shards (job_id, shard_index, priority, first_item, last_item)
                        SELECT j.id, $2 + g, j.priority, $3 + g::bigint * $4, $3 + least((g::bigint + 1) * $4, $5) - 1
                          FROM jobs j, generate_series(0, $6 - 1) AS g WHERE j.id = $1
                        """, [String(job), String(firstShard), String(firstOrdinal), String(shardSize), String(items.count),
                              String(newShards)], operation: "insert shards of job \(job)")
                }
                try Self.copyItems(items, skipped: skipped, jobID: job, shardSize: shardSize, firstOrdinal: firstOrdinal,
                                   firstShard: firstShard, connection: connection)
                try connection.query("""
                    UPDATE jobs
                       SET shard_count = shard_count + $2, item_count = item_count + $3, items_failed = items_failed + $4,
                           listing_digest = $5,
                           state = CASE WHEN $2 > 0 AND state IN ('completed', 'completed_with_failures') THEN 'running' ELSE state END,
                           finished_at = CASE WHEN $2 > 0 AND state IN ('completed', 'completed_with_failures') THEN NULL ELSE finished_at END,
                           updated_at = now()
                     WHERE id = $1
                    """, [String(job), String(newShards), String(items.count + skipped.count), String(skipped.count),
                          listingDigest], operation: "update job \(job)")
                try connection.query("SELECT pg_notify($1, $2)", [Self.workChannel, String(job)], operation: "notify new work")
                return newShards
            }
        }
    }

    /// The source id of every item of `job`, the listing's skipped samples included (they have
    /// ordinals too), for comparing the job with a new listing of its input.
    public func sourceIDs(job: Int64) async throws -> Set<String> {
        try await session.run("read source ids") { connection in
            let result = try connection.query("SELECT source_id FROM items WHERE job_id = $1", [String(job)],
                                              operation: "read source ids of job \(job)")
            var ids = Set<String>(minimumCapacity: result.rowCount)
            for row in 0..<result.rowCount { ids.insert(try result.string(row, 0)) }
            return ids
        }
    }

    private static func copyItems(_ items: [JobItem], skipped: [SkippedSample], jobID: Int64, shardSize: Int,
                                  firstOrdinal: Int64 = 0, firstShard: Int = 0, connection: PGConnection) throws {
        let operation = "copy items"
        try connection.copyIn(
            "COPY items (job_id, ordinal, shard_index, source_id, path, label, caption, metadata, state, error) FROM STDIN",
            operation: operation) { send in
            let chunkBytes = 1 << 20
            var encoder = CopyTextEncoder(reservingCapacity: chunkBytes + 4096)
            func flushIfFull() throws {
                if encoder.bytes.count >= chunkBytes {
                    try encoder.bytes.withUnsafeBytes { try send($0) }
                    encoder.reset()
                }
            }
            for (position, item) in items.enumerated() {
                encoder.appendField(jobID)
                encoder.appendField(firstOrdinal + Int64(position))
                encoder.appendField(Int64(firstShard + position / shardSize))
                encoder.appendField(item.sourceId)
                encoder.appendField(item.location.encoded)
                encoder.appendField(item.label.map(String.init))
                encoder.appendField(item.caption)
                encoder.appendField(item.metadata)
                encoder.appendField("pending")
                encoder.appendField(nil)
                encoder.endRow()
                try flushIfFull()
            }
            for (k, sample) in skipped.enumerated() {
                encoder.appendField(jobID)
                encoder.appendField(firstOrdinal + Int64(items.count + k))
                encoder.appendField(-1)
                encoder.appendField(sample.sourceId)
                encoder.appendField("")
                encoder.appendField(nil)
                encoder.appendField(nil)
                encoder.appendField(nil)
                encoder.appendField("failed")
                encoder.appendField(sample.reason)
                encoder.endRow()
                try flushIfFull()
            }
            try encoder.bytes.withUnsafeBytes { try send($0) }
        }
    }

    // MARK: Leases

    /// Leases the next eligible shard — highest priority, then oldest job, then lowest index —
    /// skipping rows other claimers hold, and returns it with its unfinished items; nil when no
    /// shard is eligible. The lease token and expiry are set in the same statement.
    ///
    /// - Parameter job: restrict the claim to one job (benchmarks, tests, job-pinned workers).
    public func claimNextShard(owner: String, job: Int64? = nil) async throws -> ClaimedShard? {
        let lease = leasePolicy.leaseSeconds
        // Retrying after a lost connection is safe: a claim whose reply was lost just expires.
        return try await session.run("claim next shard") { connection in
            let result = try connection.query(Self.claimSQL, [owner, String(lease), job.map { String($0) }],
                                              operation: "claim next shard")
            return try Self.decodeClaim(result)
        }
    }

    static let claimSQL = """
        WITH candidate AS (
            SELECT job_id, shard_index FROM shards
             WHERE state = 'pending' AND next_eligible_at <= now()
               AND ($3::bigint IS NULL OR job_id = $3::bigint)
               -- A shard requeued (expired, handed back) while its job is paused or failed waits.
               AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = shards.job_id AND j.state IN ('paused', 'failed', 'cancelled'))
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
               i.ordinal, i.source_id, i.path, i.label, i.caption, i.metadata::text,
               c.isolated, i.state, i.error
          FROM claimed c
          JOIN jobs j ON j.id = c.job_id
          -- Items of a claimable shard are failed only when they crashed workers (retries reset
          -- every item of the shards they re-open): those come along as excluded.
          LEFT JOIN items i ON i.job_id = c.job_id AND i.ordinal BETWEEN c.first_item AND c.last_item
                           AND i.state IN ('pending', 'failed')
         ORDER BY i.ordinal
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
        shard.isolated = try result.string(0, 18) == "t"
        shard.items.reserveCapacity(result.rowCount)
        for row in 0..<result.rowCount where result.value(row, 12) != nil {
            if try result.string(row, 19) == "failed" {
                shard.excluded.append(ExcludedItem(ordinal: Int(try result.int64(row, 12)), sourceId: try result.string(row, 13),
                                                   reason: result.value(row, 20) ?? "crashed workers"))
                continue
            }
            let path = try result.string(row, 14)
            let location: ItemLocation
            do { location = try ItemLocation(encoded: path) } catch {
                throw LedgerError.malformedRow(column: "items.path", expected: "an item location (\(error.detail))", value: path)
            }
            var label: Int?
            if let text: String = result.value(row, 15) {
                guard let value = Int(text) else { throw LedgerError.malformedRow(column: "items.label", expected: "an integer", value: text) }
                label = value
            }
            shard.items.append(JobItem(ordinal: Int(try result.int64(row, 12)), sourceId: try result.string(row, 13),
                                       location: location, label: label, caption: result.value(row, 16),
                                       metadata: result.value(row, 17)))
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
    /// changes and the rejection is counted on the job. Items missing from `results` are marked
    /// failed; per-item failures never fail the shard. Finishes the job after its last shard.
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

    /// Deletes a job with its shards and items.
    public func deleteJob(_ job: Int64) async throws {
        let deleted = try await session.run("delete job") { connection in
            try connection.query("DELETE FROM jobs WHERE id = $1", [String(job)], operation: "delete job \(job)")
                .affectedRows
        }
        if deleted == 0 { throw LedgerError.jobNotFound(job) }
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

    /// Failed items of a job in ordinal order, starting after `afterOrdinal`.
    public func failures(job: Int64, limit: Int = 100, afterOrdinal: Int64 = -1) async throws -> [ItemFailure] {
        try await session.run("list failures") { connection in
            let result = try connection.query("""
                SELECT ordinal, source_id, path, coalesce(error, '') FROM items
                 WHERE job_id = $1 AND state = 'failed' AND ordinal > $2 ORDER BY ordinal LIMIT $3
                """, [String(job), String(afterOrdinal), String(limit)], operation: "list failures of job \(job)")
            return try (0..<result.rowCount).map { row in
                ItemFailure(ordinal: try result.int64(row, 0), sourceID: try result.string(row, 1),
                            path: try result.string(row, 2), error: try result.string(row, 3))
            }
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
