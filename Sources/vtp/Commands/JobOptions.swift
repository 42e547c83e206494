import ArgumentParser
import Foundation
import VTPConcurrency
import VTPDatasets
import VTPJobs
import VTPVocabulary
import VTPCoordinator
import VTPSettings

/// Options shared by `vtp run` and `vtp submit`: what to run, on what, into where, and the job
/// parameters of the job layer. Only parameters given on the command line are set; the rest keep
/// the job's defaults, and a parameter the job kind does not take is rejected by name.
struct JobOptions: ParsableArguments {
    @Argument(help: ArgumentHelp(
        "Job kind: \(JobType.allCases.map(\.rawValue).joined(separator: ", ")), or \(Self.zeroShotPreset).",
        discussion: "\(Self.zeroShotPreset) is upstream's zero-shot evaluation (tools/test_zero_shot_hf.py) as a clip-score job: --classes imagenet and the OpenAI templates unless given, Resize((S, S)), top-5 kept, and top-1/top-5 accuracy over all labeled items in manifest.json."))
    var jobType: String

    /// The job kind name that runs `clip-score` with upstream's zero-shot evaluation settings.
    static let zeroShotPreset = "zero-shot"

    @Option(name: .long, help: "Model directory (config.json + model.safetensors); linear-probe: the features' model, the default.")
    var model: String?

    @Option(name: .long, help: "Input: an ImageFolder tree, a folder of images, a .jsonl/.csv manifest or WebDataset .tar shards; linear-probe: the train features' folder.")
    var input: String

    @Option(name: .long, help: "Output directory.")
    var output: String

    @Option(name: .customLong("shard-size"), parsing: .unconditional, help: "Items per shard (default: limits.shard_size of the configuration).")
    var shardSize: Int?

    @Option(name: .long, parsing: .unconditional, help: "Higher runs first (may be negative).")
    var priority: Int32 = 0

    @Option(name: .customLong("max-attempts"), parsing: .unconditional, help: "Attempts per shard before it is marked failed (default: coordinator.max_attempts).")
    var maxAttempts: Int32?

    @Option(name: .customLong("image-size"), parsing: .unconditional, help: "Square input size in pixels.")
    var imageSize: Int?

    @Option(name: .long, help: "Input normalization: imagenet or half.")
    var normalize: String?

    @Option(name: .long, help: "Stored dtype: float32, float16 or bfloat16 (latents only).")
    var dtype: String?

    @Option(name: .long, help: "Compute precision: fp32 or bf16 (default: worker.precision of the configuration, fp32).")
    var precision: String?

    @Option(name: .long, help: ArgumentHelp(
        "Pillow release whose resampling preprocessing reproduces: 13 or 12 (default: worker.pillow of the configuration, 13).",
        discussion: "13 is what `pip install pillow` gives today; 12 is Pillow up to 12.x, which the reference fixtures were made with. They differ by a level or two on some pixels of portrait shrinks. Every worker preprocesses the job with its setting, and manifest.json records it under preprocessing.pillow."))
    var pillow: PillowOption?

    @Option(name: .customLong("batch-size"), parsing: .unconditional, help: "Images per model call (default: worker.batch_size of the configuration).")
    var batchSize: Int?

    @Flag(name: .long, inversion: .prefixedNo, help: "latents: also store horizontally flipped latents.")
    var flip: Bool?

    @Option(name: .long, help: "features: adm-center-crop, resize or resize-center-crop (Resize(S·256/224) bicubic + CenterCrop(S), the linear-probing eval transform).")
    var transform: String?

    @Option(name: .long, help: "features: 'last' or the number of last blocks to read.")
    var layers: String?

    @Option(name: .long, help: "features: cls, mean or cls+mean.")
    var pool: String?

    @Flag(name: .long, inversion: .prefixedNo, help: "features: apply the encoder's final norm.")
    var norm: Bool?

    @Flag(name: .customLong("keep-patch-tokens"), help: "features: also store the patch tokens.")
    var keepPatchTokens = false

    @Flag(name: .long, inversion: .prefixedNo, help: "clip-embed: also embed the items' captions.")
    var text: Bool?

    @Flag(name: .long, inversion: .prefixedNo, help: "clip-embed: build the FAISS index when the job finishes.")
    var index: Bool?

    @Option(name: .customLong("index-exact-threshold"), parsing: .unconditional, help: "clip-embed: images from which an IVF index replaces exact search.")
    var indexExactThreshold: Int?

