import Foundation
import Testing
import VTPVocabulary
import VTPSafeTensors
import VTPTensor
import VTPTestSupport
@testable import VTPStorage

/// A shard's files appear together or not at all. (Output on a full tmpfs used to leave the id
/// sidecar behind whenever the tensor file after it did not fit: 17 orphan `ids_*.jsonl`.)
@Suite struct ShardFileSetTests {
    let geometry = LatentGeometry(channels: 4, height: 8, width: 8)

    /// Writes latent shard `shard` of `n` rows whose ids carry `tag`.
    @discardableResult
    func writeLatents(_ directory: String, shard: Int = 0, n: Int, tag: String) throws -> WrittenShard {
        let values = pseudoRandom(count: n * geometry.elementCount, seed: UInt64(n))
        let writer = LatentShardWriter(directory: directory, geometry: geometry)
        return try values.withUnsafeBufferPointer { v in
            try writer.write(shard: shard, latents: v, latentsFlip: v, labels: (0..<n).map(Int64.init),
                             sourceIds: (0..<n).map { "\(tag)-\($0)" })
        }
    }

    func ids(_ path: String) throws -> [String] { try SourceIdSidecar.read(path).map(\.sourceId) }

    @Test(.enabled(if: SizedTmpfs.available, "needs to mount a tmpfs (root)"))
    func aFullDiskMidwayLeavesNoFileOfTheShardAndARetryWritesThemAll() throws {
        let disk = try SizedTmpfs(bytes: 64 << 10)
        defer { disk.unmount() }
        // 64 rows: a sidecar of a few kilobytes, then 2 x 64 KiB of latents that do not fit.
        #expect(throws: StorageError.self) { try writeLatents(disk.path, n: 64, tag: "a") }
        #expect(disk.entries() == [], "no sidecar, no temporary file")

        try disk.resize(bytes: 1 << 20)
        let written = try writeLatents(disk.path, n: 64, tag: "a")
        #expect(disk.entries() == [written.sidecarName, written.fileName].sorted())
        #expect(try SafeTensorsFile(path: disk.path + "/" + written.fileName).tensor("latents").shape == [64, 4, 8, 8])
        #expect(try ids(disk.path + "/" + written.sidecarName).count == 64)

        // A rewrite that runs out of space keeps the previous files exactly, and nothing else.
        let before = try Data(contentsOf: URL(fileURLWithPath: disk.path + "/" + written.fileName))
        try disk.resize(bytes: 200 << 10)
        #expect(throws: StorageError.self) { try writeLatents(disk.path, n: 64, tag: "b") }
        #expect(disk.entries() == [written.sidecarName, written.fileName].sorted())
        #expect(try ids(disk.path + "/" + written.sidecarName) == (0..<64).map { "a-\($0)" })
        #expect(try Data(contentsOf: URL(fileURLWithPath: disk.path + "/" + written.fileName)) == before)

        // With room again, a retry replaces both.
        try disk.resize(bytes: 1 << 20)
        try writeLatents(disk.path, n: 64, tag: "b")
        #expect(try ids(disk.path + "/" + written.sidecarName) == (0..<64).map { "b-\($0)" })
        #expect(disk.entries() == [written.sidecarName, written.fileName].sorted())
    }

