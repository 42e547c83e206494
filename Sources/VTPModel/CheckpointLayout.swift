import Foundation
import VTPSafeTensors
import VTPRandom
import VTPTensor

/// The tensors a VTP checkpoint holds for a configuration: names, shapes and how
/// `vtp model init` fills them. The loader and this list are checked against each other by
/// loading every freshly initialised preset.
public enum CheckpointLayout {
    /// How a random checkpoint fills a tensor.
    public enum Fill: Sendable, Equatable {
        case normal(std: Float)
        case uniform(bound: Float)
        case constant(Float)
        case onesPlusNoise(std: Float)
        case ropePeriods
    }

    /// One stored tensor.
    public struct Entry: Sendable, Equatable {
        public let name: String
        public let shape: [Int]
        public let fill: Fill
        /// RoPE periods are stored in bfloat16 whatever the checkpoint's dtype, as in real checkpoints.
        public var alwaysBFloat16: Bool { fill == .ropePeriods }
    }

    /// Every tensor of a checkpoint for `c`, in a stable order.
    public static func entries(for c: VTPConfig) -> [Entry] {
        var out: [Entry] = []
        func linear(_ p: String, _ i: Int, _ o: Int, bias: Bool = true, conv1x1: Bool = false) {
            out.append(Entry(name: p + ".weight", shape: conv1x1 ? [o, i, 1, 1] : [o, i], fill: .normal(std: 0.02)))
            if bias { out.append(Entry(name: p + ".bias", shape: [o], fill: .normal(std: 0.02))) }
        }
        func norm(_ p: String, _ kind: String, _ d: Int) {
            out.append(Entry(name: p + ".weight", shape: [d], fill: .onesPlusNoise(std: 0.1)))
            if kind != "rmsnorm" { out.append(Entry(name: p + ".bias", shape: [d], fill: .normal(std: 0.02))) }
        }
        func ffn(_ p: String, _ type: String, _ d: Int, _ ratio: Double) {
            if type == "mlp" {
                let h = Int(Double(d) * ratio)
                linear(p + ".fc1", d, h)
                linear(p + ".fc2", h, d)
            } else {
                let align = type == "swiglu" ? 8 : Int(type.dropFirst(6)) ?? 8
                let h = FeedForward.swigluHidden(dim: d, ratio: ratio, alignTo: align)
                linear(p + ".w1", d, h)
                linear(p + ".w2", d, h)
                linear(p + ".w3", h, d)
            }
        }
        func blocks(_ prefix: String, depth: Int, dim d: Int, heads: Int, ratio: Double, ffnType: String, normKind: String,
                    init initValues: Double?, qk: Bool) {
            for i in 0..<depth {
                let p = "\(prefix).blocks.\(i)"
                norm(p + ".norm1", normKind, d)
                linear(p + ".attn.qkv", d, 3 * d)
                if qk {
                    out.append(Entry(name: p + ".attn.q_norm.weight", shape: [d / heads], fill: .onesPlusNoise(std: 0.1)))
                    out.append(Entry(name: p + ".attn.k_norm.weight", shape: [d / heads], fill: .onesPlusNoise(std: 0.1)))
                }
                linear(p + ".attn.proj", d, d)
                if let v = initValues, v != 0 { out.append(Entry(name: p + ".ls1.gamma", shape: [d], fill: .constant(Float(v)))) }
                norm(p + ".norm2", normKind, d)
                ffn(p + ".mlp", ffnType, d, ratio)
                if let v = initValues, v != 0 { out.append(Entry(name: p + ".ls2.gamma", shape: [d], fill: .constant(Float(v)))) }
            }
        }
        let d = c.visionEmbedDim, p = c.visionPatchSize
        out.append(Entry(name: "trunk.cls_token", shape: [1, 1, d], fill: .normal(std: 0.02)))
        out.append(Entry(name: "trunk.mask_token", shape: [1, d], fill: .constant(0)))
        let bound = Float(1 / Double(3 * p * p).squareRoot())
        out.append(Entry(name: "trunk.patch_embed.proj.weight", shape: [d, 3, p, p], fill: .uniform(bound: bound)))
        out.append(Entry(name: "trunk.patch_embed.proj.bias", shape: [d], fill: .uniform(bound: bound)))
        out.append(Entry(name: "trunk.rope_embed.periods", shape: [d / c.visionNumHeads / 4], fill: .ropePeriods))
        blocks("trunk", depth: c.visionDepth, dim: d, heads: c.visionNumHeads, ratio: c.visionMlpRatio,
               ffnType: c.visionFfnLayer, normKind: c.visionNormLayer, init: c.visionInitValues, qk: c.visionUseQkNorm)
        norm("trunk.norm", c.visionNormLayer, d)
        if c.latentChannels != d { linear("trunk.feature_bottleneck", d, c.latentChannels, bias: false) }
        if c.trainClip {
            linear("visual_proj", c.visionBottleneckAeOnly ? d : c.latentChannels, c.textEmbedDim, bias: false)
        }
        if c.trainReconstruction {
            let e = c.decoderEmbedDim
            linear("pixel_decoder.proj_in", c.latentChannels, e, conv1x1: true)
            out.append(Entry(name: "pixel_decoder.rope_embed.periods", shape: [e / c.decoderNumHeads / 4], fill: .ropePeriods))
            blocks("pixel_decoder", depth: c.decoderDepth, dim: e, heads: c.decoderNumHeads, ratio: 4.0,
                   ffnType: c.decoderFfnLayer, normKind: c.decoderNormLayer, init: c.decoderInitValues, qk: c.decoderUseQkNorm)
            norm("pixel_decoder.norm", c.decoderNormLayer, e)
            linear("pixel_decoder.proj_out", e, 3 * PixelDecoder.upscale * PixelDecoder.upscale, conv1x1: true)
        }
        if c.trainClip {
            let w = c.textEmbedDim, h = Int(Double(w) * c.textMlpRatio)
            out.append(Entry(name: "token_embedding.weight", shape: [c.textVocabSize, w], fill: .normal(std: 0.02)))
            out.append(Entry(name: "positional_embedding", shape: [c.textContextLength, w], fill: .normal(std: 0.01)))
            for i in 0..<c.textDepth {
                let p = "text_transformer.resblocks.\(i)"
                norm(p + ".ln_1", "layernorm", w)
                out.append(Entry(name: p + ".attn.in_proj_weight", shape: [3 * w, w], fill: .normal(std: Float(1 / Double(w).squareRoot()))))
                out.append(Entry(name: p + ".attn.in_proj_bias", shape: [3 * w], fill: .normal(std: 0.02)))
                linear(p + ".attn.out_proj", w, w)
                if let v = c.textLsInitValue { out.append(Entry(name: p + ".ls_1.gamma", shape: [w], fill: .constant(Float(v)))) }
                norm(p + ".ln_2", "layernorm", w)
                linear(p + ".mlp.c_fc", w, h)
                linear(p + ".mlp.c_proj", h, w)
                if let v = c.textLsInitValue { out.append(Entry(name: p + ".ls_2.gamma", shape: [w], fill: .constant(Float(v)))) }
            }
            norm("ln_final", "layernorm", w)
            if c.textProjType != "none" {
                if c.textProjBias {
                    linear("text_projection", w, w)
                } else {
                    out.append(Entry(name: "text_projection", shape: [w, w], fill: .normal(std: Float(1 / Double(w).squareRoot()))))
                }
            }
            let scalar = c.nonscalarLogitScale ? [1] : []
            out.append(Entry(name: "logit_scale", shape: scalar, fill: .constant(Float(c.initLogitScale ?? log(1 / 0.07)))))
            if let bias = c.initLogitBias { out.append(Entry(name: "logit_bias", shape: scalar, fill: .constant(Float(bias)))) }
        }
        return out
    }
}

