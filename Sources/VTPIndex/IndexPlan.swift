import Foundation
import VTPVocabulary

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

/// How a streaming build (``IndexBuilder/build(shardFiles:outputDirectory:options:)``) stays inside a
/// memory budget: a pure decision from n, d and the options, so it is tested without faiss.
///
/// The build holds, at its peak, either the training sample (while training; faiss copies it once
/// more for the residuals) or one part being added: per row its code, its 8-byte id and its 8-byte
/// list number (computed in a first pass so every inverted list is reserved to its final size and
/// never grows by doubling), plus the quantizer twice (the trained template and the part's copy) and
/// one chunk of rows in flight. When the whole collection's codes do not fit, it is split into parts of
/// consecutive rows, each its own faiss file with the same trained quantizer (autofaiss's
/// `nb_indices_to_keep`), and search merges their top-k. The training sample shrinks (and with it,
/// below 39 points per list, the list count) before a budget is declared too small.
struct StreamingPlan: Equatable, Sendable {
    var index: IndexPlan
    /// Consecutive row ranges, one faiss file each, covering `0..<n`.
    var parts: [Range<Int>]
    var trainingPeakBytes: Int
    var addingPeakBytes: Int
    var estimatedPeakBytes: Int { max(trainingPeakBytes, addingPeakBytes) }

    /// More files than this is a budget mistake, not a plan.
    static let maximumParts = 4_096

    static func choose(count n: Int, dimension d: Int, recallQueries: Int, options: IndexOptions) throws -> StreamingPlan {
        var plan = IndexPlan.choose(count: n, dimension: d, options: options)
        let budget = options.memoryBudget ?? Int.max
        let floatRow = 4 * d
        let queries = min(recallQueries, n)
        // Queries, their running exact top-11 and the merged approximate results, and one chunk: its
        // float32 rows, its list numbers and the faiss scratch of encoding or searching it (about two chunks more).
        let chunk = min(options.chunkRows, n)
        let inFlight = queries * floatRow + 4 * queries * 11 * 12 + chunk * (3 * floatRow + 8)
        var training = 0
        var perRow: Int
        var fixed: Int
        switch plan.kind {
        case .exact:
            perRow = floatRow
            fixed = inFlight
        case let .invertedFile(lists, codes, trainingCount):
            var lists = lists, trainingCount = trainingCount
            let minimumTraining: Int
            if case let .productQuantizer(_, bits) = codes { minimumTraining = 1 << bits } else { minimumTraining = 1 }
            func trainingBytes(_ rows: Int, _ lists: Int) -> Int { 2 * rows * floatRow + 3 * lists * floatRow + inFlight }
            while trainingBytes(trainingCount, lists) > budget {
                let affordable = (budget - inFlight - 3 * lists * floatRow) / (2 * floatRow)
                if affordable >= max(39 * lists, minimumTraining), affordable < trainingCount {
                    trainingCount = affordable
                } else if lists > 1 {
                    lists /= 2
                    trainingCount = min(trainingCount, n)
                } else {
                    throw tooSmall(budget, needs: trainingBytes(max(39, minimumTraining), 1), for: "training the quantizer")
                }
            }
            plan.kind = .invertedFile(lists: lists, codes: codes, trainingCount: trainingCount)
            training = trainingBytes(trainingCount, lists)
            let codeSize: Int
            switch codes {
            case .scalar8: codeSize = d
            case let .productQuantizer(m, bits): codeSize = (m * bits + 7) / 8
            }
            perRow = codeSize + 8 + 8
            fixed = 2 * lists * floatRow + inFlight
        }
        guard budget > fixed, (budget - fixed) / perRow >= 1 else {
            throw tooSmall(budget, needs: fixed + perRow, for: "adding rows to \(plan.factoryKey)")
        }
        let rowsPerPart = (budget - fixed) / perRow
        let partCount = (n + rowsPerPart - 1) / rowsPerPart
        guard partCount <= maximumParts else {
            throw tooSmall(budget, needs: fixed + perRow * ((n + maximumParts - 1) / maximumParts),
                           for: "\(n) rows of \(plan.factoryKey) in at most \(maximumParts) index files")
        }
        let parts = (0..<partCount).map { (n * $0 / partCount)..<(n * ($0 + 1) / partCount) }
        let largest = parts.map(\.count).max() ?? 0
        return StreamingPlan(index: plan, parts: parts, trainingPeakBytes: training, addingPeakBytes: fixed + largest * perRow)
    }

    private static func tooSmall(_ budget: Int, needs: Int, for what: String) -> IndexError {
        .invalidArgument(name: "index memory budget",
                         detail: "\(MemorySize.describe(budget)) (\(budget) bytes) is too small: \(what) needs at least \(MemorySize.describe(needs)) (\(needs) bytes)")
    }
}
