import ArgumentParser
import Foundation
import Logging
import VTPQueue

/// `vtp db ...`: manage the PostgreSQL job ledger's schema.
struct DatabaseCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "db",
        abstract: "Manage the PostgreSQL job ledger.",
        subcommands: [Migrate.self, Version.self]
    )

    /// `vtp db migrate --database URL`
    struct Migrate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Apply the ledger migrations compiled into this binary (safe to run concurrently).")

        @Option(name: .long, help: "PostgreSQL URL, e.g. postgresql://user@host/db (defaults to $VTP_DATABASE_URL).")
        var database: String?

        func run() async throws {
            let url = try DatabaseCommand.resolve(database)
            let report = try await Migrator.migrate(database: url)
            if report.applied.isEmpty {
                print("\(url.redacted): schema up to date at version \(report.version)")
            } else {
                let versions = report.applied.map(String.init).joined(separator: ", ")
                print("\(url.redacted): applied migration(s) \(versions); schema now at version \(report.version)")
            }
        }
    }

    /// `vtp db version --database URL`
    struct Version: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check the ledger schema version against this binary's.")

        @Option(name: .long, help: "PostgreSQL URL (defaults to $VTP_DATABASE_URL).")
        var database: String?

        func run() async throws {
            let url = try DatabaseCommand.resolve(database)
            try await Ledger(database: url).verifySchema()
            print("\(url.redacted): schema at version \(Migration.latestVersion), matching this binary")
        }
    }

    static func resolve(_ option: String?) throws -> DatabaseURL {
        guard let text = option ?? ProcessInfo.processInfo.environment["VTP_DATABASE_URL"] else {
            throw ValidationError("--database URL is required (or set VTP_DATABASE_URL)")
        }
        return try DatabaseURL(text)
    }
}
