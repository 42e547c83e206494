import Foundation
import Synchronization
import VTPVocabulary
import Logging
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why an idle coordinator woke up.
public enum WorkSignal: Sendable, Equatable {
    /// Someone enqueued, resumed or retried this job.
    case newWork(jobID: Int64?)
    /// The listening connection was re-established; notifications may have been missed,
    /// so look for work once.
    case reconnected
}

/// LISTENs on `Ledger.workChannel` on a dedicated connection and thread so an idle coordinator
/// sleeps on the socket (PQsocket + poll) instead of polling the tables.
public final class WorkNotifier: Sendable {
    private let session: DatabaseSession

    /// Creates a listener; the LISTEN is issued on first use and after every reconnect.
    public init(database: DatabaseURL, reconnect: ReconnectPolicy = ReconnectPolicy(),
                logger: Logger = Logger(label: "vtp.ledger.notify")) {
        session = DatabaseSession(url: database, name: "vtp-ledger-listen", reconnect: reconnect, logger: logger) {
            connection in
            let channel = try connection.escapeIdentifier(Ledger.workChannel)
            try connection.execute("LISTEN \(channel)", operation: "listen for new work")
        }
    }

    /// Connects and starts listening now rather than at the first wait.
    public func start() async throws {
        try await session.run("listen for new work") { _ in }
    }

    /// Waits up to `timeout` seconds for a notification; nil on timeout or when the task is
    /// cancelled (the wait notices within a fraction of a second).
    public func waitForNotification(timeout: Double) async throws -> WorkSignal? {
        let cancelled = CancellationFlag()
        let signal = try await withTaskCancellationHandler {
            try await session.run("wait for notification", retry: .never) { connection -> WorkSignal? in
                do {
                    return try Self.wait(connection, deadline: Date().addingTimeInterval(max(0, timeout)),
                                         cancelled: cancelled)
                } catch let error as PostgresError where error.kind == .connectionLost {
                    return .reconnected
                }
            }
        } onCancel: {
            cancelled.set()
        }
        if signal == .reconnected {
            // LISTEN again before reporting, so work enqueued after the caller's rescan is not missed.
            try await start()
        }
        return signal
    }

    private static func wait(_ connection: PGConnection, deadline: Date, cancelled: CancellationFlag) throws -> WorkSignal? {
        let operation = "wait for notification"
        while true {
            try connection.consumeInput(operation: operation)
            if let first = connection.takeNotifications().first(where: { $0.channel == Ledger.workChannel }) {
                return .newWork(jobID: Int64(first.payload))
            }
            let remaining = deadline.timeIntervalSinceNow
            if remaining <= 0 || cancelled.isSet { return nil }
            // Sleep in slices so a cancelled task is released promptly.
            var descriptor = pollfd(fd: connection.socket, events: Int16(POLLIN), revents: 0)
            let ready = poll(&descriptor, 1, Int32((min(remaining, 0.2) * 1000).rounded(.up)))
            // libpq's own socket, polled raw (swift-system has no poll): an EINTR just loops to poll again.
            if ready < 0 && errno != EINTR {
                throw PostgresError(kind: .connectionLost, operation: operation,
                                    message: "poll failed: \(String(cString: strerror(errno)))")
            }
        }
    }
}

/// Set from a task-cancellation handler, read by the waiting thread.
private final class CancellationFlag: Sendable {
    private let value = Atomic<Bool>(false)

    func set() { value.store(true, ordering: .releasing) }

    var isSet: Bool { value.load(ordering: .acquiring) }
}
