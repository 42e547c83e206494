import Foundation
import Testing
import VTPVocabulary
import VTPModel
import VTPSafeTensors
import VTPTensor
import VTPTestSupport

@Suite struct RandomCheckpointTests {
    /// The layout `vtp model init` writes is exactly what the loader consumes, in every dtype.
    @Test(arguments: [SafeTensorsDType.f32, .f16, .bf16])
    func tinyPresetRoundTrips(_ dtype: SafeTensorsDType) throws {
        let dir = try TemporaryDirectory("init")
        defer { dir.remove() }
        try RandomCheckpoint.write(config: ModelPreset.tiny.config, to: dir.path, seed: 11, dtype: dtype)
        let model = try VTPModel(directory: dir.path)
        #expect(model.config.visionEmbedDim == 96)
        let file = try SafeTensorsFile(path: dir.file("model.safetensors"))
        let periods = try file.info("trunk.rope_embed.periods"), qkv = try file.info("trunk.blocks.0.attn.qkv.weight")
        #expect(periods.dtype == .bf16)
        #expect(qkv.dtype == dtype)
        let latents = try model.reconstructionLatents(Tensor(zeros: [1, 3, 32, 32]))
        #expect(latents.shape == [1, 16, 2, 2])
        #expect(latents.toArray().allSatisfy { $0.isFinite })
    }

    @Test func sameSeedSameWeights() throws {
        let a = try TemporaryDirectory("seed-a"), b = try TemporaryDirectory("seed-b")
        defer { a.remove(); b.remove() }
        try RandomCheckpoint.write(config: ModelPreset.tiny.config, to: a.path, seed: 5)
        try RandomCheckpoint.write(config: ModelPreset.tiny.config, to: b.path, seed: 5)
        let same = FileManager.default.contentsEqual(atPath: a.file("model.safetensors"), andPath: b.file("model.safetensors"))
        #expect(same)
    }

    @Test func presetsHaveViTWidths() {
        #expect(ModelPreset.S.config.visionEmbedDim == 384 && ModelPreset.S.config.visionDepth == 12)
        #expect(ModelPreset.B.config.decoderEmbedDim == 768 && ModelPreset.B.config.decoderNumHeads == 12)
        #expect(ModelPreset.L.config.visionEmbedDim == 1024 && ModelPreset.L.config.visionDepth == 24)
    }
}

@Suite struct DisabledTowersTests {
    @Test func encoderOnlyCheckpointLoadsAndRefusesMissingTowers() throws {
        var config = ModelPreset.tiny.config
        config.trainClip = false
        config.trainReconstruction = false
        let dir = try TemporaryDirectory("encoder-only")
        defer { dir.remove() }
        try RandomCheckpoint.write(config: config, to: dir.path, seed: 2)
        let file = try SafeTensorsFile(path: dir.file("model.safetensors"))
        #expect(!file.names.contains { $0.hasPrefix("pixel_decoder.") || $0.hasPrefix("text_transformer.") })
        let model = try VTPModel(directory: dir.path)
        let images = Tensor(zeros: [1, 3, 32, 32])
        let latents = try model.reconstructionLatents(images)
        #expect(latents.shape == [1, 16, 2, 2])
        #expect(throws: VTPModelError.self) { try model.decode(latents: latents) }
        #expect(throws: VTPModelError.self) { try model.clipTextFeatures(tokens: [Int32](repeating: 0, count: 77), count: 1) }
        #expect(model.parameterCount.decoder == 0 && model.parameterCount.text == 0)
    }
}
