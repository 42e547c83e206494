import Foundation

/// How a CLIP job turns an image into model input; shared by `clip-embed`, `clip-score` and
/// `vtp search` (which reads it back from the manifest so queries go through the same steps).
///
/// JSON keys (all optional): `image_size` (default: the model's `config.image_size`),
/// `transform` (`resize` | `adm-center-crop`, default `resize`, VTP's quick start), `normalize`
/// (`imagenet` | `half`, default `imagenet`), `pillow` (see ``PillowOption``; absent means `12`,
/// new jobs get `13`).
public struct ClipPreprocessing: Sendable, Equatable {
    /// Square input side; nil takes the model's configured image size.
    public var imageSize: Int?
    public var transform: TransformOption
    public var normalize: NormalizeOption
    /// Whose resampling the transform reproduces (queries of `vtp search` too).
    public var pillow: PillowOption

    public init(imageSize: Int? = nil, transform: TransformOption = .resize, normalize: NormalizeOption = .imagenet,
                pillow: PillowOption = .newJobDefault) {
        self.imageSize = imageSize
        self.transform = transform
        self.normalize = normalize
        self.pillow = pillow
    }

    /// The input side for `modelImageSize`.
    public func resolvedImageSize(modelImageSize: Int) -> Int { imageSize ?? modelImageSize }

    /// The manifest's `preprocessing` entries (image size resolved), which ``init(manifest:)`` reads back.
    public func manifestEntries(modelImageSize: Int) -> [String: String] {
        ["transform": transform.rawValue, "image_size": String(resolvedImageSize(modelImageSize: modelImageSize)),
         "normalize": normalize.rawValue, "pillow": pillow.rawValue]
    }

    /// Reads back ``manifestEntries(modelImageSize:)``; a manifest without `pillow` was written
    /// before the key existed and means ``PillowOption/unrecorded``.
    public init(manifest entries: [String: String]) throws(JobError) {
        guard let t = entries["transform"], let transform = TransformOption(rawValue: t) else {
            throw .badParameters(detail: "manifest preprocessing.transform is missing or not one of resize, adm-center-crop")
        }
        guard let n = entries["normalize"], let normalize = NormalizeOption(rawValue: n) else {
            throw .badParameters(detail: "manifest preprocessing.normalize is missing or not one of imagenet, half")
        }
        guard let s = entries["image_size"], let size = Int(s) else {
            throw .badParameters(detail: "manifest preprocessing.image_size is missing or not an integer")
        }
        var pillow = PillowOption.unrecorded
        if let p = entries["pillow"] {
            guard let parsed = PillowOption(name: p) else {
                throw .badParameters(detail: "manifest preprocessing.pillow '\(p)' is not \(PillowOption.accepted)")
            }
            pillow = parsed
        }
        self.init(imageSize: size, transform: transform, normalize: normalize, pillow: pillow)
    }

    /// Checks value ranges.
    public func validate() throws(JobError) {
        if let imageSize { try ParameterRanges.imageSize(imageSize) }
    }
}

/// Parameters of a `clip-embed` job: clip-retrieval style embeddings plus a FAISS index.
///
/// JSON keys: `precision` (`fp32` | `bf16`, default `fp32`), the ``ClipPreprocessing`` keys, `dtype` (`float16` | `float32`, default `float16`
/// as clip-retrieval stores them), `batch_size` (32), `text` (true: also embed the captions of
/// items that have one), `index` (true: the finalizer builds `index/`), `index_exact_threshold`
/// (100000: collections with at least this many images get an IVF index instead of exact search)
/// `index_encoding` (how that IVF index stores vectors, see ``IndexEncodingOption``), `index_memory`
/// (absent: no limit; a byte count or a size string like `"16G"`: the most memory the index build may
/// hold, see ``indexMemory``), `pillow` (see
/// ``ClipPreprocessing``) and `label_classes` (see ``JobParameters/labelClasses``).
public struct ClipEmbedParameters: Sendable, Equatable, JobParameterSet {
    /// Compute precision of the model (`fp32` | `bf16`, default `fp32`), the same for every shard.
    public var precision: ComputePrecisionName = .fp32
    public var preprocessing: ClipPreprocessing
    public var dtype: OutputDType
    public var batchSize: Int
    public var text: Bool
    public var index: Bool
    public var indexExactThreshold: Int
    public var indexEncoding: IndexEncodingOption = .pq
    /// Memory budget of the index build in bytes (`nil`: none). The finalizer then adds the shards'
    /// embeddings from their files part by part instead of loading them all, and writes the index as
    /// several files over consecutive row ranges when one would not fit; recorded in `infos.json`.
    public var indexMemory: Int?
    /// Class names by label, recorded in the output manifest; empty when the input names none.
    public var labelClasses: [String] = []

