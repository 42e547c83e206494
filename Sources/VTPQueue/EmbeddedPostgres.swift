import Foundation
import Synchronization
import VTPVocabulary
import VTPConcurrency
import VTPProcesses
import Logging
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Problems starting or stopping a local PostgreSQL server.
public enum EmbeddedPostgresError: Error, CustomStringConvertible, Sendable, Equatable {
    /// initdb/pg_ctl could not be found.
    case binariesNotFound(searched: [String])
    /// Running as root but there is no unprivileged user to run the server as.
    case noUnprivilegedUser(String)
    /// A server tool exited non-zero; carries its output (and the server log's tail).
    case commandFailed(command: String, status: Int32, output: String)
    /// A file-system step failed.
    case fileSystem(path: String, reason: String)
    /// `initdb` could not create the data directory; carries its output and the user it ran as
    /// (nil when not root), so the message can say what to change.
    case initialisationFailed(dataDirectory: String, runAs: String?, output: String)

    public var description: String {
        switch self {
        case .binariesNotFound(let searched):
            "PostgreSQL server binaries (initdb, pg_ctl) not found; searched \(searched.joined(separator: ", ")). Install the postgresql package."
        case .noUnprivilegedUser(let name):
            "PostgreSQL refuses to run as root and user '\(name)' does not exist; install the postgresql package or run as another user"
        case .commandFailed(let command, let status, let output):
            "\(command) exited with status \(status): \(output)"
        case .fileSystem(let path, let reason): "\(path): \(reason)"
        case .initialisationFailed(let directory, let runAs, let output):
            "cannot create the private PostgreSQL in \(directory): initdb said: "
                + Self.essentials(of: output) + "\nhint: " + Self.initialisationHint(directory: directory, runAs: runAs, output: output)
        }
    }

    /// initdb's complaints without its chatter ("The files belonging to this database system…").
    private static func essentials(of output: String) -> String {
        let lines = output.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        let complaints = lines.filter { $0.contains("error") || $0.contains("could not") || $0.contains("FATAL") }
        var seen: Set<String> = []
        return (complaints.isEmpty ? Array(lines.suffix(3)) : complaints).filter { seen.insert($0).inserted }.joined(separator: "; ")
    }

    private static func initialisationHint(directory: String, runAs: String?, output: String) -> String {
        if output.contains("exists but is not empty") {
            return "\(directory) holds files but no database (left by a start that failed?); remove it, "
                + "and the next run creates a new ledger there."
        }
        if let runAs {
            return "PostgreSQL refuses to run as root, so vtp runs it as user '\(runAs)', which must be able to write \(directory) "
                + "and search every directory above it. Point \(PrivateServerLocation.rootEnvironmentKey) at such a directory, "
                + "or use an existing server with --database URL."
        }
        return "check that \(directory) is writable by you and its file system has space, pass another --state-dir, "
            + "or use an existing server with --database URL."
    }
}

/// A private PostgreSQL server in a state directory: `initdb` on first use, reused on later runs,
/// reachable only through a Unix socket (`listen_addresses = ''`), stopped by `stop()` or deinit.
///
/// PostgreSQL refuses to run as root, so when the process is root the server tools run as the
/// `postgres` system user (via `runuser`/`setpriv`), the server directory is owned by it, and
/// ``PrivateServerLocation`` keeps that directory where the user can reach it.
///
/// Start, stop and restart are serialized by `started`'s mutex, held while the server tools run.
public final class EmbeddedPostgres: Sendable {
    /// Server settings.
    public struct Configuration: Sendable, Equatable {
        /// Trade crash safety for speed (fsync, synchronous_commit and full_page_writes off); tests only.
        public var unsafeFastWrites: Bool
        /// Socket file suffix (`.s.PGSQL.<port>`); no TCP port is opened.
        public var port: Int
        /// User to run the server as when this process is root.
        public var unprivilegedUser: String
        /// Extra `postgresql.conf` lines.
        public var extraSettings: [String]
        /// Start the server with every transaction read-only (`default_transaction_read_only`), for
        /// commands that only look at a stopped run's ledger. Has no effect on a server already running.
        public var readOnly: Bool

        public init(unsafeFastWrites: Bool = false, port: Int = 5432, unprivilegedUser: String = "postgres",
                    extraSettings: [String] = [], readOnly: Bool = false) {
            self.unsafeFastWrites = unsafeFastWrites
            self.port = port
            self.unprivilegedUser = unprivilegedUser
            self.extraSettings = extraSettings
            self.readOnly = readOnly
        }
    }

