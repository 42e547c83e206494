import ArgumentParser
import Foundation
import VTPConcurrency
import VTPJobs
import VTPVocabulary
import Logging
import VTPConsole
import VTPMetrics
import VTPQueue
import VTPSettings

/// Options every command that talks to the job ledger shares: where the database is, and
/// whether to print JSON for scripts.
///
/// The database is, in order: `--database`, `$VTP_DATABASE_URL`, `database.url` in `--config`,
/// and finally the embedded server `vtp run` keeps under `database.state_dir`.
struct ClusterOptions: ParsableArguments {
    @Option(name: .long, help: "PostgreSQL URL of the job ledger, e.g. postgresql://vtp@db:5432/vtp (overrides $VTP_DATABASE_URL and the config file).")
    var database: String?

    @Option(name: .long, help: "Configuration file (see config/vtp.toml); its database.url is used when --database and $VTP_DATABASE_URL are absent.")
    var config: String?

    @Flag(name: .long, help: "Print machine-readable JSON (shapes documented in docs/monitoring.md).")
    var json = false

    /// The `--config` file over the defaults, with `$VTP_DATABASE_URL` and `--database` applied.
    func settings(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> ClusterSettings {
        var settings: ClusterSettings
        do {
            settings = try ClusterSettings.load(path: config, environment: environment)
        } catch {
            // A configuration problem may quote the URL it could not use.
            let url = environment["VTP_DATABASE_URL"] ?? ""
            throw CLIError("configuration: " + CredentialScrubber.scrub(String(describing: error), connection: url))
        }
        if let database { settings.database.url = database }
        return settings
    }

    /// Resolves the database URL without connecting.
    func databaseURL(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> DatabaseURL {
        if let database { return try DatabaseURL(database) }
        let settings = try settings(environment: environment)
        if !settings.database.url.isEmpty { return try DatabaseURL(settings.database.url) }
        let state = URL(fileURLWithPath: ClusterSettings.expandTilde(settings.database.stateDirectory))
        if FileManager.default.fileExists(atPath: state.appendingPathComponent("postgres/data/PG_VERSION").path) {
            return try EmbeddedPostgres(stateDirectory: state).databaseURL
        }
        throw CLIError("""
            no job ledger configured: pass --database URL, set VTP_DATABASE_URL, set database.url in a \
            --config file, or start `vtp run` (embedded database under \(state.path))
            """)
    }

    /// Connects to the ledger and checks its schema. Fails within about a second when the
    /// database is unreachable, with the URL redacted.
    func openLedger() async throws -> Ledger {
        let url = try databaseURL()
        // The CLI must keep stdout clean for --json: library logging goes to stderr, errors only.
        let logger = Logger(label: "vtp.cli") { StructuredLogHandler(label: $0, level: .error) }
        let ledger = Ledger(database: url, reconnect: ReconnectPolicy(initialDelay: 0.1, maximumDelay: 0.4, deadline: 1),
                            logger: logger)
        try await ledgerCall(ledger) { try await $0.verifySchema() }
        return ledger
    }

    /// Runs a ledger operation, turning connection failures and ledger errors into messages a
    /// user can act on, never containing a password.
    func ledgerCall<T>(_ ledger: Ledger, _ body: (Ledger) async throws -> T) async throws -> T {
        do {
            return try await body(ledger)
        } catch let error as PostgresError where error.isConnectionProblem {
            throw CLIError("cannot reach the job ledger at \(ledger.database.redacted): "
                           + scrub(error.message, ledger))
        } catch let error as PostgresError {
            throw CLIError("job ledger at \(ledger.database.redacted): " + scrub(error.description, ledger))
        } catch let error as LedgerError {
            throw CLIError(error.description)
        }
    }

    /// Prints `view` as JSON, or `text()` for people.
    func emit<T: Encodable>(_ view: T, text: () -> String) throws {
        if json {
            print(try ConsoleJSON.encode(view))
        } else {
            print(text(), terminator: "")
        }
    }

    private func scrub(_ message: String, _ ledger: Ledger) -> String {
        // The raw string is only available where it came from: the flag, the environment or the file.
        var sources = [database, ProcessInfo.processInfo.environment["VTP_DATABASE_URL"]].compactMap { $0 }
        if let config, let settings = try? ClusterSettings.load(path: config, environment: [:]) {
            sources.append(settings.database.url)
        }
        return sources.reduce(message) { CredentialScrubber.scrub($0, connection: $1) }
    }
}

/// A user-facing failure; ArgumentParser prints it as `Error: <message>` and exits 1.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}