/// Named configurations for `vtp model init`.
public enum ModelPreset: String, CaseIterable, Sendable {
    case tiny, S, B, L

    /// The configuration: ViT-S/B/L widths and depths for vision encoder and pixel decoder,
    /// a 64-channel bottleneck and the 12-layer, 768-wide text tower of the released VTP models.
    public var config: VTPConfig {
        var c = VTPConfig()
        c.storedDType = "float32"
        switch self {
        case .tiny:
            (c.visionEmbedDim, c.visionDepth, c.visionNumHeads, c.visionFeatureBottleneck) = (96, 2, 4, 16)
            (c.decoderEmbedDim, c.decoderDepth, c.decoderNumHeads) = (64, 2, 4)
            (c.textEmbedDim, c.textDepth, c.textNumHeads) = (64, 2, 4)
        case .S:
            (c.visionEmbedDim, c.visionDepth, c.visionNumHeads, c.visionFeatureBottleneck) = (384, 12, 6, 64)
            (c.decoderEmbedDim, c.decoderDepth, c.decoderNumHeads) = (384, 12, 6)
        case .B:
            (c.visionEmbedDim, c.visionDepth, c.visionNumHeads, c.visionFeatureBottleneck) = (768, 12, 12, 64)
            (c.decoderEmbedDim, c.decoderDepth, c.decoderNumHeads) = (768, 12, 12)
        case .L:
            (c.visionEmbedDim, c.visionDepth, c.visionNumHeads, c.visionFeatureBottleneck) = (1024, 24, 16, 64)
            (c.decoderEmbedDim, c.decoderDepth, c.decoderNumHeads) = (1024, 24, 16)
        }
        return c
    }
}

/// Writes random-weight checkpoints in the Hugging Face layout (config.json + model.safetensors).
public enum RandomCheckpoint {
    /// Creates `directory` (if needed) and writes a checkpoint for `config` seeded by `seed`.
    /// `dtype` is the storage type of every tensor but the RoPE periods (always bfloat16).
    public static func write(config: VTPConfig, to directory: String, seed: UInt64, dtype: SafeTensorsDType = .f32) throws {
        try config.validate()
        guard [.f32, .f16, .bf16].contains(dtype) else { throw VTPModelError.unsupported("checkpoint dtype \(dtype)") }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var rng = SplitMix64(seed: seed)
        var writer = SafeTensorsWriter()
        writer.metadata["format"] = "pt"
        for e in CheckpointLayout.entries(for: config) {
            let n = e.shape.reduce(1, *)
            var values = [Float](repeating: 0, count: n)
            switch e.fill {
            case let .normal(std): for i in 0..<n { values[i] = rng.nextNormal() * std }
            case let .uniform(bound): for i in 0..<n { values[i] = (rng.nextUnitFloat() * 2 - 1) * bound }
            case let .constant(v): for i in 0..<n { values[i] = v }
            case let .onesPlusNoise(std): for i in 0..<n { values[i] = 1 + rng.nextNormal() * std }
            case .ropePeriods: values = RopeEmbedding.defaultPeriods(headDim: n * 4)
            }
            values.withUnsafeBufferPointer { buf in
                writer.add(e.name, shape: e.shape, values: buf, as: e.alwaysBFloat16 ? .bf16 : dtype)
            }
        }
        var stored = config
        stored.storedDType = switch dtype { case .f16: "float16"; case .bf16: "bfloat16"; default: "float32" }
        var json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(stored)) as! [String: Any]
        json["architectures"] = ["VTPModel"]
        let data = try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys])
        try AtomicFile.write(data, to: directory + "/config.json")
        try writer.write(to: directory + "/model.safetensors")
    }
}
