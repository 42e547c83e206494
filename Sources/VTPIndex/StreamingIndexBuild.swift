import CFaissShim
import Foundation
import VTPStorage

extension IndexBuilder {
    /// File name of part `i` when a build writes several index files (`image_00000.index`, ...).
    public static func partFileName(_ i: Int) -> String { "image_\(ShardNaming.pad(i, 5)).index" }

    /// The index files (`image.index`, `image_NNNNN.index`) present in `directory`, sorted.
    public static func indexFileNames(in directory: String) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.filter { name in
            guard name != indexFileName else { return true }
            guard name.hasPrefix("image_"), name.hasSuffix(".index") else { return false }
            let digits = name.dropFirst(6).dropLast(6)
            return !digits.isEmpty && digits.allSatisfy(\.isASCII) && digits.allSatisfy(\.isNumber)
        }.sorted()
    }

    /// Builds the index of a collection stored as per-shard `.npy` embedding files (float16 or float32,
    /// `rows × d` each; rows numbered across `shardFiles` in the order given) into `outputDirectory`.
    ///
    /// Below `options.exactThreshold` rows, when the rows and an exact index together fit
    /// `options.memoryBudget` (or there is none), the rows are loaded and ``build(embeddings:dimension:outputDirectory:options:)``
    /// builds the exact index as it always has. Otherwise the build is out of core: the quantizer trains
    /// on rows sampled across the files, then the rows are added part by part straight from the
    /// memory-mapped files, the whole collection never in memory; with a budget too small for one
    /// index's codes the index is written as several files over consecutive rows sharing the trained
    /// quantizer (``StreamingPlan``). Recall@10 is measured against exact search computed in the same
    /// pass over the files, on sampled query rows that were not training rows, each left out of its
    /// own results; `nprobe` is tuned on the first part. `infos.json` records the factory key, the
    /// parts and their row ranges, the memory estimate against the budget and the recall.
    ///
    /// `expectedRows`, when given, is each file's row count as the caller recorded it (a manifest): a
    /// file that disagrees is an error. Blocking and CPU-heavy: call it from your own thread.
    /// - Throws: `IndexError.badEmbeddingFile` naming an unreadable or malformed file, `.invalidArgument`
    ///   for a budget too small (saying how much is needed), or any error of an in-memory build.
    public static func build(shardFiles: [String], expectedRows: [Int]? = nil, outputDirectory: String,
                             options: IndexOptions = IndexOptions()) throws -> IndexInfo {
        try options.validate()
        let files = try EmbeddingShardFiles(paths: shardFiles, expectedRows: expectedRows)
        let n = files.count, d = files.dimension
        let inMemoryBytes = 2 * n * d * MemoryLayout<Float>.size
        if n < options.exactThreshold, inMemoryBytes <= (options.memoryBudget ?? Int.max) {
            var values = [Float](repeating: 0, count: n * d)
            try values.withUnsafeMutableBufferPointer { all in
                try files.forEachChunk(of: 0..<n, chunkRows: options.chunkRows) { first, rows in
                    (all.baseAddress! + first * d).update(from: rows.baseAddress!, count: rows.count)
                }
            }
            return try values.withUnsafeBufferPointer {
                try build(embeddings: $0, dimension: d, outputDirectory: outputDirectory, options: options)
            }
        }
        return try StreamingIndexBuild(files: files, outputDirectory: outputDirectory, options: options).run()
    }
}

/// One out-of-core build: see ``IndexBuilder/build(shardFiles:expectedRows:outputDirectory:options:)``.
struct StreamingIndexBuild {
    let files: EmbeddingShardFiles
    let outputDirectory: String
    let options: IndexOptions

