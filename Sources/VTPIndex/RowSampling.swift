/// SplitMix64: a small seeded generator so samples are reproducible across runs and platforms.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

enum RowSampling {
    /// `count` distinct row numbers from `0..<rows`, ascending (Floyd's algorithm: O(count) memory).
    static func sample(_ count: Int, of rows: Int, seed: UInt64) -> [Int] {
        guard count < rows else { return Array(0..<rows) }
        var generator = SplitMix64(state: seed)
        var chosen = Set<Int>(minimumCapacity: count)
        for j in (rows - count)..<rows {
            let t = Int.random(in: 0...j, using: &generator)
            chosen.insert(chosen.contains(t) ? j : t)
        }
        return chosen.sorted()
    }

    /// Copies the listed rows of a row-major buffer into a new contiguous buffer the caller deallocates.
    static func gather(_ rows: [Int], from source: UnsafeBufferPointer<Float>, dimension d: Int) -> UnsafeMutableBufferPointer<Float> {
        let out = UnsafeMutableBufferPointer<Float>.allocate(capacity: rows.count * d)
        for (i, row) in rows.enumerated() {
            (out.baseAddress! + i * d).update(from: source.baseAddress! + row * d, count: d)
        }
        return out
    }
}
