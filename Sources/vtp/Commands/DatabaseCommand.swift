import ArgumentParser
import Foundation
import VTPConcurrency
import VTPJobs
import VTPVocabulary
import Logging
import VTPQueue

/// `vtp db ...`: manage the PostgreSQL job ledger's schema.
struct DatabaseCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "db",
        abstract: "Manage the PostgreSQL job ledger.",
        subcommands: [Migrate.self, Version.self]
    )

    /// `vtp db migrate [--database URL | --config FILE]`
    struct Migrate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Apply the ledger migrations compiled into this binary (safe to run concurrently).")

        @OptionGroup var cluster: ClusterOptions

        func run() async throws {
            let url = try cluster.databaseURL()
            let report = try await Migrator.migrate(database: url)
            if report.applied.isEmpty {
                print("\(url.redacted): schema up to date at version \(report.version)")
            } else {
                let versions = report.applied.map(String.init).joined(separator: ", ")
                print("\(url.redacted): applied migration(s) \(versions); schema now at version \(report.version)")
            }
        }
    }

    /// `vtp db version [--database URL | --config FILE]`
    struct Version: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check the ledger schema version against this binary's.")

        @OptionGroup var cluster: ClusterOptions

        func run() async throws {
            let url = try cluster.databaseURL()
            try await Ledger(database: url).verifySchema()
            print("\(url.redacted): schema at version \(Migration.latestVersion), matching this binary")
        }
    }
}