    func run() throws -> IndexInfo {
        let n = files.count, d = files.dimension
        try IndexError.createDirectory(outputDirectory)
        let clock = ContinuousClock()
        let started = clock.now
        // Leave-one-out needs a row besides the query itself.
        let k = min(10, n - 1)
        let queryCount = k >= 1 ? min(options.recallQueries, n) : 0
        let plan = try StreamingPlan.choose(count: n, dimension: d, recallQueries: queryCount, options: options)
        let queryRows = RowSampling.sample(queryCount, of: n, seed: options.seed ^ 0x5175_6572_7900)

        let template: EmbeddingIndex
        var trainingVectors = 0
        switch plan.index.kind {
        case .exact:
            template = try EmbeddingIndex.flatInnerProduct(dimension: d)
        case let .invertedFile(lists, codes, trainingCount):
            switch codes {
            case .scalar8: template = try EmbeddingIndex.ivfScalar8(dimension: d, lists: lists)
            case let .productQuantizer(m, bits):
                template = try EmbeddingIndex.ivfProductQuantizer(dimension: d, lists: lists, subquantizers: m, bitsPerCode: bits)
            }
            let rows = Self.trainingRows(trainingCount, of: n, avoiding: queryRows, seed: options.seed)
            let sample = UnsafeMutableBufferPointer<Float>.allocate(capacity: rows.count * d)
            defer { sample.deallocate() }
            try files.gather(rows, into: sample)
            try template.train(UnsafeBufferPointer(sample))
            trainingVectors = rows.count
        }

        let queries = UnsafeMutableBufferPointer<Float>.allocate(capacity: max(1, queryCount * d))
        defer { queries.deallocate() }
        try files.gather(queryRows, into: UnsafeMutableBufferPointer(rebasing: queries[0..<(queryCount * d)]))
        let queryBuffer = UnsafeBufferPointer(rebasing: queries[0..<(queryCount * d)])
        var truth = RunningTopK(queryCount: queryCount, k: k + 1)

        var probes: Int?
        var written: [IndexInfo.Part] = []
        // Each part's approximate top-(k+1) of the queries, searched while the part is in memory.
        var partResults: [(EmbeddingIndex.RawResults, firstRow: Int)] = []
        for (p, range) in plan.parts.enumerated() {
            do {
                let index = try template.clone()
                if let probes { try index.setProbeCount(probes) }
                try add(range, to: index, kind: plan.index.kind, queries: queryBuffer, truth: &truth)
                if p == 0, case let .invertedFile(lists, _, _) = plan.index.kind {
                    // The running truth covers exactly this part's rows now: tune nprobe on it, baked into every file.
                    let meter = LeaveOneOutRecall(queries: queryBuffer, queryRows: queryRows, truth: truth, k: k)
                    var tuner = ProbeTuner(lists: lists, targetRecall: options.targetRecall)
                    var step = tuner.first
                    while case let .measure(count) = step {
                        try index.setProbeCount(count)
                        step = tuner.observe(recall: try meter.measure { try index.rawSearch(queries: $0, k: $1) })
                    }
                    guard case let .done(chosen, _) = step else { preconditionFailure("tuner stopped without a result") }
                    try index.setProbeCount(chosen)
                    probes = chosen
                }
                if queryCount > 0 { partResults.append((try index.rawSearch(queries: queryBuffer, k: k + 1), range.lowerBound)) }
                let name = plan.parts.count == 1 ? IndexBuilder.indexFileName : IndexBuilder.partFileName(p)
                let path = (outputDirectory as NSString).appendingPathComponent(name)
                try IndexBuilder.writeIndexAtomically(index, to: path)
                let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
                written.append(IndexInfo.Part(indexPath: name, firstRow: range.lowerBound, count: range.count, sizeInBytes: size))
            }
            // The part is freed now. Its inverted lists are thousands of heap blocks below glibc's mmap
            // threshold, which would stay resident with the next part's on top of them.
            vtp_faiss_release_free_memory()
        }

        // The files open as search opens them (lists memory-mapped, counts checked against the
        // plan). Recall merges the parts' results as that search does; the parts were searched in
        // memory, because searching the mapped files would bring every probed list of every part
        // into this process at once, which is what the budget forbids.
        _ = try EmbeddingIndexSet(files: written.map { ((outputDirectory as NSString).appendingPathComponent($0.indexPath), $0.firstRow, $0.count) },
                                  infosPath: (outputDirectory as NSString).appendingPathComponent(IndexBuilder.infosFileName))
        let recall: Double
        if queryCount > 0 {
            let merged = EmbeddingIndexSet.merge(partResults, k: k + 1)
            recall = try LeaveOneOutRecall(queries: queryBuffer, queryRows: queryRows, truth: truth, k: k).measure { _, kk in
                precondition(kk == k + 1)
                return merged
            }
        } else {
            recall = 1
        }
        let keep = Set(written.map(\.indexPath))
        for stale in IndexBuilder.indexFileNames(in: outputDirectory) where !keep.contains(stale) {
            try? FileManager.default.removeItem(atPath: (outputDirectory as NSString).appendingPathComponent(stale))
        }
        let elapsed = (clock.now - started).components
        var info = IndexInfo(indexKey: plan.index.factoryKey, indexParam: probes.map { "nprobe=\($0)" } ?? "", metricType: "IP",
                             count: n, dimension: d, recallAt10: recall, recallQueries: queryCount, probeCount: probes,
                             trainingVectors: trainingVectors,
                             buildSeconds: Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18,
                             indexPath: written[0].indexPath, sizeInBytes: written.reduce(0) { $0 + $1.sizeInBytes })
        info.parts = written
        info.indexCount = written.count
        info.memoryBudget = options.memoryBudget
        info.memoryEstimate = plan.estimatedPeakBytes
        info.recallMethod = "leave-one-out"
        try IndexBuilder.writeInfos(info, to: (outputDirectory as NSString).appendingPathComponent(IndexBuilder.infosFileName))
        return info
    }

