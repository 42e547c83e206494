import Foundation

/// Removes passwords from text that may quote a connection string (error messages from libpq,
/// configuration problems). `DatabaseURL.redacted` covers the URL itself; this also catches the
/// bare password wherever a message repeats it.
public enum CredentialScrubber {
    /// Passwords in a `postgresql://user:secret@host` URL, its `password=` query parameter, or a
    /// `password=secret` / `password='a b'` keyword string.
    public static func passwords(in connection: String) -> [String] {
        var found: [String] = []
        if let scheme = connection.range(of: "://") {
            let authorityEnd = connection[scheme.upperBound...].firstIndex(where: { $0 == "/" || $0 == "?" })
                ?? connection.endIndex
            let authority = connection[scheme.upperBound..<authorityEnd]
            if let at = authority.lastIndex(of: "@"), let colon = authority[..<at].firstIndex(of: ":") {
                let raw = String(authority[authority.index(after: colon)..<at])
                found.append(raw)
                if let decoded = raw.removingPercentEncoding, decoded != raw { found.append(decoded) }
            }
        }
        var rest = Substring(connection)
        while let range = rest.range(of: "password=", options: .caseInsensitive) {
            var tail = rest[range.upperBound...]
            var value = ""
            if tail.first == "'" {
                tail = tail.dropFirst()
                while let c = tail.first {
                    tail = tail.dropFirst()
                    if c == "\\", let next = tail.first { value.append(next); tail = tail.dropFirst(); continue }
                    if c == "'" { break }
                    value.append(c)
                }
            } else {
                let end = tail.firstIndex(where: { $0 == "&" || $0 == " " }) ?? tail.endIndex
                value = String(tail[..<end])
                tail = tail[end...]
                if let decoded = value.removingPercentEncoding, decoded != value { found.append(decoded) }
            }
            found.append(value)
            rest = tail
        }
        return found.filter { !$0.isEmpty }
    }

    /// `text` with every password of `connection` replaced by `***`.
    public static func scrub(_ text: String, connection: String) -> String {
        // Longest first, so a password containing another one is replaced whole.
        passwords(in: connection).sorted { $0.count > $1.count }.reduce(text) {
            $0.replacingOccurrences(of: $1, with: "***")
        }
    }
}
