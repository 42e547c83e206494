/// ftfy 6's mojibake detector and repair (`fix_encoding` with its default settings), over code points.
enum Mojibake {
    private static let sets: [CodePointSet] = MojibakeData.sets.map(CodePointSet.init(sorted:))
    private static let alternatives = MojibakeData.badnessAlternatives

    /// A single-byte encoding ftfy tries when guessing how UTF-8 bytes were misread.
    struct Charmap: Sendable {
        let name: String
        let decode: [UInt32]
        let encode: [UInt32: UInt8]
        var isSloppy: Bool { name.hasPrefix("sloppy") }

        init(name: String, table: [UInt32]) {
            self.name = name
            decode = table
            var inverse: [UInt32: UInt8] = [:]
            for (byte, cp) in table.enumerated() { inverse[cp] = UInt8(byte) }
            encode = inverse
        }

        /// `text.encode(name)`, or nil where ftfy's `possible_encoding` says no: every character must be
        /// ASCII other than U+001A, or the decoding of 0x1A or of a byte 0x80...0xFF.
        func encodeIfPossible(_ text: [UInt32]) -> [UInt8]? {
            var out = [UInt8]()
            out.reserveCapacity(text.count)
            for c in text {
                if c < 0x80 && c != 0x1A {
                    out.append(UInt8(c))
                } else if let b = encode[c], b >= 0x80 || b == 0x1A {
                    out.append(b)
                } else {
                    return nil
                }
            }
            return out
        }
    }

    static let charmaps: [Charmap] = MojibakeData.charmaps.map { Charmap(name: $0.name, table: $0.table) }
    private static let sloppyWindows1252 = charmaps[1]

    // MARK: badness

    /// For each character, the alternatives whose first element is a set containing it; every
    /// alternative starts with a set, `\s` or `^` (checked when the table is built).
    private static let alternativesByFirstCharacter: [UInt32: [Int]] = {
        var table: [UInt32: [Int]] = [:]
        for (index, alternative) in alternatives.enumerated() {
            switch alternative.first {
            case .set(let s)?:
                for c in MojibakeData.sets[s] { table[c, default: []].append(index) }
            case .space?, .start?:
                break
            default:
                preconditionFailure("badness alternative \(index) starts with an unindexed element")
            }
        }
        return table
    }()
    private static let spaceAlternatives = alternatives.indices.filter {
        if case .space? = alternatives[$0].first { return true } else { return false }
    }
    private static let startAlternatives = alternatives.indices.filter {
        if case .start? = alternatives[$0].first { return true } else { return false }
    }

    /// `ftfy.badness.is_bad`: whether any alternative of the badness expression matches somewhere.
    static func isBad(_ text: [UInt32]) -> Bool {
        for index in startAlternatives where matches(alternatives[index], 0, text, 0) { return true }
        for i in text.indices {
            let c = text[i]
            if let candidates = alternativesByFirstCharacter[c] {
                for index in candidates where matches(alternatives[index], 0, text, i) { return true }
            }
            if PythonText.isSpace(c) {
                for index in spaceAlternatives where matches(alternatives[index], 0, text, i) { return true }
            }
        }
        return false
    }

    private static func matches(_ elements: [BadnessElement], _ k: Int, _ text: [UInt32], _ pos: Int) -> Bool {
        if k == elements.count { return true }
        switch elements[k] {
        case .start:
            return pos == 0 && matches(elements, k + 1, text, pos)
        case .optionalSpace:
            if pos < text.count && PythonText.isSpace(text[pos]) && matches(elements, k + 1, text, pos + 1) {
                return true
            }
            return matches(elements, k + 1, text, pos)
        case .set(let i):
            return pos < text.count && sets[i].contains(text[pos]) && matches(elements, k + 1, text, pos + 1)
        case .notInSet(let i):
            return pos < text.count && !sets[i].contains(text[pos]) && matches(elements, k + 1, text, pos + 1)
        case .space:
            return pos < text.count && PythonText.isSpace(text[pos]) && matches(elements, k + 1, text, pos + 1)
        case .word:
            return pos < text.count && PythonText.isWord(text[pos]) && matches(elements, k + 1, text, pos + 1)
        case .any:
            return pos < text.count && text[pos] != 0x0A && matches(elements, k + 1, text, pos + 1)
        }
    }

    // MARK: fix_encoding