    public init(preprocessing: ClipPreprocessing = ClipPreprocessing(), dtype: OutputDType = .float16, batchSize: Int = 32,
                text: Bool = true, index: Bool = true, indexExactThreshold: Int = 100_000) {
        self.preprocessing = preprocessing
        self.dtype = dtype
        self.batchSize = batchSize
        self.text = text
        self.index = index
        self.indexExactThreshold = indexExactThreshold
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case imageSize = "image_size", transform, normalize, dtype, batchSize = "batch_size", text, index, precision, pillow
        case indexExactThreshold = "index_exact_threshold", indexEncoding = "index_encoding", labelClasses = "label_classes"
        case indexMemory = "index_memory"
    }

    static let allowedKeys = Set(CodingKeys.allCases.map(\.rawValue))

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        precision = try c.choice(ComputePrecisionName.self, .precision, default: .fp32)
        let d = ClipEmbedParameters()
        preprocessing = ClipPreprocessing(
            imageSize: try c.decodeIfPresent(Int.self, forKey: .imageSize),
            transform: try c.choice(TransformOption.self, .transform, default: d.preprocessing.transform),
            normalize: try c.choice(NormalizeOption.self, .normalize, default: d.preprocessing.normalize),
            pillow: try c.pillow(.pillow))
        dtype = try c.choice(OutputDType.self, .dtype, default: d.dtype)
        batchSize = try c.decodeIfPresent(Int.self, forKey: .batchSize) ?? d.batchSize
        text = try c.decodeIfPresent(Bool.self, forKey: .text) ?? d.text
        index = try c.decodeIfPresent(Bool.self, forKey: .index) ?? d.index
        indexExactThreshold = try c.decodeIfPresent(Int.self, forKey: .indexExactThreshold) ?? d.indexExactThreshold
        indexEncoding = try c.choice(IndexEncodingOption.self, .indexEncoding, default: d.indexEncoding)
        if let bytes = try? c.decodeIfPresent(Int.self, forKey: .indexMemory) {
            indexMemory = bytes
        } else if let text = try? c.decodeIfPresent(String.self, forKey: .indexMemory) {
            indexMemory = try MemorySize.parse(text, option: CodingKeys.indexMemory.rawValue)
        } else if c.contains(.indexMemory), !((try? c.decodeNil(forKey: .indexMemory)) ?? false) {
            throw JobError.invalidParameter(field: CodingKeys.indexMemory.rawValue, detail: "expected a number of bytes or a size string like \"16G\"")
        }
        labelClasses = try c.decodeIfPresent([String].self, forKey: .labelClasses) ?? []
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(precision, forKey: .precision)
        try c.encodeIfPresent(preprocessing.imageSize, forKey: .imageSize)
        try c.encode(preprocessing.transform, forKey: .transform)
        try c.encode(preprocessing.normalize, forKey: .normalize)
        try c.encode(dtype, forKey: .dtype)
        try c.encode(batchSize, forKey: .batchSize)
        try c.encode(text, forKey: .text)
        try c.encode(index, forKey: .index)
        try c.encode(indexExactThreshold, forKey: .indexExactThreshold)
        try c.encode(indexEncoding, forKey: .indexEncoding)
        try c.encodeIfPresent(indexMemory, forKey: .indexMemory)
        try c.encode(preprocessing.pillow, forKey: .pillow)
        if !labelClasses.isEmpty { try c.encode(labelClasses, forKey: .labelClasses) }
    }

    public func validate() throws(JobError) {
        try preprocessing.validate()
        try ParameterRanges.batchSize(batchSize)
        guard dtype != .bfloat16 else {
            throw .invalidParameter(field: "dtype", detail: "embeddings are stored as .npy float16 or float32, not bfloat16")
        }
        guard indexExactThreshold >= 0 else {
            throw .invalidParameter(field: "index_exact_threshold", detail: "must not be negative, got \(indexExactThreshold)")
        }
        if let indexMemory, indexMemory < 1 {
            throw .invalidParameter(field: "index_memory", detail: "must be at least one byte, got \(indexMemory)")
        }
    }

}

/// How the approximate (IVF) index of a large `clip-embed` output stores its vectors.
public enum IndexEncodingOption: String, Sendable, Codable, CaseIterable {
    /// Product quantization with one 8-bit code per two dimensions (`PQ{d/2}x8`): an eighth of the
    /// float32 size, the compressed IVF+PQ layout clip-retrieval's indexes use. The default.
    case pq
    /// One byte per dimension (`SQ8`): a quarter of the float32 size and higher recall (0.978 vs
    /// 0.956 for one-byte-per-dimension PQ on 100k clustered 512-d vectors) with much faster
    /// training, for collections where memory allows it.
    case sq8
}

