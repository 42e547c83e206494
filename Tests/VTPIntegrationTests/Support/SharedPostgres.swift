import Foundation
import Synchronization
import VTPVocabulary
@testable import VTPQueue

/// One PostgreSQL server for the whole integration test process, started on first use and stopped
/// when the process exits. Every test gets a database of its own on it (jobs, workers and NOTIFY
/// channels are per database), so tests stay independent without paying initdb each time.
/// Tests that stop or restart a server start a private one instead (``withPrivateLedgerServer``).
enum SharedPostgres {
    /// A fresh database on the shared server (migrated unless `migrate` is false), dropped after
    /// `body` whether or not it throws. `body` gets the database's URL and the same as a string
    /// for `vtp --database`.
    static func withDatabase<T>(migrate: Bool = true,
                                _ body: (_ url: DatabaseURL, _ connection: String) async throws -> T) async throws -> T {
        let server = try await fixture.server()
        let name = "vtp_test_\(counter.add(1, ordering: .relaxed).newValue)"
        let admin = Ledger(database: server.databaseURL)
        try await admin.execute("CREATE DATABASE \(name)")
        let connection = server.connectionURL.replacingOccurrences(of: "@/postgres?", with: "@/\(name)?")
        let url = try DatabaseURL(connection)
        do {
            if migrate { _ = try await Migrator.migrate(database: url) }
            let value = try await body(url, connection)
            try await admin.execute("DROP DATABASE \(name) WITH (FORCE)")
            return value
        } catch {
            try? await admin.execute("DROP DATABASE \(name) WITH (FORCE)")
            throw error
        }
    }

    private static let fixture = Fixture()
    private static let counter = Atomic<Int>(0)

    /// Starts the server once, however many tests ask at the same time.
    private actor Fixture {
        private var starting: Task<EmbeddedPostgres, any Error>?

        func server() async throws -> EmbeddedPostgres {
            if let starting { return try await starting.value }
            let start = Task {
                let server = try EmbeddedPostgres.temporary()
                try await server.start()
                startedServer.withLock { $0 = server }
                atexit { startedServer.withLock { try? $0?.stopBlocking() } }
                return server
            }
            starting = start
            return try await start.value
        }
    }
}

/// The shared server, for the exit handler (which cannot capture anything).
private let startedServer = Mutex<EmbeddedPostgres?>(nil)

/// A migrated database on the shared server, for ledger tests.
func withLedgerDatabase<T>(migrate: Bool = true, _ body: (DatabaseURL) async throws -> T) async throws -> T {
    try await SharedPostgres.withDatabase(migrate: migrate) { url, _ in try await body(url) }
}

/// A throwaway server of its own (initdb in /tmp, Unix socket only), for tests that stop or
/// restart it; always stopped and deleted, even when `body` throws.
func withPrivateLedgerServer<T>(migrate: Bool = true,
                                _ body: (EmbeddedPostgres, DatabaseURL) async throws -> T) async throws -> T {
    let server = try EmbeddedPostgres.temporary()
    defer { try? server.stopBlocking() }
    try await server.start()
    if migrate { _ = try await Migrator.migrate(database: server.databaseURL) }
    let value = try await body(server, server.databaseURL)
    try await server.stop()
    return value
}

extension Ledger {
    /// Runs raw SQL for assertions and fault injection; returns the first column of every row.
    func sql(_ text: String, _ parameters: [String?] = []) async throws -> [String?] {
        try await session.run("test query") { connection in
            let result = try connection.query(text, parameters, operation: "test query")
            return (0..<result.rowCount).map { result.value($0, 0) }
        }
    }

    func scalar(_ text: String, _ parameters: [String?] = []) async throws -> String? {
        try await sql(text, parameters).first ?? nil
    }

    /// Runs a statement that must not be in a transaction block (CREATE / DROP DATABASE).
    func execute(_ text: String) async throws {
        try await session.run("test statement") { connection in
            _ = try connection.execute(text, operation: "test statement")
        }
    }
}

/// One item of a job as the ledger layout of migration 0007 records it: listed in its shard's
/// manifest (or, shard -1, a listing failure), failed when it has a failure row or its shard
/// failed, done when its shard completed without a failure row for it, pending otherwise.
struct RecordedItem: Equatable, Sendable {
    var ordinal: Int
    var shardIndex: Int
    var sourceId: String
    /// The encoded ``ItemLocation`` (empty for a listing failure).
    var location: String
    /// `done`, `failed` or `pending`.
    var state: String
    var error: String?
}

extension Ledger {
    /// Every item of `job` in ordinal order, read the way the product reads them (the shards'
    /// manifests through ``forEachShardItems``, the failure rows), so exactly-once checks see the
    /// new layout: each listed item once, in the shard its ordinal falls in.
    func recordedItems(job: Int64) async throws -> [RecordedItem] {
        var shardStates: [Int: String] = [:]
        for row in try await sql("SELECT shard_index || chr(9) || state FROM shards WHERE job_id = $1", [String(job)]).compactMap({ $0 }) {
            let parts = row.split(separator: "\t")
            shardStates[Int(parts[0])!] = String(parts[1])
        }
        var failureRows: [Int: (shard: Int, sourceId: String?, error: String)] = [:]
        for row in try await sql("""
            SELECT json_build_array(ordinal, shard_index, source_id, error)::text FROM failed_items WHERE job_id = $1
            """, [String(job)]).compactMap({ $0 }) {
            let fields = try JSONSerialization.jsonObject(with: Data(row.utf8)) as? [Any] ?? []
            failureRows[(fields[0] as? NSNumber)?.intValue ?? -1] = ((fields[1] as? NSNumber)?.intValue ?? -2, fields[2] as? String,
                                                                     fields[3] as? String ?? "")
        }
        var items: [RecordedItem] = []
        try await forEachShardItems(job: job) { shard, shardItems in
            for item in shardItems {
                let failure = failureRows[item.ordinal]
                let shardState = shardStates[shard] ?? "?"
                let state = failure != nil || shardState == "failed" || shardState == "cancelled" ? "failed"
                    : shardState == "done" ? "done" : "pending"
                items.append(RecordedItem(ordinal: item.ordinal, shardIndex: shard, sourceId: item.sourceId,
                                          location: item.location.encoded, state: state, error: failure?.error))
            }
        }
        for (ordinal, failure) in failureRows where failure.shard == -1 {
            items.append(RecordedItem(ordinal: ordinal, shardIndex: -1, sourceId: failure.sourceId ?? "", location: "",
                                      state: "failed", error: failure.error))
        }
        return items.sorted { $0.ordinal < $1.ordinal }
    }
}
