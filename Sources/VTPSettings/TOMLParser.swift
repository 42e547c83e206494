// Why a hand-written parser, not TOMLKit (LebJe/TOMLKit 0.6.0, the TOML package available),
// measured on 2026-12-01 in a scratch package:
// - Its syntax errors do carry a line and column (toml++'s source region), e.g. "could not determine
//   value type (at line 3, column 12)", "cannot redefine existing integer 'threads'" (line 3).
// - Its parsed values carry no position: neither TOMLValue nor TOMLTable exposes toml++'s node
//   source(), and tables iterate in sorted key order, not file order. So "vtp.toml:2:
//   worker.batch_size: expected an integer, found a string" would lose its line, and TOMLDecoder
//   reports that same string-for-an-integer as DecodingError.keyNotFound ("Key 'threads' not
//   found", path worker.threads): the wrong fault, and no line either. Errors must name the file,
//   line and key (issue 16's condition); wrong-type and unknown-key errors could name only the key.
// - Its cost: it compiles toml++ (a 17,700-line C++17 header, with C++ exceptions on): 29.7 s for
//   a clean debug build of a package holding nothing else, 29.6 s in release, on this 2-core
//   machine, against about a second for this file.
// - Under scripts/fuzz.sh's flags (release, -sanitize=fuzzer,address) it builds (37.7 s clean), but
//   from this repository's toml seed corpus the fuzzer aborted it after 670 inputs: a table header
//   of non-ASCII text, e.g. "[\u{FFFD}\u{FFFD}\u{FFFD}]", fails an assertion of toml++'s parse_key
//   (toml.hpp:15481) and abort()s the process, in plain debug and release builds as well (SwiftPM
//   defines no NDEBUG for the C++ target). A mistyped file would kill `vtp worker` rather than be
//   named. It also leaks its error record and a table on every failed parse (LeakSanitizer: 2161
//   bytes in 31 allocations over the seed corpus). This parser says "vtp.toml:1: expected a key".
// The subset below is what config/vtp.toml uses, and its errors name file, line and key.

import Foundation

/// A value of the TOML subset vtp configuration files use.
public enum TOMLValue: Equatable, Sendable {
    case string(String)
    case integer(Int)
    case float(Double)
    case bool(Bool)
    case array([TOMLValue])

    var typeName: String {
        switch self {
        case .string: "a string"
        case .integer: "an integer"
        case .float: "a number"
        case .bool: "a boolean"
        case .array: "an array"
        }
    }
}

/// A parse error with the file and line it occurred on.
public struct TOMLError: Error, CustomStringConvertible, Equatable, Sendable {
    public let file: String
    public let line: Int
    public let message: String
    public var description: String { "\(file):\(line): \(message)" }
}

