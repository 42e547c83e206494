import Foundation
import VTPVocabulary

/// A PostgreSQL connection string (URL or `key=value` form) that never prints its password.
public struct DatabaseURL: Sendable, CustomStringConvertible, Equatable {
    /// The string handed to libpq.
    let conninfo: String

    /// Wraps a `postgresql://` URL or a libpq keyword string.
    public init(_ string: String) throws {
        let trimmed = string.trimmingCharacters(in: .whitespaces)
        guard !trimmed.isEmpty else {
            throw LedgerError.invalidArgument(field: "database", expected: "a postgresql:// URL or libpq connection string")
        }
        conninfo = trimmed
    }

    /// The connection string with any password replaced by `***`; safe for logs and errors.
    public var redacted: String { Self.redact(conninfo) }

    public var description: String { redacted }

    /// Replaces passwords in URL userinfo (`user:secret@`), URL query (`password=`) and keyword form.
    static func redact(_ text: String) -> String {
        var result = text
        if let scheme = result.range(of: "://") {
            let authorityStart = scheme.upperBound
            let authorityEnd = result[authorityStart...].firstIndex(where: { $0 == "/" || $0 == "?" }) ?? result.endIndex
            if let at = result[authorityStart..<authorityEnd].lastIndex(of: "@"),
               let colon = result[authorityStart..<at].firstIndex(of: ":") {
                result.replaceSubrange(result.index(after: colon)..<at, with: "***")
            }
        }
        // password=value in a query string (&-separated) or keyword string (space-separated, maybe quoted).
        var output = ""
        var rest = Substring(result)
        while let range = rest.range(of: "password=", options: .caseInsensitive) {
            output += rest[..<range.upperBound]
            output += "***"
            var tail = rest[range.upperBound...]
            if tail.first == "'" {
                tail = tail.dropFirst()
                while let c = tail.first {
                    tail = tail.dropFirst()
                    if c == "\\" { tail = tail.dropFirst(); continue }
                    if c == "'" { break }
                }
            } else {
                tail = tail.drop(while: { $0 != "&" && $0 != " " })
            }
            rest = tail
        }
        output += rest
        return output
    }
}