/// Parameters of a `clip-score` job.
///
/// JSON keys: `precision` (`fp32` | `bf16`, default `fp32`), the ``ClipPreprocessing`` keys, `batch_size` (32), `classes` (absent: no zero-shot;
/// `"imagenet"`: the 1,000 OpenAI ImageNet class names; otherwise a path to a UTF-8 file with one
/// class name per line, blank lines ignored), `templates` (absent or `"openai"`: the 80 OpenAI
/// ImageNet templates; otherwise a file with one template per line where `{}` stands for the
/// class name), `top_k` (5), `save_logits` (false: also write each image's logits against every
/// class, `exp(logit_scale)·cos + logit_bias`, as `scores/logits_{i}.npy`), `pillow` (see
/// ``ClipPreprocessing``) and `label_classes` (see ``JobParameters/labelClasses``). With `classes`, a
/// manifest's class-name labels take their index in that list, so accuracy compares like with like.
public struct ClipScoreParameters: Sendable, Equatable, JobParameterSet {
    /// Compute precision of the model (`fp32` | `bf16`, default `fp32`), the same for every shard.
    public var precision: ComputePrecisionName = .fp32
    public var preprocessing: ClipPreprocessing
    public var batchSize: Int
    public var classes: String?
    public var templates: String?
    public var topK: Int
    public var saveLogits: Bool
    /// Class names by label, recorded in the output manifest; empty when the input names none.
    public var labelClasses: [String] = []

    public init(preprocessing: ClipPreprocessing = ClipPreprocessing(), batchSize: Int = 32, classes: String? = nil,
                templates: String? = nil, topK: Int = 5, saveLogits: Bool = false) {
        self.preprocessing = preprocessing
        self.batchSize = batchSize
        self.classes = classes
        self.templates = templates
        self.topK = topK
        self.saveLogits = saveLogits
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case imageSize = "image_size", transform, normalize, batchSize = "batch_size", classes, templates, precision, pillow
        case topK = "top_k", saveLogits = "save_logits", labelClasses = "label_classes"
    }

    static let allowedKeys = Set(CodingKeys.allCases.map(\.rawValue))

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        precision = try c.choice(ComputePrecisionName.self, .precision, default: .fp32)
        let d = ClipScoreParameters()
        preprocessing = ClipPreprocessing(
            imageSize: try c.decodeIfPresent(Int.self, forKey: .imageSize),
            transform: try c.choice(TransformOption.self, .transform, default: d.preprocessing.transform),
            normalize: try c.choice(NormalizeOption.self, .normalize, default: d.preprocessing.normalize),
            pillow: try c.pillow(.pillow))
        batchSize = try c.decodeIfPresent(Int.self, forKey: .batchSize) ?? d.batchSize
        classes = try c.decodeIfPresent(String.self, forKey: .classes)
        templates = try c.decodeIfPresent(String.self, forKey: .templates)
        topK = try c.decodeIfPresent(Int.self, forKey: .topK) ?? d.topK
        saveLogits = try c.decodeIfPresent(Bool.self, forKey: .saveLogits) ?? d.saveLogits
        labelClasses = try c.decodeIfPresent([String].self, forKey: .labelClasses) ?? []
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(precision, forKey: .precision)
        try c.encodeIfPresent(preprocessing.imageSize, forKey: .imageSize)
        try c.encode(preprocessing.transform, forKey: .transform)
        try c.encode(preprocessing.normalize, forKey: .normalize)
        try c.encode(batchSize, forKey: .batchSize)
        try c.encodeIfPresent(classes, forKey: .classes)
        try c.encodeIfPresent(templates, forKey: .templates)
        try c.encode(topK, forKey: .topK)
        try c.encode(saveLogits, forKey: .saveLogits)
        try c.encode(preprocessing.pillow, forKey: .pillow)
        if !labelClasses.isEmpty { try c.encode(labelClasses, forKey: .labelClasses) }
    }

    public func validate() throws(JobError) {
        try preprocessing.validate()
        try ParameterRanges.batchSize(batchSize)
        guard (1...1000).contains(topK) else { throw .invalidParameter(field: "top_k", detail: "must lie in 1...1000, got \(topK)") }
        if classes == nil, templates != nil {
            throw .invalidParameter(field: "templates", detail: "templates only apply with classes (zero-shot classification)")
        }
        if classes == nil, saveLogits {
            throw .invalidParameter(field: "save_logits", detail: "class logits need classes")
        }
        if let classes, classes.isEmpty { throw .invalidParameter(field: "classes", detail: "expected \"imagenet\" or a file path, got an empty string") }
    }
}
