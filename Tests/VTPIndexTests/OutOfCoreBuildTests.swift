import Foundation
import Testing
import VTPVocabulary
@testable import VTPIndex
import VTPStorage
import VTPTestSupport

/// The streaming build from shard files under a memory budget, with real faiss.
@Suite struct OutOfCoreBuildTests {
    static let data = SyntheticEmbeddings(count: 8_000, dimension: 32, clusters: 80, seed: 31)
    /// 256 KiB: room for the 640-row training sample, but for about 3,500 rows of `IVF16,SQ8` codes at a time.
    static let tinyBudget = 262_144

    static var splitOptions: IndexOptions {
        var options = IndexOptions(exactThreshold: 1_000)
        options.encoding = .scalar8
        options.lists = 16
        options.trainingSampleSize = 640
        options.recallQueries = 100
        options.chunkRows = 64
        options.memoryBudget = tinyBudget
        return options
    }

    /// Writes `data` as float16 shard files of 1,000 rows; returns their paths.
    static func writeShards(_ data: SyntheticEmbeddings, into directory: String) throws -> [String] {
        let d = data.dimension
        return try stride(from: 0, to: data.count, by: 1_000).enumerated().map { shard, first in
            let rows = Array(data.values[(first * d)..<(min(data.count, first + 1_000) * d)])
            let path = directory + "/img_emb_\(ShardNaming.pad(shard, 5)).npy"
            try rows.withUnsafeBufferPointer { try NpyFile.write(shape: [rows.count / d, d], values: $0, as: .float16, to: path) }
            return path
        }
    }

    /// A row as the float16 file stores it.
    static func storedRow(_ i: Int) -> [Float] { data.row(i).map { Float(Float16($0)) } }

    private func readInfos(_ directory: String) throws -> [String: Any] {
        let bytes = try Data(contentsOf: URL(fileURLWithPath: directory + "/infos.json"))
        return try #require(try JSONSerialization.jsonObject(with: bytes) as? [String: Any])
    }

    @Test func tinyBudgetSplitsTheIndexAndInfosRecordTheChoice() throws {
        let root = try TemporaryDirectory("index-split")
        defer { root.remove() }
        let paths = try Self.writeShards(Self.data, into: root.path)
        let options = Self.splitOptions
        let info = try IndexBuilder.build(shardFiles: paths, outputDirectory: root.file("index"), options: options)

        let plan = try StreamingPlan.choose(count: 8_000, dimension: 32, recallQueries: 100, options: options)
        #expect(plan.parts.count == 3, "\(plan.parts)")
        #expect(info.indexKey == "IVF16,SQ8")
        #expect(info.indexCount == 3)
        let parts = try #require(info.parts)
        #expect(parts.map(\.indexPath) == ["image_00000.index", "image_00001.index", "image_00002.index"])
        #expect(parts.map { $0.firstRow..<($0.firstRow + $0.count) } == plan.parts)
        #expect(parts.first?.firstRow == 0 && parts.last.map { $0.firstRow + $0.count } == 8_000)
        #expect(info.memoryBudget == Self.tinyBudget)
        let estimate = try #require(info.memoryEstimate)
        #expect(estimate <= Self.tinyBudget && estimate == plan.estimatedPeakBytes)
        #expect(info.trainingVectors == 640)
        #expect(info.recallAt10 > 0.5 && info.recallAt10 <= 1, "recall@10 \(info.recallAt10)")
        #expect(info.recallMethod == "leave-one-out")
        #expect(info.sizeInBytes == parts.reduce(0) { $0 + $1.sizeInBytes })

        let infos = try readInfos(root.file("index"))
        #expect(infos["index_key"] as? String == "IVF16,SQ8")
        #expect(infos["nb_indices"] as? Int == 3)
        #expect(infos["index_memory_budget"] as? Int == Self.tinyBudget)
        #expect(infos["index_memory_estimate"] as? Int == estimate)
        #expect(infos["recall_at_10"] as? Double == info.recallAt10)
        #expect(infos["nprobe"] as? Int == info.probeCount)
        let recorded = try #require(infos["parts"] as? [[String: Any]])
        #expect(recorded.map { $0["first_row"] as? Int } == parts.map(\.firstRow))
        #expect(recorded.map { $0["n"] as? Int } == parts.map(\.count))
        #expect(recorded.map { $0["index_path"] as? String } == parts.map(\.indexPath))
        for part in parts {
            let size = try FileManager.default.attributesOfItem(atPath: root.file("index/" + part.indexPath))[.size] as? Int
            #expect(size == part.sizeInBytes)
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: root.file("index")).sorted()
            == ["image_00000.index", "image_00001.index", "image_00002.index", "infos.json"])