    /// `ftfy.fix_encoding`: repeats one repair step until the text stops changing.
    static func fixEncoding(_ text: [UInt32]) -> [UInt32] {
        var text = text
        while true {
            let next = fixEncodingOneStep(text)
            if next == text { return text }
            text = next
        }
    }

    private static func fixEncodingOneStep(_ text: [UInt32]) -> [UInt32] {
        if text.isEmpty || text.allSatisfy({ $0 < 0x80 }) || !isBad(text) { return text }
        var latin1Possible = false
        for charmap in charmaps {
            guard var bytes = charmap.encodeIfPossible(text) else { continue }
            if charmap.name == "latin-1" { latin1Possible = true }
            if charmap.name != "macroman" && ByteFixes.containsAlteredUTF8(bytes) {
                bytes = ByteFixes.restoreByteA0(bytes)
            }
            if charmap.isSloppy {
                bytes = ByteFixes.replaceLossySequences(bytes)
            }
            let variants = bytes.contains(0xED) || bytes.contains(0xC0)
            if let fixed = StrictUTF8.decode(bytes, allowVariants: variants) { return fixed }
        }
        if containsUTF8Mojibake(text) {
            let fixed = decodeInconsistentUTF8(text)
            if fixed != text { return fixed }
        }
        // ftfy compares against "windows-1252", which is never among the candidates it records,
        // so text that fits latin-1 is always tried as strict windows-1252.
        if latin1Possible, let fixed = decodeStrictWindows1252(text), fixed != text { return fixed }
        if text.contains(where: { $0 >= 0x80 && $0 <= 0x9F }) { return fixC1Controls(text) }
        return text
    }

    /// `text.encode("latin-1").decode("windows-1252")`, nil where a byte is undefined in windows-1252.
    private static func decodeStrictWindows1252(_ text: [UInt32]) -> [UInt32]? {
        var out = [UInt32]()
        out.reserveCapacity(text.count)
        for c in text {
            if c >= 0x80 && c <= 0x9F {
                let mapped = sloppyWindows1252.decode[Int(c)]
                if mapped == c { return nil }
                out.append(mapped)
            } else {
                out.append(c)
            }
        }
        return out
    }

    /// `ftfy.fixes.fix_c1_controls`: C1 controls read as their windows-1252 characters.
    static func fixC1Controls(_ text: [UInt32]) -> [UInt32] {
        guard text.contains(where: { $0 >= 0x80 && $0 <= 0x9F }) else { return text }
        return text.map { $0 >= 0x80 && $0 <= 0x9F ? sloppyWindows1252.decode[Int($0)] : $0 }
    }

    // MARK: decode_inconsistent_utf8

    private static let firstOf2 = sets[MojibakeData.utf8FirstOf2]
    private static let firstOf3 = sets[MojibakeData.utf8FirstOf3]
    private static let firstOf4 = sets[MojibakeData.utf8FirstOf4]
    private static let continuation = sets[MojibakeData.utf8Continuation]
    private static let continuationStrict = sets[MojibakeData.utf8ContinuationStrict]

    /// End of the UTF-8-looking run ftfy's detector matches at `i`, or `i` when none matches.
    private static func utf8RunEnd(_ text: [UInt32], at i: Int) -> Int {
        if i > 0 && continuationStrict.contains(text[i - 1]) { return i }
        var j = i
        let n = text.count
        func continues(_ from: Int, _ count: Int) -> Bool {
            guard from + count <= n else { return false }
            for k in from..<(from + count) where !continuation.contains(text[k]) { return false }
            return true
        }
        while j < n {
            let c = text[j]
            // The three lead sets are disjoint, so the first fitting alternative is the only one.
            if firstOf2.contains(c) && continues(j + 1, 1) { j += 2 }
            else if firstOf3.contains(c) && continues(j + 1, 2) { j += 3 }
            else if firstOf4.contains(c) && continues(j + 1, 3) { j += 4 }
            else { break }
        }
        return j
    }

    private static func containsUTF8Mojibake(_ text: [UInt32]) -> Bool {
        text.indices.contains { utf8RunEnd(text, at: $0) > $0 }
    }

    /// `ftfy.fixes.decode_inconsistent_utf8`: repairs mojibake runs embedded in otherwise fine text.
    static func decodeInconsistentUTF8(_ text: [UInt32]) -> [UInt32] {
        var out = [UInt32]()
        out.reserveCapacity(text.count)
        var i = 0
        while i < text.count {
            let end = utf8RunEnd(text, at: i)
            if end == i {
                out.append(text[i])
                i += 1
                continue
            }
            let run = Array(text[i..<end])
            if run.count < text.count && isBad(run) {
                out.append(contentsOf: fixEncoding(run))
            } else {
                out.append(contentsOf: run)
            }
            i = end
        }
        return out
    }
}

