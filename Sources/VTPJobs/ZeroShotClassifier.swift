import Foundation
import VTPVocabulary
import VTPDatasets
import VTPModel
import VTPSafeTensors
import VTPStorage
#if canImport(Glibc)
import Glibc
#endif

/// Class names and prompt templates of a zero-shot run.
struct ZeroShotVocabulary: Sendable, Equatable, Codable {
    var classes: [String]
    var templates: [String]

    /// Resolves a `clip-score` job's `classes` / `templates` parameters.
    static func resolve(classes: String, templates: String?) throws(JobError) -> ZeroShotVocabulary {
        let names = classes == "imagenet" ? ImageNetZeroShot.classNames : try lines(of: classes, field: "classes")
        guard !names.isEmpty else { throw .invalidParameter(field: "classes", detail: "\(classes) lists no class names") }
        let prompts: [String]
        if let templates, templates != "openai" {
            prompts = try lines(of: templates, field: "templates")
            guard !prompts.isEmpty else { throw .invalidParameter(field: "templates", detail: "\(templates) lists no templates") }
            if let bad = prompts.first(where: { !$0.contains("{}") }) {
                throw .invalidParameter(field: "templates", detail: "template '\(bad)' in \(templates) has no {} placeholder for the class name")
            }
        } else {
            prompts = ImageNetZeroShot.templates
        }
        return ZeroShotVocabulary(classes: names, templates: prompts)
    }

    /// Non-blank lines of a UTF-8 text file, trailing carriage returns and surrounding whitespace removed.
    private static func lines(of path: String, field: String) throws(JobError) -> [String] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .invalidParameter(field: field, detail: "cannot read \(path) (expected \"imagenet\"/\"openai\" or a readable file with one entry per line)")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw .invalidParameter(field: field, detail: "\(path) is not UTF-8 text")
        }
        // The rule a manifest's class-name labels are numbered by, so a name has one index in both.
        return ClassList.nonBlankLines(text)
    }

    /// The prompts of class `c`, in template order.
    func prompts(forClass c: Int) -> [String] {
        templates.map { $0.replacingOccurrences(of: "{}", with: classes[c]) }
    }
}

/// The zero-shot classifier: one unit vector per class, the renormalized mean over templates of
/// the normalized prompt embeddings (open_clip's `build_zero_shot_classifier`, which the reference
/// zero-shot script uses).
struct ZeroShotClassifier {
    var vocabulary: ZeroShotVocabulary
    /// (C, D) row-major.
    var weights: [Float]
    var dimension: Int

    static let embeddingsFile = "class_embeddings.npy"
    static let keyFile = "classifier.json"

    /// What the cache was computed from; a cache for anything else is recomputed.
    struct CacheKey: Codable, Equatable {
        var model: String
        var vocabulary: ZeroShotVocabulary
        var dimension: Int
    }

    /// Computes the classifier with `model`; `progress` hears the number of classes done after each batch.
    static func compute(vocabulary: ZeroShotVocabulary, encoder: ClipTextEncoder,
                        progress: ((Int) -> Void)? = nil) throws -> ZeroShotClassifier {
        let t = vocabulary.templates.count
        var weights: [Float] = []
        var dimension = 0
        // Whole classes per text batch, about 256 prompts at a time.
        let classesPerBatch = max(1, 256 / t)
        var c0 = 0
        while c0 < vocabulary.classes.count {
            let c1 = min(c0 + classesPerBatch, vocabulary.classes.count)
            let prompts = (c0..<c1).flatMap { vocabulary.prompts(forClass: $0) }
            let (values, d) = try encoder.embed(prompts, chunk: 256)
            dimension = d
            values.withUnsafeBufferPointer { v in
                for c in 0..<(c1 - c0) {
                    var mean = [Double](repeating: 0, count: d)
                    for j in 0..<t {
                        let base = (c * t + j) * d
                        for i in 0..<d { mean[i] += Double(v[base + i]) }
                    }
                    var norm = 0.0
                    for i in 0..<d { mean[i] /= Double(t); norm += mean[i] * mean[i] }
                    // F.normalize's eps keeps an all-zero mean at zero instead of dividing by zero.
                    let scale = 1 / max(norm.squareRoot(), 1e-12)
                    for i in 0..<d { weights.append(Float(mean[i] * scale)) }
                }
            }
            c0 = c1
            progress?(c1)
        }
        return ZeroShotClassifier(vocabulary: vocabulary, weights: weights, dimension: dimension)
    }

