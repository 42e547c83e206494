import Foundation
import VTPVocabulary
import VTPDatasets
import VTPModel
import VTPSafeTensors
import VTPStorage

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

    /// Computes the classifier with `model`.
    static func compute(vocabulary: ZeroShotVocabulary, encoder: ClipTextEncoder) throws -> ZeroShotClassifier {
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
        }
        return ZeroShotClassifier(vocabulary: vocabulary, weights: weights, dimension: dimension)
    }

    /// The classifier cached in `directory/zero_shot/`, or computed and cached there. Every shard
    /// of a job asks; the first computes, the rest read. Two workers racing both compute the same
    /// values and each replaces the files atomically, so readers never see a torn cache.
    static func cached(in outputDirectory: String, vocabulary: ZeroShotVocabulary, encoder: ClipTextEncoder) throws -> ZeroShotClassifier {
        let dir = outputDirectory + "/" + ClipLayout.zeroShotDirectory
        let key = CacheKey(model: encoder.model.directory, vocabulary: vocabulary, dimension: encoder.model.config.textEmbedDim)
        if let data = FileManager.default.contents(atPath: dir + "/" + keyFile),
           let stored = try? JSONDecoder().decode(CacheKey.self, from: data), stored == key,
           let array = try? NpyFile.read(dir + "/" + embeddingsFile),
           array.shape == [vocabulary.classes.count, key.dimension] {
            return ZeroShotClassifier(vocabulary: vocabulary, weights: array.values, dimension: key.dimension)
        }
        let classifier = try compute(vocabulary: vocabulary, encoder: encoder)
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try classifier.weights.withUnsafeBufferPointer {
                try NpyFile.write(shape: [vocabulary.classes.count, classifier.dimension], values: $0, as: .float32, to: dir + "/" + embeddingsFile)
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            try AtomicFile.write(try encoder.encode(key), to: dir + "/" + keyFile)
        } catch {
            throw JobError.writeFailed(path: dir, reason: "cannot cache class embeddings: \(error)")
        }
        return classifier
    }
}
