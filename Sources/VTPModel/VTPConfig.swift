import Foundation

/// The hyper-parameters of a VTP checkpoint, decoded from its Hugging Face `config.json`.
///
/// Key names are the checkpoint's own (`VTPConfig` in the reference). Absent keys take the
/// reference defaults; unknown keys (`architectures`, `transformers_version`, `torch_dtype`,
/// `dtype`, ...) are ignored, as `PretrainedConfig` does.
public struct VTPConfig: Codable, Sendable, Equatable {
    public var modelType: String = "vtp"
    public var imageSize: Int = 256
    public var trainClip: Bool = true
    public var trainReconstruction: Bool = true

    public var visionPatchSize: Int = 16
    public var visionEmbedDim: Int = 768
    public var visionDepth: Int = 12
    public var visionNumHeads: Int = 12
    public var visionMlpRatio: Double = 4.0
    public var visionFfnLayer: String = "swiglu"
    public var visionNormLayer: String = "rmsnorm"
    public var visionInitValues: Double? = nil
    public var visionUseQkNorm: Bool = false
    public var visionFeatureBottleneck: Int? = 64
    public var visionBottleneckAeOnly: Bool = true
    public var visionClipFeat: String = "cls"

    public var textContextLength: Int = 77
    public var textVocabSize: Int = 49408
    public var textEmbedDim: Int = 768
    public var textNumHeads: Int = 12
    public var textDepth: Int = 12
    public var textMlpRatio: Double = 4.0
    public var textLsInitValue: Double? = nil
    public var textEmbedCls: Bool = false
    public var textPadId: Int = 0
    public var textNoCausalMask: Bool = false
    public var textPoolType: String = "argmax"
    public var textProjType: String? = "linear"
    public var textProjBias: Bool = false
    public var textOutputTokens: Bool = false
    public var textQuickGelu: Bool = false

    public var decoderEmbedDim: Int = 768
    public var decoderNumHeads: Int = 12
    public var decoderDepth: Int = 12
    public var decoderFfnLayer: String = "swiglu"
    public var decoderNormLayer: String = "layernorm"
    public var decoderInitValues: Double? = nil
    public var decoderUseQkNorm: Bool = false

    public var initLogitScale: Double? = nil
    public var initLogitBias: Double? = nil
    public var nonscalarLogitScale: Bool = false

    /// The dtype the checkpoint was saved in (`torch_dtype` or `dtype`); informational only,
    /// since every tensor is computed in float32.
    public var storedDType: String? = nil