    /// Adds the rows of `range` to `index` from the files, updating the exact truth on the way. An IVF
    /// part takes two passes: the first assigns every row its list (the costly quantizer search) and
    /// counts list sizes, so the lists are reserved once at their final size; the second encodes and
    /// appends with the stored assignments.
    private func add(_ range: Range<Int>, to index: EmbeddingIndex, kind: IndexPlan.Kind, queries: UnsafeBufferPointer<Float>,
                     truth: inout RunningTopK) throws {
        let d = files.dimension
        switch kind {
        case .exact:
            try index.reserve([Int64(range.count)])
            try files.forEachChunk(of: range, chunkRows: options.chunkRows) { first, rows in
                try truth.update(queries: queries, database: rows, firstRow: first, dimension: d)
                try index.add(rows)
            }
        case let .invertedFile(lists, _, _):
            let assignments = UnsafeMutableBufferPointer<Int64>.allocate(capacity: range.count)
            defer { assignments.deallocate() }
            var sizes = [Int64](repeating: 0, count: lists)
            try files.forEachChunk(of: range, chunkRows: options.chunkRows) { first, rows in
                let offset = first - range.lowerBound
                let slot = UnsafeMutableBufferPointer(rebasing: assignments[offset..<(offset + rows.count / d)])
                try index.assignLists(rows, into: slot)
                for list in slot where list >= 0 && list < lists { sizes[Int(list)] += 1 }
                try truth.update(queries: queries, database: rows, firstRow: first, dimension: d)
            }
            try index.reserve(sizes)
            try files.forEachChunk(of: range, chunkRows: options.chunkRows) { first, rows in
                let offset = first - range.lowerBound
                try index.add(rows, assignedTo: UnsafeBufferPointer(rebasing: assignments[offset..<(offset + rows.count / d)]))
            }
        }
    }

    /// `count` rows of `0..<n` sampled uniformly among those not in `avoiding` (ascending), so recall is
    /// measured on rows the quantizer never saw; falls back to all rows when too few are left.
    static func trainingRows(_ count: Int, of n: Int, avoiding: [Int], seed: UInt64) -> [Int] {
        let free = n - avoiding.count
        guard count <= free else { return RowSampling.sample(count, of: n, seed: seed) }
        // Position p among the free rows is row p plus the number of avoided rows at or before it.
        var out: [Int] = []
        out.reserveCapacity(count)
        var skipped = 0
        for position in RowSampling.sample(count, of: free, seed: seed) {
            while skipped < avoiding.count, avoiding[skipped] <= position + skipped { skipped += 1 }
            out.append(position + skipped)
        }
        return out
    }
}

