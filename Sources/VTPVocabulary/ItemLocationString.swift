/// A malformed location string from the wire or the ledger.
public struct ItemLocationParseError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The rejected text.
    public let text: String
    /// What was wrong and what was expected.
    public let detail: String

    public var description: String { "bad item location '\(text)': \(detail)" }
}

extension ItemLocation {
    /// The one-line text form used on the wire and in the ledger.
    ///
    /// A file is its plain path; a tar member is `tar:<tarpath>#<offset>+<size>` (decimal bytes).
    /// A file path that itself starts with `tar:` or `file:` is written as `file:<path>`, so every
    /// location round-trips through ``init(encoded:)`` unambiguously.
    public var encoded: String {
        switch self {
        case let .file(path):
            return path.hasPrefix(Self.tarPrefix) || path.hasPrefix(Self.filePrefix) ? Self.filePrefix + path : path
        case let .tarMember(tarPath, offset, size):
            return "\(Self.tarPrefix)\(tarPath)#\(offset)+\(size)"
        }
    }

    /// Parses ``encoded``. Tar paths may contain `#`: the last one separates the byte range.
    /// Rejects empty paths, NUL bytes, non-decimal or negative numbers and ranges past `Int64.max`.
    public init(encoded text: String) throws(ItemLocationParseError) {
        func fail(_ detail: String) -> ItemLocationParseError { ItemLocationParseError(text: text, detail: detail) }
        guard !text.isEmpty else { throw fail("empty; expected a file path or tar:<tarpath>#<offset>+<size>") }
        guard !text.utf8.contains(0) else { throw fail("contains a NUL byte") }
        if text.hasPrefix(Self.filePrefix) {
            let path = String(text.dropFirst(Self.filePrefix.count))
            guard !path.isEmpty else { throw fail("'file:' is followed by no path") }
            self = .file(path: path)
            return
        }
        guard text.hasPrefix(Self.tarPrefix) else {
            self = .file(path: text)
            return
        }
        let body = text.dropFirst(Self.tarPrefix.count)
        guard let hash = body.lastIndex(of: "#") else { throw fail("tar location has no '#<offset>+<size>' suffix") }
        let tarPath = String(body[..<hash])
        guard !tarPath.isEmpty else { throw fail("tar location has an empty archive path") }
        let range = body[body.index(after: hash)...]
        let parts = range.split(separator: "+", omittingEmptySubsequences: false)
        guard parts.count == 2 else { throw fail("expected '<offset>+<size>' after '#', found '\(range)'") }
        func number(_ s: Substring, _ name: String) throws(ItemLocationParseError) -> Int64 {
            guard !s.isEmpty, s.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }), let v = Int64(s) else {
                throw fail("\(name) '\(s)' is not a non-negative decimal integer")
            }
            return v
        }
        let offset = try number(parts[0], "offset"), size = try number(parts[1], "size")
        guard offset <= Int64.max - size else { throw fail("offset + size overflows a 64-bit file offset") }
        self = .tarMember(tarPath: tarPath, offset: offset, size: size)
    }

    private static let tarPrefix = "tar:"
    private static let filePrefix = "file:"
}
