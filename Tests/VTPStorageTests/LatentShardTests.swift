import Foundation
import Testing
import VTPVocabulary
import VTPSafeTensors
import VTPTensor
@testable import VTPStorage

@Suite struct LatentShardTests {
    let geometry = LatentGeometry(channels: 4, height: 3, width: 2)

    @Test(arguments: OutputDType.allCases)
    func shardsReadBackWithTheProjectReader(dtype: OutputDType) throws {
        let t = try TempDir()
        let writer = LatentShardWriter(directory: t.path, rank: 3, geometry: geometry, dtype: dtype)
        var expectedIds: [String] = []
        for (shard, n) in [(0, 5), (1, 2)] {
            let latents = pseudoRandom(count: n * geometry.elementCount, seed: UInt64(11 + shard))
            let flips = pseudoRandom(count: n * geometry.elementCount, seed: UInt64(97 + shard))
            let labels = (0..<n).map { Int64($0 * 100 + shard) }
            let ids = (0..<n).map { "class/img_\(shard)_\($0).JPEG" }
            expectedIds += ids
            let written = try latents.withUnsafeBufferPointer { l in
                try flips.withUnsafeBufferPointer { f in
                    try writer.write(shard: shard, latents: l, latentsFlip: f, labels: labels, sourceIds: ids)
                }
            }
            #expect(written == WrittenShard(fileName: String(format: "latents_rank03_shard%03d.safetensors", shard),
                                            sidecarName: String(format: "ids_rank03_shard%03d.jsonl", shard), rows: n))

            let file = try SafeTensorsFile(path: t.path + "/" + written.fileName)
            #expect(file.metadata == ["total_size": String(n), "dtype": "torch.\(dtype.rawValue)", "device": "cpu"])
            #expect(file.names == ["labels", "latents", "latents_flip"], "int64 labels come first so every tensor stays aligned")
            for name in ["latents", "latents_flip"] {
                #expect(try file.info(name).shape == [n, 4, 3, 2])
                #expect(try file.info(name).dtype == dtype.safeTensorsDType)
            }
            #expect(try file.int64s("labels") == labels)
            let rounded: (Float) -> Float = switch dtype {
            case .float32: { $0 }
            case .float16: { Float(Float16($0)) }
            case .bfloat16: { HalfPrecision.roundToBFloat16($0) }
            }
            #expect(try file.tensor("latents").toArray() == latents.map(rounded))
            #expect(try file.tensor("latents_flip").toArray() == flips.map(rounded))

            let rows = try SourceIdSidecar.read(t.path + "/" + written.sidecarName)
            #expect(rows.map(\.sourceId) == ids)
            #expect(rows.map(\.label) == labels.map(Optional.init))
        }
        // ImgLatentDataset globs *.safetensors: only the shards may match, and no temporary file remains.
        #expect(try t.names() == ["ids_rank03_shard000.jsonl", "ids_rank03_shard001.jsonl",
                                  "latents_rank03_shard000.safetensors", "latents_rank03_shard001.safetensors"])
        _ = expectedIds
    }

    @Test func streamedLayoutIsByteIdenticalToSafeTensorsWriter() throws {
        let t = try TempDir()
        let values = pseudoRandom(count: 3 * 5, seed: 5)
        let ints: [Int64] = [1, -2, 3]
        var reference = SafeTensorsWriter()
        values.withUnsafeBufferPointer { reference.add("b", shape: [3, 5], values: $0, as: .f16) }
        reference.add("a", shape: [3], int64s: ints)
        reference.metadata = ["k": "v"]
        try values.withUnsafeBufferPointer { v in
            try ints.withUnsafeBufferPointer { i in
                try SafeTensorsStreamWriter.write([.floats("b", shape: [3, 5], v, as: .float16), .int64s("a", shape: [3], i)],
                                                  metadata: ["k": "v"], to: t.path + "/s.safetensors")
            }
        }
        #expect(FileManager.default.contents(atPath: t.path + "/s.safetensors") == (try reference.serialized()))
    }

    @Test func mismatchedInputsAreRefusedWithoutWritingAnything() throws {
        let t = try TempDir()
        let writer = LatentShardWriter(directory: t.path, geometry: geometry)
        let short = [Float](repeating: 0, count: geometry.elementCount)
        let full = [Float](repeating: 0, count: 2 * geometry.elementCount)
        #expect(throws: StorageError.self) {
            try short.withUnsafeBufferPointer { s in
                try full.withUnsafeBufferPointer { f in
                    _ = try writer.write(shard: 0, latents: s, latentsFlip: f, labels: [0, 1], sourceIds: ["a", "b"])
                }
            }
        }
        #expect(throws: StorageError.self) {
            try full.withUnsafeBufferPointer { f in
                _ = try writer.write(shard: 0, latents: f, latentsFlip: f, labels: [0, 1], sourceIds: ["a"])
            }
        }
        #expect(try t.names().isEmpty)
    }

    @Test func featureShardsCarryNamedTensorsAndSidecars() throws {
        let t = try TempDir()
        let n = 3, d = 8, tokens = 4
        let cls = pseudoRandom(count: n * d, seed: 1)
        let patches = pseudoRandom(count: n * tokens * d, seed: 2)
        let writer = FeatureShardWriter(directory: t.path, rank: 0, prefix: "features", metadata: ["model": "vtp-tiny"])
        let written = try cls.withUnsafeBufferPointer { c in
            try patches.withUnsafeBufferPointer { p in
                try writer.write(shard: 12, features: [.init(name: "cls_token", rowShape: [d], values: c),
                                                       .init(name: "patch_tokens", rowShape: [tokens, d], values: p)],
                                 sourceIds: ["x", "y", "z"], labels: [4, 5, 6])
            }
        }
        #expect(written.fileName == "features_rank00_shard012.safetensors")
        let file = try SafeTensorsFile(path: t.path + "/" + written.fileName)
        #expect(try file.info("cls_token").shape == [3, 8])
        #expect(try file.info("patch_tokens").shape == [3, 4, 8])
        #expect(try file.tensor("patch_tokens").toArray() == patches)
        #expect(try file.int64s("labels") == [4, 5, 6])
        #expect(file.metadata["model"] == "vtp-tiny")
        #expect(file.metadata["total_size"] == "3")
        #expect(try SourceIdSidecar.read(t.path + "/ids_rank00_shard012.jsonl").map(\.sourceId) == ["x", "y", "z"])
    }

    @Test func namingMatchesLightningDiTFormatting() {
        #expect(ShardNaming.tensorShard(rank: 0, shard: 0) == "latents_rank00_shard000.safetensors")
        #expect(ShardNaming.tensorShard(rank: 7, shard: 1234) == "latents_rank07_shard1234.safetensors")
        #expect(ShardNaming.width(forShardCount: 1) == 1)
        #expect(ShardNaming.width(forShardCount: 10) == 2)
        #expect(ShardNaming.width(forShardCount: 99) == 2)
        #expect(ShardNaming.width(forShardCount: 100) == 3)
    }
}