        // Rebuilding with room for everything leaves one image.index and no stale parts beside it.
        var roomy = options
        roomy.memoryBudget = nil
        let single = try IndexBuilder.build(shardFiles: paths, outputDirectory: root.file("index"), options: roomy)
        #expect(single.indexCount == 1 && single.parts?.map(\.indexPath) == ["image.index"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: root.file("index")).sorted() == ["image.index", "infos.json"])
        #expect(try EmbeddingIndexSet(directory: root.file("index")).count == 8_000)
    }

    @Test func searchOverPartsEqualsOneIndexOnTheSameQuantizer() throws {
        let root = try TemporaryDirectory("index-split-search")
        defer { root.remove() }
        let paths = try Self.writeShards(Self.data, into: root.path)
        let info = try IndexBuilder.build(shardFiles: paths, outputDirectory: root.file("index"), options: Self.splitOptions)
        let parts = try #require(info.parts)
        #expect(parts.count == 3)

        // One index over every row with the same trained quantizer and encoder: part 0 (in memory), plus
        // the rows of the other parts added after its own.
        let whole = try EmbeddingIndex(contentsOf: root.file("index/" + parts[0].indexPath))
        let probes = try #require(info.probeCount)
        #expect(whole.probeCount == probes)
        for part in parts.dropFirst() {
            let rows = (part.firstRow..<(part.firstRow + part.count)).flatMap(Self.storedRow)
            try rows.withUnsafeBufferPointer { try whole.add($0) }
        }
        #expect(whole.count == 8_000)

        let split = try EmbeddingIndexSet(directory: root.file("index"))
        #expect(split.parts.count == 3 && split.count == 8_000 && split.dimension == 32)
        var queries: [Float] = []
        for i in stride(from: 7, to: 8_000, by: 97) { queries += Self.storedRow(i) }
        let merged = try split.search(queries: queries, k: 10)
        let single = try whole.search(queries: queries, k: 10)
        #expect(merged.count == single.count)
        var hitsFromLaterParts = 0
        for (m, s) in zip(merged, single) {
            #expect(m.map(\.row) == s.map(\.row))
            #expect(zip(m, s).allSatisfy { abs($0.score - $1.score) < 1e-5 })
            hitsFromLaterParts += m.filter { $0.row >= parts[1].firstRow }.count
        }
        // The merge really combined files: most hits lie beyond part 0.
        #expect(hitsFromLaterParts > merged.count * 5)
    }

    @Test func indexFilesOpenMemoryMapped() throws {
        let root = try TemporaryDirectory("index-mmap")
        defer { root.remove() }
        let paths = try Self.writeShards(Self.data, into: root.path)
        let info = try IndexBuilder.build(shardFiles: paths, outputDirectory: root.file("index"), options: Self.splitOptions)
        let first = root.file("index/" + (try #require(info.parts?.first)).indexPath)
        let mapped = try EmbeddingIndex(mappingContentsOf: first)
        let loaded = try EmbeddingIndex(contentsOf: first)
        #expect(mapped.listsAreMapped && !loaded.listsAreMapped)
        #expect(mapped.count == loaded.count && mapped.probeCount == loaded.probeCount)
        let query = Self.storedRow(123)
        let a = try mapped.search(query: query, k: 10), b = try loaded.search(query: query, k: 10)
        #expect(a.map(\.row) == b.map(\.row) && a.map(\.score) == b.map(\.score))
        #expect(try EmbeddingIndexSet(directory: root.file("index")).listsAreMapped)
        #expect(throws: IndexError.self) { _ = try EmbeddingIndex(mappingContentsOf: root.file("index/missing.index")) }
    }

    @Test func largeCollectionWithoutBudgetStreamsIntoOneIndex() throws {
        let root = try TemporaryDirectory("index-stream")
        defer { root.remove() }
        let paths = try Self.writeShards(Self.data, into: root.path)
        var options = IndexOptions(exactThreshold: 1_000)
        options.encoding = .scalar8
        options.recallQueries = 200
        let info = try IndexBuilder.build(shardFiles: paths, outputDirectory: root.file("index"), options: options)
        #expect(info.indexKey.hasPrefix("IVF") && info.indexCount == 1 && info.memoryBudget == nil)
        #expect(info.recallAt10 >= 0.85, "recall@10 \(info.recallAt10)")
        let index = try EmbeddingIndexSet(directory: root.file("index"))
        #expect(index.count == 8_000)
        // Rows keep their collection numbers across shard files.
        for row in [5, 1_005, 7_999] { #expect(try index.search(query: Self.storedRow(row), k: 1)[0].row == row) }
    }

    @Test func budgetTooSmallIsAClearError() throws {
        let root = try TemporaryDirectory("index-small-budget")
        defer { root.remove() }
        let paths = try Self.writeShards(Self.data, into: root.path)
        var options = Self.splitOptions
        options.memoryBudget = 10_000
        #expect {
            _ = try IndexBuilder.build(shardFiles: paths, outputDirectory: root.file("index"), options: options)
        } throws: { error in
            guard case let IndexError.invalidArgument(name, detail)? = error as? IndexError else { return false }
            return name == "index memory budget" && detail.contains("too small") && detail.contains("10000 bytes")
        }
        #expect(!FileManager.default.fileExists(atPath: root.file("index/infos.json")))
    }

    @Test func unreadableShardFilesNameTheFile() throws {
        let root = try TemporaryDirectory("index-bad-shards")
        defer { root.remove() }
        let paths = try Self.writeShards(SyntheticEmbeddings(count: 2_000, dimension: 16, clusters: 4, seed: 3), into: root.path)
        func expectBadFile(_ files: [String], expectedRows: [Int]? = nil, naming path: String, saying words: String) {
            #expect {
                _ = try IndexBuilder.build(shardFiles: files, expectedRows: expectedRows, outputDirectory: root.file("index"), options: Self.splitOptions)
            } throws: { error in
                guard case let IndexError.badEmbeddingFile(p, detail)? = error as? IndexError else { return false }
                return p == path && detail.contains(words)
            }
        }
        expectBadFile(paths + [root.file("absent.npy")], naming: root.file("absent.npy"), saying: "cannot open")
        try Data("not numpy".utf8).write(to: URL(fileURLWithPath: root.file("garbage.npy")))
        expectBadFile([paths[0], root.file("garbage.npy")], naming: root.file("garbage.npy"), saying: "magic")
        expectBadFile(paths, expectedRows: [1_000, 999], naming: paths[1], saying: "expected 999")
        let bytes = try Data(contentsOf: URL(fileURLWithPath: paths[1]))
        try bytes.prefix(bytes.count - 10).write(to: URL(fileURLWithPath: root.file("short.npy")))
        expectBadFile([paths[0], root.file("short.npy")], naming: root.file("short.npy"), saying: "data bytes")
        // A file of another width is a dimension mismatch naming both files.
        let other = SyntheticEmbeddings(count: 10, dimension: 8, clusters: 1, seed: 1)
        try other.values.withUnsafeBufferPointer { try NpyFile.write(shape: [10, 8], values: $0, to: root.file("narrow.npy")) }
        #expect {
            _ = try IndexBuilder.build(shardFiles: [paths[0], root.file("narrow.npy")], outputDirectory: root.file("index"))
        } throws: { error in
            guard case let IndexError.dimensionMismatch(source, expected, found)? = error as? IndexError else { return false }
            return source.contains("narrow.npy") && expected == 16 && found == 8
        }
        // A NaN in the rows is reported with its file and row.
        var poisoned = SyntheticEmbeddings(count: 1_200, dimension: 16, clusters: 4, seed: 5).values
        poisoned[1_100 * 16 + 3] = .nan
        try poisoned.withUnsafeBufferPointer { try NpyFile.write(shape: [1_200, 16], values: $0, to: root.file("nan.npy")) }
        #expect {
            _ = try IndexBuilder.build(shardFiles: [root.file("nan.npy")], outputDirectory: root.file("index"), options: IndexOptions(exactThreshold: 1_000))
        } throws: { error in
            guard case let IndexError.nonFiniteValue(source, row)? = error as? IndexError else { return false }
            return source == root.file("nan.npy") && row == 1_100
        }
    }

    @Test func inconsistentInfosAreRejectedOnOpen() throws {
        let root = try TemporaryDirectory("index-inconsistent")
        defer { root.remove() }
        let paths = try Self.writeShards(Self.data, into: root.path)
        _ = try IndexBuilder.build(shardFiles: paths, outputDirectory: root.file("index"), options: Self.splitOptions)
        let infosURL = URL(fileURLWithPath: root.file("index/infos.json"))
        var object = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: infosURL)) as? [String: Any])
        var parts = try #require(object["parts"] as? [[String: Any]])
        parts[1]["n"] = (parts[1]["n"] as? Int ?? 0) + 1
        object["parts"] = parts
        try JSONSerialization.data(withJSONObject: object).write(to: infosURL)
        #expect {
            _ = try EmbeddingIndexSet(directory: root.file("index"))
        } throws: { error in
            guard case let IndexError.inconsistentIndex(path, detail)? = error as? IndexError else { return false }
            return path.hasSuffix("image_00001.index") && detail.contains("vectors")
        }
    }

    @Test func streamingPlanFitsTheBudget() throws {
        var options = IndexOptions()
        options.encoding = .scalar8
        options.lists = 2_048
        options.memoryBudget = 2 << 30
        let plan = try StreamingPlan.choose(count: 5_000_000, dimension: 768, recallQueries: 1_000, options: options)
        #expect(plan.index.factoryKey == "IVF2048,SQ8")
        #expect(plan.parts.count == 2 || plan.parts.count == 3, "\(plan.parts.count) parts")
        #expect(plan.parts.first?.lowerBound == 0 && plan.parts.last?.upperBound == 5_000_000)
        #expect(zip(plan.parts, plan.parts.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound })
        #expect(plan.estimatedPeakBytes <= 2 << 30)
        options.memoryBudget = nil
        #expect(try StreamingPlan.choose(count: 5_000_000, dimension: 768, recallQueries: 1_000, options: options).parts.count == 1)
        // PQ384x8 codes are half of SQ8's: never more parts for the same budget.
        options.memoryBudget = 2 << 30
        options.encoding = .productQuantizer(dimensionsPerSubquantizer: 2, bitsPerCode: 8)
        let pq = try StreamingPlan.choose(count: 5_000_000, dimension: 768, recallQueries: 1_000, options: options)
        #expect(pq.index.factoryKey == "IVF2048,PQ384x8" && pq.parts.count <= plan.parts.count)
        #expect(pq.addingPeakBytes / pq.parts.map(\.count).max()! < plan.addingPeakBytes / plan.parts.map(\.count).max()!)
        // A budget below the training sample shrinks the sample (and the list count) before giving up.
        options.memoryBudget = 256 << 20
        let lean = try StreamingPlan.choose(count: 5_000_000, dimension: 768, recallQueries: 1_000, options: options)
        guard case let .invertedFile(_, _, training) = lean.index.kind else { Issue.record("not IVF"); return }
        #expect(training < 81_920 && lean.trainingPeakBytes <= 256 << 20 && lean.estimatedPeakBytes <= 256 << 20)
    }

    @Test(arguments: [
        ("16G", 16 << 30), ("2G", 2 << 30), ("512M", 512 << 20), ("2048K", 2 << 20), ("1.5G", 3 << 29), ("100", 100),
        ("2GiB", 2 << 30), ("2gb", 2 << 30), (" 1T ", 1 << 40),
    ])
    func memorySizesParse(text: String, bytes: Int) throws {
        #expect(try MemorySize.parse(text, option: "--index-memory") == bytes)
    }

    @Test(arguments: ["", "G", "2X", "-1G", "1.2.3G", "two", "0", "0.1"])
    func badMemorySizesNameTheOption(text: String) {
        #expect {
            _ = try MemorySize.parse(text, option: "--index-memory")
        } throws: { error in
            guard case let JobError.invalidParameter(field, detail)? = error as? JobError else { return false }
            return field == "--index-memory" && detail.contains("'\(text)'") && detail.contains("16G")
        }
    }

    @Test func clipEmbedParametersCarryTheIndexMemory() throws {
        let decode = { (json: String) throws -> ClipEmbedParameters in try JSONDecoder().decode(ClipEmbedParameters.self, from: Data(json.utf8)) }
        #expect(try decode(#"{"index_memory": "2G"}"#).indexMemory == 2 << 30)
        #expect(try decode(#"{"index_memory": 1048576}"#).indexMemory == 1 << 20)
        #expect(try decode(#"{}"#).indexMemory == nil)
        #expect {
            _ = try decode(#"{"index_memory": "lots"}"#)
        } throws: { error in
            guard case let JobError.invalidParameter(field, detail)? = error as? JobError else { return false }
            return field == "index_memory" && detail.contains("'lots'")
        }
        #expect(throws: JobError.self) { try decode(#"{"index_memory": -5}"#).validate() }
        let encoded = try JSONEncoder().encode(try decode(#"{"index_memory": "512M"}"#))
        #expect(try JSONDecoder().decode(ClipEmbedParameters.self, from: encoded).indexMemory == 512 << 20)
    }
}