/// Byte-level repairs ftfy applies between re-encoding and decoding as UTF-8.
enum ByteFixes {
    @inline(__always) private static func isAlteredContinuation(_ b: UInt8) -> Bool {
        (b >= 0x80 && b <= 0x84) || (b >= 0x86 && b <= 0x9F) || (b >= 0xA1 && b <= 0xBF)
    }
    @inline(__always) private static func isCont(_ b: UInt8) -> Bool { b >= 0x80 && b <= 0xBF }

    /// Length of `ALTERED_UTF8_RE` matched at `i` (UTF-8 with a 0xA0 byte turned into a space), or 0.
    private static func alteredUTF8Match(_ s: [UInt8], at i: Int) -> Int {
        let n = s.count
        func at(_ k: Int) -> UInt8? { i + k < n ? s[i + k] : nil }
        guard let b0 = at(0) else { return 0 }
        switch b0 {
        case 0xC2, 0xC3, 0xC5, 0xCE, 0xD0, 0xD9: if at(1) == 0x20 { return 2 }
        default: break
        }
        if b0 == 0xE2 || b0 == 0xE3, at(1) == 0x20, let b2 = at(2), isAlteredContinuation(b2) { return 3 }
        if b0 >= 0xE0 && b0 <= 0xE3, let b1 = at(1), isAlteredContinuation(b1), at(2) == 0x20 { return 3 }
        if b0 == 0xF0, let b1 = at(1), let b2 = at(2), let b3 = at(3) {
            if b1 == 0x20 && isCont(b2) && isCont(b3) { return 4 }
            if isCont(b1) && b2 == 0x20 && isCont(b3) { return 4 }
            if isCont(b1) && isCont(b2) && b3 == 0x20 { return 4 }
        }
        return 0
    }

    static func containsAlteredUTF8(_ s: [UInt8]) -> Bool {
        s.indices.contains { alteredUTF8Match(s, at: $0) > 0 }
    }

    /// `ftfy.fixes.restore_byte_a0`.
    static func restoreByteA0(_ input: [UInt8]) -> [UInt8] {
        // A lone "à" followed by a word gets its lost 0xA0 back and keeps the space, except before
        // the Portuguese/French continuations ftfy lists.
        var s = [UInt8]()
        s.reserveCapacity(input.count)
        var i = 0
        let keep: [[UInt8]] = [[0x20], Array("quele".utf8), Array("quela".utf8), Array("quilo".utf8), Array("s ".utf8)]
        while i < input.count {
            if input[i] == 0xC3 && i + 1 < input.count && input[i + 1] == 0x20 {
                let rest = input[(i + 2)...]
                if !keep.contains(where: { rest.starts(with: $0) }) {
                    s.append(contentsOf: [0xC3, 0xA0, 0x20]); i += 2
                    continue
                }
            }
            s.append(input[i]); i += 1
        }
        var out = [UInt8]()
        out.reserveCapacity(s.count)
        i = 0
        while i < s.count {
            let len = alteredUTF8Match(s, at: i)
            if len == 0 { out.append(s[i]); i += 1; continue }
            for b in s[i..<(i + len)] { out.append(b == 0x20 ? 0xA0 : b) }
            i += len
        }
        return out
    }

    /// Byte classes of `LOSSY_UTF8_RE`, one list per alternative, tried in order.
    private enum B {
        case range(UInt8, UInt8), q, sub, subOrQ, subOrCont, subQOrCont, byte(UInt8)
        func test(_ b: UInt8) -> Bool {
            switch self {
            case .range(let lo, let hi): return b >= lo && b <= hi
            case .q: return b == 0x3F
            case .sub: return b == 0x1A
            case .subOrQ: return b == 0x1A || b == 0x3F
            case .subOrCont: return b == 0x1A || (b >= 0x80 && b <= 0xBF)
            case .subQOrCont: return b == 0x1A || b == 0x3F || (b >= 0x80 && b <= 0xBF)
            case .byte(let v): return b == v
            }
        }
    }

