import Foundation
import Testing
import VTPVocabulary
@testable import VTPQueue

@Suite("Migrations against a real PostgreSQL")
struct MigrationTests {
    @Test func migratesFromEmptyAndRerunIsANoOp() async throws {
        try await withLedgerDatabase(migrate: false) { url in
            let ledger = Ledger(database: url)
            await #expect(throws: LedgerError.schemaOutdated(databaseVersion: 0, binaryVersion: Migration.latestVersion)) {
                try await ledger.verifySchema()
            }
            let first = try await Migrator.migrate(database: url)
            #expect(first.applied == EmbeddedMigrations.all.map(\.version))
            #expect(first.version == Migration.latestVersion)
            try await ledger.verifySchema()
            let tables = try await ledger.sql("""
                SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename
                """).compactMap { $0 }
            #expect(tables == ["failed_items", "items", "jobs", "shards", "vtp_schema_migrations", "workers"])

            let second = try await Migrator.migrate(database: url)
            #expect(second.applied.isEmpty)
            #expect(second.version == Migration.latestVersion)
            #expect(try await ledger.scalar("SELECT count(*) FROM vtp_schema_migrations") == "\(Migration.latestVersion)")
        }
    }

    @Test func concurrentMigratorsApplyEachMigrationOnce() async throws {
        try await withLedgerDatabase(migrate: false) { url in
            let reports = try await withThrowingTaskGroup(of: MigrationReport.self) { group in
                for _ in 0..<4 { group.addTask { try await Migrator.migrate(database: url) } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let applied = reports.flatMap(\.applied).sorted()
            #expect(applied == EmbeddedMigrations.all.map(\.version))
            #expect(reports.allSatisfy { $0.version == Migration.latestVersion })
            let ledger = Ledger(database: url)
            try await ledger.verifySchema()
        }
    }

    @Test func refusesASchemaNewerThanTheBinary() async throws {
        try await withLedgerDatabase { url in
            let ledger = Ledger(database: url)
            let future = Migration.latestVersion + 1
            _ = try await ledger.sql("INSERT INTO vtp_schema_migrations (version, name, checksum) VALUES ($1, 'future.sql', 'x')",
                                     [String(future)])
            await #expect(throws: LedgerError.schemaTooNew(databaseVersion: future, binaryVersion: Migration.latestVersion)) {
                try await ledger.verifySchema()
            }
            await #expect(throws: LedgerError.schemaTooNew(databaseVersion: future, binaryVersion: Migration.latestVersion)) {
                try await Migrator.migrate(database: url)
            }
        }
    }

    @Test func embeddedServerReusesItsDataDirectory() async throws {
        var template = Array("/tmp/vtp-state-XXXXXX".utf8CString)
        let state = URL(fileURLWithPath: String(cString: try #require(mkdtemp(&template))))
        defer { try? FileManager.default.removeItem(at: state) }
        var serverDirectory: URL?
        // As root the server's files live under the server root, not in the (0700) state directory.
        defer { if let serverDirectory { try? FileManager.default.removeItem(at: serverDirectory) } }
        do {
            let server = try EmbeddedPostgres(stateDirectory: state, configuration: .init(unsafeFastWrites: true))
            serverDirectory = server.serverDirectory
            defer { try? server.stopBlocking() }
            try await server.start()
            _ = try await Migrator.migrate(database: server.databaseURL)
            _ = try await Ledger(database: server.databaseURL).enqueue(testJob(), items: items(5))
            #expect(server.connectionURL.hasPrefix("postgresql://postgres@/postgres?host="))
            let conf = try String(contentsOf: server.dataDirectory.appendingPathComponent("postgresql.conf"), encoding: .utf8)
            #expect(conf.contains("listen_addresses = ''"))
            try await server.stop()
        }
        let again = try EmbeddedPostgres(stateDirectory: state, configuration: .init(unsafeFastWrites: true))
        defer { try? again.stopBlocking() }
        #expect(again.serverDirectory == serverDirectory)
        try await again.start()
        let ledger = Ledger(database: again.databaseURL)
        try await ledger.verifySchema()
        #expect(try await ledger.listJobs().map(\.itemCount) == [5])
    }
}
