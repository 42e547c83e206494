import VTPRandom

enum RowSampling {
    /// `count` distinct row numbers from `0..<rows`, ascending (Floyd's algorithm: O(count) memory).
    static func sample(_ count: Int, of rows: Int, seed: UInt64) -> [Int] {
        guard count < rows else { return Array(0..<rows) }
        var generator = SplitMix64(seed: seed)
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
