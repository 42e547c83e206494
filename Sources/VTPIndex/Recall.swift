/// recall@k of an index against exact search, for a fixed set of sampled queries.
struct RecallMeter {
    let queries: UnsafeBufferPointer<Float>
    let k: Int
    /// Exact top-`k` row sets, one per query.
    let truth: [Set<Int64>]

    /// Computes the exact top-`k` of `queries` among `database` once, to compare indexes against. Blocking.
    init(queries: UnsafeBufferPointer<Float>, database: UnsafeBufferPointer<Float>, dimension: Int, k: Int) throws {
        self.queries = queries
        self.k = k
        let exact = try EmbeddingIndex.exactSearch(queries: queries, database: database, dimension: dimension, k: k)
        truth = (0..<exact.queryCount).map { q in Set(exact.labels[(q * k)..<(q * k + k)].filter { $0 >= 0 }) }
    }

    /// Mean fraction of each query's exact top-`k` that `index` also returns in its top-`k`. Blocking.
    func measure(_ index: EmbeddingIndex) throws -> Double {
        let found = try index.rawSearch(queries: queries, k: k)
        // Counted in integers so the recorded value is the exact ratio, stable through JSON.
        var hits = 0, expectedTotal = 0
        for (q, expected) in truth.enumerated() {
            hits += found.labels[(q * k)..<(q * k + k)].reduce(0) { $0 + (expected.contains($1) ? 1 : 0) }
            expectedTotal += expected.count
        }
        return expectedTotal == 0 ? 1 : Double(hits) / Double(expectedTotal)
    }
}

/// The `nprobe` search as a plain state machine: feed it the recall measured at the probe count it
/// asks for; it answers with the next probe count to try, or the one to keep.
struct ProbeTuner {
    enum Step: Equatable {
        case measure(probes: Int)
        case done(probes: Int, recall: Double)
    }

    let lists: Int
    let targetRecall: Double
    /// A doubling that gains less than this is a plateau (quantization error, not probing, limits recall there).
    let plateauGain: Double
    private(set) var probes = 1
    private var previous: (probes: Int, recall: Double)?

    init(lists: Int, targetRecall: Double, plateauGain: Double = 0.002) {
        self.lists = lists
        self.targetRecall = targetRecall
        self.plateauGain = plateauGain
    }

    var first: Step { .measure(probes: probes) }

    mutating func observe(recall: Double) -> Step {
        if recall >= targetRecall || probes >= lists { return .done(probes: probes, recall: recall) }
        if let previous, recall - previous.recall < plateauGain {
            // Doubling bought (almost) nothing: keep the cheaper setting.
            return .done(probes: previous.probes, recall: previous.recall)
        }
        previous = (probes, recall)
        probes = min(lists, probes * 2)
        return .measure(probes: probes)
    }
}
