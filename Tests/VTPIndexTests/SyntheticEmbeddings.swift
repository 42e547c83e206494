import Foundation
import VTPVocabulary

/// Clustered random unit vectors: `clusters` random directions, each point a centre plus Gaussian
/// noise of `spread`, renormalized. Seeded so failures reproduce.
struct SyntheticEmbeddings {
    let count: Int
    let dimension: Int
    let values: [Float]

    init(count: Int, dimension: Int, clusters: Int, spread: Double = 0.6, seed: UInt64) {
        self.count = count
        self.dimension = dimension
        var state = seed
        func uniform() -> Double {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return (Double((z ^ (z >> 31)) >> 11) + 0.5) / Double(1 << 53)
        }
        func gaussian() -> Double { (-2 * log(uniform())).squareRoot() * cos(2 * .pi * uniform()) }
        func normalized(_ v: [Double]) -> [Double] {
            let norm = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
            return v.map { $0 / norm }
        }
        let centres = (0..<clusters).map { _ in normalized((0..<dimension).map { _ in gaussian() }) }
        var out = [Float]()
        out.reserveCapacity(count * dimension)
        for i in 0..<count {
            let c = centres[i % clusters]
            let noisy = (0..<dimension).map { c[$0] + spread * gaussian() / Double(dimension).squareRoot() }
            out.append(contentsOf: normalized(noisy).map(Float.init))
        }
        values = out
    }

    func row(_ i: Int) -> [Float] { Array(values[(i * dimension)..<((i + 1) * dimension)]) }

    /// Exact top-`k` rows of `query` by inner product, computed here without faiss.
    func bruteForce(_ query: [Float], k: Int) -> [Int] {
        var scored: [(Float, Int)] = []
        scored.reserveCapacity(count)
        values.withUnsafeBufferPointer { v in
            for i in 0..<count {
                var s: Float = 0
                for j in 0..<dimension { s += v[i * dimension + j] * query[j] }
                scored.append((s, i))
            }
        }
        return scored.sorted { $0.0 != $1.0 ? $0.0 > $1.0 : $0.1 < $1.1 }.prefix(k).map(\.1)
    }
}
