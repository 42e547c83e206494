/// Python's `html.unescape` (HTML5 character references, numeric and named) over code points.
enum HTMLUnescape {
    /// html.entities.html5, keyed by the name as written after '&' (with its ';' when it has one).
    static let html5: [String: [UInt32]] = parseEntityLines(HTMLEntityData.html5)

    static func parseEntityLines(_ text: String) -> [String: [UInt32]] {
        var table: [String: [UInt32]] = [:]
        for line in text.split(separator: "\n") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            let value = line[line.index(after: eq)...].split(separator: ",").compactMap { UInt32($0, radix: 16) }
            table[String(line[..<eq])] = value
        }
        return table
    }

    private static let amp: UInt32 = 0x26, hash: UInt32 = 0x23, semicolon: UInt32 = 0x3B

    /// `html.unescape(s)`.
    static func unescape(_ s: [UInt32]) -> [UInt32] {
        guard s.contains(amp) else { return s }
        var out: [UInt32] = []
        out.reserveCapacity(s.count)
        var i = 0
        let n = s.count
        while i < n {
            guard s[i] == amp, let end = referenceEnd(s, from: i + 1) else {
                out.append(s[i])
                i += 1
                continue
            }
            replace(s[(i + 1)..<end], into: &out)
            i = end
        }
        return out
    }

    /// End of the reference that `&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)` matches
    /// after the '&' at `start - 1`, or nil when it does not match.
    private static func referenceEnd(_ s: [UInt32], from start: Int) -> Int? {
        let n = s.count
        guard start < n else { return nil }
        var j = start
        if s[j] == hash {
            j += 1
            if j < n && isDigit(s[j]) {
                while j < n && isDigit(s[j]) { j += 1 }
            } else if j + 1 < n && (s[j] == 0x78 || s[j] == 0x58) && isHexDigit(s[j + 1]) {
                j += 1
                while j < n && isHexDigit(s[j]) { j += 1 }
            } else {
                return nil
            }
        } else {
            while j < n && j - start < 32 && !isNameStop(s[j]) { j += 1 }
            if j == start { return nil }
        }
        if j < n && s[j] == semicolon { j += 1 }
        return j
    }

    /// `_replace_charref` for the reference body `ref` (everything after '&').
    private static func replace(_ ref: ArraySlice<UInt32>, into out: inout [UInt32]) {
        if ref.first == hash {
            var digits = ref.dropFirst()
            var radix: UInt32 = 10
            if let x = digits.first, x == 0x78 || x == 0x58 { radix = 16; digits = digits.dropFirst() }
            if digits.last == semicolon { digits = digits.dropLast() }
            // Python parses arbitrarily large numbers; anything past 0x10FFFF behaves the same.
            var num: UInt32 = 0
            var overflow = false
            for d in digits where !overflow {
                num = num * radix + hexValue(d)
                if num > 0x10FFFF { overflow = true }
            }
            if overflow { out.append(0xFFFD); return }
            if let mapped = HTMLEntityData.invalidCharrefs[num] { out.append(mapped); return }
            if (0xD800...0xDFFF).contains(num) { out.append(0xFFFD); return }
            if HTMLEntityData.invalidCodepoints.contains(num) { return }
            out.append(num)
            return
        }
        let name = PythonText.string(ref)
        if let value = html5[name] { out.append(contentsOf: value); return }
        // The longest prefix (at least two characters) that is an entity, the rest kept as text.
        let cps = Array(ref)
        var x = cps.count - 1
        while x > 1 {
            if let value = html5[PythonText.string(cps[0..<x])] {
                out.append(contentsOf: value)
                out.append(contentsOf: cps[x...])
                return
            }
            x -= 1
        }
        out.append(amp)
        out.append(contentsOf: ref)
    }

    @inline(__always) static func isDigit(_ c: UInt32) -> Bool { c >= 0x30 && c <= 0x39 }
    @inline(__always) static func isHexDigit(_ c: UInt32) -> Bool {
        isDigit(c) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66)
    }
    @inline(__always) private static func hexValue(_ c: UInt32) -> UInt32 {
        isDigit(c) ? c - 0x30 : (c | 0x20) - 0x61 + 10
    }
    /// Characters that end a named reference: tab, LF, FF, space, '<', '&', '#', ';'.
    @inline(__always) private static func isNameStop(_ c: UInt32) -> Bool {
        c == 0x09 || c == 0x0A || c == 0x0C || c == 0x20 || c == 0x3C || c == amp || c == hash || c == semicolon
    }
}