    @Test(.enabled(if: SizedTmpfs.available, "needs to mount a tmpfs (root)"))
    func embeddingMetadataDoesNotOutliveAFailedWrite() throws {
        let disk = try SizedTmpfs(bytes: 64 << 10)
        defer { disk.unmount() }
        let writer = EmbeddingShardWriter(directory: disk.path, shardCount: 10, element: .float32)
        let values = pseudoRandom(count: 40 * 512, seed: 3)  // 80 KiB of embeddings
        let metadata = (0..<40).map { EmbeddingShardWriter.Metadata(sourceId: "img\($0)") }
        #expect(throws: StorageError.self) {
            try values.withUnsafeBufferPointer { try writer.write(shard: 1, embeddings: $0, dimension: 512, metadata: metadata) }
        }
        #expect(disk.entries() == ["img_emb", "metadata"], "only the two empty folders: \(disk.entries())")
        try disk.resize(bytes: 1 << 20)
        try values.withUnsafeBufferPointer { try writer.write(shard: 1, embeddings: $0, dimension: 512, metadata: metadata) }
        #expect(disk.entries() == ["img_emb", "img_emb/img_emb_01.npy", "metadata", "metadata/metadata_01.jsonl"])
    }

    /// When the main file cannot be renamed into place, the partner renamed before it is put back
    /// as it was (or removed, if it is new), so the previous shard stays whole.
    @Test func aRefusedRenameRestoresThePartners() throws {
        let t = try TempDir()
        let written = try writeLatents(t.path, n: 3, tag: "old")
        let main = t.path + "/" + written.fileName
        // Stand-in for a rename that fails: a non-empty directory cannot be replaced by a file.
        try FileManager.default.removeItem(atPath: main)
        try FileManager.default.createDirectory(atPath: main + "/blocker", withIntermediateDirectories: true)
        #expect(throws: StorageError.self) { try writeLatents(t.path, n: 5, tag: "new") }
        #expect(try ids(t.path + "/" + written.sidecarName) == ["old-0", "old-1", "old-2"])
        #expect(try t.names() == [written.sidecarName, written.fileName].sorted(), "no temporary or kept-aside file remains")

        let fresh = try TempDir()
        try FileManager.default.createDirectory(atPath: fresh.path + "/" + written.fileName + "/blocker", withIntermediateDirectories: true)
        #expect(throws: StorageError.self) { try writeLatents(fresh.path, n: 5, tag: "new") }
        #expect(try fresh.names() == [written.fileName], "the new sidecar was taken back")
    }

    @Test func stagedFilesStayHiddenUntilPublishedAndStalePartnersGo() throws {
        let t = try TempDir()
        try JSONLWriter.write([SourceIdRow(row: 0, sourceId: "stale")], to: t.path + "/logits.jsonl")
        let files = ShardFileSet(directory: t.path)
        try files.stageJSONL([SourceIdRow(row: 0, sourceId: "x")], as: "ids.jsonl")
        let values: [Float] = [1, 2, 3, 4]
        try values.withUnsafeBufferPointer { try files.stageNpy(shape: [2, 2], values: $0, element: .float32, as: "main.npy", isMain: true) }
        files.removeOnPublish("logits.jsonl")
        let staged = try t.names()
        #expect(staged.count == 3 && staged.contains("logits.jsonl"))
        #expect(staged.filter { $0 != "logits.jsonl" }.allSatisfy(TemporaryName.matches), "\(staged)")
        try files.publish()
        #expect(try t.names() == ["ids.jsonl", "main.npy"])
        #expect(try NpyFile.read(t.path + "/main.npy").values == values)

        let dropped = ShardFileSet(directory: t.path)
        try dropped.stageJSONL([SourceIdRow(row: 0, sourceId: "y")], as: "other.jsonl")
        dropped.discard()
        #expect(try t.names() == ["ids.jsonl", "main.npy"])
    }

    @Test func temporaryNamesAreRecognised() {
        #expect(TemporaryName.matches(".ids_rank00_shard000.jsonl.tmp-123-4567"))
        #expect(TemporaryName.matches(".img_emb_00001.npy.tmp-1-0"))
        #expect(!TemporaryName.matches("ids_rank00_shard000.jsonl"))
        #expect(!TemporaryName.matches(".vtp-state"))
        #expect(!TemporaryName.matches(".a.tmp-12-"))
        #expect(!TemporaryName.matches(".tmp-1-2"))
        #expect(!TemporaryName.matches(".a.tmp-x-2"))
    }
}
