import Foundation
import VTPSafeTensors

/// Builds the retrieval index at the end of a `clip-embed` job: `image.index` (faiss format, loadable
/// with `faiss.read_index`) and `infos.json` in an index directory, over L2-normalized float32
/// embeddings whose rows are in item order.
public enum IndexBuilder {
    /// File name of the index, as clip-retrieval names it.
    public static let indexFileName = "image.index"
    /// File name of the build record.
    public static let infosFileName = "infos.json"

    /// Builds, tunes and writes the index for `embeddings` (`n × dimension`, row-major) into
    /// `outputDirectory` (created if missing), and returns what was recorded in `infos.json`.
    ///
    /// Exact (`Flat`) below `options.exactThreshold` vectors, `IVF{nlist},SQ8` (or PQ) from there up; either
    /// way recall@10 against exact search is measured on sampled rows and recorded.
    /// Blocking, and CPU-heavy for large collections: call it from your own thread, not the concurrency pool.
    /// - Throws: `IndexError` for malformed input, non-finite values, faiss failures or unwritable outputs.
    public static func build(embeddings: UnsafeBufferPointer<Float>, dimension: Int, outputDirectory: String,
                             options: IndexOptions = IndexOptions()) throws -> IndexInfo {
        try options.validate()
        guard dimension > 0 else { throw IndexError.invalidArgument(name: "dimension", detail: "must be positive, got \(dimension)") }
        guard embeddings.count % dimension == 0 else {
            throw IndexError.raggedBuffer(source: "embeddings", count: embeddings.count, dimension: dimension)
        }
        let n = embeddings.count / dimension
        guard n > 0 else { throw IndexError.empty(source: "embeddings") }
        if let bad = firstNonFiniteRow(embeddings, dimension: dimension) {
            throw IndexError.nonFiniteValue(source: "embeddings", row: bad)
        }
        try IndexError.createDirectory(outputDirectory)

        let clock = ContinuousClock()
        let started = clock.now
        let plan = IndexPlan.choose(count: n, dimension: dimension, options: options)
        let index: EmbeddingIndex
        var trainingVectors = 0
        switch plan.kind {
        case .exact:
            index = try EmbeddingIndex.flatInnerProduct(dimension: dimension)
        case let .invertedFile(lists, codes, trainingCount):
            switch codes {
            case .scalar8:
                index = try EmbeddingIndex.ivfScalar8(dimension: dimension, lists: lists)
            case let .productQuantizer(m, bits):
                index = try EmbeddingIndex.ivfProductQuantizer(dimension: dimension, lists: lists, subquantizers: m, bitsPerCode: bits)
            }
            if trainingCount >= n {
                // Training on everything: no need for a copy of the whole collection.
                try index.train(embeddings)
            } else {
                let rows = RowSampling.sample(trainingCount, of: n, seed: options.seed)
                let sample = RowSampling.gather(rows, from: embeddings, dimension: dimension)
                defer { sample.deallocate() }
                try index.train(UnsafeBufferPointer(sample))
            }
            trainingVectors = min(trainingCount, n)
        }
        try index.add(embeddings)

        let k = min(10, n)
        let queryRows = RowSampling.sample(min(options.recallQueries, n), of: n, seed: options.seed ^ 0x5175_6572_7900)
        let queries = RowSampling.gather(queryRows, from: embeddings, dimension: dimension)
        defer { queries.deallocate() }
        let meter = try RecallMeter(queries: UnsafeBufferPointer(queries), database: embeddings, dimension: dimension, k: k)
        let recall: Double
        var probes: Int?
        switch plan.kind {
        case .exact:
            recall = try meter.measure(index)
        case let .invertedFile(lists, _, _):
            var tuner = ProbeTuner(lists: lists, targetRecall: options.targetRecall)
            var step = tuner.first
            while case let .measure(p) = step {
                try index.setProbeCount(p)
                step = tuner.observe(recall: try meter.measure(index))
            }
            guard case let .done(chosen, chosenRecall) = step else { preconditionFailure("tuner stopped without a result") }
            try index.setProbeCount(chosen)
            probes = chosen
            recall = chosenRecall
        }

        let indexPath = (outputDirectory as NSString).appendingPathComponent(indexFileName)
        try writeIndexAtomically(index, to: indexPath)
        let elapsed = (clock.now - started).components
        let seconds = Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18
        let size = (try? FileManager.default.attributesOfItem(atPath: indexPath)[.size] as? Int) ?? 0
        let info = IndexInfo(indexKey: plan.factoryKey, indexParam: probes.map { "nprobe=\($0)" } ?? "", metricType: "IP",
                             count: n, dimension: dimension, recallAt10: recall, recallQueries: queryRows.count,
                             probeCount: probes, trainingVectors: trainingVectors, buildSeconds: seconds,
                             indexPath: indexFileName, sizeInBytes: size)
        try writeInfos(info, to: (outputDirectory as NSString).appendingPathComponent(infosFileName))
        // Parts of an earlier split build would otherwise sit beside the new single file.
        for stale in indexFileNames(in: outputDirectory) where stale != indexFileName {
            try? FileManager.default.removeItem(atPath: (outputDirectory as NSString).appendingPathComponent(stale))
        }
        return info
    }