    public init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case modelType = "model_type", imageSize = "image_size", trainClip = "train_clip"
        case trainReconstruction = "train_reconstruction"
        case visionPatchSize = "vision_patch_size", visionEmbedDim = "vision_embed_dim", visionDepth = "vision_depth"
        case visionNumHeads = "vision_num_heads", visionMlpRatio = "vision_mlp_ratio"
        case visionFfnLayer = "vision_ffn_layer", visionNormLayer = "vision_norm_layer"
        case visionInitValues = "vision_init_values", visionUseQkNorm = "vision_use_qk_norm"
        case visionFeatureBottleneck = "vision_feature_bottleneck", visionBottleneckAeOnly = "vision_bottleneck_ae_only"
        case visionClipFeat = "vision_clip_feat"
        case textContextLength = "text_context_length", textVocabSize = "text_vocab_size"
        case textEmbedDim = "text_embed_dim", textNumHeads = "text_num_heads", textDepth = "text_depth"
        case textMlpRatio = "text_mlp_ratio", textLsInitValue = "text_ls_init_value", textEmbedCls = "text_embed_cls"
        case textPadId = "text_pad_id", textNoCausalMask = "text_no_causal_mask", textPoolType = "text_pool_type"
        case textProjType = "text_proj_type", textProjBias = "text_proj_bias", textOutputTokens = "text_output_tokens"
        case textQuickGelu = "text_quick_gelu"
        case decoderEmbedDim = "decoder_embed_dim", decoderNumHeads = "decoder_num_heads", decoderDepth = "decoder_depth"
        case decoderFfnLayer = "decoder_ffn_layer", decoderNormLayer = "decoder_norm_layer"
        case decoderInitValues = "decoder_init_values", decoderUseQkNorm = "decoder_use_qk_norm"
        case initLogitScale = "init_logit_scale", initLogitBias = "init_logit_bias"
        case nonscalarLogitScale = "nonscalar_logit_scale"
        case storedDType = "torch_dtype"
    }

    private enum ExtraKeys: String, CodingKey { case dtype }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = VTPConfig()
        func v<T: Decodable>(_ key: CodingKeys, _ fallback: T) throws -> T {
            try c.decodeIfPresent(T.self, forKey: key) ?? fallback
        }
        // Optional fields: an explicit null and an absent key both mean "not set".
        func o<T: Decodable>(_ key: CodingKeys, _ fallback: T?) throws -> T? {
            if c.contains(key) { return try c.decodeIfPresent(T.self, forKey: key) }
            return fallback
        }
        modelType = try v(.modelType, d.modelType)
        imageSize = try v(.imageSize, d.imageSize)
        trainClip = try v(.trainClip, d.trainClip)
        trainReconstruction = try v(.trainReconstruction, d.trainReconstruction)
        visionPatchSize = try v(.visionPatchSize, d.visionPatchSize)
        visionEmbedDim = try v(.visionEmbedDim, d.visionEmbedDim)
        visionDepth = try v(.visionDepth, d.visionDepth)
        visionNumHeads = try v(.visionNumHeads, d.visionNumHeads)
        visionMlpRatio = try v(.visionMlpRatio, d.visionMlpRatio)
        visionFfnLayer = try v(.visionFfnLayer, d.visionFfnLayer)
        visionNormLayer = try v(.visionNormLayer, d.visionNormLayer)
        visionInitValues = try o(.visionInitValues, d.visionInitValues)
        visionUseQkNorm = try v(.visionUseQkNorm, d.visionUseQkNorm)
        visionFeatureBottleneck = try o(.visionFeatureBottleneck, d.visionFeatureBottleneck)
        visionBottleneckAeOnly = try v(.visionBottleneckAeOnly, d.visionBottleneckAeOnly)
        visionClipFeat = try v(.visionClipFeat, d.visionClipFeat)
        textContextLength = try v(.textContextLength, d.textContextLength)
        textVocabSize = try v(.textVocabSize, d.textVocabSize)
        textEmbedDim = try v(.textEmbedDim, d.textEmbedDim)
        textNumHeads = try v(.textNumHeads, d.textNumHeads)
        textDepth = try v(.textDepth, d.textDepth)
        textMlpRatio = try v(.textMlpRatio, d.textMlpRatio)
        textLsInitValue = try o(.textLsInitValue, d.textLsInitValue)
        textEmbedCls = try v(.textEmbedCls, d.textEmbedCls)
        textPadId = try v(.textPadId, d.textPadId)
        textNoCausalMask = try v(.textNoCausalMask, d.textNoCausalMask)
        textPoolType = try v(.textPoolType, d.textPoolType)
        textProjType = try o(.textProjType, d.textProjType)
        textProjBias = try v(.textProjBias, d.textProjBias)
        textOutputTokens = try v(.textOutputTokens, d.textOutputTokens)
        textQuickGelu = try v(.textQuickGelu, d.textQuickGelu)
        decoderEmbedDim = try v(.decoderEmbedDim, d.decoderEmbedDim)
        decoderNumHeads = try v(.decoderNumHeads, d.decoderNumHeads)
        decoderDepth = try v(.decoderDepth, d.decoderDepth)
        decoderFfnLayer = try v(.decoderFfnLayer, d.decoderFfnLayer)
        decoderNormLayer = try v(.decoderNormLayer, d.decoderNormLayer)
        decoderInitValues = try o(.decoderInitValues, d.decoderInitValues)
        decoderUseQkNorm = try v(.decoderUseQkNorm, d.decoderUseQkNorm)
        initLogitScale = try o(.initLogitScale, d.initLogitScale)
        initLogitBias = try o(.initLogitBias, d.initLogitBias)
        nonscalarLogitScale = try v(.nonscalarLogitScale, d.nonscalarLogitScale)
        let extra = try decoder.container(keyedBy: ExtraKeys.self)
        storedDType = try c.decodeIfPresent(String.self, forKey: .storedDType)
            ?? extra.decodeIfPresent(String.self, forKey: .dtype)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(modelType, forKey: .modelType)
        try c.encode(imageSize, forKey: .imageSize)
        try c.encode(trainClip, forKey: .trainClip)
        try c.encode(trainReconstruction, forKey: .trainReconstruction)
        try c.encode(visionPatchSize, forKey: .visionPatchSize)
        try c.encode(visionEmbedDim, forKey: .visionEmbedDim)
        try c.encode(visionDepth, forKey: .visionDepth)
        try c.encode(visionNumHeads, forKey: .visionNumHeads)
        try c.encode(visionMlpRatio, forKey: .visionMlpRatio)
        try c.encode(visionFfnLayer, forKey: .visionFfnLayer)
        try c.encode(visionNormLayer, forKey: .visionNormLayer)
        try c.encode(visionInitValues, forKey: .visionInitValues)
        try c.encode(visionUseQkNorm, forKey: .visionUseQkNorm)
        try c.encode(visionFeatureBottleneck, forKey: .visionFeatureBottleneck)
        try c.encode(visionBottleneckAeOnly, forKey: .visionBottleneckAeOnly)
        try c.encode(visionClipFeat, forKey: .visionClipFeat)
        try c.encode(textContextLength, forKey: .textContextLength)
        try c.encode(textVocabSize, forKey: .textVocabSize)
        try c.encode(textEmbedDim, forKey: .textEmbedDim)
        try c.encode(textNumHeads, forKey: .textNumHeads)
        try c.encode(textDepth, forKey: .textDepth)
        try c.encode(textMlpRatio, forKey: .textMlpRatio)
        try c.encode(textLsInitValue, forKey: .textLsInitValue)
        try c.encode(textEmbedCls, forKey: .textEmbedCls)
        try c.encode(textPadId, forKey: .textPadId)
        try c.encode(textNoCausalMask, forKey: .textNoCausalMask)
        try c.encode(textPoolType, forKey: .textPoolType)
        try c.encode(textProjType, forKey: .textProjType)
        try c.encode(textProjBias, forKey: .textProjBias)
        try c.encode(textOutputTokens, forKey: .textOutputTokens)
        try c.encode(textQuickGelu, forKey: .textQuickGelu)
        try c.encode(decoderEmbedDim, forKey: .decoderEmbedDim)
        try c.encode(decoderNumHeads, forKey: .decoderNumHeads)
        try c.encode(decoderDepth, forKey: .decoderDepth)
        try c.encode(decoderFfnLayer, forKey: .decoderFfnLayer)
        try c.encode(decoderNormLayer, forKey: .decoderNormLayer)
        try c.encode(decoderInitValues, forKey: .decoderInitValues)
        try c.encode(decoderUseQkNorm, forKey: .decoderUseQkNorm)
        try c.encode(initLogitScale, forKey: .initLogitScale)
        try c.encode(initLogitBias, forKey: .initLogitBias)
        try c.encode(nonscalarLogitScale, forKey: .nonscalarLogitScale)
        try c.encode(storedDType ?? "float32", forKey: .storedDType)
    }

    /// Reads and validates `config.json`.
    public static func load(path: String) throws -> VTPConfig {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw VTPModelError.config(path: path, problem: "cannot read: \(error.localizedDescription)")
        }
        guard let object = try? JSONSerialization.jsonObject(with: data), object is [String: Any] else {
            throw VTPModelError.config(path: path, problem: "not a JSON object")
        }
        let config: VTPConfig
        do { config = try JSONDecoder().decode(VTPConfig.self, from: data) } catch let DecodingError.typeMismatch(type, ctx) {
            let key = ctx.codingPath.map(\.stringValue).joined(separator: ".")
            throw VTPModelError.config(path: path, problem: "field '\(key)' should be \(type)")
        } catch {
            throw VTPModelError.config(path: path, problem: "cannot decode: \(error)")
        }
        try config.validate(path: path)
        return config
    }

    /// Width of the patch features the bottleneck produces (the latent channel count).
    public var latentChannels: Int { visionFeatureBottleneck ?? visionEmbedDim }

    /// Rejects configurations the reference cannot build or run, naming the field.
    public func validate(path: String = "config.json") throws {
        func fail(_ field: String, _ problem: String) -> VTPModelError {
            .config(path: path, problem: "\(field): \(problem)")
        }
        guard modelType == "vtp" else { throw fail("model_type", "'\(modelType)' is not a VTP checkpoint (expected 'vtp')") }
        let ffns = ["mlp", "swiglu", "swiglu32", "swiglu64", "swiglu128"]
        guard ffns.contains(visionFfnLayer) else { throw fail("vision_ffn_layer", "'\(visionFfnLayer)' is not one of \(ffns)") }
        guard ffns.contains(decoderFfnLayer) else { throw fail("decoder_ffn_layer", "'\(decoderFfnLayer)' is not one of \(ffns)") }
        let norms = ["layernorm", "layernormbf16", "rmsnorm"]
        guard norms.contains(visionNormLayer) else { throw fail("vision_norm_layer", "'\(visionNormLayer)' is not one of \(norms)") }
        guard norms.contains(decoderNormLayer) else { throw fail("decoder_norm_layer", "'\(decoderNormLayer)' is not one of \(norms)") }
        guard visionPatchSize > 0 else { throw fail("vision_patch_size", "must be positive") }
        for (field, dim, heads) in [("vision", visionEmbedDim, visionNumHeads), ("decoder", decoderEmbedDim, decoderNumHeads)] {
            guard heads > 0, dim > 0, dim % (4 * heads) == 0 else {
                throw fail("\(field)_embed_dim", "\(dim) must be a positive multiple of 4 × \(field)_num_heads (\(heads)) for 2-D RoPE")
            }
        }
        guard visionDepth >= 1 else { throw fail("vision_depth", "must be at least 1") }
        if let b = visionFeatureBottleneck, b <= 0 { throw fail("vision_feature_bottleneck", "must be positive") }
        guard ["cls", "pooled"].contains(visionClipFeat) else { throw fail("vision_clip_feat", "'\(visionClipFeat)' is not 'cls' or 'pooled'") }
        if trainClip {
            guard !textEmbedCls else {
                throw fail("text_embed_cls", "true is not supported: the reference VTPModel adds a positional embedding of \(textContextLength + 1) rows to \(textContextLength) tokens and cannot run")
            }
            guard ["argmax", "last", "first"].contains(textPoolType) else {
                throw fail("text_pool_type", "'\(textPoolType)' is not one of argmax, last, first")
            }
            guard textNumHeads > 0, textEmbedDim % textNumHeads == 0 else {
                throw fail("text_embed_dim", "\(textEmbedDim) must be divisible by text_num_heads (\(textNumHeads))")
            }
            guard textContextLength > 0, textVocabSize > 0 else { throw fail("text_context_length", "must be positive") }
        }
    }
}

/// Errors of model loading and inference, each naming the file, tensor or field involved.
public enum VTPModelError: Error, CustomStringConvertible, Equatable {
    case config(path: String, problem: String)
    case missingTensor(file: String, tensor: String, expectedShape: [Int])
    case wrongShape(file: String, tensor: String, found: [Int], expected: [Int])
    case unexpectedTensors(file: String, tensors: [String])
    case checkpoint(path: String, problem: String)
    case input(String)
    case unsupported(String)

    public var description: String {
        switch self {
        case let .config(path, problem): "\(path): \(problem)"
        case let .missingTensor(file, tensor, shape): "\(file): tensor '\(tensor)' is missing (expected shape \(shape))"
        case let .wrongShape(file, tensor, found, expected): "\(file): tensor '\(tensor)' has shape \(found), expected \(expected)"
        case let .unexpectedTensors(file, tensors):
            "\(file): \(tensors.count) tensor(s) the configuration does not use: \(tensors.prefix(8).joined(separator: ", "))\(tensors.count > 8 ? ", ..." : "")"
        case let .checkpoint(path, problem): "\(path): \(problem)"
        case let .input(problem): "invalid input: \(problem)"
        case let .unsupported(problem): "unsupported: \(problem)"
        }
    }
}
