/// The reference's pre-tokenizer: the `regex` pattern
/// `<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`
/// compiled with IGNORECASE and applied with `findall`, matched by hand over code points.
enum PreTokenizer {
    enum CharClass { case letter, number, other, skipped }

    /// How the pattern sees one character.
    ///
    /// Letters and numbers are general categories L* and N*. `\s` is the `regex` module's set
    /// (Unicode White_Space). U+0345 COMBINING GREEK YPOGEGRAMMENI is a quirk of IGNORECASE: it folds to
    /// a letter, so the negated class excludes it, while `[\p{L}]` does not match it either; `findall`
    /// therefore skips it like whitespace.
    @inline(__always) static func classify(_ c: UInt32) -> CharClass {
        if c < 0x80 {
            if (c >= 0x61 && c <= 0x7A) || (c >= 0x41 && c <= 0x5A) { return .letter }
            if c >= 0x30 && c <= 0x39 { return .number }
            if (c >= 0x09 && c <= 0x0D) || c == 0x20 { return .skipped }
            return .other
        }
        switch c {
        case 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000, 0x345:
            return .skipped
        default:
            break
        }
        guard let scalar = Unicode.Scalar(c) else { return .other }
        let category = scalar.properties.generalCategory
        if PythonText.isLetterCategory(category) { return .letter }
        if PythonText.isNumberCategory(category) { return .number }
        return .other
    }

    /// Case-insensitive comparison with an ASCII literal character, as IGNORECASE does it
    /// (simple case folding: 's' also matches U+017F LATIN SMALL LETTER LONG S).
    @inline(__always) private static func foldEquals(_ c: UInt32, _ literal: UInt8) -> Bool {
        let l = UInt32(literal)
        if c == l { return true }
        if l >= 0x61 && l <= 0x7A {
            if c == l - 0x20 { return true }
            if l == 0x73 && c == 0x17F { return true }
        }
        return false
    }

    private static func matchesLiteral(_ text: [UInt32], _ i: Int, _ literal: [UInt8]) -> Bool {
        guard i + literal.count <= text.count else { return false }
        for (k, l) in literal.enumerated() where !foldEquals(text[i + k], l) { return false }
        return true
    }

    private static let specials: [[UInt8]] = [Array("<start_of_text>".utf8), Array("<end_of_text>".utf8)]
    private static let contractions: [[UInt8]] = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"].map { Array($0.utf8) }

    /// The half-open code point ranges `findall` returns, in order.
    static func split(_ text: [UInt32]) -> [Range<Int>] {
        var tokens: [Range<Int>] = []
        var i = 0
        let n = text.count
        scan: while i < n {
            let c = text[i]
            if c == 0x3C {
                for literal in specials where matchesLiteral(text, i, literal) {
                    tokens.append(i..<(i + literal.count)); i += literal.count
                    continue scan
                }
            } else if c == 0x27 {
                for literal in contractions where matchesLiteral(text, i, literal) {
                    tokens.append(i..<(i + literal.count)); i += literal.count
                    continue scan
                }
            }
            switch classify(c) {
            case .letter:
                var j = i + 1
                while j < n && classify(text[j]) == .letter { j += 1 }
                tokens.append(i..<j); i = j
            case .number:
                tokens.append(i..<(i + 1)); i += 1
            case .other:
                var j = i + 1
                while j < n && classify(text[j]) == .other { j += 1 }
                tokens.append(i..<j); i = j
            case .skipped:
                i += 1
            }
        }
        return tokens
    }
}