    /// The classifier cached in `directory/zero_shot/`, or computed and cached there. Every shard
    /// of a job asks; the first computes, the rest read. Two workers racing both compute the same
    /// values and each replaces the files atomically, so readers never see a torn cache.
    static func cached(in outputDirectory: String, vocabulary: ZeroShotVocabulary, encoder: ClipTextEncoder,
                       progress: ((Int) -> Void)? = nil) throws -> ZeroShotClassifier {
        let dir = outputDirectory + "/" + ClipLayout.zeroShotDirectory
        let key = CacheKey(model: encoder.model.directory, vocabulary: vocabulary, dimension: encoder.model.config.textEmbedDim)
        if let classifier = read(from: dir, key: key, vocabulary: vocabulary, dimension: key.dimension) { return classifier }
        let classifier = try compute(vocabulary: vocabulary, encoder: encoder, progress: progress)
        do { try classifier.write(to: dir, key: key) } catch {
            throw JobError.writeFailed(path: dir, reason: "cannot cache class embeddings: \(FileErrorText.reason(error, at: dir))")
        }
        return classifier
    }

    /// The classifier stored in `dir` if it was stored under exactly `key`.
    static func read<Key: Codable & Equatable>(from dir: String, key: Key, vocabulary: ZeroShotVocabulary,
                                                dimension: Int) -> ZeroShotClassifier? {
        guard let data = FileManager.default.contents(atPath: dir + "/" + keyFile),
              let stored = try? JSONDecoder().decode(Key.self, from: data), stored == key,
              let array = try? NpyFile.read(dir + "/" + embeddingsFile),
              array.shape == [vocabulary.classes.count, dimension] else { return nil }
        return ZeroShotClassifier(vocabulary: vocabulary, weights: array.values, dimension: dimension)
    }

    /// Stores the embeddings, then the key: a reader trusts the embeddings only under a matching key.
    func write<Key: Codable>(to dir: String, key: Key) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try weights.withUnsafeBufferPointer {
            try NpyFile.write(shape: [vocabulary.classes.count, dimension], values: $0, as: .float32,
                              to: dir + "/" + Self.embeddingsFile)
        }
        try AtomicFile.write(try Self.keyEncoder.encode(key), to: dir + "/" + Self.keyFile)
    }

    static var keyEncoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return encoder
    }
}

/// Builds a clip-score job's zero-shot classifier into its output directory before any worker
/// starts, so the user sees what the wait is (1,000 ImageNet classes x 80 templates are 80,000
/// prompts, a minute or more on a CPU) and the workers read the cache instead of each encoding
/// the same prompts at once.
///
/// Two caches: the job's own (`<output>/zero_shot/`, the one every shard reads, see
/// ``ZeroShotClassifier``) and a shared one across jobs (``sharedCacheRoot(environment:)``),
/// keyed by the model directory and its weight files' sizes and modification times, the class
/// names, templates, width and compute precision, so a later job with the same model and classes
/// into another output copies the embeddings instead of encoding them again.
public enum ZeroShotPreparation {
    /// What has to be encoded.
    public struct Work: Sendable, Equatable {
        public var classes: Int
        public var templates: Int
        public var prompts: Int { classes * templates }
        /// "the 1000 ImageNet classes" or the class file.
        public var classSource: String
        /// Where the result is cached for this job.
        public var cacheDirectory: String
    }

    /// Where a job's class embeddings stand.
    public enum Status: Sendable, Equatable {
        /// The job has no classes.
        case notNeeded
        /// The job's own cache already matches.
        case cached
        /// Copied into the job's cache from the shared cache entry at this path.
        case restored(from: String)
        /// Still to be encoded (``build(parameters:modelDirectory:outputDirectory:sharedCache:threads:progress:)``).
        case encode(Work)
    }

    /// The shared cache directory: `$VTP_CACHE_DIR`, else `$XDG_CACHE_HOME/vtp`, else
    /// `~/.cache/vtp`; nil when none can be named.
    public static func sharedCacheRoot(environment: [String: String] = ProcessInfo.processInfo.environment) -> String? {
        if let dir = environment["VTP_CACHE_DIR"], !dir.isEmpty { return dir }
        if let dir = environment["XDG_CACHE_HOME"], !dir.isEmpty { return dir + "/vtp" }
        if let home = environment["HOME"], !home.isEmpty { return home + "/.cache/vtp" }
        return nil
    }

