import Foundation
import VTPVocabulary
import VTPDatasets
import VTPModel
import VTPStorage
import VTPTensor

/// One line of `scores/scores_{i}.jsonl`: an image's CLIP scores.
public struct ClipScoreRow: Codable, Sendable, Equatable {
    /// Row in this shard's scores (and `logits_{i}.npy`).
    public var row: Int
    public var ordinal: Int
    public var sourceId: String
    public var path: String
    public var label: Int?
    public var caption: String?
    /// Cosine similarity of the image with its own caption (nil without a caption).
    public var captionCosine: Float?
    /// `exp(logit_scale) · cos + logit_bias` for its own caption, as `get_clip_logits` computes.
    public var captionLogit: Float?
    /// Zero-shot: the `top_k` class indices, best first.
    public var topClasses: [Int]?
    /// Their class names.
    public var topNames: [String]?
    /// Their probabilities, softmax over all classes of 100 · cos (the reference zero-shot scale).
    public var topProbabilities: [Float]?

    enum CodingKeys: String, CodingKey {
        case row, ordinal, sourceId = "source_id", path, label, caption
        case captionCosine = "caption_cosine", captionLogit = "caption_logit"
        case topClasses = "top_classes", topNames = "top_names", topProbabilities = "top_probs"
    }
}

/// `clip-score`: per image, the CLIP similarity with its own caption and, with `classes`, a
/// zero-shot classification against class embeddings built once per job.
final class ClipScoreJob: ShardJob {
    /// The scale the reference zero-shot evaluation multiplies cosines by before its softmax/top-k.
    static let zeroShotScale: Double = 100

    let parameters: ClipScoreParameters
    let model: VTPModel
    let plan: PreprocessPlan
    private let text: ClipTextEncoder
    private let classifier: ZeroShotClassifier?
    /// The classifier as a (C, D) tensor for `VTPModel.logits`.
    private let classTensor: Tensor?
    private var rows: [ClipScoreRow] = []
    private var logits: RowBuffer

    init(parameters: ClipScoreParameters, model: VTPModel, options: ShardExecutor.Options, outputDirectory: String) throws(JobError) {
        try parameters.preprocessing.check(model: model)
        self.parameters = parameters
        self.model = model
        plan = parameters.preprocessing.plan(modelImageSize: model.config.imageSize, options: options)
        text = try ClipTextEncoder(model: model)
        if let classes = parameters.classes {
            let vocabulary = try ZeroShotVocabulary.resolve(classes: classes, templates: parameters.templates)
            let built: ZeroShotClassifier
            do { built = try ZeroShotClassifier.cached(in: outputDirectory, vocabulary: vocabulary, encoder: text) } catch let e as JobError {
                throw e
            } catch {
                throw .inferenceFailed(shard: -1, detail: "building the zero-shot classifier: \(error)")
            }
            classifier = built
            classTensor = Tensor(shape: [vocabulary.classes.count, built.dimension], values: built.weights)
            logits = RowBuffer(rowElements: vocabulary.classes.count)
        } else {
            classifier = nil
            classTensor = nil
            logits = RowBuffer(rowElements: 1)
        }
    }

    var batchSize: Int { parameters.batchSize }

