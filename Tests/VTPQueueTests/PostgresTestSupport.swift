import Foundation
import VTPVocabulary
@testable import VTPQueue

/// Starts a throwaway PostgreSQL server (initdb in /tmp, Unix socket only), optionally migrates it,
/// runs `body`, and always stops the server and deletes its directory, even when `body` throws.
func withLedgerDatabase<T>(migrate: Bool = true,
                           _ body: (EmbeddedPostgres, DatabaseURL) async throws -> T) async throws -> T {
    let server = try EmbeddedPostgres.temporary()
    defer { try? server.stopBlocking() }  // also covers a crash of `body` with a thrown error
    try await server.start()
    if migrate { _ = try await Migrator.migrate(database: server.databaseURL) }
    let value = try await body(server, server.databaseURL)
    try await server.stop()
    return value
}

/// A lease policy short enough for tests to watch leases expire.
func quickLeases(_ seconds: Double = 0.4) -> LeasePolicy {
    LeasePolicy(leaseSeconds: seconds, backoffBaseSeconds: 0, backoffCapSeconds: 0)
}

func items(_ count: Int, prefix: String = "img") -> [JobItem] {
    (0..<count).map { JobItem(ordinal: $0, sourceId: "\(prefix)-\($0)", location: .file(path: "/data/\(prefix)/\($0).jpg"), label: $0 % 10) }
}

func testJob(shardSize: Int = 10, priority: Int32 = 0, maxAttempts: Int32 = 3) -> JobSpec {
    JobSpec(type: "encode", parametersJSON: #"{"resolution": 256}"#, model: "vtp-tiny", inputLocation: "/data/in",
            outputLocation: "/data/out", priority: priority, maxAttempts: maxAttempts, shardSize: shardSize)
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
}