    /// What a clip-score job with these parameters still needs. Reads only the model's
    /// `config.json` and file sizes, not its weights; a hit in `sharedCache` is copied into the
    /// job's output at once.
    public static func status(parameters: ClipScoreParameters, modelDirectory: String, outputDirectory: String,
                              sharedCache: String? = nil) throws(JobError) -> Status {
        guard let classes = parameters.classes else { return .notNeeded }
        let context = try Context(parameters: parameters, modelDirectory: modelDirectory, outputDirectory: outputDirectory,
                                  sharedCache: sharedCache)
        if ZeroShotClassifier.read(from: context.jobCache, key: context.key, vocabulary: context.vocabulary,
                                   dimension: context.key.dimension) != nil {
            return .cached
        }
        if let shared = context.sharedEntry,
           let classifier = ZeroShotClassifier.read(from: shared, key: context.sharedKey, vocabulary: context.vocabulary,
                                                    dimension: context.key.dimension) {
            do { try classifier.write(to: context.jobCache, key: context.key) } catch {
                throw .writeFailed(path: context.jobCache, reason: "cannot cache class embeddings: \(FileErrorText.reason(error, at: context.jobCache))")
            }
            return .restored(from: shared)
        }
        return .encode(Work(classes: context.vocabulary.classes.count, templates: context.vocabulary.templates.count,
                            classSource: classes == "imagenet" ? "the \(context.vocabulary.classes.count) ImageNet classes" : classes,
                            cacheDirectory: context.jobCache))
    }

    /// Loads the model at the job's precision and encodes the class prompts into the job's cache,
    /// then into `sharedCache` (best effort: a cache that cannot be written only costs the next
    /// job the encoding). Blocking and CPU-bound; `progress` hears (classes done, classes) after
    /// each batch. Returns the shared entry written, if any.
    @discardableResult
    public static func build(parameters: ClipScoreParameters, modelDirectory: String, outputDirectory: String,
                             sharedCache: String? = nil, threads: Int? = nil,
                             progress: @escaping (Int, Int) -> Void) throws -> String? {
        guard parameters.classes != nil else { return nil }
        let context = try Context(parameters: parameters, modelDirectory: modelDirectory, outputDirectory: outputDirectory,
                                  sharedCache: sharedCache)
        let model = try ModelCache(threads: threads).model(at: modelDirectory, precision: parameters.precision)
        try parameters.preprocessing.check(model: model)
        let encoder = try ClipTextEncoder(model: model)
        let total = context.vocabulary.classes.count
        let classifier = try ZeroShotClassifier.cached(in: outputDirectory, vocabulary: context.vocabulary, encoder: encoder) {
            progress($0, total)
        }
        guard let shared = context.sharedEntry, (try? classifier.write(to: shared, key: context.sharedKey)) != nil else { return nil }
        return shared
    }

    /// What identifies a classifier in the shared cache: the job cache's key plus what the
    /// embeddings also depend on and a path does not pin down.
    struct SharedKey: Codable, Equatable {
        var classifier: ZeroShotClassifier.CacheKey
        var precision: String
        /// `name size mtime` of each file of the model directory.
        var modelFiles: [String]
    }

    private struct Context {
        var vocabulary: ZeroShotVocabulary
        var key: ZeroShotClassifier.CacheKey
        var sharedKey: SharedKey
        var jobCache: String
        var sharedEntry: String?

        init(parameters: ClipScoreParameters, modelDirectory: String, outputDirectory: String,
             sharedCache: String?) throws(JobError) {
            vocabulary = try ZeroShotVocabulary.resolve(classes: parameters.classes ?? "", templates: parameters.templates)
            let config: VTPConfig
            do { config = try VTPConfig.load(path: modelDirectory + "/config.json") } catch {
                throw .modelLoadFailed(model: modelDirectory, reason: "\(error)")
            }
            key = ZeroShotClassifier.CacheKey(model: modelDirectory, vocabulary: vocabulary, dimension: config.textEmbedDim)
            sharedKey = SharedKey(classifier: key, precision: parameters.precision.rawValue,
                                  modelFiles: Self.fileStamps(modelDirectory))
            jobCache = outputDirectory + "/" + ClipLayout.zeroShotDirectory
            sharedEntry = sharedCache.map { root in
                let json = (try? ZeroShotClassifier.keyEncoder.encode(sharedKey)) ?? Data()
                return root + "/zero-shot/" + Self.fnv1a(json)
            }
        }

        static func fileStamps(_ directory: String) -> [String] {
            let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
            return names.compactMap { name in
                var info = stat()
                guard stat(directory + "/" + name, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return nil }
                return "\(name) \(info.st_size) \(info.st_mtim.tv_sec).\(info.st_mtim.tv_nsec)"
            }
        }

        /// A short stable name for an entry; the stored key is compared in full, so a collision
        /// only costs an encoding.
        static func fnv1a(_ data: Data) -> String {
            var hash: UInt64 = 0xcbf2_9ce4_8422_2325
            for byte in data { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
            let hex = String(hash, radix: 16)
            return String(repeating: "0", count: 16 - hex.count) + hex
        }
    }
}
