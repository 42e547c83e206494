import ArgumentParser
import Foundation
import VTPConcurrency
import VTPJobs
import VTPVocabulary
import Logging
import VTPMetrics
import VTPQueue

/// `vtp db ...`: manage the PostgreSQL job ledger's schema.
struct DatabaseCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "db",
        abstract: "Manage the PostgreSQL job ledger.",
        subcommands: [Migrate.self, Version.self]
    )

    /// `vtp db migrate [--database URL | --config FILE] [--json]`
    struct Migrate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Apply the ledger migrations compiled into this binary (safe to run concurrently).",
            discussion: #"JSON (--json): {"database" (password redacted), "applied" (versions this run applied), "version" (schema version now), "binary_version"}"#)

        @OptionGroup var cluster: ClusterOptions

        func run() async throws {
            let url = try cluster.databaseURL()
            // stdout carries the result (JSON with --json); library logging goes to stderr, errors only.
            let logger = Logger(label: "vtp.db") { StructuredLogHandler(label: $0, level: .error) }
            let report = try await cluster.ledgerCall(Ledger(database: url)) { _ in
                try await Migrator.migrate(database: url, logger: logger)
            }
            let view = SchemaReport(database: url.redacted, applied: report.applied, version: report.version,
                                    binaryVersion: Migration.latestVersion)
            try cluster.emit(view) {
                if report.applied.isEmpty { return "\(url.redacted): schema up to date at version \(report.version)\n" }
                let versions = report.applied.map(String.init).joined(separator: ", ")
                return "\(url.redacted): applied migration(s) \(versions); schema now at version \(report.version)\n"
            }
        }
    }

    /// `vtp db version [--database URL | --config FILE] [--json]`
    struct Version: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check the ledger schema version against this binary's.",
            discussion: #"JSON (--json): {"database", "applied": [], "version", "binary_version"}; a schema that does not match this binary is an error (exit status 1)."#)

        @OptionGroup var cluster: ClusterOptions

        func run() async throws {
            let url = try cluster.databaseURL()
            let ledger = Ledger(database: url, reconnect: ReconnectPolicy(initialDelay: 0.1, maximumDelay: 0.4, deadline: 1),
                                logger: Logger(label: "vtp.db") { StructuredLogHandler(label: $0, level: .error) })
            try await cluster.ledgerCall(ledger) { try await $0.verifySchema() }
            let view = SchemaReport(database: url.redacted, applied: [], version: Migration.latestVersion,
                                    binaryVersion: Migration.latestVersion)
            try cluster.emit(view) { "\(url.redacted): schema at version \(Migration.latestVersion), matching this binary\n" }
        }
    }
}

/// `vtp db migrate|version --json`.
struct SchemaReport: Encodable {
    var database: String
    var applied: [Int]
    var version: Int
    var binaryVersion: Int

    enum CodingKeys: String, CodingKey {
        case database, applied, version, binaryVersion = "binary_version"
    }
}