    private static let lossyAlternatives: [[B]] = [
        [.range(0xC2, 0xDF), .sub],
        [.range(0xC2, 0xC3), .q],
        [.byte(0xED), .range(0xA0, 0xAF), .subOrQ, .byte(0xED), .range(0xB0, 0xBF), .subQOrCont],
        [.byte(0xED), .range(0xA0, 0xAF), .subQOrCont, .byte(0xED), .range(0xB0, 0xBF), .subOrQ],
        [.range(0xE0, 0xEF), .subOrQ, .subOrCont],
        [.range(0xE0, 0xEF), .subOrCont, .subOrQ],
        [.range(0xF0, 0xF4), .subOrQ, .subOrCont, .subOrCont],
        [.range(0xF0, 0xF4), .subOrCont, .subOrQ, .subOrCont],
        [.range(0xF0, 0xF4), .subOrCont, .subOrCont, .subOrQ],
        [.sub],
    ]

    /// `ftfy.fixes.replace_lossy_sequences`: sequences that lost a byte to '?' or U+001A become U+FFFD.
    static func replaceLossySequences(_ s: [UInt8]) -> [UInt8] {
        guard s.contains(0x1A) || s.contains(0x3F) else { return s }
        var out = [UInt8]()
        out.reserveCapacity(s.count)
        var i = 0
        outer: while i < s.count {
            for alternative in lossyAlternatives where i + alternative.count <= s.count {
                var ok = true
                for (k, cls) in alternative.enumerated() where !cls.test(s[i + k]) { ok = false; break }
                if ok {
                    out.append(contentsOf: [0xEF, 0xBF, 0xBD])
                    i += alternative.count
                    continue outer
                }
            }
            out.append(s[i]); i += 1
        }
        return out
    }
}

/// Python's strict UTF-8 decoder, optionally with ftfy's "utf-8-variants" additions
/// (Java's C0 80 for NUL, and CESU-8 surrogate pairs).
enum StrictUTF8 {
    static func decode(_ s: [UInt8], allowVariants: Bool) -> [UInt32]? {
        var out = [UInt32]()
        out.reserveCapacity(s.count)
        var i = 0
        let n = s.count
        @inline(__always) func cont(_ k: Int) -> UInt32? {
            k < n && s[k] & 0xC0 == 0x80 ? UInt32(s[k] & 0x3F) : nil
        }
        while i < n {
            let b0 = s[i]
            if b0 < 0x80 { out.append(UInt32(b0)); i += 1; continue }
            if allowVariants {
                if b0 == 0xC0 && i + 1 < n && s[i + 1] == 0x80 { out.append(0); i += 2; continue }
                if b0 == 0xED && i + 5 < n && (0xA0...0xAF).contains(s[i + 1]) && cont(i + 2) != nil
                    && s[i + 3] == 0xED && (0xB0...0xBF).contains(s[i + 4]) && cont(i + 5) != nil {
                    let cp = (UInt32(s[i + 1] & 0x0F) << 16) + (UInt32(s[i + 2] & 0x3F) << 10)
                        + (UInt32(s[i + 4] & 0x0F) << 6) + UInt32(s[i + 5] & 0x3F) + 0x10000
                    out.append(cp); i += 6; continue
                }
            }
            switch b0 {
            case 0xC2...0xDF:
                guard let c1 = cont(i + 1) else { return nil }
                out.append((UInt32(b0 & 0x1F) << 6) | c1); i += 2
            case 0xE0...0xEF:
                guard i + 1 < n else { return nil }
                let b1 = s[i + 1]
                let lo: UInt8 = b0 == 0xE0 ? 0xA0 : 0x80, hi: UInt8 = b0 == 0xED ? 0x9F : 0xBF
                guard b1 >= lo && b1 <= hi, let c2 = cont(i + 2) else { return nil }
                out.append((UInt32(b0 & 0x0F) << 12) | (UInt32(b1 & 0x3F) << 6) | c2); i += 3
            case 0xF0...0xF4:
                guard i + 1 < n else { return nil }
                let b1 = s[i + 1]
                let lo: UInt8 = b0 == 0xF0 ? 0x90 : 0x80, hi: UInt8 = b0 == 0xF4 ? 0x8F : 0xBF
                guard b1 >= lo && b1 <= hi, let c2 = cont(i + 2), let c3 = cont(i + 3) else { return nil }
                out.append((UInt32(b0 & 0x07) << 18) | (UInt32(b1 & 0x3F) << 12) | (c2 << 6) | c3); i += 4
            default:
                return nil
            }
        }
        return out
    }
}
