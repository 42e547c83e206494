import CLibPQ
import Foundation

/// Owns one `PGresult`; cleared when the wrapper goes away.
///
/// Values are read in libpq's text format; all ledger queries cast to text-friendly types.
final class PGResult {
    private let raw: OpaquePointer

    init(owning raw: OpaquePointer) { self.raw = raw }
    deinit { PQclear(raw) }

    var rowCount: Int { Int(PQntuples(raw)) }
    var columnCount: Int { Int(PQnfields(raw)) }

    /// The value at (row, column) as text, or nil for SQL NULL.
    func value(_ row: Int, _ column: Int) -> String? {
        if PQgetisnull(raw, Int32(row), Int32(column)) != 0 { return nil }
        guard let text = PQgetvalue(raw, Int32(row), Int32(column)) else { return nil }
        return String(cString: text)
    }

    func columnName(_ column: Int) -> String {
        guard let name = PQfname(raw, Int32(column)) else { return "column \(column)" }
        return String(cString: name)
    }

    /// Number of rows an INSERT/UPDATE/DELETE touched.
    var affectedRows: Int {
        guard let text = PQcmdTuples(raw) else { return 0 }
        return Int(String(cString: text)) ?? 0
    }
}

/// An asynchronous notification received on a LISTENing connection.
struct PGNotification: Sendable, Equatable {
    let channel: String
    let payload: String
    let backendPID: Int32
}

/// Owns one libpq connection. Not thread-safe: every use happens on the owning session's thread.
final class PGConnection {
    private let raw: OpaquePointer

    /// Connects synchronously. `conninfo` is a URL or keyword string; `displayName` is its
    /// redacted form, the only one that may appear in errors.
    init(conninfo: String, displayName: String) throws {
        guard let raw = PQconnectdb(conninfo) else {
            throw PostgresError(kind: .connectionFailed, operation: "connect to \(displayName)",
                                message: "libpq could not allocate a connection")
        }
        if PQstatus(raw) != CONNECTION_OK {
            let error = LibPQError.error(connection: raw, operation: "connect to \(displayName)",
                                         kind: .connectionFailed)
            PQfinish(raw)
            throw error
        }
        // NOTICEs (e.g. "relation already exists, skipping") would go straight to stderr.
        PQsetNoticeProcessor(raw, { _, _ in }, nil)
        self.raw = raw
    }

    deinit { PQfinish(raw) }

    /// Whether the connection is up and not stuck inside a transaction.
    var isReusable: Bool {
        PQstatus(raw) == CONNECTION_OK && PQtransactionStatus(raw) == PQTRANS_IDLE
    }

    /// The server process id serving this connection (for `pg_terminate_backend` in tests).
    var backendPID: Int32 { PQbackendPID(raw) }

    /// Runs one or more statements without parameters (simple query protocol).
    @discardableResult
    func execute(_ sql: String, operation: String) throws -> PGResult {
        try LibPQError.check(PQexec(raw, sql), connection: raw, operation: operation)
    }

    /// Runs one statement with text parameters (`$1`, `$2`, ...); nil binds SQL NULL.
    @discardableResult
    func query(_ sql: String, _ parameters: [String?] = [], operation: String) throws -> PGResult {
        let cStrings: [UnsafeMutablePointer<CChar>?] = parameters.map { $0.flatMap { strdup($0) } }
        defer { cStrings.forEach { free($0) } }
        let raw = cStrings.withUnsafeBufferPointer { buffer -> OpaquePointer? in
            buffer.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: max(buffer.count, 1)) {
                PQexecParams(self.raw, sql, Int32(parameters.count), nil, parameters.isEmpty ? nil : $0,
                             nil, nil, 0)
            }
        }
        return try LibPQError.check(raw, connection: self.raw, operation: operation)
    }

    /// Runs `COPY ... FROM STDIN` and streams the chunks `produce` hands to `send`.
    func copyIn(_ sql: String, operation: String, produce: (_ send: (UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws {
        _ = try LibPQError.check(PQexec(raw, sql), connection: raw, operation: operation, accepted: [PGRES_COPY_IN])
        do {
            try produce { chunk in
                guard chunk.count > 0 else { return }
                let sent = PQputCopyData(self.raw, chunk.baseAddress!.assumingMemoryBound(to: CChar.self),
                                         Int32(chunk.count))
                if sent != 1 {
                    throw LibPQError.error(connection: self.raw, operation: operation, kind: .copyFailed)
                }
            }
        } catch {
            _ = PQputCopyEnd(raw, "aborted by client")
            drainResults()
            throw error
        }
        if PQputCopyEnd(raw, nil) != 1 {
            throw LibPQError.error(connection: raw, operation: operation, kind: .copyFailed)
        }
        // The COPY's own outcome, then the terminating NULL.
        let outcome = PQgetResult(raw)
        defer { drainResults() }
        _ = try LibPQError.check(outcome, connection: raw, operation: operation, accepted: [PGRES_COMMAND_OK])
    }

    private func drainResults() {
        while let extra = PQgetResult(raw) { PQclear(extra) }
    }

    /// Runs `body` inside BEGIN/COMMIT, rolling back if it throws.
    func transaction<T>(operation: String, _ body: () throws -> T) throws -> T {
        try execute("BEGIN", operation: operation)
        do {
            let value = try body()
            try execute("COMMIT", operation: operation)
            return value
        } catch {
            if PQstatus(raw) == CONNECTION_OK { _ = try? execute("ROLLBACK", operation: operation) }
            throw error
        }
    }

    // MARK: Notifications

    /// The socket descriptor, for waiting on incoming notifications.
    var socket: Int32 { PQsocket(raw) }

    /// Reads whatever the server has sent without blocking; throws if the connection broke.
    func consumeInput(operation: String) throws {
        if PQconsumeInput(raw) != 1 {
            throw LibPQError.error(connection: raw, operation: operation, kind: .connectionLost)
        }
    }

    /// Notifications already read from the socket.
    func takeNotifications() -> [PGNotification] {
        var found: [PGNotification] = []
        while let notify = PQnotifies(raw) {
            found.append(PGNotification(channel: String(cString: notify.pointee.relname),
                                        payload: String(cString: notify.pointee.extra),
                                        backendPID: notify.pointee.be_pid))
            PQfreemem(notify)
        }
        return found
    }

    /// Quotes an identifier (channel name) for interpolation into SQL.
    func escapeIdentifier(_ name: String) throws -> String {
        guard let escaped = PQescapeIdentifier(raw, name, name.utf8.count) else {
            throw LibPQError.error(connection: raw, operation: "escape identifier")
        }
        defer { PQfreemem(escaped) }
        return String(cString: escaped)
    }
}