    /// Directory holding `data/`, `server.log` and (when the path is short enough) the socket.
    public let serverDirectory: URL
    public let dataDirectory: URL
    public let socketDirectory: URL
    public let configuration: Configuration
    /// The superuser role created by initdb.
    public let superuser = "postgres"
    private let binaries: URL
    private let runAs: (uid: uid_t, gid: gid_t, name: String)?
    private let removeWhenStopped: Bool
    private let logger: Logger
    private let executor = BlockingExecutor(name: "vtp-postgres-control")
    /// Whether this instance started (or adopted) the server.
    private let started = Mutex(false)

    /// Prepares (and on first use initialises) the server of `stateDirectory`, wherever
    /// ``PrivateServerLocation`` keeps it: `stateDirectory/postgres` unless this process is root.
    public convenience init(stateDirectory: URL, configuration: Configuration = Configuration(),
                logger: Logger = Logger(label: "vtp.postgres")) throws {
        let directory = try PrivateServerLocation.resolve(stateDirectory: stateDirectory,
                                                          runAs: try Self.serverUser(configuration))
        try self.init(serverDirectory: directory, configuration: configuration, removeWhenStopped: false, logger: logger)
    }

    /// Prepares (and on first use initialises) a server whose files are in `serverDirectory`
    /// (`data/`, `server.log`, `run/`).
    public convenience init(serverDirectory: URL, configuration: Configuration = Configuration(),
                            logger: Logger = Logger(label: "vtp.postgres")) throws {
        try self.init(serverDirectory: serverDirectory, configuration: configuration, removeWhenStopped: false, logger: logger)
    }

    /// The user the server tools run as: nil when this process is not root.
    public static func serverUser(_ configuration: Configuration = Configuration()) throws -> (uid: uid_t, gid: gid_t, name: String)? {
        guard geteuid() == 0 else { return nil }
        guard let entry = getpwnam(configuration.unprivilegedUser) else {
            throw EmbeddedPostgresError.noUnprivilegedUser(configuration.unprivilegedUser)
        }
        return (entry.pointee.pw_uid, entry.pointee.pw_gid, configuration.unprivilegedUser)
    }

    /// A throwaway server in a new temporary directory that `stop()` deletes; for tests and benchmarks.
    public static func temporary(configuration: Configuration = Configuration(unsafeFastWrites: true),
                                 logger: Logger = Logger(label: "vtp.postgres")) throws -> EmbeddedPostgres {
        var template = Array("/tmp/vtp-pg-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else {
            throw EmbeddedPostgresError.fileSystem(path: "/tmp", reason: "mkdtemp failed: \(String(cString: strerror(errno)))")
        }
        return try EmbeddedPostgres(serverDirectory: URL(fileURLWithPath: String(cString: made)),
                                    configuration: configuration, removeWhenStopped: true, logger: logger)
    }

    private init(serverDirectory: URL, configuration: Configuration, removeWhenStopped: Bool, logger: Logger) throws {
        self.serverDirectory = serverDirectory
        self.configuration = configuration
        self.removeWhenStopped = removeWhenStopped
        self.logger = logger
        dataDirectory = serverDirectory.appendingPathComponent("data")
        binaries = try Self.findBinaries()
        runAs = try Self.serverUser(configuration)
        socketDirectory = Self.socketDirectory(serverDirectory: serverDirectory, port: configuration.port)
        try prepareDirectories()
    }

    deinit { try? stopBlocking() }

    /// Where a server in `serverDirectory` listens: `run/` there, or a short directory under /tmp
    /// when that path is too long for a Unix socket name (about 107 bytes).
    public static func socketDirectory(serverDirectory: URL, port: Int) -> URL {
        let preferred = serverDirectory.appendingPathComponent("run")
        if (preferred.path + "/.s.PGSQL.\(port)").utf8.count < 100 { return preferred }
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in serverDirectory.path.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return URL(fileURLWithPath: "/tmp/vtp-pg-sock-\(String(hash, radix: 36))")
    }