    func consume(_ batch: PreparedBatch) throws {
        let images = try model.clipImageFeatures(batch.pixels)
        let b = batch.items.count, d = images.shape[1]
        var batchRows = batch.items.enumerated().map { i, item in
            ClipScoreRow(row: rows.count + i, ordinal: item.ordinal, sourceId: item.sourceId, path: item.location.encoded,
                         label: item.label, caption: item.caption)
        }
        let captioned = batch.items.indices.filter { batch.items[$0].usableCaption != nil }
        if !captioned.isEmpty {
            let (values, td) = try text.embed(captioned.map { batch.items[$0].usableCaption! }, chunk: parameters.batchSize)
            guard td == d else {
                throw JobError.modelMismatch(model: model.directory, detail: "text width \(td) differs from image embedding width \(d)")
            }
            let scale = model.logitScaleExp ?? 1, bias = model.logitBias ?? 0
            withExtendedLifetime(images) {
                let img = images.buffer
                values.withUnsafeBufferPointer { txt in
                    for (t, i) in captioned.enumerated() {
                        var dot: Float = 0
                        for j in 0..<d { dot += img[i * d + j] * txt[t * d + j] }
                        batchRows[i].captionCosine = dot
                        batchRows[i].captionLogit = scale * dot + bias
                    }
                }
            }
        }
        if let classifier, let classTensor {
            let c = classifier.vocabulary.classes.count
            guard classifier.dimension == d else {
                throw JobError.modelMismatch(model: model.directory, detail: "class embeddings have width \(classifier.dimension), images \(d)")
            }
            let cosines = Tensor(uninitialized: [b, c])
            withExtendedLifetime((images, classTensor)) {
                model.pool.gemm(m: b, n: c, k: d, a: images.pointer, b: classTensor.pointer, transposeB: true, c: cosines.mutablePointer)
            }
            let k = min(parameters.topK, c)
            withExtendedLifetime(cosines) {
                let cos = cosines.buffer
                for i in 0..<b {
                    let top = Self.topK(UnsafeBufferPointer(rebasing: cos[(i * c)..<((i + 1) * c)]), k: k)
                    batchRows[i].topClasses = top.map(\.index)
                    batchRows[i].topNames = top.map { classifier.vocabulary.classes[$0.index] }
                    batchRows[i].topProbabilities = top.map(\.probability)
                }
            }
            if parameters.saveLogits { logits.append(model.logits(imageFeatures: images, textFeatures: classTensor)) }
        }
        rows += batchRows
    }

    /// The `k` best classes of one image's cosines with their softmax(100 · cos) probabilities;
    /// ties go to the lower class index, as a stable top-k does.
    static func topK(_ cos: UnsafeBufferPointer<Float>, k: Int) -> [(index: Int, probability: Float)] {
        var maxValue = -Double.infinity
        for v in cos { maxValue = max(maxValue, zeroShotScale * Double(v)) }
        var total = 0.0
        for v in cos { total += Foundation.exp(zeroShotScale * Double(v) - maxValue) }
        let order = cos.indices.sorted { cos[$0] != cos[$1] ? cos[$0] > cos[$1] : $0 < $1 }
        return order.prefix(k).map { ($0, Float(Foundation.exp(zeroShotScale * Double(cos[$0]) - maxValue) / total)) }
    }

    func write(shard: Int, directory: String, items: [JobItem]) throws -> ShardWriteResult {
        precondition(items.count == rows.count, "rows and items disagree")
        let scoresPath = try ClipLayout.scores(shard: shard)
        let logitsPath = try ClipLayout.logits(shard: shard)
        guard !items.isEmpty else { return ShardWriteResult(written: nil, stats: nil) }
        try ClipLayout.createParent(of: scoresPath, in: directory)
        // The scores file is the main file: logits appear with it or not at all.
        let files = ShardFileSet(directory: directory)
        var extra: [String] = []
        if parameters.saveLogits, let classifier {
            try logits.values.withUnsafeBufferPointer {
                try files.stageNpy(shape: [logits.rows, classifier.vocabulary.classes.count], values: $0, element: .float32,
                                   as: logitsPath)
            }
            extra.append(logitsPath)
        } else {
            files.removeOnPublish(logitsPath)
        }
        try files.stageJSONL(rows, as: scoresPath, isMain: true)
        try files.publish()
        // The scores file carries its own ids, so it is also the shard's id sidecar.
        return ShardWriteResult(written: WrittenShard(fileName: scoresPath, sidecarName: scoresPath, rows: rows.count), stats: nil,
                                extraFiles: extra)
    }
}
