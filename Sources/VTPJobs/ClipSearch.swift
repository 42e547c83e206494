import Foundation
import VTPVocabulary
import VTPDatasets
import VTPIndex
import VTPModel
import VTPStorage
import VTPTensor

/// One search result.
public struct ClipSearchHit: Sendable, Equatable, Codable {
    /// 1-based rank.
    public var rank: Int
    /// Inner product of the query and item embeddings (cosine: both are normalized).
    public var score: Float
    /// Row in the index (image rows of all shards in manifest order).
    public var indexRow: Int
    public var sourceId: String
    public var path: String
    public var caption: String?
    public var label: Int?

    enum CodingKeys: String, CodingKey {
        case rank, score, indexRow = "index_row", sourceId = "source_id", path, caption, label
    }
}

/// Searches a finished `clip-embed` output directory: embeds a text or image query with the model
/// and preprocessing recorded in its manifest and maps index rows back to metadata rows.
///
/// Loading reads every metadata file into memory (one small record per image). Queries block on
/// model inference and faiss; call them from a thread you own.
public final class ClipSearch: Sendable {
    /// The output directory (holding `manifest.json` and `index/`).
    public let directory: String
    /// The model queries are embedded with.
    public let modelDirectory: String
    public let preprocessing: ClipPreprocessing
    private let model: VTPModel
    private let index: EmbeddingIndexSet
    private let rows: [ClipMetadataRow]
    private let plan: PreprocessPlan

    /// Opens `directory`: a `clip-embed` output directory or its `index/` subdirectory.
    /// `modelDirectory` overrides the model recorded in the manifest (it must produce the same
    /// embedding width).
    public init(directory: String, modelDirectory: String? = nil, options: ShardExecutor.Options = .init(),
                models: ModelCache = .shared) throws {
        var root = directory
        if !FileManager.default.fileExists(atPath: root + "/" + JobFinalizer.manifestFileName),
           FileManager.default.fileExists(atPath: (root as NSString).deletingLastPathComponent + "/" + JobFinalizer.manifestFileName) {
            root = (root as NSString).deletingLastPathComponent
        }
        self.directory = root
        let manifestPath = root + "/" + JobFinalizer.manifestFileName
        let manifest: RunManifest
        do { manifest = try RunManifest.read(manifestPath) } catch {
            throw JobError.badInput(path: manifestPath, detail: "not a clip-embed output directory: \(error)")
        }
        guard manifest.format == "clip-embeddings" else {
            throw JobError.badInput(path: manifestPath, detail: "format is '\(manifest.format)', expected 'clip-embeddings' (a clip-embed job's output)")
        }
        guard let recorded = modelDirectory ?? manifest.model["directory"] else {
            throw JobError.badInput(path: manifestPath, detail: "records no model directory; pass one explicitly")
        }
        self.modelDirectory = recorded
        preprocessing = try ClipPreprocessing(manifest: manifest.preprocessing)
        model = try models.model(at: recorded)
        try preprocessing.check(model: model)
        plan = preprocessing.plan(modelImageSize: model.config.imageSize, options: options)

        let indexDirectory = root + "/" + ClipLayout.indexDirectory
        let indexPath = indexDirectory + "/" + IndexBuilder.indexFileName
        guard FileManager.default.fileExists(atPath: indexPath)
            || FileManager.default.fileExists(atPath: indexDirectory + "/" + IndexBuilder.infosFileName) else {
            throw JobError.badInput(path: indexPath, detail: "missing (was the job run with index false, or not finalized?)")
        }
        // Mapped: a many-gigabyte (or split) index opens at the cost of its quantizers; pages load as searches touch them.
        index = try EmbeddingIndexSet(directory: indexDirectory)
        var rows: [ClipMetadataRow] = []
        for shard in manifest.shards {
            let path = root + "/" + shard.sidecarName
            guard let data = FileManager.default.contents(atPath: path) else {
                throw JobError.badInput(path: path, detail: "metadata file listed in the manifest is missing")
            }
            var count = 0
            for (n, line) in data.split(separator: UInt8(ascii: "\n")).enumerated() where !line.isEmpty {
                do { rows.append(try JSONDecoder().decode(ClipMetadataRow.self, from: Data(line))) } catch {
                    throw JobError.badInput(path: path, detail: "line \(n + 1) is not a metadata row: \(error)")
                }
                count += 1
            }
            guard count == shard.rows else {
                throw JobError.badInput(path: path, detail: "has \(count) rows, the manifest says \(shard.rows)")
            }
        }
        guard rows.count == index.count else {
            throw JobError.badInput(path: indexPath, detail: "indexes \(index.count) vectors but the metadata has \(rows.count) rows")
        }
        guard index.dimension == model.config.textEmbedDim else {
            throw JobError.modelMismatch(model: recorded, detail: "embeds into \(model.config.textEmbedDim) dimensions, the index has \(index.dimension)")
        }
        self.rows = rows
    }

    /// Number of indexed images.
    public var count: Int { rows.count }

    /// The normalized embedding of a text query.
    public func embed(text: String) throws -> [Float] {
        try ClipTextEncoder(model: model).embed([text]).values
    }

    /// The normalized embedding of the image file at `path`, preprocessed as the job did.
    public func embed(imageAt path: String) throws -> [Float] {
        let item = JobItem(ordinal: 0, sourceId: path, location: .file(path: path))
        let prepared = PreprocessPipeline.prepare(item, plan: plan)
        let pixels: Tensor
        switch prepared.result {
        case let .ok(p, _): pixels = p
        case let .failed(reason): throw JobError.badInput(path: path, detail: reason)
        }
        let batch = Tensor(uninitialized: [1] + pixels.shape)
        withExtendedLifetime(pixels) { batch.mutablePointer.update(from: pixels.pointer, count: pixels.count) }
        let features = try model.clipImageFeatures(batch)
        return withExtendedLifetime(features) { Array(features.buffer) }
    }

    /// The `k` nearest images to `embedding` (normalized, the index's width).
    public func search(embedding: [Float], k: Int) throws -> [ClipSearchHit] {
        guard k >= 1 else { throw JobError.invalidParameter(field: "k", detail: "must be at least 1, got \(k)") }
        let found = try index.search(query: embedding, k: min(k, rows.count))
        return found.enumerated().compactMap { rank, hit in
            // faiss pads missing neighbours with row -1.
            guard hit.row >= 0, hit.row < rows.count else { return nil }
            let row = rows[hit.row]
            return ClipSearchHit(rank: rank + 1, score: hit.score, indexRow: hit.row, sourceId: row.sourceId, path: row.path,
                                 caption: row.caption, label: row.label)
        }
    }

    /// Images closest to a text query.
    public func search(text: String, k: Int) throws -> [ClipSearchHit] { try search(embedding: embed(text: text), k: k) }

    /// Images closest to the image at `path`.
    public func search(imageAt path: String, k: Int) throws -> [ClipSearchHit] { try search(embedding: embed(imageAt: path), k: k) }
}