    /// The URL of a server in `serverDirectory` (running or not), without touching its files:
    /// for clients of a server another process runs.
    public static func connectionURL(serverDirectory: URL, port: Int = Configuration().port) -> String {
        let socket = socketDirectory(serverDirectory: serverDirectory, port: port).path
        let host = socket.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "/-_."))) ?? socket
        return "postgresql://postgres@/postgres?host=\(host)&port=\(port)"
    }

    /// A libpq URL for the superuser over the socket (no password: the socket is private).
    public var connectionURL: String {
        Self.connectionURL(serverDirectory: serverDirectory, port: configuration.port)
    }

    /// The URL as a `DatabaseURL`.
    public var databaseURL: DatabaseURL {
        // The string is never empty, so this cannot throw.
        (try? DatabaseURL(connectionURL))!
    }

    /// Starts the server (initialising the data directory first if it is new). If a server left
    /// running by an earlier process owns the directory, it is adopted. The tools run on a
    /// dedicated thread, not the cooperative pool.
    public func start() async throws {
        try await executor.run { [self] in try startBlocking() }
    }

    /// Stops the server (fast shutdown); removes the directory of a `temporary()` server.
    public func stop() async throws {
        try await executor.run { [self] in try stopBlocking() }
    }

    /// Restarts the server; connected clients are disconnected.
    public func restart() async throws {
        try await executor.run { [self] in try restartBlocking() }
    }

    /// `start()` on the calling thread.
    public func startBlocking() throws {
        try started.withLock { started in
            if started { return }
            if !FileManager.default.fileExists(atPath: dataDirectory.appendingPathComponent("PG_VERSION").path) {
                try initialise()
            }
            if try isRunning() {
                logger.info("adopting PostgreSQL already running in \(dataDirectory.path)")
            } else {
                let options = configuration.readOnly ? ["-o", "-c default_transaction_read_only=on"] : []
                try serverTool("pg_ctl", ["start", "-w", "-t", "60", "-D", dataDirectory.path, "-l", logFile.path] + options)
            }
            started = true
        }
    }

    /// `stop()` on the calling thread, for `defer` blocks and shutdown paths that cannot await.
    public func stopBlocking() throws {
        try started.withLock { started in
            // Only a server this instance started (or adopted) is stopped; never someone else's.
            if started {
                try serverTool("pg_ctl", ["stop", "-w", "-t", "60", "-m", "fast", "-D", dataDirectory.path])
                started = false
            }
            if removeWhenStopped {
                try? FileManager.default.removeItem(at: serverDirectory)
            }
            if socketDirectory.path.hasPrefix("/tmp/vtp-pg-sock-") {
                try? FileManager.default.removeItem(at: socketDirectory)
            }
        }
    }

    /// `restart()` on the calling thread.
    public func restartBlocking() throws {
        try started.withLock { started in
            try serverTool("pg_ctl", ["restart", "-w", "-t", "60", "-m", "fast", "-D", dataDirectory.path,
                                      "-l", logFile.path])
            started = true
        }
    }

    private var logFile: URL { serverDirectory.appendingPathComponent("server.log") }

    private func isRunning() throws -> Bool {
        // pg_ctl status: 0 running, 3 not running, 4 no data directory.
        (try? serverTool("pg_ctl", ["status", "-D", dataDirectory.path], quiet: true)) != nil
    }

    private func initialise() throws {
        do {
            try serverTool("initdb", ["-D", dataDirectory.path, "-U", superuser, "--auth=trust", "--encoding=UTF8",
                                      "--locale=C"] + (configuration.unsafeFastWrites ? ["--no-sync"] : []))
        } catch EmbeddedPostgresError.commandFailed(_, _, let output) {
            throw EmbeddedPostgresError.initialisationFailed(dataDirectory: dataDirectory.path, runAs: runAs?.name, output: output)
        }
        var settings = [
            "# Added by vtp: a private server reachable only through its Unix socket.",
            "listen_addresses = ''",
            "unix_socket_directories = '\(socketDirectory.path)'",
            "port = \(configuration.port)",
            "max_connections = 100",
            "shared_buffers = 64MB",
        ]
        if configuration.unsafeFastWrites {
            settings += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        }
        settings += configuration.extraSettings
        let conf = dataDirectory.appendingPathComponent("postgresql.conf")
        do {
            let handle = try FileHandle(forWritingTo: conf)
            defer { try? handle.close() }
            try handle.seekToEnd()
            try handle.write(contentsOf: Data(("\n" + settings.joined(separator: "\n") + "\n").utf8))
        } catch {
            throw EmbeddedPostgresError.fileSystem(path: conf.path, reason: "cannot append settings: \(error)")
        }
    }

    /// Creates the server's directories with their modes set explicitly (a umask of 077 must not
    /// decide them) and, for root, hands them to the server user. Directories above the server
    /// directory are left as they are: they are the user's, and ``PrivateServerLocation`` keeps
    /// root's servers where the server user can reach them.
    private func prepareDirectories() throws {
        let manager = FileManager.default
        for directory in [serverDirectory, socketDirectory] {
            do {
                try manager.createDirectory(at: directory, withIntermediateDirectories: true)
            } catch {
                throw EmbeddedPostgresError.fileSystem(path: directory.path, reason: "cannot create: \(error)")
            }
        }
        if !manager.fileExists(atPath: dataDirectory.path) {
            do {
                try manager.createDirectory(at: dataDirectory, withIntermediateDirectories: false,
                                            attributes: [.posixPermissions: 0o700])
            } catch {
                throw EmbeddedPostgresError.fileSystem(path: dataDirectory.path, reason: "cannot create: \(error)")
            }
        }
        guard let runAs else { return }
        // The server user must own its directories.
        for path in [serverDirectory.path, dataDirectory.path, socketDirectory.path] {
            if chown(path, runAs.uid, runAs.gid) != 0 {
                throw EmbeddedPostgresError.fileSystem(path: path, reason: "chown to \(runAs.name) failed: \(String(cString: strerror(errno)))")
            }
        }
        if chmod(serverDirectory.path, 0o700) != 0 || chmod(socketDirectory.path, 0o700) != 0 {
            throw EmbeddedPostgresError.fileSystem(path: serverDirectory.path, reason: "chmod 0700 failed: \(String(cString: strerror(errno)))")
        }
    }

    /// Runs a server tool (as the unprivileged user when root), failing with its output.
    @discardableResult
    private func serverTool(_ tool: String, _ arguments: [String], quiet: Bool = false) throws -> String {
        let executable = binaries.appendingPathComponent(tool).path
        var argv: [String]
        if let runAs {
            if FileManager.default.isExecutableFile(atPath: "/usr/sbin/runuser") {
                argv = ["/usr/sbin/runuser", "-u", runAs.name, "--", executable] + arguments
            } else {
                argv = ["/usr/bin/setpriv", "--reuid=\(runAs.uid)", "--regid=\(runAs.gid)", "--init-groups",
                        executable] + arguments
            }
        } else {
            argv = [executable] + arguments
        }
        var environment = ProcessInfo.processInfo.environment
        environment["LC_ALL"] = "C"
        environment.removeValue(forKey: "PGDATA")
        // Output goes to a file, not a pipe: the server pg_ctl forks would otherwise hold the pipe open.
        let outputURL = serverDirectory.appendingPathComponent(".tool-output-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: outputURL) }
        let status: Int32
        do {
            // Blocking is safe here: every caller runs on `executor`'s thread, or on a thread of its own.
            status = try ChildProcess.runBlocking(argv, environment: environment, directory: serverDirectory.path,
                                                  outputPath: outputURL.path)
        } catch {
            throw EmbeddedPostgresError.commandFailed(command: argv[0], status: -1, output: "\(error)")
        }
        let text = (try? String(contentsOf: outputURL, encoding: .utf8)) ?? ""
        guard status == 0 else {
            // The error carries the output; logging it too would print it twice.
            if !quiet { logger.debug("\(tool) failed: \(text)") }
            let log = (try? String(contentsOf: logFile, encoding: .utf8)).map { String($0.suffix(2000)) } ?? ""
            throw EmbeddedPostgresError.commandFailed(command: ([tool] + arguments).joined(separator: " "),
                                                      status: status,
                                                      output: text + (log.isEmpty ? "" : "\nserver log:\n" + log))
        }
        return text
    }

    /// Finds initdb/pg_ctl: /usr/lib/postgresql/<newest>/bin (Debian's layout), then
    /// `pg_config --bindir`, then PATH. pg_config is asked only when the first finds nothing: this
    /// runs in `init`, possibly on the concurrency pool, where a child process is best avoided.
    static func findBinaries() throws -> URL {
        let root = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [])
            .compactMap { Int($0) }.sorted(by: >)
        var candidates = versions.map { "\(root)/\($0)/bin" }
        if !candidates.contains(where: hasServerTools),
           let bindir = ChildProcess.outputBlocking(of: ["/usr/bin/env", "pg_config", "--bindir"]) {
            candidates.append(bindir.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        candidates += (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init)
        if let directory = candidates.first(where: hasServerTools) { return URL(fileURLWithPath: directory) }
        throw EmbeddedPostgresError.binariesNotFound(searched: candidates)
    }

    private static func hasServerTools(_ directory: String) -> Bool {
        let manager = FileManager.default
        return manager.isExecutableFile(atPath: directory + "/initdb") && manager.isExecutableFile(atPath: directory + "/pg_ctl")
    }
}
