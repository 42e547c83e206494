import Foundation

/// `ftfy.fix_text` with ftfy 6's default configuration, over code points.
///
/// The text is fixed line by line (each segment ends after a '\n'); once a segment contains '<',
/// HTML unescaping stays off for the rest of the text, as ftfy does.
enum TextFixer {
    private static let maxSegment = 1_000_000

    static func fixText(_ text: [UInt32]) -> [UInt32] {
        var out = [UInt32]()
        out.reserveCapacity(text.count)
        var unescapeHTML = true
        var pos = 0
        while pos < text.count {
            var end = pos
            while end < text.count && text[end] != 0x0A { end += 1 }
            end = min(end + 1, text.count)
            if end - pos > maxSegment { end = pos + maxSegment }
            let segment = Array(text[pos..<end])
            if unescapeHTML && segment.contains(0x3C) { unescapeHTML = false }
            out.append(contentsOf: fixSegment(segment, unescapeHTML: unescapeHTML))
            pos = end
        }
        return out
    }

    /// `fix_and_explain`: applies every fixer, then NFC, until nothing changes.
    static func fixSegment(_ segment: [UInt32], unescapeHTML: Bool) -> [UInt32] {
        var text = segment
        while true {
            let original = text
            if unescapeHTML { text = unescapeEntities(text) }
            text = Mojibake.fixEncoding(text)
            text = Mojibake.fixC1Controls(text)
            text = fixLatinLigatures(text)
            text = fixCharacterWidth(text)
            text = uncurlQuotes(text)
            text = fixLineBreaks(text)
            // fix_surrogates has nothing to do: Swift text cannot hold surrogate code points.
            text = removeTerminalEscapes(text)
            text = removeControlChars(text)
            text = nfc(text)
            if text == original { return text }
        }
    }

    // MARK: unescape_html

    private static let upperCaseEntities = HTMLUnescape.parseEntityLines(HTMLEntityData.ftfyUpperCase)

    /// ftfy's HTML fixer: `&#?[0-9A-Za-z]{1,24};` replaced when it is a known entity (with ';'),
    /// an upper-cased spelling of one, or a numeric reference that decodes.
    static func unescapeEntities(_ text: [UInt32]) -> [UInt32] {
        guard text.contains(0x26) else { return text }
        var out = [UInt32]()
        out.reserveCapacity(text.count)
        var i = 0
        let n = text.count
        while i < n {
            guard text[i] == 0x26 else { out.append(text[i]); i += 1; continue }
            var j = i + 1
            let numeric = j < n && text[j] == 0x23
            if numeric { j += 1 }
            let nameStart = j
            while j < n && isASCIIAlnum(text[j]) { j += 1 }
            let length = j - nameStart
            guard length >= 1 && length <= 24 && j < n && text[j] == 0x3B else {
                out.append(text[i]); i += 1
                continue
            }
            let match = Array(text[i...j])
            i = j + 1
            let name = PythonText.string(match.dropFirst())
            if !numeric, let value = HTMLUnescape.html5[name] ?? upperCaseEntities[name] {
                out.append(contentsOf: value)
            } else if numeric {
                let decoded = HTMLUnescape.unescape(match)
                out.append(contentsOf: decoded.contains(0x3B) ? match : decoded)
            } else {
                out.append(contentsOf: match)
            }
        }
        return out
    }

    @inline(__always) private static func isASCIIAlnum(_ c: UInt32) -> Bool {
        (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A)
    }

    // MARK: character fixers

    private static let ligatures: [UInt32: [UInt32]] = [
        0x132: [0x49, 0x4A], 0x133: [0x69, 0x6A], 0x149: [0x2BC, 0x6E],
        0x1C4: [0x44, 0x17D], 0x1C5: [0x44, 0x17E], 0x1C6: [0x64, 0x17E],
        0x1C7: [0x4C, 0x4A], 0x1C8: [0x4C, 0x6A], 0x1C9: [0x6C, 0x6A],
        0x1CA: [0x4E, 0x4A], 0x1CB: [0x4E, 0x6A], 0x1CC: [0x6E, 0x6A],
        0x1F1: [0x44, 0x5A], 0x1F2: [0x44, 0x7A], 0x1F3: [0x64, 0x7A],
        0xFB00: [0x66, 0x66], 0xFB01: [0x66, 0x69], 0xFB02: [0x66, 0x6C],
        0xFB03: [0x66, 0x66, 0x69], 0xFB04: [0x66, 0x66, 0x6C], 0xFB05: [0x17F, 0x74], 0xFB06: [0x73, 0x74],
    ]

