import Foundation
import Testing
import VTPVocabulary
import VTPJobs
import VTPSafeTensors
import VTPStorage
import VTPTestSupport
import VTPText

/// clip-embed jobs end to end through `vtp run`'s orchestration (``JobRun``).
@Suite struct ClipEmbedTests {
    @Test func fixtureTextsAreTheTokenizedFixtureIds() throws {
        let ids = try Fixtures.safetensors("vtp-tiny.expected.safetensors").int64s("text_tokens")
        let tokens = try CLIPTokenizer.bundled().tokenize(ClipReference.texts, contextLength: 77)
        #expect(ids.count == 6 * 77 && tokens.flatMap { $0 }.map(Int64.init) == ids)
    }

    /// dog.png under six captions plus one uncaptioned row and one missing file, as float32.
    @Test func imageAndTextEmbeddingsMatchTheReference() async throws {
        let input = try InputTree("clip-embed-ref")
        let output = try TemporaryDirectory("clip-embed-ref-out")
        defer { input.dir.remove(); output.remove() }
        try input.copy("dog.png", to: "dog.png")
        var rows: [[String: Any]] = ClipReference.texts.enumerated().map { ["path": "dog.png", "id": "dog\($0)", "caption": $1, "label": $0] }
        rows.insert(["path": "dog.png", "id": "nocaption"], at: 2)
        rows.append(["path": "missing.png", "id": "missing", "caption": "lost"])
        let manifest = try writeManifest(rows, in: input)
        let result = try await JobRun.run(input: manifest, output: output.path, model: TinyModel.directory,
                                          parameters: .clipEmbed(ClipEmbedParameters(preprocessing: ClipPreprocessing(pillow: .pillow12),
                                                                                     dtype: .float32)), shardSize: 16)
        #expect(result.manifest.format == "clip-embeddings")
        #expect(result.manifest.counts.written == 7 && result.manifest.counts.failed == 1)
        #expect(result.manifest.failures.map(\.sourceId) == ["missing"])
        #expect(result.manifest.preprocessing == ["transform": "resize", "image_size": "256", "normalize": "imagenet", "pillow": "12"])
        for file in ["img_emb/img_emb_00000.npy", "metadata/metadata_00000.jsonl", "text_emb/text_emb_00000.npy",
                     "summary_rank00_shard000.json"] {
            #expect(FileManager.default.fileExists(atPath: output.file(file)), "\(file)")
        }

        let out = ClipOutput(directory: output.path)
        let images = try out.npy("img_emb/img_emb_00000.npy")
        #expect(images.shape == [7, 64] && images.element == .float32)
        let reference = try ClipReference.row("clip_image_features", 0)
        for r in 0..<7 {
            let report = ToleranceReport(ours: images.values[(r * 64)..<((r + 1) * 64)], reference: reference)
            #expect(report.withinFixtureTolerance, "image row \(r): \(report)")
        }
        let texts = try out.npy("text_emb/text_emb_00000.npy")
        #expect(texts.shape == [6, 64])
        let textReport = ToleranceReport(ours: texts.values, reference: try ClipReference.rows("clip_text_features").values)
        #expect(textReport.withinFixtureTolerance, "\(textReport)")

        let metadata = try out.jsonl("metadata/metadata_00000.jsonl", as: ClipMetadataRow.self)
        #expect(metadata.map(\.sourceId) == ["dog0", "dog1", "nocaption", "dog2", "dog3", "dog4", "dog5"])
        #expect(metadata.map(\.textRow) == [0, 1, nil, 2, 3, 4, 5])
        #expect(metadata.map(\.row) == Array(0..<7))
        #expect(metadata.compactMap(\.caption) == ClipReference.texts)
        #expect(metadata[3].label == 2 && metadata[2].label == nil && metadata[0].path == input.dir.file("dog.png"))
    }

    @Test(arguments: [1, 2]) func admCropImagesMatchTheReference(_ index: Int) async throws {
        let image = ClipReference.images[index]
        let input = try InputTree("clip-embed-adm")
        let output = try TemporaryDirectory("clip-embed-adm-out")
        defer { input.dir.remove(); output.remove() }
        try input.copy(image.name, to: image.name)
        let parameters = ClipEmbedParameters(preprocessing: ClipPreprocessing(transform: image.transform, normalize: image.normalize, pillow: .pillow12),
                                             dtype: .float32, text: false)
        let result = try await JobRun.run(input: input.path, output: output.path, model: TinyModel.directory,
                                          parameters: .clipEmbed(parameters), shardSize: 4)
        #expect(result.manifest.counts.written == 1)
        let out = ClipOutput(directory: output.path)
        let report = ToleranceReport(ours: try out.npy("img_emb/img_emb_00000.npy").values,
                                     reference: try ClipReference.row("clip_image_features", image.row))
        #expect(report.withinFixtureTolerance, "\(image.name): \(report)")
        #expect(!FileManager.default.fileExists(atPath: output.file("text_emb/text_emb_00000.npy")))
        #expect(try out.jsonl("metadata/metadata_00000.jsonl", as: ClipMetadataRow.self).map(\.textRow) == [nil])
    }

