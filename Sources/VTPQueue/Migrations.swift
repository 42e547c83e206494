import Foundation
import VTPVocabulary
import Logging

/// One numbered schema change.
public struct Migration: Sendable, Equatable {
    /// The number in the file name (`0001_ledger.sql` is version 1).
    public var version: Int
    /// The file name.
    public var name: String
    public var sql: String

    public init(version: Int, name: String, sql: String) {
        self.version = version
        self.name = name
        self.sql = sql
    }

    /// FNV-1a 64 of the SQL, recorded with the migration so edits to applied files are caught.
    public var checksum: String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in sql.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        return String(hash, radix: 16)
    }

    /// Parses `NNNN_description.sql` file names; nil for anything else.
    public static func version(fromFileName name: String) -> Int? {
        guard name.hasSuffix(".sql"), let underscore = name.firstIndex(of: "_") else { return nil }
        return Int(name[..<underscore])
    }

    /// The latest version this binary knows.
    public static var latestVersion: Int { EmbeddedMigrations.all.map(\.version).max() ?? 0 }
}

/// A migration already recorded in the database.
public struct AppliedMigration: Sendable, Equatable {
    public var version: Int
    public var name: String
    public var checksum: String
}

/// Decides the next migration to apply from what the database has and what the binary knows;
/// pure so the rules are tested without a server.
public enum MigrationPlanner {
    /// The next migration to apply, or nil when the database is up to date.
    /// Throws when the database is ahead of the binary or an applied migration was edited.
    public static func next(applied: [AppliedMigration], known: [Migration]) throws -> Migration? {
        let knownByVersion = Dictionary(known.map { ($0.version, $0) }, uniquingKeysWith: { first, _ in first })
        let latestKnown = known.map(\.version).max() ?? 0
        if let newest = applied.map(\.version).max(), newest > latestKnown {
            throw LedgerError.schemaTooNew(databaseVersion: newest, binaryVersion: latestKnown)
        }
        for record in applied {
            guard let migration = knownByVersion[record.version] else {
                throw LedgerError.schemaTooNew(databaseVersion: record.version, binaryVersion: latestKnown)
            }
            if migration.checksum != record.checksum {
                throw LedgerError.migrationChecksumMismatch(version: record.version, name: record.name)
            }
        }
        let done = Set(applied.map(\.version))
        return known.sorted { $0.version < $1.version }.first { !done.contains($0.version) }
    }
}

/// What a migration run did.
public struct MigrationReport: Sendable, Equatable {
    /// Versions this run applied, in order (empty when already up to date).
    public var applied: [Int]
    /// The schema version afterwards.
    public var version: Int
}

/// Applies the embedded migrations, each in its own transaction under an advisory lock so that
/// concurrent migrators apply every migration exactly once.
public enum Migrator {
    /// Arbitrary constant shared by every vtp migrator ("vtp.schema" in ASCII, truncated).
    static let advisoryLockKey = "7671170839233213541"

    static let createVersionTable = """
        CREATE TABLE IF NOT EXISTS vtp_schema_migrations (
            version     integer PRIMARY KEY,
            name        text NOT NULL,
            checksum    text NOT NULL,
            applied_at  timestamptz NOT NULL DEFAULT now()
        )
        """

    /// Brings the database at `database` up to the latest migration.
    public static func migrate(database: DatabaseURL, migrations: [Migration] = EmbeddedMigrations.all,
                               logger: Logger = Logger(label: "vtp.db")) async throws -> MigrationReport {
        let session = DatabaseSession(url: database, name: "vtp-migrate", reconnect: ReconnectPolicy(deadline: 5),
                                      logger: logger)
        var applied: [Int] = []
        while true {
            let step = try await session.run("apply migration", retry: .never) { connection -> Int? in
                try connection.transaction(operation: "apply migration") {
                    try connection.query("SELECT pg_advisory_xact_lock($1::bigint)", [advisoryLockKey],
                                         operation: "lock schema")
                    try connection.execute(createVersionTable, operation: "create schema version table")
                    let done = try readApplied(connection)
                    guard let next = try MigrationPlanner.next(applied: done, known: migrations) else { return nil }
                    try connection.execute(next.sql, operation: "apply migration \(next.name)")
                    try connection.query(
                        "INSERT INTO vtp_schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                        [String(next.version), next.name, next.checksum], operation: "record migration \(next.name)")
                    return next.version
                }
            }
            guard let step else { break }
            logger.info("applied migration \(step) to \(database.redacted)")
            applied.append(step)
        }
        let version = try await session.run("read schema version") { try schemaVersion($0) }
        return MigrationReport(applied: applied, version: version)
    }

    static func readApplied(_ connection: PGConnection) throws -> [AppliedMigration] {
        let result = try connection.query("SELECT version, name, checksum FROM vtp_schema_migrations ORDER BY version",
                                          operation: "read applied migrations")
        return try (0..<result.rowCount).map { row in
            AppliedMigration(version: Int(try result.int64(row, 0)), name: try result.string(row, 1),
                             checksum: try result.string(row, 2))
        }
    }

    /// The highest applied version, 0 for an empty database.
    static func schemaVersion(_ connection: PGConnection) throws -> Int {
        let exists = try connection.query("SELECT to_regclass('vtp_schema_migrations') IS NOT NULL",
                                          operation: "read schema version")
        guard try exists.bool(0, 0) else { return 0 }
        let result = try connection.query("SELECT coalesce(max(version), 0) FROM vtp_schema_migrations",
                                          operation: "read schema version")
        return Int(try result.int64(0, 0))
    }
}
