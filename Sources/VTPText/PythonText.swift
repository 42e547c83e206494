/// Python `str` semantics the reference tokenizer relies on, over arrays of code points
/// (Python indexes strings by code point, so the port does too).
enum PythonText {
    /// Characters for which Python's `str.isspace()` is true (also `re`'s `\s` on `str`).
    /// Python derives this from its own Unicode database (bidi class WS/B/S or category Zs),
    /// which includes the information separators U+001C...U+001F that Unicode's White_Space lacks.
    static func isSpace(_ c: UInt32) -> Bool {
        switch c {
        case 0x09...0x0D, 0x1C...0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000:
            return true
        default:
            return false
        }
    }

    /// `str.split()` joined with single spaces, i.e. `" ".join(text.split())`; this also strips.
    static func collapseWhitespace(_ text: [UInt32]) -> [UInt32] {
        var out: [UInt32] = []
        out.reserveCapacity(text.count)
        var pendingSpace = false
        for c in text {
            if isSpace(c) {
                pendingSpace = !out.isEmpty
            } else {
                if pendingSpace { out.append(0x20); pendingSpace = false }
                out.append(c)
            }
        }
        return out
    }

    /// `str.strip()` with no argument.
    static func strip(_ text: [UInt32]) -> [UInt32] {
        var lo = 0, hi = text.count
        while lo < hi && isSpace(text[lo]) { lo += 1 }
        while hi > lo && isSpace(text[hi - 1]) { hi -= 1 }
        return lo == 0 && hi == text.count ? text : Array(text[lo..<hi])
    }

    /// `str.lower()`: full lower-case mappings plus Python's Final_Sigma rule for U+03A3.
    static func lower(_ text: [UInt32]) -> [UInt32] {
        var out: [UInt32] = []
        out.reserveCapacity(text.count)
        for (i, c) in text.enumerated() {
            if c < 0x80 {
                out.append(c >= 0x41 && c <= 0x5A ? c + 0x20 : c)
            } else if c == 0x3A3 {
                out.append(isFinalSigma(text, at: i) ? 0x3C2 : 0x3C3)
            } else if let scalar = Unicode.Scalar(c) {
                let props = scalar.properties
                if props.changesWhenLowercased {
                    out.append(contentsOf: props.lowercaseMapping.unicodeScalars.map(\.value))
                } else {
                    out.append(c)
                }
            } else {
                out.append(c)
            }
        }
        return out
    }

    /// Python's context test: cased, case-ignorables, Σ, not followed by (case-ignorables, cased).
    private static func isFinalSigma(_ text: [UInt32], at i: Int) -> Bool {
        var j = i - 1
        var c: UInt32 = 0
        while j >= 0 {
            c = text[j]
            if !isCaseIgnorable(c) { break }
            j -= 1
        }
        guard j >= 0 && isCased(c) else { return false }
        j = i + 1
        while j < text.count {
            c = text[j]
            if !isCaseIgnorable(c) { break }
            j += 1
        }
        return j == text.count || !isCased(c)
    }

    private static func isCased(_ c: UInt32) -> Bool { Unicode.Scalar(c)?.properties.isCased ?? false }
    private static func isCaseIgnorable(_ c: UInt32) -> Bool { Unicode.Scalar(c)?.properties.isCaseIgnorable ?? false }

    /// `re`'s `\w` on `str`: alphanumeric (letters, or any Numeric_Type) or underscore.
    static func isWord(_ c: UInt32) -> Bool {
        if c < 0x80 {
            return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x5F
        }
        guard let props = Unicode.Scalar(c)?.properties else { return false }
        return isLetterCategory(props.generalCategory) || props.numericType != nil
    }

    /// `re`'s `\d` on `str`: Numeric_Type=Decimal.
    static func isDecimal(_ c: UInt32) -> Bool {
        if c < 0x80 { return c >= 0x30 && c <= 0x39 }
        return Unicode.Scalar(c)?.properties.numericType == .decimal
    }

    static func isLetterCategory(_ category: Unicode.GeneralCategory) -> Bool {
        switch category {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
        default: return false
        }
    }

    static func isNumberCategory(_ category: Unicode.GeneralCategory) -> Bool {
        switch category {
        case .decimalNumber, .letterNumber, .otherNumber: return true
        default: return false
        }
    }

    /// Code points of a Swift string (a Python `str` built from valid text has the same ones).
    static func codePoints(_ s: String) -> [UInt32] { s.unicodeScalars.map(\.value) }

    /// Builds a Swift string; every value handled here is a valid scalar by construction.
    static func string(_ cps: some Sequence<UInt32>) -> String {
        var s = String.UnicodeScalarView()
        for c in cps { s.append(Unicode.Scalar(c) ?? "\u{FFFD}") }
        return String(s)
    }
}