    /// Builds the index over `img_emb/*.npy` (float16 or float32, each `N × D`) in lexicographic
    /// file-name order, which is item order because shard numbers are zero-padded: see
    /// ``build(shardFiles:expectedRows:outputDirectory:options:)`` (small collections are loaded and
    /// indexed exactly, larger ones stream from the files within `options.memoryBudget`). Blocking.
    /// - Throws: `IndexError.badEmbeddingFile` / `.dimensionMismatch` naming the offending file, or any `build` error.
    public static func build(embeddingDirectory: String, outputDirectory: String, options: IndexOptions = IndexOptions()) throws -> IndexInfo {
        try build(shardFiles: EmbeddingFiles.list(directory: embeddingDirectory), outputDirectory: outputDirectory, options: options)
    }

    /// `build(embeddingDirectory:outputDirectory:options:)` on a dedicated thread, so an async caller
    /// does not park a cooperative-pool thread for the minutes a large build takes.
    public static func buildInBackground(embeddingDirectory: String, outputDirectory: String,
                                         options: IndexOptions = IndexOptions()) async throws -> IndexInfo {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread {
                continuation.resume(with: Result {
                    try build(embeddingDirectory: embeddingDirectory, outputDirectory: outputDirectory, options: options)
                })
            }
            thread.name = "vtp-index-build"
            thread.start()
        }
    }

    private static func firstNonFiniteRow(_ values: UnsafeBufferPointer<Float>, dimension: Int) -> Int? {
        for i in 0..<values.count where !values[i].isFinite { return i / dimension }
        return nil
    }

    /// faiss writes with plain stdio, so the file goes to a temporary name, is fsynced, then renamed:
    /// readers see the old index or the whole new one.
    static func writeIndexAtomically(_ index: EmbeddingIndex, to path: String) throws {
        let url = URL(fileURLWithPath: path)
        let tmp = url.deletingLastPathComponent().path + "/." + url.lastPathComponent + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        do {
            try index.write(to: tmp)
            let fd = open(tmp, O_RDONLY)
            guard fd >= 0 else { throw IndexError.writeFailed(path: tmp, reason: String(cString: strerror(errno))) }
            let synced = fsync(fd) == 0
            close(fd)
            guard synced else { throw IndexError.writeFailed(path: tmp, reason: "fsync: " + String(cString: strerror(errno))) }
            guard rename(tmp, path) == 0 else { throw IndexError.writeFailed(path: path, reason: "rename: " + String(cString: strerror(errno))) }
        } catch {
            unlink(tmp)
            throw error
        }
    }

    static func writeInfos(_ info: IndexInfo, to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        do {
            try AtomicFile.write(try encoder.encode(info), to: path)
        } catch {
            throw IndexError.writeFailed(path: path, reason: "\(error)")
        }
    }
}
