import Foundation
import Logging
import VTPConcurrency
import VTPVocabulary

/// A shard that left no output: it exhausted its attempts, or its job was cancelled before it was
/// processed. Its items are failures of the job.
public struct FailedShard: Sendable, Equatable {
    public var index: Int
    public var error: String
    public var items: [ItemFailure]

    /// The reason recorded for the items of a shard its job's cancel left unprocessed.
    public static let cancelledError = "job cancelled before this shard was processed"
}

extension Ledger {
    /// The shards of `job` in state `failed` or `cancelled`, each with its items (source id, path
    /// and the error the ledger recorded for them), so a finalizer can account for shards that left
    /// no output. A cancelled shard's error is `FailedShard.cancelledError`. The items come from the
    /// shard manifests (one shard in memory at a time), their errors from the failure rows.
    public func failedShards(job: Int64) async throws -> [FailedShard] {
        let shards = try await session.run("list failed shards") { connection -> [(Int, Int64, Int64, String)] in
            let r = try connection.query("""
                SELECT shard_index, first_item, last_item,
                       CASE WHEN state = 'cancelled' THEN $2 ELSE coalesce(last_error, '') END FROM shards
                 WHERE job_id = $1 AND state IN ('failed', 'cancelled') ORDER BY shard_index
                """, [String(job), FailedShard.cancelledError], operation: "list failed shards of job \(job)")
            return try (0..<r.rowCount).map { (Int(try r.int64($0, 0)), try r.int64($0, 1), try r.int64($0, 2), try r.string($0, 3)) }
        }
        var result: [FailedShard] = []
        for (index, first, last, error) in shards {
            let rows = try await session.run("list failed items") { connection in
                try Self.decodeFailureRows(try connection.query("""
                    SELECT ordinal, shard_index, source_id, path, error FROM failed_items
                     WHERE job_id = $1 AND shard_index = $2 ORDER BY ordinal
                    """, [String(job), String(index)], operation: "list failed items of shard \(index) of job \(job)"))
            }
            var byOrdinal = Dictionary(rows.map { ($0.ordinal, $0) }, uniquingKeysWith: { a, _ in a })
            // Every item of the shard is a failure; those without a row (a cancelled shard's) take
            // the shard's error, which the finalizer substitutes for an empty one.
            for ordinal in first...last where byOrdinal[ordinal] == nil {
                byOrdinal[ordinal] = FailureRow(ordinal: ordinal, shard: index, sourceID: nil, path: nil, error: "")
            }
            let items = try await named(byOrdinal.values.sorted { $0.ordinal < $1.ordinal }, job: job)
            result.append(FailedShard(index: index, error: error, items: items))
        }
        return result
    }
}

extension Ledger {
    /// The samples the listing of `job` could not turn into items (recorded by `enqueue` as failed
    /// items in no shard), in listing order, with their reasons.
    public func listingFailures(job: Int64) async throws -> [ItemFailure] {
        try await session.run("list listing failures") { connection in
            let rows = try connection.query("""
                SELECT ordinal, source_id, coalesce(path, ''), error FROM failed_items
                 WHERE job_id = $1 AND shard_index = -1 ORDER BY ordinal
                """, [String(job)], operation: "list listing failures of job \(job)")
            return try (0..<rows.rowCount).map {
                ItemFailure(ordinal: try rows.int64($0, 0), sourceID: try rows.string($0, 1),
                            path: try rows.string($0, 2), error: try rows.string($0, 3))
            }
        }
    }
}

extension Ledger {
    /// The second step of migration 0007: for every job whose items are still rows of the old
    /// `items` table, writes its shard manifests from them, then deletes the rows and clears
    /// the job's `item_rows` flag in one transaction (its failed items were copied by the SQL
    /// migration). Until then claims skip the job. Idempotent: a run that dies part-way rewrites
    /// the same files next time. `vtp run` and `vtp coordinator` call it at startup. Returns
    /// the ids of the jobs moved.
    @discardableResult
    public func moveItemRowsToManifests() async throws -> [Int64] {
        let jobs = try await session.run("find jobs with item rows") { connection -> [(Int64, String)] in
            let r = try connection.query("SELECT id, output_location FROM jobs WHERE item_rows ORDER BY id",
                                         operation: "find jobs with item rows")
            return try (0..<r.rowCount).map { (try r.int64($0, 0), try r.string($0, 1)) }
        }
        for (job, output) in jobs {
            let shards = try await session.run("list shards") { connection -> [(Int, Int64, Int64)] in
                let r = try connection.query("SELECT shard_index, first_item, last_item FROM shards WHERE job_id = $1 ORDER BY shard_index",
                                             [String(job)], operation: "list shards of job \(job)")
                return try (0..<r.rowCount).map { (Int(try r.int64($0, 0)), try r.int64($0, 1), try r.int64($0, 2)) }
            }
            for (index, first, last) in shards {
                let items = try await session.run("read item rows") { connection -> [JobItem] in
                    let r = try connection.query("""
                        SELECT ordinal, source_id, path, label, caption, metadata::text FROM items
                         WHERE job_id = $1 AND ordinal BETWEEN $2 AND $3 ORDER BY ordinal
                        """, [String(job), String(first), String(last)], operation: "read items of shard \(index) of job \(job)")
                    return try (0..<r.rowCount).map { row in
                        let path = try r.string(row, 2)
                        let location: ItemLocation
                        do { location = try ItemLocation(encoded: path) } catch {
                            throw LedgerError.malformedRow(column: "items.path", expected: "an item location (\((error as? ItemLocationParseError)?.detail ?? "\(error)"))", value: path)
                        }
                        var label: Int?
                        if let text: String = r.value(row, 3) {
                            guard let value = Int(text) else { throw LedgerError.malformedRow(column: "items.label", expected: "an integer", value: text) }
                            label = value
                        }
                        return JobItem(ordinal: Int(try r.int64(row, 0)), sourceId: try r.string(row, 1), location: location,
                                       label: label, caption: r.value(row, 4), metadata: r.value(row, 5))
                    }
                }
                guard items.count == Int(last - first + 1), items.first?.ordinal == Int(first) else {
                    throw LedgerError.malformedRow(column: "items", expected: "the \(last - first + 1) items of shard \(index) of job \(job)",
                                                   value: "\(items.count) rows")
                }
                try await BlockingWork.run(name: "vtp-manifest") {
                    try ShardManifest.write(job: job, shard: index, first: first, items: items, outputLocation: output)
                }
            }
            try await session.run("drop item rows", retry: .never) { connection in
                try connection.transaction(operation: "drop item rows of job \(job)") {
                    try connection.query("DELETE FROM items WHERE job_id = $1", [String(job)], operation: "delete item rows of job \(job)")
                    try connection.query("UPDATE jobs SET item_rows = false WHERE id = $1", [String(job)],
                                         operation: "clear item rows of job \(job)")
                }
            }
            logger.info("moved the items of job \(job) from ledger rows to shard manifests under \(output)")
        }
        return jobs.map(\.0)
    }
}