/// Parses the TOML subset needed for configuration: `[table]` and `[table.sub]` headers,
/// `key = value` pairs with basic/literal strings, integers (with `_`), floats, booleans and
/// one-line arrays, and `#` comments. Keys are returned flattened as `table.key`, each with the
/// line it was defined on so later validation errors can point at it.
public enum TOMLParser {
    public static func parse(_ text: String, file: String) throws -> [String: (value: TOMLValue, line: Int)] {
        var result: [String: (value: TOMLValue, line: Int)] = [:]
        var table = ""
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let lineNumber = index + 1
            func fail(_ message: String) -> TOMLError { TOMLError(file: file, line: lineNumber, message: message) }
            var scanner = Scanner(Array(String(rawLine).unicodeScalars), fail: fail)
            scanner.skipSpaces()
            if scanner.atEndOrComment { continue }
            if scanner.peek == "[" {
                scanner.advance()
                let name = try scanner.bareKeyPath()
                guard scanner.peek == "]" else { throw fail("expected ']' after table name") }
                scanner.advance()
                scanner.skipSpaces()
                guard scanner.atEndOrComment else { throw fail("unexpected text after table header") }
                table = name
                continue
            }
            let key = try scanner.bareKeyPath()
            scanner.skipSpaces()
            guard scanner.peek == "=" else { throw fail("expected '=' after key '\(key)'") }
            scanner.advance()
            scanner.skipSpaces()
            let value = try scanner.value()
            scanner.skipSpaces()
            guard scanner.atEndOrComment else { throw fail("unexpected text after the value of '\(key)'") }
            let full = table.isEmpty ? key : table + "." + key
            if let previous = result[full] { throw fail("'\(full)' is already defined on line \(previous.line)") }
            result[full] = (value, lineNumber)
        }
        return result
    }

    private struct Scanner {
        let chars: [Unicode.Scalar]
        var i = 0
        let fail: (String) -> TOMLError

        init(_ chars: [Unicode.Scalar], fail: @escaping (String) -> TOMLError) {
            self.chars = chars
            self.fail = fail
        }

        var peek: Unicode.Scalar? { i < chars.count ? chars[i] : nil }
        var atEndOrComment: Bool { peek == nil || peek == "#" || peek == "\r" }
        mutating func advance() { i += 1 }
        mutating func skipSpaces() { while let c = peek, c == " " || c == "\t" { i += 1 } }

        mutating func bareKeyPath() throws -> String {
            var parts: [String] = []
            repeat {
                skipSpaces()
                var part = ""
                while let c = peek, c.properties.isAlphabetic || ("0"..."9").contains(c) || c == "_" || c == "-" {
                    part.unicodeScalars.append(c)
                    i += 1
                }
                guard !part.isEmpty else { throw fail("expected a key") }
                parts.append(part)
                skipSpaces()
                if peek == "." { i += 1 } else { break }
            } while true
            return parts.joined(separator: ".")
        }

        mutating func value() throws -> TOMLValue {
            guard let c = peek else { throw fail("missing value") }
            switch c {
            case "\"": return .string(try basicString())
            case "'": return .string(try literalString())
            case "[": return try array()
            case "t", "f":
                let word = takeWord()
                if word == "true" { return .bool(true) }
                if word == "false" { return .bool(false) }
                throw fail("'\(word)' is not a value (strings need quotes)")
            default:
                let word = takeWord().replacingOccurrences(of: "_", with: "")
                if let n = Int(word) { return .integer(n) }
                if let x = Double(word), !word.isEmpty { return .float(x) }
                throw fail("'\(word)' is not a value (strings need quotes)")
            }
        }

        mutating func takeWord() -> String {
            var word = ""
            while let c = peek, c != " ", c != "\t", c != ",", c != "]", c != "#", c != "\r" {
                word.unicodeScalars.append(c)
                i += 1
            }
            return word
        }

        mutating func basicString() throws -> String {
            i += 1
            var s = ""
            while let c = peek {
                i += 1
                if c == "\"" { return s }
                if c == "\\" {
                    guard let e = peek else { break }
                    i += 1
                    switch e {
                    case "n": s.append("\n")
                    case "t": s.append("\t")
                    case "\\": s.append("\\")
                    case "\"": s.append("\"")
                    default: throw fail("unsupported escape '\\\(e)'")
                    }
                } else {
                    s.unicodeScalars.append(c)
                }
            }
            throw fail("unterminated string")
        }

        mutating func literalString() throws -> String {
            i += 1
            var s = ""
            while let c = peek {
                i += 1
                if c == "'" { return s }
                s.unicodeScalars.append(c)
            }
            throw fail("unterminated string")
        }

        mutating func array() throws -> TOMLValue {
            i += 1
            var items: [TOMLValue] = []
            while true {
                skipSpaces()
                if peek == "]" { i += 1; return .array(items) }
                items.append(try value())
                skipSpaces()
                if peek == "," { i += 1; continue }
                if peek == "]" { i += 1; return .array(items) }
                throw fail("expected ',' or ']' in array (arrays must fit on one line)")
            }
        }
    }
}