    @Option(name: .customLong("index-encoding"), help: "clip-embed: IVF vector encoding, pq or sq8.")
    var indexEncoding: String?

    @Option(name: .customLong("index-memory"), help: ArgumentHelp(
        "clip-embed: most memory the index build may use, e.g. 16G or 512M (binary units).",
        discussion: "The build then streams the embeddings from their shard files and splits the index into several files over consecutive rows when one does not fit; infos.json records the choice."))
    var indexMemory: String?

    @Option(name: .long, help: ArgumentHelp(
        "A file of class names, one per line, or 'imagenet': a manifest's class-name labels become their index in it; clip-score also classifies against them.",
        discussion: "Without it, class-name labels are numbered in sorted order, as ImageFolder numbers its class folders. manifest.json records the class list under classes."))
    var classes: String?

    @Option(name: .long, help: "clip-score: 'openai' or a file of prompt templates ('{}' is the class name).")
    var templates: String?

    @Option(name: .customLong("top-k"), parsing: .unconditional, help: "clip-score: labels kept per image.")
    var topK: Int?

    @Flag(name: .customLong("save-logits"), help: "clip-score: also store every image's logits against every class.")
    var saveLogits = false

    @Flag(name: .customLong("save-images"), help: ArgumentHelp(
        "reconstruction: also write originals and reconstructions as PNG (reference/ref_NNNNNN.png, reconstructed/rec_NNNNNN.png).",
        discussion: "NNNNNN is the item's position in the listing, as upstream names them; point any FID tool at the two folders."))
    var saveImages = false

    @Option(name: .customLong("inception-weights"), help: ArgumentHelp(
        "reconstruction: pytorch-fid's FID Inception as safetensors (scripts/convert_inception_weights.py): also compute rFID.",
        discussion: "Each pair's 8-bit images (the ones --save-images writes) go through the network; the 2048-wide features are kept per shard under fid/ and the finalizer computes the Fréchet distance as pytorch-fid does."))
    var inceptionWeights: String?

    @Option(name: .customLong("lpips-weights"), help: ArgumentHelp(
        "reconstruction: upstream's LPIPS (VGG16 and its linear layers) as safetensors (scripts/convert_lpips_weights.py): also compute LPIPS.",
        discussion: "Per image, on the denormalized pair mapped to [-1, 1], as tools/test_reconstruction_hf.py does; the manifest gets the mean."))
    var lpipsWeights: String?

    @Option(name: .long, help: ArgumentHelp(
        "linear-probe: the val features' folder (a features job's output, like --input).",
        discussion: "Both come from `vtp run features --layers 4 --pool cls+mean --transform resize-center-crop --image-size 224` (upstream's eval transform), one over the train and one over the val ImageFolder."))
    var val: String?

    @Option(name: .long, help: "linear-probe: numbers of last blocks the heads read, comma-separated (default 1,4).")
    var blocks: String?

    @Option(name: .customLong("learning-rates"), help: "linear-probe: learning rates before batch scaling, comma-separated (default: upstream's 13, 1e-5 ... 0.1).")
    var learningRates: String?

    @Option(name: .long, parsing: .unconditional, help: "linear-probe: epochs (default 10), each --epoch-length iterations and then an evaluation.")
    var epochs: Int?

    @Option(name: .customLong("epoch-length"), parsing: .unconditional, help: "linear-probe: iterations per epoch (default 1250, upstream's).")
    var epochLength: Int?

    @Option(name: .long, parsing: .unconditional, help: "linear-probe: seed of the training order and the initial weights (default 0).")
    var seed: UInt64?

