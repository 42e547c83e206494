import Foundation
import VTPVocabulary
import VTPDatasets
import VTPModel
import VTPStorage
import VTPTensor
import VTPText

/// Captions to CLIP text embeddings with the model's context length; shared by CLIP jobs and search.
struct ClipTextEncoder {
    let model: VTPModel
    let tokenizer: CLIPTokenizer

    init(model: VTPModel) throws(JobError) {
        self.model = model
        do { tokenizer = try CLIPTokenizer.bundled() } catch {
            throw .modelLoadFailed(model: model.directory, reason: "cannot load the CLIP tokenizer: \(error)")
        }
    }

    /// (texts.count, D) normalized text features, computed `chunk` texts at a time.
    func embed(_ texts: [String], chunk: Int = 64) throws -> (values: [Float], dimension: Int) {
        var values: [Float] = []
        var dimension = 0
        let length = model.config.textContextLength
        var start = 0
        while start < texts.count {
            let end = min(start + chunk, texts.count)
            let tokens = tokenizer.tokenize(Array(texts[start..<end]), contextLength: length).flatMap { $0 }
            let out = try model.clipTextFeatures(tokens: tokens, count: end - start)
            dimension = out.shape[1]
            withExtendedLifetime(out) { values.append(contentsOf: out.buffer) }
            start = end
        }
        return (values, dimension)
    }
}

extension JobItem {
    /// The caption CLIP jobs embed: present and not only whitespace.
    var usableCaption: String? {
        guard let caption, caption.contains(where: { !$0.isWhitespace }) else { return nil }
        return caption
    }
}

/// `clip-embed`: normalized image embeddings (`get_clip_image_feature`) and, for items with a
/// caption, normalized caption embeddings, written in clip-retrieval's layout (see ``ClipLayout``).
final class ClipEmbedJob: ShardJob {
    let parameters: ClipEmbedParameters
    let model: VTPModel
    let plan: PreprocessPlan
    private let text: ClipTextEncoder?
    private var images: RowBuffer
    private var texts: RowBuffer
    /// Per consumed item, its row in `texts` (nil without a caption).
    private var textRows: [Int?] = []
    private let dimension: Int

    init(parameters: ClipEmbedParameters, model: VTPModel, options: ShardExecutor.Options) throws(JobError) {
        try parameters.preprocessing.check(model: model)
        self.parameters = parameters
        self.model = model
        plan = parameters.preprocessing.plan(modelImageSize: model.config.imageSize, options: options)
        text = parameters.text ? try ClipTextEncoder(model: model) : nil
        dimension = model.config.textEmbedDim
        images = RowBuffer(rowElements: dimension)
        texts = RowBuffer(rowElements: dimension)
    }

    var batchSize: Int { parameters.batchSize }

    func consume(_ batch: PreparedBatch) throws {
        let features = try model.clipImageFeatures(batch.pixels)
        guard features.shape == [batch.items.count, dimension] else {
            throw JobError.modelMismatch(model: model.directory,
                detail: "image embeddings have shape \(features.shape), expected [\(batch.items.count), \(dimension)]")
        }
        images.append(features)
        guard let text else {
            textRows += Array(repeating: nil, count: batch.items.count)
            return
        }
        var captions: [String] = []
        for item in batch.items {
            if let caption = item.usableCaption {
                textRows.append(texts.rows + captions.count)
                captions.append(caption)
            } else {
                textRows.append(nil)
            }
        }
        guard !captions.isEmpty else { return }
        let embedded = try text.embed(captions, chunk: parameters.batchSize)
        guard embedded.dimension == dimension else {
            throw JobError.modelMismatch(model: model.directory, detail: "text embeddings have width \(embedded.dimension), expected \(dimension)")
        }
        embedded.values.withUnsafeBufferPointer { texts.append($0) }
    }

    func write(shard: Int, directory: String, items: [JobItem]) throws -> ShardWriteResult {
        precondition(items.count == images.rows && items.count == textRows.count, "rows and items disagree")
        let imagePath = try ClipLayout.imageEmbeddings(shard: shard)
        let textPath = try ClipLayout.textEmbeddings(shard: shard)
        let metadataPath = try ClipLayout.metadata(shard: shard)
        guard !items.isEmpty else { return ShardWriteResult(written: nil, stats: nil) }
        let rows = items.enumerated().map { row, item in
            ClipMetadataRow(row: row, ordinal: item.ordinal, sourceId: item.sourceId, path: item.location.encoded,
                            caption: item.caption, label: item.label, textRow: textRows[row], metadata: item.metadataFields)
        }
        for path in [imagePath, textPath, metadataPath] { try ClipLayout.createParent(of: path, in: directory) }
        // Image embeddings are the main file, published last: a reader that sees an img_emb file
        // sees its metadata and caption embeddings, and a failed write leaves none of them.
        let files = ShardFileSet(directory: directory)
        try files.stageJSONL(rows, as: metadataPath)
        var extra: [String] = []
        if text != nil {
            try texts.values.withUnsafeBufferPointer {
                try files.stageNpy(shape: [texts.rows, dimension], values: $0, element: parameters.npyElement, as: textPath)
            }
            extra.append(textPath)
        } else {
            files.removeOnPublish(textPath)
        }
        try images.values.withUnsafeBufferPointer {
            try files.stageNpy(shape: [images.rows, dimension], values: $0, element: parameters.npyElement, as: imagePath, isMain: true)
        }
        try files.publish()
        return ShardWriteResult(written: WrittenShard(fileName: imagePath, sidecarName: metadataPath, rows: items.count), stats: nil,
                                extraFiles: extra)
    }
}