    /// Default float16 storage, several shards with fixed-width names, and the exact index over them.
    @Test func float16ShardsAndExactIndex() async throws {
        let input = try InputTree("clip-embed-f16")
        let output = try TemporaryDirectory("clip-embed-f16-out")
        defer { input.dir.remove(); output.remove() }
        for (name, _, _, _) in ClipReference.images { try input.copy(name, to: name) }
        try input.copy("dog.png", to: "dog2.png")
        try input.write(Array("not an image".utf8), to: "broken.png")
        let result = try await JobRun.run(input: input.path, output: output.path, model: TinyModel.directory,
                                          parameters: .clipEmbed(ClipEmbedParameters()), shardSize: 2)
        #expect(result.manifest.counts.shards == 3 && result.manifest.counts.written == 4 && result.manifest.counts.failed == 1)
        #expect(result.manifest.dtype == .float16)
        #expect(result.manifest.shards.map(\.fileName) == ["img_emb/img_emb_00000.npy", "img_emb/img_emb_00001.npy", "img_emb/img_emb_00002.npy"])
        let out = ClipOutput(directory: output.path)
        var all: [Float] = []
        for shard in result.manifest.shards {
            let array = try out.npy(shard.fileName)
            #expect(array.element == .float16 && array.shape == [shard.rows, 64])
            all += array.values
        }
        // Plain folder order: broken.png, chelsea.jpg, dog.png, dog2.png, rocket.jpg; broken.png fails.
        // No item has a caption: every shard still has a (0, 64) text_emb file, so the layout is uniform.
        #expect(try out.npy("text_emb/text_emb_00001.npy").shape == [0, 64])
        let ids = try result.manifest.shards.flatMap { try out.jsonl($0.sidecarName, as: ClipMetadataRow.self).map(\.sourceId) }
        #expect(ids == ["chelsea.jpg", "dog.png", "dog2.png", "rocket.jpg"])
        let dogReport = ToleranceReport(ours: all[64..<128], reference: try ClipReference.row("clip_image_features", 0))
        // float16 keeps 11 significant bits: inside the max tolerance, not the mean one.
        #expect(dogReport.maxRelative < 5e-3 && dogReport.meanRelative < 1e-3, "\(dogReport)")

        let infos = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: output.file("index/infos.json")))) as? [String: Any]
        #expect(infos?["index_key"] as? String == "Flat" && infos?["n"] as? Int == 4 && infos?["recall_at_10"] as? Double == 1)
        let index = try out.manifestObject()["index"] as? [String: Any]
        #expect(index?["n"] as? Int == 4 && index?["d"] as? Int == 64)
        // Running the finalizer again gives the same manifest bytes apart from the build time.
        #expect(FileManager.default.fileExists(atPath: output.file("index/image.index")))
    }

    /// Above the exact threshold the finalizer builds IVF+PQ and records the measured recall.
    @Test func approximateIndexAboveTheThreshold() async throws {
        let input = try InputTree("clip-embed-ivf")
        let output = try TemporaryDirectory("clip-embed-ivf-out")
        defer { input.dir.remove(); output.remove() }
        let count = 320
        for i in 0..<count { try input.write(try noisePNG(seed: UInt64(i)), to: String(format: "img%04d.png", i)) }
        let parameters = ClipEmbedParameters(preprocessing: ClipPreprocessing(imageSize: 32), dtype: .float32, batchSize: 64,
                                             text: false, indexExactThreshold: 100)
        let result = try await JobRun.run(input: input.path, output: output.path, model: TinyModel.directory,
                                          parameters: .clipEmbed(parameters), shardSize: 100)
        #expect(result.manifest.counts.written == count && result.manifest.counts.shards == 4)
        let index = try ClipOutput(directory: output.path).manifestObject()["index"] as? [String: Any]
        let key = index?["index_key"] as? String ?? ""
        #expect(key.hasPrefix("IVF") && key.contains(",PQ"), "\(key)")
        #expect(index?["n"] as? Int == count)
        let recall = index?["recall_at_10"] as? Double ?? 0
        #expect(recall >= 0.8 && recall <= 1, "recall@10 \(recall)")
        #expect((index?["nprobe"] as? Int ?? 0) >= 1)
    }
}
