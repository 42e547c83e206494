import Foundation
import Logging
import VTPQueue
import VTPVocabulary

/// The ledger of a `vtp run`, for the monitoring and control commands (`vtp status --output DIR`).
///
/// While the run is live its private PostgreSQL is used as it is. Otherwise the server is started
/// for the command (read-only unless the command changes the ledger: every transaction is then
/// read-only) and `close()` stops it again, so looking at a stopped run leaves nothing running.
/// A server a killed run or command left running is adopted and stopped the same way: with no run
/// live, nobody else is using it. The locks of
/// ``StateDirectoryLock`` keep a run that starts meanwhile from sharing the server with a command
/// that is about to stop it: the run waits for the command to finish.
///
/// `@unchecked Sendable`: every stored property is immutable; `server` is itself thread-safe.
public final class RunLedgerAccess: @unchecked Sendable {
    /// The state directory read.
    public let stateDirectory: String
    /// Where the server listens.
    public let databaseURL: DatabaseURL
    /// Whether a `vtp run` was live on the state directory when the ledger was opened.
    public let runIsLive: Bool
    private let server: EmbeddedPostgres?
    private let serverLock: StateDirectoryLock?

    private init(stateDirectory: String, databaseURL: DatabaseURL, runIsLive: Bool, server: EmbeddedPostgres?,
                 serverLock: StateDirectoryLock?) {
        self.stateDirectory = stateDirectory
        self.databaseURL = databaseURL
        self.runIsLive = runIsLive
        self.server = server
        self.serverLock = serverLock
    }

    deinit { serverLock?.release() }

    /// Opens the ledger of the run whose state directory is `stateDirectory`.
    ///
    /// - Parameters:
    ///   - writable: the command changes the ledger (`vtp job cancel|pause|resume|retry`); a
    ///     server started for it accepts writes.
    ///   - timeout: how long to wait while another command holds the stopped run's server.
    /// - Throws: `LocalRunError` naming the directory when there is no ledger to read, or the
    ///   server's own error when it cannot start.
    public static func open(stateDirectory: String, writable: Bool, timeout: Duration = .seconds(30),
                            logger: Logger = Logger(label: "vtp.run-ledger")) async throws -> RunLedgerAccess {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: stateDirectory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw LocalRunError.noPrivateLedger(
                stateDirectory: stateDirectory,
                reason: "no such directory; expected the state directory of a `vtp run` (<output>/.vtp-state, or the run's --state-dir)")
        }
        guard let serverDirectory = try PrivateServerLocation.existing(stateDirectory: URL(fileURLWithPath: stateDirectory)) else {
            throw LocalRunError.noPrivateLedger(
                stateDirectory: stateDirectory,
                reason: "holds no private job ledger: the run used an existing PostgreSQL (pass its --database URL), or it never started")
        }
        let runLock = stateDirectory + "/" + StateDirectoryLock.runLockName
        let serverLockPath = stateDirectory + "/" + StateDirectoryLock.serverLockName
        let deadline = ContinuousClock.now + timeout
        while true {
            if let lock = try StateDirectoryLock.attempt(serverLockPath) {
                // Nobody runs the server: start it for this command.
                lock.recordHolder()
                do {
                    let server = try EmbeddedPostgres(serverDirectory: serverDirectory,
                                                      configuration: .init(readOnly: !writable), logger: logger)
                    try await server.start()
                    return RunLedgerAccess(stateDirectory: stateDirectory, databaseURL: server.databaseURL, runIsLive: false,
                                           server: server, serverLock: lock)
                } catch {
                    lock.release()
                    throw error
                }
            }
            if try StateDirectoryLock.isHeld(runLock) {
                // A live run owns the server (or is about to start it); use it as it is.
                let url = try DatabaseURL(EmbeddedPostgres.connectionURL(serverDirectory: serverDirectory))
                return RunLedgerAccess(stateDirectory: stateDirectory, databaseURL: url, runIsLive: true, server: nil,
                                       serverLock: nil)
            }
            // Another command has the stopped run's server for a moment.
            guard ContinuousClock.now < deadline else {
                throw LocalRunError.stateDirectory(
                    path: serverLockPath,
                    reason: "another vtp command\(StateDirectoryLock.holder(serverLockPath).map { " (pid \($0))" } ?? "") "
                        + "has held the private ledger for \(timeout); try again when it is done")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    /// Whether the run that was live when the ledger was opened has ended since (and stopped its
    /// server, so a command that lost its connection may open the ledger again).
    public var liveRunEnded: Bool {
        guard runIsLive else { return false }
        return !((try? StateDirectoryLock.isHeld(stateDirectory + "/" + StateDirectoryLock.runLockName)) ?? true)
    }

    /// Stops the server of a stopped run, and lets another command or run have it.
    public func close() async {
        try? await server?.stop()
        serverLock?.release()
    }
}
