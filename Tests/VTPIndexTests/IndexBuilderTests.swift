import Foundation
import Synchronization
import Testing
import VTPVocabulary
import VTPIndex
import VTPStorage
import VTPTestSupport

@Suite struct IndexBuilderTests {
    static let data = SyntheticEmbeddings(count: 4_000, dimension: 64, clusters: 40, seed: 11)

    private func readInfos(_ directory: String) throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: directory + "/infos.json"))
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    @Test func smallCollectionsGetAnExactIndexWithPerfectRecall() throws {
        let dir = try TemporaryDirectory("index-exact")
        defer { dir.remove() }
        let data = Self.data
        let info = try data.values.withUnsafeBufferPointer {
            try IndexBuilder.build(embeddings: $0, dimension: data.dimension, outputDirectory: dir.path)
        }
        #expect(info.indexKey == "Flat")
        #expect(info.metricType == "IP")
        #expect(info.count == 4_000 && info.dimension == 64)
        #expect(info.recallAt10 == 1)
        #expect(info.probeCount == nil)

        let infos = try readInfos(dir.path)
        #expect(infos["index_key"] as? String == "Flat")
        #expect(infos["recall_at_10"] as? Double == 1)
        #expect(infos["n"] as? Int == 4_000)
        #expect(infos["d"] as? Int == 64)
        #expect(infos["metric_type"] as? String == "IP")
        #expect((infos["build_seconds"] as? Double ?? -1) >= 0)

        // Only the two outputs: the temporary name the index was written under is gone.
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted() == ["image.index", "infos.json"])
        let index = try EmbeddingIndex(contentsOf: dir.file("image.index"))
        #expect(index.count == 4_000)
        #expect(index.dimension == 64)
        #expect(index.isInnerProduct)
        #expect(info.sizeInBytes == (try FileManager.default.attributesOfItem(atPath: dir.file("image.index"))[.size] as? Int))
    }

    /// Both approximate encodings, forced by a low threshold, against exact search.
    @Test(arguments: [
        (VectorEncoding.scalar8, "IVF64,SQ8"),
        (VectorEncoding.productQuantizer(dimensionsPerSubquantizer: 1, bitsPerCode: 8), "IVF64,PQ64x8"),
    ])
    func largeCollectionsGetAnIVFIndexWithMeasuredRecall(encoding: VectorEncoding, key: String) throws {
        let exactDir = try TemporaryDirectory("index-exact-ref")
        let approxDir = try TemporaryDirectory("index-approx")
        defer { exactDir.remove(); approxDir.remove() }
        let data = Self.data
        var options = IndexOptions(exactThreshold: 1_000)
        options.encoding = encoding
        options.targetRecall = 0.95
        let info = try data.values.withUnsafeBufferPointer {
            try IndexBuilder.build(embeddings: $0, dimension: data.dimension, outputDirectory: approxDir.path, options: options)
        }
        _ = try data.values.withUnsafeBufferPointer {
            try IndexBuilder.build(embeddings: $0, dimension: data.dimension, outputDirectory: exactDir.path)
        }
        // 4 000 rows allow 64 lists (≥ 39 training points each).
        #expect(info.indexKey == key)
        #expect(info.recallAt10 >= 0.9, "recorded recall@10 \(info.recallAt10)")
        #expect(info.recallAt10 < 1, "an approximate index that is exact on this data tests nothing")
        let probes = try #require(info.probeCount)
        #expect(info.indexParam == "nprobe=\(probes)")
        #expect(info.trainingVectors == 4_000)

        let infos = try readInfos(approxDir.path)
        #expect(infos["index_key"] as? String == key)
        #expect(infos["recall_at_10"] as? Double == info.recallAt10)
        #expect(infos["nprobe"] as? Int == probes)

        // Recall measured independently of the builder: queries it did not sample (blends of two rows),
        // the loaded approximate index against the loaded exact one.
        let approx = try EmbeddingIndex(contentsOf: approxDir.file("image.index"))
        let exact = try EmbeddingIndex(contentsOf: exactDir.file("image.index"))
        #expect(approx.probeCount == probes)
        #expect(approx.count == 4_000)
        var queries: [Float] = []
        for i in stride(from: 3, to: 4_000, by: 13) {
            queries.append(contentsOf: zip(data.row(i), data.row((i * 7 + 1) % 4_000)).map { 0.8 * $0 + 0.2 * $1 })
        }
        let found = try approx.search(queries: queries, k: 10)
        let truth = try exact.search(queries: queries, k: 10)
        let recall = zip(found, truth).map { f, t in Double(Set(f.map(\.row)).intersection(t.map(\.row)).count) / 10 }.reduce(0, +) / Double(truth.count)
        #expect(recall >= 0.9, "independent recall@10 \(recall)")
    }

    @Test func writtenIndexReadsBackWithTheSameTopK() throws {
        let dir = try TemporaryDirectory("index-roundtrip")
        defer { dir.remove() }
        let data = SyntheticEmbeddings(count: 1_500, dimension: 32, clusters: 15, seed: 5)
        _ = try data.values.withUnsafeBufferPointer {
            try IndexBuilder.build(embeddings: $0, dimension: 32, outputDirectory: dir.path)
        }
        let index = try EmbeddingIndex(contentsOf: dir.file("image.index"))
        for row in [0, 17, 999, 1_499] {
            let query = data.row(row)
            let hits = try index.search(query: query, k: 5)
            #expect(hits.map(\.row) == data.bruteForce(query, k: 5))
            #expect(hits[0].row == row)
            #expect(abs(hits[0].score - 1) < 1e-4)
            #expect(zip(hits, hits.dropFirst()).allSatisfy { $0.score >= $1.score })
        }
        // k larger than the collection returns every row once, not padding.
        let small = SyntheticEmbeddings(count: 3, dimension: 32, clusters: 1, seed: 9)
        let smallDir = try TemporaryDirectory("index-small")
        defer { smallDir.remove() }
        _ = try small.values.withUnsafeBufferPointer { try IndexBuilder.build(embeddings: $0, dimension: 32, outputDirectory: smallDir.path) }
        let all = try EmbeddingIndex(contentsOf: smallDir.file("image.index")).search(query: small.row(1), k: 10)
        #expect(Set(all.map(\.row)) == [0, 1, 2])
    }

    /// Backs the `@unchecked Sendable` claim: concurrent searches on one index agree with serial ones.
    @Test func concurrentSearchesMatchSerialOnes() throws {
        let dir = try TemporaryDirectory("index-concurrent")
        defer { dir.remove() }
        let data = SyntheticEmbeddings(count: 2_000, dimension: 32, clusters: 20, seed: 8)
        _ = try data.values.withUnsafeBufferPointer {
            try IndexBuilder.build(embeddings: $0, dimension: 32, outputDirectory: dir.path, options: IndexOptions(exactThreshold: 500))
        }
        let index = try EmbeddingIndex(contentsOf: dir.file("image.index"))
        let serial = try (0..<16).map { try index.search(query: data.row($0 * 101), k: 10).map(\.row) }
        let results = ConcurrentResults(count: 16)
        DispatchQueue.concurrentPerform(iterations: 16) { i in
            results.set(i, (try? index.search(query: data.row(i * 101), k: 10).map(\.row)) ?? [])
        }
        #expect(results.values == serial)
    }

    @Test func buildsFromNpyShardsInFileOrder() throws {
        let root = try TemporaryDirectory("index-npy")
        defer { root.remove() }
        let data = SyntheticEmbeddings(count: 900, dimension: 16, clusters: 9, seed: 21)
        try FileManager.default.createDirectory(atPath: root.file("img_emb"), withIntermediateDirectories: true)
        // Shards of 300 rows; file 10 (if lexicographic order failed on unpadded numbers) is avoided by padding.
        for shard in 0..<3 {
            let rows = Array(data.values[(shard * 300 * 16)..<((shard + 1) * 300 * 16)])
            let name = "img_emb_\(ShardNaming.pad(shard, 2)).npy"
            try rows.withUnsafeBufferPointer { try NpyFile.write(shape: [300, 16], values: $0, as: .float16, to: root.file("img_emb/" + name)) }
        }
        let info = try IndexBuilder.build(embeddingDirectory: root.file("img_emb"), outputDirectory: root.file("index"))
        #expect(info.count == 900 && info.dimension == 16)
        let index = try EmbeddingIndex(contentsOf: root.file("index/image.index"))
        // Rows keep their global item number across shards.
        for row in [5, 305, 899] {
            #expect(try index.search(query: data.row(row), k: 1)[0].row == row)
        }
        #expect(FileManager.default.fileExists(atPath: root.file("index/infos.json")))
    }

    @Test func buildInBackgroundRunsOffThePool() async throws {
        let root = try TemporaryDirectory("index-async")
        defer { root.remove() }
        let data = SyntheticEmbeddings(count: 200, dimension: 8, clusters: 4, seed: 2)
        try FileManager.default.createDirectory(atPath: root.file("img_emb"), withIntermediateDirectories: true)
        try data.values.withUnsafeBufferPointer { try NpyFile.write(shape: [200, 8], values: $0, to: root.file("img_emb/img_emb_0.npy")) }
        let info = try await IndexBuilder.buildInBackground(embeddingDirectory: root.file("img_emb"), outputDirectory: root.file("index"))
        #expect(info.count == 200)
        #expect(info.recallAt10 == 1)
    }
}

/// Slots for results written from `concurrentPerform`.
private final class ConcurrentResults: Sendable {
    private let slots: Mutex<[[Int]]>

    init(count: Int) { slots = Mutex(Array(repeating: [], count: count)) }

    func set(_ i: Int, _ value: [Int]) { slots.withLock { $0[i] = value } }

    var values: [[Int]] { slots.withLock { $0 } }
}
