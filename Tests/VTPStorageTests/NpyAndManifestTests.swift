import Foundation
import Testing
import VTPVocabulary
import VTPTestSupport
@testable import VTPStorage

@Suite struct NpyTests {
    @Test func headerIsNumpyFormat1WithAlignedData() {
        let values: [Float] = [1, 2, 3, 4, 5, 6]
        let data = [UInt8](values.withUnsafeBufferPointer { NpyFile.serialized(shape: [2, 3], values: $0) })
        #expect(Array(data[0..<8]) == [0x93] + Array("NUMPY".utf8) + [1, 0])
        let headerLength = data.u16(8)
        #expect((10 + headerLength) % 64 == 0)
        let header = String(decoding: data[10..<(10 + headerLength)], as: UTF8.self)
        #expect(header.hasPrefix("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"))
        #expect(header.hasSuffix(" \n"))
        #expect(data.count == 10 + headerLength + 24)
        #expect(Float(bitPattern: UInt32(data.u32(10 + headerLength + 20))) == 6)

        let oneD = [UInt8]([Float](repeating: 0, count: 5).withUnsafeBufferPointer { NpyFile.serialized(shape: [5], values: $0, as: .float16) })
        #expect(String(decoding: oneD[10..<70], as: UTF8.self).hasPrefix("{'descr': '<f2', 'fortran_order': False, 'shape': (5,), }"))
    }

    @Test(arguments: NpyFile.Element.allCases)
    func roundTripsThroughAFile(element: NpyFile.Element) throws {
        let t = try TempDir()
        let values = pseudoRandom(count: 4 * 7, seed: 3)
        try values.withUnsafeBufferPointer { try NpyFile.write(shape: [4, 7], values: $0, as: element, to: t.path + "/e.npy") }
        let back = try NpyFile.read(t.path + "/e.npy")
        #expect(back.shape == [4, 7])
        #expect(back.element == element)
        #expect(back.values == (element == .float32 ? values : values.map { Float(Float16($0)) }))
    }

    @Test func readsVersion2HeadersAndRejectsWhatItCannotRepresent() throws {
        func npy(major: UInt8, header: String, payload: [UInt8]) -> [UInt8] {
            var out: [UInt8] = [0x93] + Array("NUMPY".utf8) + [major, 0]
            let h = Array(header.utf8)
            out += major == 1 ? [UInt8(h.count & 0xFF), UInt8(h.count >> 8)] : [UInt8(h.count & 0xFF), UInt8(h.count >> 8), 0, 0]
            return out + h + payload
        }
        let one = Array(withUnsafeBytes(of: Float(1.5).bitPattern.littleEndian) { Array($0) })
        let v2 = try NpyFile.parse(npy(major: 2, header: "{'descr':'<f4','fortran_order':False,'shape':(1,1)}\n", payload: one), path: "v2.npy")
        #expect(v2.shape == [1, 1] && v2.values == [1.5])
        #expect(throws: StorageError.badFormat(path: "f8.npy", detail: "dtype '<f8' is not '<f2' or '<f4'")) {
            try NpyFile.parse(npy(major: 1, header: "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }\n", payload: one + one), path: "f8.npy")
        }
        #expect(throws: StorageError.badFormat(path: "f.npy", detail: "Fortran-order arrays are not supported")) {
            try NpyFile.parse(npy(major: 1, header: "{'descr': '<f4', 'fortran_order': True, 'shape': (1,), }\n", payload: one), path: "f.npy")
        }
        #expect(throws: StorageError.self) {
            try NpyFile.parse(npy(major: 1, header: "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }\n", payload: one), path: "short.npy")
        }
        #expect(throws: StorageError.badFormat(path: "x.npy", detail: "not a .npy file (magic missing)")) {
            try NpyFile.parse(Array("not numpy at all".utf8), path: "x.npy")
        }
    }

    @Test func embeddingShardsAreZeroPaddedWithMetadata() throws {
        let t = try TempDir()
        let writer = EmbeddingShardWriter(directory: t.path, shardCount: 12)
        #expect(writer.embeddingPath(shard: 3) == "img_emb/img_emb_03.npy")
        #expect(writer.metadataPath(shard: 11) == "metadata/metadata_11.jsonl")
        for shard in [10, 2] {
            let emb = pseudoRandom(count: 2 * 4, seed: UInt64(shard))
            let meta = [EmbeddingShardWriter.Metadata(sourceId: "00000.tar/\(shard)a", caption: "a \"cap\"", url: "https://x/y.jpg"),
                        EmbeddingShardWriter.Metadata(sourceId: "00000.tar/\(shard)b", label: 3)]
            try emb.withUnsafeBufferPointer { try writer.write(shard: shard, embeddings: $0, dimension: 4, metadata: meta) }
        }
        #expect(try t.names("img_emb") == ["img_emb_02.npy", "img_emb_10.npy"])
        let back = try NpyFile.read(t.path + "/img_emb/img_emb_10.npy")
        #expect(back.shape == [2, 4] && back.element == .float16)
        let lines = String(decoding: FileManager.default.contents(atPath: t.path + "/metadata/metadata_02.jsonl")!, as: UTF8.self)
        #expect(lines == "{\"caption\":\"a \\\"cap\\\"\",\"source_id\":\"00000.tar/2a\",\"url\":\"https://x/y.jpg\"}\n"
                       + "{\"label\":3,\"source_id\":\"00000.tar/2b\"}\n")
        #expect(throws: StorageError.self) {
            try [Float](repeating: 0, count: 5).withUnsafeBufferPointer { try writer.write(shard: 0, embeddings: $0, dimension: 4, metadata: []) }
        }
    }
}

@Suite struct RunManifestTests {
    @Test func roundTripsAndIsReproducible() throws {
        let t = try TempDir()
        let manifest = RunManifest(
            format: "lightningdit-latents",
            model: ["checkpoint": "/models/vtp", "revision": "abc"],
            preprocessing: ["resize": "256", "crop": "center"],
            dtype: .bfloat16,
            counts: .init(inputs: 5, written: 4, failed: 1, shards: 1),
            shards: [WrittenShard(fileName: "latents_rank00_shard000.safetensors", sidecarName: "ids_rank00_shard000.jsonl", rows: 4)],
            failures: [.init(sourceId: "a/b.jpg", reason: "corrupt JPEG")])
        try manifest.write(to: t.path + "/manifest.json")
        let first = FileManager.default.contents(atPath: t.path + "/manifest.json")
        try manifest.write(to: t.path + "/manifest.json")
        #expect(FileManager.default.contents(atPath: t.path + "/manifest.json") == first)
        #expect(try RunManifest.read(t.path + "/manifest.json") == manifest)
        let text = String(decoding: first!, as: UTF8.self)
        #expect(text.contains("\"source_id\" : \"a/b.jpg\""))
        #expect(text.contains("\"dtype\" : \"bfloat16\""))
        #expect(try t.names() == ["manifest.json"])
    }
}
