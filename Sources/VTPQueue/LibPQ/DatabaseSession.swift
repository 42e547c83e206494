import Foundation
import VTPConcurrency
import Logging

/// One PostgreSQL connection served by its own thread, reconnecting with backoff after the
/// server restarts or the backend is terminated.
final class DatabaseSession: Sendable {
    /// Whether an operation may be re-run on a fresh connection after the old one broke.
    enum Retry: Sendable {
        /// Re-running is safe (reads, idempotent or lease-protected writes).
        case afterReconnect
        /// The first attempt may have committed before the connection broke; let the caller decide.
        case never
    }

    let url: DatabaseURL
    private let executor: BlockingExecutor
    private let holder: ConnectionHolder

    /// - Parameter onConnect: runs on every new connection (session settings, LISTEN).
    init(url: DatabaseURL, name: String, reconnect: ReconnectPolicy, logger: Logger,
         onConnect: @escaping @Sendable (PGConnection) throws -> Void = { _ in }) {
        self.url = url
        executor = BlockingExecutor(name: name)
        holder = ConnectionHolder(url: url, policy: reconnect, logger: logger, onConnect: onConnect)
    }

    deinit {
        // Close on the executor thread, after any queued work, so libpq is never used concurrently.
        let holder = holder
        executor.submit { holder.close() }
    }

    /// Runs `body` with a live connection on the session thread.
    func run<T: Sendable>(_ operation: String, retry: Retry = .afterReconnect,
                          _ body: @escaping @Sendable (PGConnection) throws -> T) async throws -> T {
        try await executor.run { [holder] in try holder.perform(operation, retry: retry, body) }
    }

    /// Number of times a broken connection was replaced.
    var reconnectCount: Int {
        get async throws { try await executor.run { [holder] in holder.reconnects } }
    }
}

/// The connection and its reconnect state.
///
/// `@unchecked Sendable` is safe because `DatabaseSession` touches it only from its
/// `BlockingExecutor` thread, which runs one job at a time.
final class ConnectionHolder: @unchecked Sendable {
    private let url: DatabaseURL
    private let logger: Logger
    private let onConnect: @Sendable (PGConnection) throws -> Void
    private var policy: ReconnectPolicy
    private var connection: PGConnection?
    private var everConnected = false
    private(set) var reconnects = 0

    init(url: DatabaseURL, policy: ReconnectPolicy, logger: Logger,
         onConnect: @escaping @Sendable (PGConnection) throws -> Void) {
        self.url = url
        self.policy = policy
        self.logger = logger
        self.onConnect = onConnect
    }

    func close() { connection = nil }

    func perform<T>(_ operation: String, retry: DatabaseSession.Retry, _ body: (PGConnection) throws -> T) throws -> T {
        let first = try liveConnection()
        do {
            return try body(first)
        } catch let error as PostgresError where error.kind == .connectionLost {
            connection = nil
            logger.warning("connection to \(url.redacted) lost during \(operation): \(error.message)")
            guard retry == .afterReconnect else { throw error }
            return try body(try liveConnection())
        }
    }

    /// Returns the open connection, or opens one, retrying per the policy while the server is away.
    private func liveConnection() throws -> PGConnection {
        if let connection, connection.isReusable { return connection }
        connection = nil
        while true {
            do {
                let fresh = try PGConnection(conninfo: url.conninfo, displayName: url.redacted)
                try onConnect(fresh)
                if everConnected { reconnects += 1 }
                everConnected = true
                policy.connected()
                connection = fresh
                return fresh
            } catch let error as PostgresError where error.isConnectionProblem {
                switch policy.attemptFailed() {
                case .retry(let delay):
                    logger.debug("cannot reach \(url.redacted) (\(error.message)); retrying in \(delay)s")
                    Thread.sleep(forTimeInterval: delay)
                case .giveUp:
                    policy.connected()
                    throw error
                }
            }
        }
    }
}
