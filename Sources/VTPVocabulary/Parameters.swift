import Foundation

/// The compute precision a job's model runs in (the engine's `ComputePrecision`, named here so the
/// vocabulary needs no model code).
public enum ComputePrecisionName: String, Sendable, Codable, CaseIterable {
    /// float32 products: matches the reference's float32 outputs.
    case fp32
    /// bfloat16 products with float32 accumulation, as `torch.autocast` bfloat16.
    case bf16
}

/// Which Pillow release's resampling a job reproduces (VTPImage's `PillowCompatibility`, named here
/// so the vocabulary needs no image code). Releases differ only in the order of the two resampling
/// passes, which moves some pixels of portrait shrinks by a level or two.
///
/// In a parameter document the key is `pillow`, written `"12"` or `"13"`; `12`, `13` (numbers),
/// `"pillow12"` and `"pillow13"` are read too.
public enum PillowOption: String, Sendable, Codable, CaseIterable {
    /// Pillow up to 12.x: always the horizontal pass first (the reference fixtures were made so).
    case pillow12 = "12"
    /// Pillow 13, what a fresh `pip install pillow` gives: the vertical pass first when the height
    /// shrinks by more than twice as many pixels as the width.
    case pillow13 = "13"

    /// What a new job uses when neither `--pillow` nor the configuration chooses.
    public static let newJobDefault: PillowOption = .pillow13
    /// What a parameter document or manifest without the key means: it was written before the key
    /// existed, when every job resampled as Pillow 12 does. Reading it so keeps a job resumed
    /// after an upgrade from mixing the two in one output.
    public static let unrecorded: PillowOption = .pillow12

    /// Parses `12`, `13`, `pillow12` or `pillow13`.
    public init?(name: String) {
        switch name.trimmingCharacters(in: .whitespaces).lowercased() {
        case "12", "pillow12": self = .pillow12
        case "13", "pillow13": self = .pillow13
        default: return nil
        }
    }

    /// The accepted spellings, for error messages.
    public static let accepted = "12 or 13 (pillow12 and pillow13 also work)"
}

/// Input normalization after `ToTensor`.
public enum NormalizeOption: String, Sendable, Codable, CaseIterable {
    /// timm ImageNet mean/std (VTP's default).
    case imagenet
    /// mean = std = 0.5, mapping pixels to [-1, 1].
    case half
}

/// How an image becomes a square of `image_size`.
public enum TransformOption: String, Sendable, Codable, CaseIterable {
    /// ADM / LightningDiT `center_crop_arr` (aspect kept, centre cropped).
    case admCenterCrop = "adm-center-crop"
    /// torchvision `Resize((size, size))` bilinear (aspect not kept), as VTP's quick start.
    case resize
    /// torchvision `Resize(size · 256/224)` bicubic (short side) + `CenterCrop(size)`: the
    /// evaluation transform of upstream's linear probing (256 then 224).
    case resizeCenterCrop = "resize-center-crop"
}

/// Parameters of a `latents` job: what LightningDiT's `extract_features.py` does with a VTP encoder.
///
/// JSON keys: `precision` (`fp32` | `bf16`, default `fp32`), `image_size` (256), `normalize` (`imagenet` | `half`, default `imagenet`), `dtype`
/// (`float32` | `float16` | `bfloat16`, default `float32`), `batch_size` (32), `flip` (true), `pillow` (see ``PillowOption``;
/// absent means `12`, new jobs get `13`) and `label_classes` (see ``JobParameters/labelClasses``).
///
/// With `flip` false, `latents_flip` still exists (LightningDiT's dataset reads it) but holds the
/// unflipped latents, so flip augmentation becomes a no-op; the manifest says so.
public struct LatentsParameters: Sendable, Equatable, JobParameterSet {
    /// Compute precision of the model (`fp32` | `bf16`, default `fp32`), the same for every shard.
    public var precision: ComputePrecisionName = .fp32
    public var imageSize: Int
    public var normalize: NormalizeOption
    public var dtype: OutputDType
    public var batchSize: Int
    public var flip: Bool
    /// Whose resampling the ADM crop reproduces.
    public var pillow: PillowOption
    /// Class names by label, recorded in the output manifest; empty when the input names none.
    public var labelClasses: [String] = []

