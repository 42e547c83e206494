import Foundation

/// Parameters of a `reconstruction` job: upstream's reconstruction evaluation
/// (`tools/test_reconstruction_hf.py`) over a dataset. Each image is ADM-center-cropped to
/// `image_size`, normalized with the ImageNet mean and std (fixed: the decoder's output is mapped
/// back with the same statistics), encoded to reconstruction latents, decoded, and both images are
/// denormalized, clamped to [0, 1] and scored (PSNR, SSIM).
///
/// JSON keys: `precision` (`fp32` | `bf16`, default `fp32`; upstream's script asks for bf16
/// autocast on CUDA, which on a CPU run is a no-op, so fp32 reproduces what it computes there),
/// `image_size` (default: the model's `config.image_size`, as upstream), `batch_size` (32), `pillow`
/// (see ``PillowOption``; absent means `12`, new jobs get `13`), `save_images` (false: with true,
/// `reference/ref_{ordinal:06d}.png` and `reconstructed/rec_{ordinal:06d}.png` are written, upstream's
/// names and its truncating 8-bit conversion, for any FID tool), `inception_weights` (a safetensors
/// file of pytorch-fid's FID Inception: each pair's 8-bit images are also run through it and the
/// manifest gets the rFID of the two sets), `lpips_weights` (a safetensors file of upstream's LPIPS,
/// VGG16 and its linear layers: each pair also gets its LPIPS) and `label_classes` (see
/// ``JobParameters/labelClasses``). Weight paths are absolute, as every worker reads them.
public struct ReconstructionParameters: Sendable, Equatable, JobParameterSet {
    /// Compute precision of the model, the same for every shard.
    public var precision: ComputePrecisionName = .fp32
    /// Square input side; nil takes the model's configured image size.
    public var imageSize: Int?
    public var batchSize: Int
    /// Whose resampling the ADM crop reproduces.
    public var pillow: PillowOption
    /// Whether originals and reconstructions are written as PNG.
    public var saveImages: Bool
    /// pytorch-fid's Inception weights (safetensors), for rFID; nil: no FID.
    public var inceptionWeights: String?
    /// LPIPS weights (safetensors), for per-image LPIPS; nil: no LPIPS.
    public var lpipsWeights: String?
    /// Class names by label, recorded in the output manifest; empty when the input names none.
    public var labelClasses: [String] = []

    public init(imageSize: Int? = nil, batchSize: Int = 32, pillow: PillowOption = .newJobDefault, saveImages: Bool = false,
                inceptionWeights: String? = nil, lpipsWeights: String? = nil) {
        self.imageSize = imageSize
        self.batchSize = batchSize
        self.pillow = pillow
        self.saveImages = saveImages
        self.inceptionWeights = inceptionWeights
        self.lpipsWeights = lpipsWeights
    }

    /// The input side for `modelImageSize`.
    public func resolvedImageSize(modelImageSize: Int) -> Int { imageSize ?? modelImageSize }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case precision, imageSize = "image_size", batchSize = "batch_size", pillow, saveImages = "save_images"
        case inceptionWeights = "inception_weights", lpipsWeights = "lpips_weights"
        case labelClasses = "label_classes"
    }

    static let allowedKeys = Set(CodingKeys.allCases.map(\.rawValue))

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = ReconstructionParameters()
        precision = try c.choice(ComputePrecisionName.self, .precision, default: .fp32)
        imageSize = try c.decodeIfPresent(Int.self, forKey: .imageSize)
        batchSize = try c.decodeIfPresent(Int.self, forKey: .batchSize) ?? d.batchSize
        pillow = try c.pillow(.pillow)
        saveImages = try c.decodeIfPresent(Bool.self, forKey: .saveImages) ?? d.saveImages
        inceptionWeights = try c.decodeIfPresent(String.self, forKey: .inceptionWeights)
        lpipsWeights = try c.decodeIfPresent(String.self, forKey: .lpipsWeights)
        labelClasses = try c.decodeIfPresent([String].self, forKey: .labelClasses) ?? []
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(precision, forKey: .precision)
        try c.encodeIfPresent(imageSize, forKey: .imageSize)
        try c.encode(batchSize, forKey: .batchSize)
        try c.encode(pillow, forKey: .pillow)
        try c.encode(saveImages, forKey: .saveImages)
        try c.encodeIfPresent(inceptionWeights, forKey: .inceptionWeights)
        try c.encodeIfPresent(lpipsWeights, forKey: .lpipsWeights)
        if !labelClasses.isEmpty { try c.encode(labelClasses, forKey: .labelClasses) }
    }

    /// Checks ranges; the patch-size fit is checked against the model when a shard runs.
    public func validate() throws(JobError) {
        if let imageSize { try ParameterRanges.imageSize(imageSize) }
        try ParameterRanges.batchSize(batchSize)
        for (field, path) in [("inception_weights", inceptionWeights), ("lpips_weights", lpipsWeights)] {
            if let path, path.isEmpty || !path.hasPrefix("/") {
                throw .invalidParameter(field: field, detail: "expected an absolute path to a .safetensors file, got '\(path)'")
            }
        }
    }
}
