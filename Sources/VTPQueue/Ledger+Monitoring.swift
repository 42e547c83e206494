import Foundation
import VTPVocabulary

/// Read-only queries the monitoring commands (`vtp status`, `vtp workers`, `vtp top`) need
/// beyond the coordinator's API.
extension Ledger {
    /// The database server's clock. Ages (heartbeats, job runtimes) are measured against it, so a
    /// CLI on a machine with a skewed clock still reports them correctly.
    public func databaseTime() async throws -> Date {
        try await session.run("read database clock") { connection in
            try connection.query("SELECT extract(epoch FROM now())::float8", operation: "read database clock")
                .date(0, 0)
        }
    }

    /// Items resolved per second across all jobs over the last `windowSeconds`, by shard completion time.
    public func clusterItemsPerSecond(windowSeconds: Double = 60) async throws -> Double {
        guard windowSeconds > 0 else { throw LedgerError.invalidArgument(field: "windowSeconds", expected: "> 0") }
        return try await session.run("cluster throughput") { connection in
            try connection.query("""
                SELECT coalesce(sum(items_ok + items_failed), 0)::float8 / $1::float8 FROM shards
                 WHERE completed_at > now() - make_interval(secs => $1::float8)
                """, [String(windowSeconds)], operation: "cluster throughput").double(0, 0)
        }
    }
}

extension Ledger {
    /// Shards waiting (`pending`, including those backing off) and in flight (`leased`) across all
    /// jobs: the coordinator's queue-depth and in-flight gauges. Both counts use partial indexes.
    public func queueCounts() async throws -> (pending: Int, leased: Int) {
        try await session.run("queue counts") { connection in
            let result = try connection.query("""
                SELECT (SELECT count(*) FROM shards WHERE state = 'pending'),
                       (SELECT count(*) FROM shards WHERE state = 'leased')
                """, operation: "queue counts")
            return (Int(try result.int64(0, 0)), Int(try result.int64(0, 1)))
        }
    }
}

extension Ledger {
    /// On-disk bytes of every table of the ledger's schema with its indexes and TOAST data
    /// (`pg_total_relation_size`), by table name: what the ledger costs in storage, whatever
    /// layout its items have.
    public func relationBytes() async throws -> [String: Int64] {
        try await session.run("relation sizes") { connection in
            let result = try connection.query("""
                SELECT c.relname, pg_total_relation_size(c.oid)::bigint
                  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE c.relkind IN ('r', 'p') AND n.nspname = current_schema()
                """, operation: "relation sizes")
            var sizes: [String: Int64] = [:]
            for row in 0..<result.rowCount { sizes[try result.string(row, 0)] = try result.int64(row, 1) }
            return sizes
        }
    }
}