    public init(imageSize: Int = 256, normalize: NormalizeOption = .imagenet, dtype: OutputDType = .float32,
                batchSize: Int = 32, flip: Bool = true, pillow: PillowOption = .newJobDefault) {
        self.imageSize = imageSize
        self.normalize = normalize
        self.dtype = dtype
        self.batchSize = batchSize
        self.flip = flip
        self.pillow = pillow
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case imageSize = "image_size", normalize, dtype, batchSize = "batch_size", flip, precision, pillow
        case labelClasses = "label_classes"
    }

    static let allowedKeys = Set(CodingKeys.allCases.map(\.rawValue))

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        precision = try c.choice(ComputePrecisionName.self, .precision, default: .fp32)
        let d = LatentsParameters()
        imageSize = try c.decodeIfPresent(Int.self, forKey: .imageSize) ?? d.imageSize
        normalize = try c.choice(NormalizeOption.self, .normalize, default: d.normalize)
        dtype = try c.choice(OutputDType.self, .dtype, default: d.dtype)
        batchSize = try c.decodeIfPresent(Int.self, forKey: .batchSize) ?? d.batchSize
        flip = try c.decodeIfPresent(Bool.self, forKey: .flip) ?? d.flip
        pillow = try c.pillow(.pillow)
        labelClasses = try c.decodeIfPresent([String].self, forKey: .labelClasses) ?? []
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(precision, forKey: .precision)
        try c.encode(imageSize, forKey: .imageSize)
        try c.encode(normalize, forKey: .normalize)
        try c.encode(dtype, forKey: .dtype)
        try c.encode(batchSize, forKey: .batchSize)
        try c.encode(flip, forKey: .flip)
        try c.encode(pillow, forKey: .pillow)
        if !labelClasses.isEmpty { try c.encode(labelClasses, forKey: .labelClasses) }
    }

    /// Checks ranges; the patch-size fit is checked against the model when a shard runs.
    public func validate() throws(JobError) {
        try ParameterRanges.imageSize(imageSize)
        try ParameterRanges.batchSize(batchSize)
    }
}

/// Which encoder blocks a `features` job reads.
public enum LayerChoice: Sendable, Equatable, Codable {
    /// The last block (`get_last_layer_feature` when normalized).
    case last
    /// The last `n` blocks (`get_intermediate_layers_feature(n=n)`), earliest first.
    case intermediate(Int)

    /// JSON: `"last"` or `{"intermediate": n}`.
    public init(from decoder: any Decoder) throws {
        if let text = try? decoder.singleValueContainer().decode(String.self) {
            guard text == "last" else {
                throw JobError.invalidParameter(field: "layers", detail: "'\(text)' is not \"last\" or {\"intermediate\": n}")
            }
            self = .last
            return
        }
        guard let object = try? decoder.singleValueContainer().decode([String: Int].self),
              object.count == 1, let n = object["intermediate"] else {
            throw JobError.invalidParameter(field: "layers", detail: "expected \"last\" or {\"intermediate\": n}")
        }
        self = .intermediate(n)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .last: try c.encode("last")
        case let .intermediate(n): try c.encode(["intermediate": n])
        }
    }

    public var description: String {
        switch self {
        case .last: "last"
        case let .intermediate(n): "intermediate:\(n)"
        }
    }
}

/// How token features are reduced to one vector per image.
public enum PoolOption: String, Sendable, Codable, CaseIterable {
    /// The class token (D).
    case cls
    /// The mean of the patch tokens (D).
    case mean
    /// The class token followed by the patch-token mean, concatenated (2·D), as DINO-style linear probes use.
    case clsMean = "cls+mean"
}

/// Parameters of a `features` job.
///
/// JSON keys: `precision` (`fp32` | `bf16`, default `fp32`), `image_size` (256), `transform` (`adm-center-crop` | `resize`, default `resize`, as
/// VTP's quick start), `normalize` (`imagenet`), `layers` (`"last"` or `{"intermediate": n}`),
/// `norm` (true: apply the encoder's final norm), `pool` (`cls` | `mean` | `cls+mean`),
/// `keep_patch_tokens` (false), `dtype` (`float32` | `float16`), `batch_size` (32), `pillow` (see ``PillowOption``;
/// absent means `12`, new jobs get `13`) and `label_classes` (see ``JobParameters/labelClasses``).
///
/// Output tensors per shard: `pooled` (N, D or 2D) and, when kept, `patch_tokens` (N, T, D); with
/// `intermediate` layers they are `intermediate_{i}_pooled` / `intermediate_{i}_patch_tokens`,
/// i = 0 the earliest of the last n blocks (the fixture's naming). No bottleneck is applied.
public struct FeaturesParameters: Sendable, Equatable, JobParameterSet {
    /// Compute precision of the model (`fp32` | `bf16`, default `fp32`), the same for every shard.
    public var precision: ComputePrecisionName = .fp32
    public var imageSize: Int
    public var transform: TransformOption
    public var normalize: NormalizeOption
    public var layers: LayerChoice
    public var norm: Bool
    public var pool: PoolOption
    public var keepPatchTokens: Bool
    public var dtype: OutputDType
    public var batchSize: Int
    /// Whose resampling the transform reproduces.
    public var pillow: PillowOption
    /// Class names by label, recorded in the output manifest; empty when the input names none.
    public var labelClasses: [String] = []