/// The exact top-`k` of a fixed set of queries over a collection seen chunk by chunk.
struct RunningTopK {
    let queryCount: Int
    let k: Int
    private(set) var scores: [Float]
    private(set) var labels: [Int64]

    init(queryCount: Int, k: Int) {
        self.queryCount = queryCount
        self.k = k
        scores = [Float](repeating: -.infinity, count: queryCount * k)
        labels = [Int64](repeating: -1, count: queryCount * k)
    }

    /// Folds in the rows `firstRow ..< firstRow + database.count / dimension`. Blocking.
    mutating func update(queries: UnsafeBufferPointer<Float>, database: UnsafeBufferPointer<Float>, firstRow: Int, dimension: Int) throws {
        guard queryCount > 0, !database.isEmpty else { return }
        let chunk = try EmbeddingIndex.exactSearch(queries: queries, database: database, dimension: dimension, k: k)
        var mergedScores = [Float](repeating: -.infinity, count: k)
        var mergedLabels = [Int64](repeating: -1, count: k)
        for q in 0..<queryCount {
            var a = q * k, b = q * k
            let aEnd = a + k, bEnd = b + k
            for slot in 0..<k {
                let takeB = b < bEnd && chunk.labels[b] >= 0 && (a >= aEnd || labels[a] < 0 || chunk.scores[b] > scores[a])
                if takeB {
                    mergedScores[slot] = chunk.scores[b]
                    mergedLabels[slot] = chunk.labels[b] + Int64(firstRow)
                    b += 1
                } else if a < aEnd, labels[a] >= 0 {
                    mergedScores[slot] = scores[a]
                    mergedLabels[slot] = labels[a]
                    a += 1
                } else {
                    mergedScores[slot] = -.infinity
                    mergedLabels[slot] = -1
                }
            }
            for slot in 0..<k {
                scores[q * k + slot] = mergedScores[slot]
                labels[q * k + slot] = mergedLabels[slot]
            }
        }
    }
}

/// recall@k on query rows of the collection itself, each query's own row left out of both the exact
/// and the approximate top-k: a row trivially finds itself, which would inflate recall by up to 1/k.
struct LeaveOneOutRecall {
    let queries: UnsafeBufferPointer<Float>
    let queryRows: [Int]
    let k: Int
    let truth: [Set<Int64>]

    /// `truth` holds each query's exact top-(k+1) (room for its own row).
    init(queries: UnsafeBufferPointer<Float>, queryRows: [Int], truth: RunningTopK, k: Int) {
        self.queries = queries
        self.queryRows = queryRows
        self.k = k
        self.truth = queryRows.enumerated().map { q, row in
            Set(truth.labels[(q * truth.k)..<((q + 1) * truth.k)].filter { $0 >= 0 && $0 != Int64(row) }.prefix(k))
        }
    }

    /// `search(queries, kk)` returns the top-`kk` of every query (label -1 for missing). Blocking.
    func measure(_ search: (UnsafeBufferPointer<Float>, Int) throws -> EmbeddingIndex.RawResults) throws -> Double {
        guard !queryRows.isEmpty else { return 1 }
        let found = try search(queries, k + 1)
        var hits = 0, expected = 0
        for (q, row) in queryRows.enumerated() {
            let mine = found.labels[(q * (k + 1))..<((q + 1) * (k + 1))].filter { $0 >= 0 && $0 != Int64(row) }.prefix(k)
            hits += mine.reduce(0) { $0 + (truth[q].contains($1) ? 1 : 0) }
            expected += truth[q].count
        }
        return expected == 0 ? 1 : Double(hits) / Double(expected)
    }
}