    /// The validated request; `settings` supplies defaults the flags leave open.
    func request(settings: ClusterSettings) throws -> JobRequest {
        if jobType == JobType.linearProbe.rawValue { return try linearProbeRequest(settings: settings) }
        guard let model else { throw ValidationError("--model is required for \(jobType)") }
        if val != nil || blocks != nil || learningRates != nil || epochs != nil || epochLength != nil || seed != nil {
            throw ValidationError("--val, --blocks, --learning-rates, --epochs, --epoch-length and --seed are linear-probe options, not \(jobType)'s")
        }
        let type: JobType
        // zero-shot is clip-score with upstream's settings, so it shares its outputs, cache and resume.
        let zeroShot = jobType == Self.zeroShotPreset
        do { type = zeroShot ? .clipScore : try JobType(name: jobType) } catch {
            throw ValidationError("\(error); or \(Self.zeroShotPreset)")
        }
        let classes = classes ?? (zeroShot ? "imagenet" : nil)
        if zeroShot {
            if let transform, transform != TransformOption.resize.rawValue {
                throw ValidationError("zero-shot: upstream resizes to (S, S); --transform \(transform) is a clip-score option")
            }
            if let topK, topK < 5 { throw ValidationError("zero-shot: --top-k must be at least 5 for top-5 accuracy, got \(topK)") }
        }
        var document: [String: Any] = [:]
        if let imageSize { document["image_size"] = imageSize }
        if let normalize { document["normalize"] = normalize }
        if let dtype { document["dtype"] = dtype }
        document["batch_size"] = batchSize ?? settings.worker.batchSize
        document["precision"] = precision ?? settings.worker.precision
        // The configuration's value was checked when it was loaded.
        document["pillow"] = (pillow ?? PillowOption(name: settings.worker.pillow) ?? .newJobDefault).rawValue
        if let flip { document["flip"] = flip }
        if let transform { document["transform"] = transform }
        if let layers {
            if layers == "last" {
                document["layers"] = "last"
            } else if let n = Int(layers) {
                document["layers"] = ["intermediate": n]
            } else {
                throw ValidationError("--layers: expected 'last' or a number of blocks, got '\(layers)'")
            }
        }
        if let pool { document["pool"] = pool }
        if let norm { document["norm"] = norm }
        if keepPatchTokens { document["keep_patch_tokens"] = true }
        if let text { document["text"] = text }
        if let index { document["index"] = index }
        if let indexExactThreshold { document["index_exact_threshold"] = indexExactThreshold }
        if let indexEncoding { document["index_encoding"] = indexEncoding }
        if let indexMemory {
            do { document["index_memory"] = try MemorySize.parse(indexMemory, option: "--index-memory") } catch {
                throw ValidationError("\(error)")
            }
        }
        // Files named here are read by workers and the finalizer, possibly elsewhere: make them absolute.
        var labelClasses: ClassList?
        if let classes {
            let resolved = classes == "imagenet" ? classes : settings.resolveOutput(classes)
            if type == .clipScore {
                document["classes"] = resolved
            } else if let kind = try? DatasetSource.detect(input: settings.resolveOutput(input)), kind != .manifest {
                throw ValidationError("--classes names the classes of a manifest's labels; \(input) is a \(kind.rawValue) input, whose labels it cannot rename")
            }
            if classes == "imagenet" {
                labelClasses = ClassList(names: ImageNetZeroShot.classNames, source: "the ImageNet class list (--classes imagenet)")
            } else {
                do { labelClasses = try ClassList.read(file: resolved) } catch { throw ValidationError("--classes: \(error)") }
            }
        }
        if let templates { document["templates"] = templates == "openai" ? templates : settings.resolveOutput(templates) }
        if let topK { document["top_k"] = topK }
        if saveLogits { document["save_logits"] = true }
        if saveImages { document["save_images"] = true }
        for (key, path, option) in [("inception_weights", inceptionWeights, "--inception-weights"), ("lpips_weights", lpipsWeights, "--lpips-weights")] {
            guard let path else { continue }
            let resolved = settings.resolveOutput(path)
            guard FileManager.default.isReadableFile(atPath: resolved) else {
                throw ValidationError("\(option) \(path): no readable file there (expected a .safetensors file)")
            }
            document[key] = resolved
        }
        let parameters = try decodedParameters(type, document)
        let (size, attempts) = try checkedLimits(settings: settings, defaultShardSize: settings.limits.shardSize)
        guard FileManager.default.fileExists(atPath: model + "/config.json") else {
            throw ValidationError("--model \(model): no config.json there (expected a model directory)")
        }
        let request = JobRequest(parameters: parameters, input: settings.resolveOutput(input), output: settings.resolveOutput(output),
                                 model: settings.resolveOutput(model), shardSize: size, priority: priority, maxAttempts: attempts,
                                 labelClasses: labelClasses)
        do { try request.checkBeforeListing() } catch { throw CLIError("\(error)") }
        return request
    }

