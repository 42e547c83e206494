/// Reads one JSON string literal, the unit of `vtp text tokenize --jsonl` input.
///
/// Written by hand rather than with `JSONDecoder` because prompt dumps from Python (`json.dumps`) may
/// carry lone surrogate escapes such as `"\ud800"`, which Python accepts and Foundation rejects. A lone
/// surrogate becomes U+FFFD, which is what the reference's `ftfy.fix_text` turns it into; a valid
/// `\uD83D\uDE00` pair becomes its one code point. Bytes that are not UTF-8 are replaced by U+FFFD first.
public enum JSONStringLine {
    /// Why a line is not a single JSON string; `offset` counts UTF-8 bytes from the line start.
    public struct Invalid: Error, Equatable, CustomStringConvertible {
        public let offset: Int
        public let reason: String
        public var description: String { "\(reason) at byte \(offset)" }
    }

    /// Parses `line` (surrounding JSON whitespace allowed) as exactly one JSON string.
    public static func decode(_ line: some Collection<UInt8>) throws(Invalid) -> String {
        let scalars = Array(String(decoding: line, as: UTF8.self).unicodeScalars)
        var out = String.UnicodeScalarView()
        var i = 0
        func isSpace(_ s: Unicode.Scalar) -> Bool { s == " " || s == "\t" || s == "\r" || s == "\n" }
        while i < scalars.count && isSpace(scalars[i]) { i += 1 }
        guard i < scalars.count, scalars[i] == "\"" else { throw Invalid(offset: offset(scalars, i), reason: "expected '\"'") }
        i += 1
        var pendingHigh: UInt32? = nil
        func flushHigh() { if pendingHigh != nil { out.append("\u{FFFD}"); pendingHigh = nil } }
        while true {
            guard i < scalars.count else { throw Invalid(offset: offset(scalars, i), reason: "unterminated string") }
            let s = scalars[i]
            if s == "\"" { flushHigh(); i += 1; break }
            if s.value < 0x20 { throw Invalid(offset: offset(scalars, i), reason: "unescaped control character") }
            guard s == "\\" else { flushHigh(); out.append(s); i += 1; continue }
            guard i + 1 < scalars.count else { throw Invalid(offset: offset(scalars, i), reason: "unterminated escape") }
            let e = scalars[i + 1]
            i += 2
            let simple: Unicode.Scalar?
            switch e {
            case "\"": simple = "\""
            case "\\": simple = "\\"
            case "/": simple = "/"
            case "b": simple = "\u{08}"
            case "f": simple = "\u{0C}"
            case "n": simple = "\n"
            case "r": simple = "\r"
            case "t": simple = "\t"
            case "u": simple = nil
            default: throw Invalid(offset: offset(scalars, i - 1), reason: "invalid escape '\\\(e)'")
            }
            if let simple { flushHigh(); out.append(simple); continue }
            guard i + 4 <= scalars.count,
                  let v = UInt32(String(String.UnicodeScalarView(scalars[i..<(i + 4)])), radix: 16) else {
                throw Invalid(offset: offset(scalars, i), reason: "expected four hex digits after \\u")
            }
            i += 4
            if (0xD800...0xDBFF).contains(v) {
                flushHigh()
                pendingHigh = v
            } else if (0xDC00...0xDFFF).contains(v) {
                if let high = pendingHigh {
                    out.append(Unicode.Scalar(0x10000 + ((high - 0xD800) << 10) + (v - 0xDC00))!)
                    pendingHigh = nil
                } else {
                    out.append("\u{FFFD}")
                }
            } else {
                flushHigh()
                out.append(Unicode.Scalar(v)!)
            }
        }
        while i < scalars.count && isSpace(scalars[i]) { i += 1 }
        guard i == scalars.count else { throw Invalid(offset: offset(scalars, i), reason: "unexpected text after the string") }
        return String(out)
    }

    private static func offset(_ scalars: [Unicode.Scalar], _ i: Int) -> Int {
        scalars[..<min(i, scalars.count)].reduce(0) { $0 + UTF8.width($1) }
    }
}
