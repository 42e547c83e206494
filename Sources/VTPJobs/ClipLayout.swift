import Foundation
import VTPVocabulary
import VTPStorage

/// File layout of CLIP job outputs, relative to the output directory.
///
/// Shard numbers are zero-padded to a fixed ``shardDigits`` (5) digits rather than to the digits
/// of the shard count: a worker executing one shard does not know how many shards its job has,
/// and a fixed width keeps lexicographic order equal to shard order for up to 100,000 shards
/// (clip-retrieval and autofaiss read `img_emb/*.npy` in sorted-name order). Larger jobs are
/// rejected when a shard is written.
///
/// - `img_emb/img_emb_{i}.npy`: (N, D) normalized image embeddings, rows in item order.
/// - `text_emb/text_emb_{i}.npy`: (M, D) normalized caption embeddings of the M ≤ N items that
///   have a non-empty caption, in item order; `metadata` row r's `text_row` is its row here
///   (null without a caption). Written for every shard with at least one image (M may be 0).
/// - `metadata/metadata_{i}.jsonl`: one ``ClipMetadataRow`` per image row.
/// - `index/image.index` + `index/infos.json`: the FAISS index over all image rows, row r =
///   the r-th image row across shards in manifest order.
/// - `scores/scores_{i}.jsonl` (`clip-score`): one ``ClipScoreRow`` per image, plus
///   `scores/logits_{i}.npy` with `save_logits`; `zero_shot/` caches the class embeddings.
public enum ClipLayout {
    /// Digits of every shard number in CLIP output names.
    public static let shardDigits = 5

    static func number(_ shard: Int) throws(JobError) -> String {
        guard shard >= 0, shard < 100_000 else {
            throw .invalidParameter(field: "shard", detail: "CLIP outputs name shards with \(shardDigits) digits; shard \(shard) is out of range")
        }
        return ShardNaming.pad(shard, shardDigits)
    }

    public static func imageEmbeddings(shard: Int) throws(JobError) -> String { "img_emb/img_emb_\(try number(shard)).npy" }
    public static func textEmbeddings(shard: Int) throws(JobError) -> String { "text_emb/text_emb_\(try number(shard)).npy" }
    public static func metadata(shard: Int) throws(JobError) -> String { "metadata/metadata_\(try number(shard)).jsonl" }
    public static func scores(shard: Int) throws(JobError) -> String { "scores/scores_\(try number(shard)).jsonl" }
    public static func logits(shard: Int) throws(JobError) -> String { "scores/logits_\(try number(shard)).npy" }
    /// Index directory.
    public static let indexDirectory = "index"
    /// Zero-shot class-embedding cache directory.
    public static let zeroShotDirectory = "zero_shot"

    /// Every file a shard of `jobType` may write besides its summary (used to remove stale ones).
    static func shardFiles(jobType: JobType, shard: Int) throws(JobError) -> [String] {
        switch jobType {
        case .clipEmbed: [try imageEmbeddings(shard: shard), try textEmbeddings(shard: shard), try metadata(shard: shard)]
        case .clipScore: [try scores(shard: shard), try logits(shard: shard)]
        case .reconstruction: [try ReconstructionLayout.metrics(shard: shard), try ReconstructionLayout.fidFeatures(.reference, shard: shard),
                               try ReconstructionLayout.fidFeatures(.reconstructed, shard: shard)]
        case .latents: [ShardNaming.tensorShard(prefix: "latents", rank: 0, shard: shard), ShardNaming.idSidecar(rank: 0, shard: shard)]
        case .features: [ShardNaming.tensorShard(prefix: "features", rank: 0, shard: shard), ShardNaming.idSidecar(rank: 0, shard: shard)]
        case .linearProbe: [try LinearProbeLayout.results(shard: shard), try LinearProbeLayout.heads(shard: shard)]
        }
    }

    static func createParent(of relative: String, in directory: String) throws(JobError) {
        let parent = ((directory + "/" + relative) as NSString).deletingLastPathComponent
        do { try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true) } catch {
            throw .writeFailed(path: parent, reason: FileErrorText.reason(error, at: parent))
        }
    }

    static func remove(_ relative: String, in directory: String) throws(JobError) {
        let path = directory + "/" + relative
        guard FileManager.default.fileExists(atPath: path) else { return }
        do { try FileManager.default.removeItem(atPath: path) } catch {
            throw .writeFailed(path: path, reason: "cannot remove stale output: \(FileErrorText.reason(error, at: path))")
        }
    }
}

/// One line of `metadata/metadata_{i}.jsonl`, row-aligned with `img_emb_{i}.npy`: the fixed
/// columns, then every metadata field of the sample (WebDataset `.json`, extra manifest columns)
/// flat beside them, as clip-retrieval's metadata keeps its input's columns; a fixed column wins
/// a name clash.
public struct ClipMetadataRow: Codable, Sendable, Equatable {
    /// Row in this shard's `img_emb` file.
    public var row: Int
    /// The item's ordinal in the dataset listing.
    public var ordinal: Int
    public var sourceId: String
    /// Where the image was read from (a file path or `tar:<tar>#<offset>+<size>`).
    public var path: String
    public var caption: String?
    public var label: Int?
    /// Row of this item's caption embedding in `text_emb_{i}.npy`; nil when it has no caption
    /// (or the job ran with `text` false).
    public var textRow: Int?
    /// The sample's metadata fields (e.g. img2dataset's `url`).
    public var metadata: [String: JSONValue]

    public init(row: Int, ordinal: Int, sourceId: String, path: String, caption: String?, label: Int?, textRow: Int?,
                metadata: [String: JSONValue] = [:]) {
        self.row = row
        self.ordinal = ordinal
        self.sourceId = sourceId
        self.path = path
        self.caption = caption
        self.label = label
        self.textRow = textRow
        self.metadata = metadata
    }

    /// The original URL, when the metadata has one.
    public var url: String? {
        if case let .string(url)? = metadata["url"] { return url }
        return nil
    }

    static let reserved: Set<String> = ["row", "ordinal", "source_id", "path", "caption", "label", "text_row"]

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: DynamicCodingKey.self)
        row = try c.decode(Int.self, forKey: DynamicCodingKey("row"))
        ordinal = try c.decode(Int.self, forKey: DynamicCodingKey("ordinal"))
        sourceId = try c.decode(String.self, forKey: DynamicCodingKey("source_id"))
        path = try c.decode(String.self, forKey: DynamicCodingKey("path"))
        caption = try c.decodeIfPresent(String.self, forKey: DynamicCodingKey("caption"))
        label = try c.decodeIfPresent(Int.self, forKey: DynamicCodingKey("label"))
        textRow = try c.decodeIfPresent(Int.self, forKey: DynamicCodingKey("text_row"))
        metadata = try c.decodeMetadata(except: Self.reserved)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: DynamicCodingKey.self)
        try c.encode(row, forKey: DynamicCodingKey("row"))
        try c.encode(ordinal, forKey: DynamicCodingKey("ordinal"))
        try c.encode(sourceId, forKey: DynamicCodingKey("source_id"))
        try c.encode(path, forKey: DynamicCodingKey("path"))
        try c.encodeIfPresent(caption, forKey: DynamicCodingKey("caption"))
        try c.encodeIfPresent(label, forKey: DynamicCodingKey("label"))
        try c.encodeIfPresent(textRow, forKey: DynamicCodingKey("text_row"))
        try c.encodeMetadata(metadata, except: Self.reserved)
    }
}