    /// `linear-probe`: heads over cached features, whose own manifests name the model.
    private func linearProbeRequest(settings: ClusterSettings) throws -> JobRequest {
        let imageOptions: [(String, Bool)] = [
            ("--image-size", imageSize != nil), ("--normalize", normalize != nil), ("--dtype", dtype != nil), ("--pillow", pillow != nil),
            ("--flip", flip != nil), ("--transform", transform != nil), ("--layers", layers != nil), ("--pool", pool != nil),
            ("--norm", norm != nil), ("--keep-patch-tokens", keepPatchTokens), ("--classes", classes != nil), ("--templates", templates != nil),
            ("--top-k", topK != nil), ("--save-logits", saveLogits), ("--save-images", saveImages),
            ("--inception-weights", inceptionWeights != nil), ("--lpips-weights", lpipsWeights != nil),
        ]
        if let (option, _) = imageOptions.first(where: { $0.1 }) {
            throw ValidationError("linear-probe: \(option) is an option of the jobs that read images; the features job that made --input took it")
        }
        if let precision, precision != ComputePrecisionName.fp32.rawValue {
            throw ValidationError("linear-probe: the heads train in float32 (--precision \(precision) applies to the features job)")
        }
        guard let val else { throw ValidationError("linear-probe: --val is required (the val features' folder)") }
        let train = settings.resolveOutput(input), valPath = settings.resolveOutput(val)
        var document: [String: Any] = ["train": train, "val": valPath]
        func list<T>(_ text: String, option: String, _ parse: (String) -> T?) throws -> [T] {
            let values = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            let parsed = values.compactMap(parse)
            guard !values.isEmpty, parsed.count == values.count else { throw ValidationError("\(option): expected comma-separated numbers, got '\(text)'") }
            return parsed
        }
        if let blocks { document["blocks"] = try list(blocks, option: "--blocks") { Int($0) } }
        if let learningRates { document["learning_rates"] = try list(learningRates, option: "--learning-rates") { Double($0) } }
        if let batchSize { document["batch_size"] = batchSize }
        if let epochs { document["epochs"] = epochs }
        if let epochLength { document["epoch_length"] = epochLength }
        if let seed { document["seed"] = seed }
        guard case let .linearProbe(parameters) = try decodedParameters(.linearProbe, document) else { fatalError("decoded another kind") }
        // Refused here, before anything starts, rather than by every worker.
        let inputs: LinearProbeInputs
        do { inputs = try LinearProbeInputs.check(parameters) } catch { throw CLIError("linear-probe: \(error)") }
        var modelDirectory = inputs.modelDirectory
        if let model {
            let resolved = settings.resolveOutput(model)
            if let recorded = modelDirectory, recorded != resolved {
                throw ValidationError("linear-probe: --model \(model) is not the model the features were extracted with (\(recorded))")
            }
            modelDirectory = resolved
        }
        guard let modelDirectory, FileManager.default.fileExists(atPath: modelDirectory + "/config.json") else {
            throw ValidationError("linear-probe: the features' manifest names no model directory with a config.json; give --model")
        }
        // One shard per block count by default: the heads of a shard share every batch's features.
        let (size, attempts) = try checkedLimits(settings: settings,
                                                 defaultShardSize: parameters.heads.filter { $0.blocks == parameters.blocks[0] }.count)
        return JobRequest(parameters: .linearProbe(parameters), input: train, output: settings.resolveOutput(output),
                          model: modelDirectory, shardSize: size, priority: priority, maxAttempts: attempts)
    }

    /// The job's parameters from the flags' `document`, decoded (and so checked) as the ledger will.
    private func decodedParameters(_ type: JobType, _ document: [String: Any]) throws -> JobParameters {
        let json = String(decoding: try JSONSerialization.data(withJSONObject: document, options: [.sortedKeys]), as: UTF8.self)
        do { return try JobParameters.decode(jobType: type, json: json) } catch {
            throw ValidationError("\(jobType): \(error)")
        }
    }

    /// `--shard-size` (else `defaultShardSize`) and `--max-attempts` (else the configuration's),
    /// checked, and `--output` checked not to be a file.
    private func checkedLimits(settings: ClusterSettings, defaultShardSize: Int) throws -> (shardSize: Int, maxAttempts: Int32) {
        let size = shardSize ?? defaultShardSize
        guard size >= 1 else { throw ValidationError("--shard-size must be at least 1, got \(size)") }
        let attempts = maxAttempts ?? Int32(settings.coordinator.maxAttempts)
        guard attempts >= 1 else { throw ValidationError("--max-attempts must be at least 1, got \(attempts)") }
        try OutputDirectory.checkNotAFile(settings.resolveOutput(output), option: "--output")
        return (size, attempts)
    }
}
