import ArgumentParser
import Foundation
import VTPConcurrency
import VTPJobs
import VTPVocabulary
import Logging
import VTPConsole
import VTPMetrics
import VTPLocalRun
import VTPQueue
import VTPSettings

/// Options every command that talks to the job ledger shares: where the database is, and
/// whether to print JSON for scripts.
///
/// The ledger is, in order: `--database`; the private one of the `vtp run` that wrote
/// `--output DIR` (or keeps its state in `--state-dir DIR`); `$VTP_DATABASE_URL`; `database.url`
/// in `--config`; and finally the private one of the run whose state is in `database.state_dir`.
/// A run's private ledger is used as it is while the run is live, and otherwise started for the
/// command and stopped again (read-only unless the command changes the ledger).
struct ClusterOptions: ParsableArguments {
    @Option(name: .long, help: "PostgreSQL URL of the job ledger, e.g. postgresql://vtp@db:5432/vtp (overrides $VTP_DATABASE_URL and the config file).")
    var database: String?

    @Option(name: .long, help: "Use the private ledger of the `vtp run` that wrote this output directory (started for the command if the run is not live).")
    var output: String?

    @Option(name: .customLong("state-dir"), help: "Like --output, for a `vtp run` given --state-dir (or database.state_dir).")
    var stateDir: String?

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

    /// Where the ledger is.
    enum LedgerSource {
        /// A PostgreSQL server at this URL.
        case server(DatabaseURL)
        /// The private ledger of the `vtp run` whose state directory this is.
        case run(stateDirectory: String)
    }

    /// Resolves where the ledger is without connecting or starting anything.
    func ledgerSource(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> LedgerSource {
        if database != nil && (output != nil || stateDir != nil) {
            throw ValidationError("--database names a PostgreSQL server; --output and --state-dir name a `vtp run`'s private one: pass one of them")
        }
        if output != nil && stateDir != nil {
            throw ValidationError("--output and --state-dir both name a `vtp run`'s ledger: pass one of them")
        }
        if let database { return .server(try DatabaseURL(database)) }
        let settings = try settings(environment: environment)
        if let output {
            return .run(stateDirectory: URL(fileURLWithPath: settings.resolveOutput(output)).standardizedFileURL.path + "/.vtp-state")
        }
        if let stateDir { return .run(stateDirectory: Self.absolute(stateDir)) }
        if !settings.database.url.isEmpty { return .server(try DatabaseURL(settings.database.url)) }
        if !settings.database.stateDirectory.isEmpty { return .run(stateDirectory: Self.absolute(settings.database.stateDirectory)) }
        throw CLIError("""
            no job ledger configured: pass --output DIR (the output directory of a `vtp run`), --database URL, \
            set VTP_DATABASE_URL, or set database.url (or database.state_dir) in a --config file
            """)
    }

    /// The URL of a PostgreSQL server (for `vtp db`, which manages shared servers' schemas; a
    /// `vtp run` migrates its private ledger itself).
    func databaseURL(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> DatabaseURL {
        switch try ledgerSource(environment: environment) {
        case let .server(url): return url
        case let .run(state):
            throw CLIError("""
                \(state) is the private ledger of a `vtp run`, which migrates it itself; this command works on a \
                PostgreSQL server: pass --database URL
                """)
        }
    }

    /// Opens the ledger, checks its schema and runs `body` on it. A stopped `vtp run`'s private
    /// server is started for the call and stopped after it; `writable` says whether `body`
    /// changes the ledger (otherwise such a server accepts only reads). Fails within about a
    /// second when a server is unreachable, with the URL redacted.
    func withLedger<T>(writable: Bool = false, _ body: (Ledger) async throws -> T) async throws -> T {
        switch try ledgerSource() {
        case let .server(url):
            return try await body(try await connect(url, deadline: 1))
        case let .run(state):
            var attempt = 0
            while true {
                attempt += 1
                let access: RunLedgerAccess
                do {
                    access = try await RunLedgerAccess.open(stateDirectory: state, writable: writable, logger: Self.logger)
                } catch let error as LocalRunError {
                    throw CLIError(error.description)
                } catch let error as EmbeddedPostgresError {
                    throw CLIError("cannot start the private ledger of \(state): \(error)")
                }
                var connected = false
                do {
                    // A live run may still be starting its server.
                    let ledger = try await connect(access.databaseURL, deadline: access.runIsLive ? 15 : 5)
                    connected = true
                    let result = try await body(ledger)
                    await access.close()
                    return result
                } catch {
                    await access.close()
                    // The live run ended meanwhile and stopped its server: open the ledger again,
                    // now stopped. A change is retried only if it never reached the ledger.
                    if attempt < 3 && access.liveRunEnded && (!writable || !connected) { continue }
                    throw error
                }
            }
        }
    }

    /// A ledger whose schema was checked, giving up on an unreachable server after `deadline` seconds.
    private func connect(_ url: DatabaseURL, deadline: Double) async throws -> Ledger {
        let ledger = Ledger(database: url, reconnect: ReconnectPolicy(initialDelay: 0.1, maximumDelay: 0.4, deadline: deadline),
                            logger: Self.logger)
        try await ledgerCall(ledger) { try await $0.verifySchema() }
        return ledger
    }

    /// The CLI must keep stdout clean for --json: library logging goes to stderr, errors only.
    private static var logger: Logger { Logger(label: "vtp.cli") { StructuredLogHandler(label: $0, level: .error) } }

    private static func absolute(_ path: String) -> String {
        URL(fileURLWithPath: ClusterSettings.expandTilde(path)).standardizedFileURL.path
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
