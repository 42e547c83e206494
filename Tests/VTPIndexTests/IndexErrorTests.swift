import Foundation
import Testing
import VTPVocabulary
import VTPIndex
import VTPStorage
import VTPTestSupport

@Suite struct IndexErrorTests {
    @Test func garbageFileIsAFaissErrorNamingThePath() throws {
        let dir = try TemporaryDirectory("index-bad")
        defer { dir.remove() }
        try Data("definitely not a faiss index".utf8).write(to: URL(fileURLWithPath: dir.file("image.index")))
        do {
            _ = try EmbeddingIndex(contentsOf: dir.file("image.index"))
            Issue.record("garbage loaded as an index")
        } catch let IndexError.faiss(operation, path, status, message) {
            #expect(operation == "read_index")
            #expect(path == dir.file("image.index"))
            #expect(status != 0)
            #expect(!message.isEmpty)
        }
    }

    @Test func missingFileIsAFaissError() {
        #expect {
            _ = try EmbeddingIndex(contentsOf: "/nonexistent/dir/image.index")
        } throws: { error in
            guard case let IndexError.faiss(_, path, _, message)? = error as? IndexError else { return false }
            return path == "/nonexistent/dir/image.index" && message.contains("/nonexistent/dir/image.index")
        }
    }

    @Test func truncatedIndexFileIsRejected() throws {
        let dir = try TemporaryDirectory("index-trunc")
        defer { dir.remove() }
        let data = SyntheticEmbeddings(count: 300, dimension: 16, clusters: 3, seed: 4)
        _ = try data.values.withUnsafeBufferPointer { try IndexBuilder.build(embeddings: $0, dimension: 16, outputDirectory: dir.path) }
        let bytes = try Data(contentsOf: URL(fileURLWithPath: dir.file("image.index")))
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: dir.file("half.index")))
        #expect(throws: IndexError.self) { _ = try EmbeddingIndex(contentsOf: dir.file("half.index")) }
    }

    @Test func queryOfTheWrongDimensionIsATypedError() throws {
        let dir = try TemporaryDirectory("index-dim")
        defer { dir.remove() }
        let data = SyntheticEmbeddings(count: 100, dimension: 16, clusters: 2, seed: 4)
        _ = try data.values.withUnsafeBufferPointer { try IndexBuilder.build(embeddings: $0, dimension: 16, outputDirectory: dir.path) }
        let index = try EmbeddingIndex(contentsOf: dir.file("image.index"))
        #expect(throws: IndexError.dimensionMismatch(source: "query", expected: 16, found: 12)) {
            _ = try index.search(query: [Float](repeating: 0.1, count: 12), k: 3)
        }
        #expect(throws: IndexError.raggedBuffer(source: "queries", count: 20, dimension: 16)) {
            _ = try index.search(queries: [Float](repeating: 0.1, count: 20), k: 3)
        }
        #expect(throws: IndexError.invalidArgument(name: "k", detail: "must be positive, got 0")) {
            _ = try index.search(query: data.row(0), k: 0)
        }
    }

    @Test func shardsOfDifferentDimensionsAreRejected() throws {
        let root = try TemporaryDirectory("index-npy-dim")
        defer { root.remove() }
        let a = [Float](repeating: 0.25, count: 4 * 16), b = [Float](repeating: 0.25, count: 4 * 8)
        try a.withUnsafeBufferPointer { try NpyFile.write(shape: [4, 16], values: $0, to: root.file("img_emb_0.npy")) }
        try b.withUnsafeBufferPointer { try NpyFile.write(shape: [4, 8], values: $0, to: root.file("img_emb_1.npy")) }
        #expect {
            _ = try IndexBuilder.build(embeddingDirectory: root.path, outputDirectory: root.file("index"))
        } throws: { error in
            guard case let IndexError.dimensionMismatch(source, expected, found)? = error as? IndexError else { return false }
            return source.contains("img_emb_1.npy") && expected == 16 && found == 8
        }
        #expect(!FileManager.default.fileExists(atPath: root.file("index/image.index")))
    }

    @Test func malformedShardsAreRejectedNamingTheFile() throws {
        let root = try TemporaryDirectory("index-npy-bad")
        defer { root.remove() }
        try Data("not numpy".utf8).write(to: URL(fileURLWithPath: root.file("img_emb_0.npy")))
        #expect {
            _ = try IndexBuilder.build(embeddingDirectory: root.path, outputDirectory: root.file("index"))
        } throws: { error in
            guard case let IndexError.badEmbeddingFile(path, _)? = error as? IndexError else { return false }
            return path.hasSuffix("img_emb_0.npy")
        }
        let flat = [Float](repeating: 0.5, count: 8)
        try flat.withUnsafeBufferPointer { try NpyFile.write(shape: [8], values: $0, to: root.file("img_emb_0.npy")) }
        #expect(throws: IndexError.self) {
            _ = try IndexBuilder.build(embeddingDirectory: root.path, outputDirectory: root.file("index"))
        }
        let empty = try TemporaryDirectory("index-npy-empty")
        defer { empty.remove() }
        #expect(throws: IndexError.empty(source: empty.path + "/*.npy")) {
            _ = try IndexBuilder.build(embeddingDirectory: empty.path, outputDirectory: empty.file("index"))
        }
    }

    @Test func badBuffersAndOptionsAreRejectedBeforeFaiss() throws {
        let dir = try TemporaryDirectory("index-args")
        defer { dir.remove() }
        var values = [Float](repeating: 0.5, count: 40)
        #expect(throws: IndexError.raggedBuffer(source: "embeddings", count: 40, dimension: 16)) {
            try values.withUnsafeBufferPointer { _ = try IndexBuilder.build(embeddings: $0, dimension: 16, outputDirectory: dir.path) }
        }
        #expect(throws: IndexError.empty(source: "embeddings")) {
            try [Float]().withUnsafeBufferPointer { _ = try IndexBuilder.build(embeddings: $0, dimension: 16, outputDirectory: dir.path) }
        }
        values[21] = .nan
        #expect(throws: IndexError.nonFiniteValue(source: "embeddings", row: 2)) {
            try values.withUnsafeBufferPointer { _ = try IndexBuilder.build(embeddings: $0, dimension: 8, outputDirectory: dir.path) }
        }
        var options = IndexOptions()
        options.targetRecall = 1.5
        #expect(throws: IndexError.self) {
            try values.withUnsafeBufferPointer { _ = try IndexBuilder.build(embeddings: $0, dimension: 8, outputDirectory: dir.path, options: options) }
        }
        #expect(!FileManager.default.fileExists(atPath: dir.file("image.index")))

        // An output "directory" that is a regular file cannot be created.
        try Data("x".utf8).write(to: URL(fileURLWithPath: dir.file("plain")))
        let good = [Float](repeating: 0.5, count: 16)
        #expect {
            try good.withUnsafeBufferPointer { _ = try IndexBuilder.build(embeddings: $0, dimension: 8, outputDirectory: dir.file("plain/index")) }
        } throws: { error in
            guard case let IndexError.writeFailed(path, _)? = error as? IndexError else { return false }
            return path == dir.file("plain/index")
        }
    }
}
