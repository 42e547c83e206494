/// An immutable set of code points stored sorted, searched by bisection.
struct CodePointSet: Sendable {
    private let sorted: [UInt32]

    init(sorted: [UInt32]) { self.sorted = sorted }

    func contains(_ c: UInt32) -> Bool {
        var lo = 0, hi = sorted.count
        while lo < hi {
            let mid = (lo + hi) >> 1
            let v = sorted[mid]
            if v == c { return true }
            if v < c { lo = mid + 1 } else { hi = mid }
        }
        return false
    }
}

/// One element of ftfy's badness expression (see scripts/gen_text_tables.py).
enum BadnessElement: Sendable {
    /// A character in `MojibakeData.sets[i]`.
    case set(Int)
    /// A character not in `MojibakeData.sets[i]` (any character, newline included).
    case notInSet(Int)
    /// `\s`
    case space
    /// `\s?`
    case optionalSpace
    /// `\w`
    case word
    /// `.`: any character but a newline.
    case any
    /// `^`: the start of the text.
    case start
}
