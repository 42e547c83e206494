import Foundation
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
    /// no output. A cancelled shard's error is `FailedShard.cancelledError`.
    public func failedShards(job: Int64) async throws -> [FailedShard] {
        try await session.run("list failed shards") { connection in
            let shards = try connection.query("""
                SELECT shard_index, CASE WHEN state = 'cancelled' THEN $2 ELSE coalesce(last_error, '') END FROM shards
                 WHERE job_id = $1 AND state IN ('failed', 'cancelled') ORDER BY shard_index
                """, [String(job), FailedShard.cancelledError], operation: "list failed shards of job \(job)")
            var result: [FailedShard] = []
            for row in 0..<shards.rowCount {
                let index = Int(try shards.int64(row, 0))
                let items = try connection.query("""
                    SELECT ordinal, source_id, path, coalesce(error, '') FROM items
                     WHERE job_id = $1 AND shard_index = $2 ORDER BY ordinal
                    """, [String(job), String(index)], operation: "list items of failed shard \(index) of job \(job)")
                result.append(FailedShard(index: index, error: try shards.string(row, 1), items: try (0..<items.rowCount).map {
                    ItemFailure(ordinal: try items.int64($0, 0), sourceID: try items.string($0, 1),
                                path: try items.string($0, 2), error: try items.string($0, 3))
                }))
            }
            return result
        }
    }
}

extension Ledger {
    /// The samples the listing of `job` could not turn into items (recorded by `enqueue` as failed
    /// items in no shard), in listing order, with their reasons.
    public func listingFailures(job: Int64) async throws -> [ItemFailure] {
        try await session.run("list listing failures") { connection in
            let rows = try connection.query("""
                SELECT ordinal, source_id, path, coalesce(error, '') FROM items
                 WHERE job_id = $1 AND shard_index = -1 ORDER BY ordinal
                """, [String(job)], operation: "list listing failures of job \(job)")
            return try (0..<rows.rowCount).map {
                ItemFailure(ordinal: try rows.int64($0, 0), sourceID: try rows.string($0, 1),
                            path: try rows.string($0, 2), error: try rows.string($0, 3))
            }
        }
    }
}
