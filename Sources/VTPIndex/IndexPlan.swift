import Foundation

/// The index `IndexBuilder` will build for a collection: a pure decision from n, d and the options.
struct IndexPlan: Equatable, Sendable {
    enum Codes: Equatable, Sendable {
        case scalar8
        case productQuantizer(subquantizers: Int, bitsPerCode: Int)
    }

    enum Kind: Equatable, Sendable {
        case exact
        case invertedFile(lists: Int, codes: Codes, trainingCount: Int)
    }

    var kind: Kind

    /// The faiss `index_factory` string that builds the same structure (clip-retrieval's `index_key`).
    var factoryKey: String {
        switch kind {
        case .exact: "Flat"
        case let .invertedFile(lists, .scalar8, _): "IVF\(lists),SQ8"
        case let .invertedFile(lists, .productQuantizer(m, bits), _): "IVF\(lists),PQ\(m)x\(bits)"
        }
    }

    static func choose(count n: Int, dimension d: Int, options: IndexOptions) -> IndexPlan {
        let codes: Codes
        let minimumTraining: Int
        switch options.encoding {
        case .scalar8:
            codes = .scalar8
            minimumTraining = 1
        case let .productQuantizer(dimensions, bits):
            codes = .productQuantizer(subquantizers: largestDivisor(of: d, atMost: max(1, d / dimensions)), bitsPerCode: bits)
            // PQ k-means needs at least one training point per codebook entry.
            minimumTraining = 1 << bits
        }
        guard n >= options.exactThreshold, n >= minimumTraining else { return IndexPlan(kind: .exact) }
        let lists = options.lists.map { min($0, n) } ?? automaticListCount(n)
        let training = min(n, max(options.trainingSampleSize ?? max(40 * lists, 65_536), lists, minimumTraining))
        return IndexPlan(kind: .invertedFile(lists: lists, codes: codes, trainingCount: training))
    }

    /// A power of two near 4·√n (the usual IVF rule of thumb), no larger than n / 39 so every list
    /// gets the 39 training points faiss asks for.
    static func automaticListCount(_ n: Int) -> Int {
        let target = 4 * Double(n).squareRoot()
        var lists = 1 << Int(Foundation.log2(max(target, 1)).rounded())
        while lists > 1, lists * 39 > n { lists /= 2 }
        return max(1, lists)
    }

    static func largestDivisor(of d: Int, atMost limit: Int) -> Int {
        var m = min(limit, d)
        while m > 1, d % m != 0 { m -= 1 }
        return max(1, m)
    }
}