    public init(imageSize: Int = 256, transform: TransformOption = .resize, normalize: NormalizeOption = .imagenet,
                layers: LayerChoice = .last, norm: Bool = true, pool: PoolOption = .cls, keepPatchTokens: Bool = false,
                dtype: OutputDType = .float32, batchSize: Int = 32, pillow: PillowOption = .newJobDefault) {
        self.imageSize = imageSize
        self.transform = transform
        self.normalize = normalize
        self.layers = layers
        self.norm = norm
        self.pool = pool
        self.keepPatchTokens = keepPatchTokens
        self.dtype = dtype
        self.batchSize = batchSize
        self.pillow = pillow
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case imageSize = "image_size", transform, normalize, layers, norm, pool, precision, pillow
        case keepPatchTokens = "keep_patch_tokens", dtype, batchSize = "batch_size", labelClasses = "label_classes"
    }

    static let allowedKeys = Set(CodingKeys.allCases.map(\.rawValue))

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        precision = try c.choice(ComputePrecisionName.self, .precision, default: .fp32)
        let d = FeaturesParameters()
        imageSize = try c.decodeIfPresent(Int.self, forKey: .imageSize) ?? d.imageSize
        transform = try c.choice(TransformOption.self, .transform, default: d.transform)
        normalize = try c.choice(NormalizeOption.self, .normalize, default: d.normalize)
        layers = try c.decodeIfPresent(LayerChoice.self, forKey: .layers) ?? d.layers
        norm = try c.decodeIfPresent(Bool.self, forKey: .norm) ?? d.norm
        pool = try c.choice(PoolOption.self, .pool, default: d.pool)
        keepPatchTokens = try c.decodeIfPresent(Bool.self, forKey: .keepPatchTokens) ?? d.keepPatchTokens
        dtype = try c.choice(OutputDType.self, .dtype, default: d.dtype)
        batchSize = try c.decodeIfPresent(Int.self, forKey: .batchSize) ?? d.batchSize
        pillow = try c.pillow(.pillow)
        labelClasses = try c.decodeIfPresent([String].self, forKey: .labelClasses) ?? []
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(precision, forKey: .precision)
        try c.encode(imageSize, forKey: .imageSize)
        try c.encode(transform, forKey: .transform)
        try c.encode(normalize, forKey: .normalize)
        try c.encode(layers, forKey: .layers)
        try c.encode(norm, forKey: .norm)
        try c.encode(pool, forKey: .pool)
        try c.encode(keepPatchTokens, forKey: .keepPatchTokens)
        try c.encode(dtype, forKey: .dtype)
        try c.encode(batchSize, forKey: .batchSize)
        try c.encode(pillow, forKey: .pillow)
        if !labelClasses.isEmpty { try c.encode(labelClasses, forKey: .labelClasses) }
    }

    public func validate() throws(JobError) {
        try ParameterRanges.imageSize(imageSize)
        try ParameterRanges.batchSize(batchSize)
        guard dtype != .bfloat16 else {
            throw .invalidParameter(field: "dtype", detail: "features are stored as float32 or float16, not bfloat16")
        }
        if case let .intermediate(n) = layers, n < 1 {
            throw .invalidParameter(field: "layers", detail: "intermediate layer count must be at least 1, got \(n)")
        }
    }
}

enum ParameterRanges {
    static func imageSize(_ v: Int) throws(JobError) {
        guard (16...4096).contains(v) else { throw .invalidParameter(field: "image_size", detail: "must lie in 16...4096, got \(v)") }
    }

    static func batchSize(_ v: Int) throws(JobError) {
        guard (1...4096).contains(v) else { throw .invalidParameter(field: "batch_size", detail: "must lie in 1...4096, got \(v)") }
    }
}
