import CLibPQ

/// A failure talking to PostgreSQL, with the server's SQLSTATE when it sent one.
///
/// Messages never contain a password: connection strings are redacted before they are quoted.
public struct PostgresError: Error, CustomStringConvertible, Sendable, Equatable {
    /// What went wrong, coarsely enough to decide whether to retry.
    public enum Kind: String, Sendable, Equatable {
        /// The server could not be reached or refused the login.
        case connectionFailed
        /// An established connection broke (server restart, `pg_terminate_backend`, network).
        case connectionLost
        /// The server rejected a statement.
        case serverError
        /// A COPY stream failed.
        case copyFailed
        /// A result did not have the shape the ledger expected.
        case unexpectedResult
    }

    /// Coarse classification.
    public let kind: Kind
    /// Five-character SQLSTATE, when the server reported one.
    public let sqlState: String?
    /// What the ledger was doing, e.g. "claim next shard".
    public let operation: String
    /// The server's or libpq's message.
    public let message: String

    /// Creates an error; used by the ledger and by tests.
    public init(kind: Kind, sqlState: String? = nil, operation: String, message: String) {
        self.kind = kind
        self.sqlState = sqlState
        self.operation = operation
        self.message = message
    }

    public var description: String {
        var text = "PostgreSQL \(kind.rawValue) during \(operation): \(message)"
        if let sqlState { text += " [SQLSTATE \(sqlState)]" }
        return text
    }

    /// Whether a fresh connection may succeed where this one failed.
    public var isConnectionProblem: Bool { kind == .connectionFailed || kind == .connectionLost }

    /// SQLSTATEs that mean the session is gone even if libpq has not noticed yet:
    /// class 08 (connection exception) and 57P01–57P03 (admin shutdown, crash shutdown, cannot connect now).
    static func isConnectionSQLState(_ state: String?) -> Bool {
        guard let state else { return false }
        return state.hasPrefix("08") || state == "57P01" || state == "57P02" || state == "57P03"
    }
}

/// The single place where libpq status codes become Swift errors.
enum LibPQError {
    /// Checks a result from `PQexec`/`PQexecParams`/`PQgetResult`, taking ownership of it.
    ///
    /// - Returns: the result wrapped for automatic `PQclear` when its status is one of `accepted`.
    static func check(_ raw: OpaquePointer?, connection: OpaquePointer, operation: String,
                      accepted: [ExecStatusType] = [PGRES_COMMAND_OK, PGRES_TUPLES_OK]) throws -> PGResult {
        guard let raw else {
            throw error(connection: connection, operation: operation)
        }
        let result = PGResult(owning: raw)
        let status = PQresultStatus(raw)
        if accepted.contains(status) { return result }
        let sqlState = field(raw, "C")
        let primary = field(raw, "M")
            ?? String(cString: PQresultErrorMessage(raw)).trimmingTrailingWhitespace()
        let detail = field(raw, "D").map { " (\($0))" } ?? ""
        let lost = PQstatus(connection) == CONNECTION_BAD || PostgresError.isConnectionSQLState(sqlState)
        let message = primary.isEmpty ? connectionMessage(connection) : primary + detail
        if status == PGRES_COPY_IN || status == PGRES_COPY_OUT {
            throw PostgresError(kind: .unexpectedResult, sqlState: nil, operation: operation,
                                message: "statement unexpectedly started a COPY")
        }
        throw PostgresError(kind: lost ? .connectionLost : .serverError, sqlState: sqlState,
                            operation: operation, message: message)
    }

    /// An error built from the connection's last message (no result object available).
    static func error(connection: OpaquePointer, operation: String,
                      kind: PostgresError.Kind? = nil) -> PostgresError {
        let bad = PQstatus(connection) == CONNECTION_BAD
        return PostgresError(kind: kind ?? (bad ? .connectionLost : .serverError), sqlState: nil,
                             operation: operation, message: connectionMessage(connection))
    }

    static func connectionMessage(_ connection: OpaquePointer) -> String {
        guard let text = PQerrorMessage(connection) else { return "unknown libpq error" }
        let message = String(cString: text).trimmingTrailingWhitespace()
        return message.isEmpty ? "unknown libpq error" : message
    }

    /// Reads one diagnostic field; `code` is libpq's one-letter PG_DIAG_* code.
    private static func field(_ result: OpaquePointer, _ code: Unicode.Scalar) -> String? {
        guard let value = PQresultErrorField(result, Int32(code.value)) else { return nil }
        return String(cString: value)
    }
}

extension String {
    func trimmingTrailingWhitespace() -> String {
        var view = Substring(self)
        while let last = view.last, last.isWhitespace { view.removeLast() }
        return String(view)
    }
}