    static func fixLatinLigatures(_ text: [UInt32]) -> [UInt32] {
        translate(text, where: { ($0 >= 0x132 && $0 <= 0x1F3) || ($0 >= 0xFB00 && $0 <= 0xFB06) }, ligatures)
    }

    static func fixCharacterWidth(_ text: [UInt32]) -> [UInt32] {
        translate(text, where: { $0 == 0x3000 || ($0 >= 0xFF01 && $0 <= 0xFFEF) }, widthMap)
    }

    private static let widthMap: [UInt32: [UInt32]] = {
        var map = MojibakeData.widthMap
        map[0x3000] = [0x20]
        return map
    }()

    /// `str.translate` with a mapping; `candidate` is a cheap filter for the keys.
    private static func translate(_ text: [UInt32], where candidate: (UInt32) -> Bool,
                                  _ map: [UInt32: [UInt32]]) -> [UInt32] {
        guard text.contains(where: { candidate($0) && map[$0] != nil }) else { return text }
        var out = [UInt32]()
        out.reserveCapacity(text.count)
        for c in text {
            if candidate(c), let r = map[c] { out.append(contentsOf: r) } else { out.append(c) }
        }
        return out
    }

    static func uncurlQuotes(_ text: [UInt32]) -> [UInt32] {
        guard text.contains(where: { $0 == 0x2BC || ($0 >= 0x2018 && $0 <= 0x201F) }) else { return text }
        return text.map { c in
            if c == 0x2BC || (c >= 0x2018 && c <= 0x201B) { return 0x27 }
            if c >= 0x201C && c <= 0x201F { return 0x22 }
            return c
        }
    }

    static func fixLineBreaks(_ text: [UInt32]) -> [UInt32] {
        guard text.contains(where: { $0 == 0x0D || $0 == 0x2028 || $0 == 0x2029 || $0 == 0x85 }) else { return text }
        var out = [UInt32]()
        out.reserveCapacity(text.count)
        var i = 0
        while i < text.count {
            let c = text[i]
            if c == 0x0D {
                out.append(0x0A)
                i += (i + 1 < text.count && text[i + 1] == 0x0A) ? 2 : 1
                continue
            }
            out.append(c == 0x2028 || c == 0x2029 || c == 0x85 ? 0x0A : c)
            i += 1
        }
        return out
    }

    /// Removes ANSI escapes `ESC [ (\d|;)* [A-Za-z]` (`\d` being any decimal digit, as in Python's `re`).
    static func removeTerminalEscapes(_ text: [UInt32]) -> [UInt32] {
        guard text.contains(0x1B) else { return text }
        var out = [UInt32]()
        out.reserveCapacity(text.count)
        var i = 0
        while i < text.count {
            if text[i] == 0x1B && i + 1 < text.count && text[i + 1] == 0x5B {
                var j = i + 2
                while j < text.count && (text[j] == 0x3B || PythonText.isDecimal(text[j])) { j += 1 }
                if j < text.count && ((text[j] | 0x20) >= 0x61 && (text[j] | 0x20) <= 0x7A) {
                    i = j + 1
                    continue
                }
            }
            out.append(text[i])
            i += 1
        }
        return out
    }

    @inline(__always) static func isRemovedControl(_ c: UInt32) -> Bool {
        switch c {
        case 0x00...0x08, 0x0B, 0x0E...0x1F, 0x7F, 0x206A...0x206F, 0xFEFF, 0xFFF9...0xFFFC: return true
        default: return false
        }
    }

    static func removeControlChars(_ text: [UInt32]) -> [UInt32] {
        guard text.contains(where: isRemovedControl) else { return text }
        return text.filter { !isRemovedControl($0) }
    }

    /// Unicode NFC. ASCII is already normalised, which keeps the common case off Foundation.
    static func nfc(_ text: [UInt32]) -> [UInt32] {
        // Below U+0300 nothing composes or decomposes, so such text is already NFC.
        guard text.contains(where: { $0 >= 0x300 }) else { return text }
        let normalized = PythonText.string(text).precomposedStringWithCanonicalMapping
        return PythonText.codePoints(normalized)
    }
}
