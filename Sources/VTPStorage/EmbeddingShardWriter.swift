import Foundation
import VTPVocabulary

/// Writes clip-retrieval style embedding output: `img_emb/img_emb_{i}.npy` (N,D) plus
/// `metadata/metadata_{i}.jsonl` with one line per row, `i` zero-padded so that lexicographic
/// order is shard order (what autofaiss and clip-retrieval's readers rely on).
public struct EmbeddingShardWriter: Sendable {
    /// One metadata line: the row's source id and what the input knew about it.
    public struct Metadata: Codable, Sendable, Equatable {
        public var sourceId: String
        public var caption: String?
        public var url: String?
        public var label: Int?

        public init(sourceId: String, caption: String? = nil, url: String? = nil, label: Int? = nil) {
            self.sourceId = sourceId
            self.caption = caption
            self.url = url
            self.label = label
        }

        enum CodingKeys: String, CodingKey {
            case sourceId = "source_id", caption, url, label
        }
    }

    /// Output root (holds `img_emb/` and `metadata/`).
    public let directory: String
    /// Total shards in the run, which fixes the zero-padding width.
    public let shardCount: Int
    /// Stored element type.
    public let element: NpyFile.Element
    /// Prefix of the embedding folder and files (`img_emb`, or `text_emb` for text).
    public let kind: String

    public init(directory: String, shardCount: Int, element: NpyFile.Element = .float16, kind: String = "img_emb") {
        self.directory = directory
        self.shardCount = shardCount
        self.element = element
        self.kind = kind
    }

    /// Relative path of shard `i`'s embeddings.
    public func embeddingPath(shard i: Int) -> String {
        "\(kind)/\(kind)_\(ShardNaming.pad(i, ShardNaming.width(forShardCount: shardCount))).npy"
    }

    /// Relative path of shard `i`'s metadata.
    public func metadataPath(shard i: Int) -> String {
        "metadata/metadata_\(ShardNaming.pad(i, ShardNaming.width(forShardCount: shardCount))).jsonl"
    }

    /// Writes shard `i`: metadata and embeddings appear together (metadata renamed into place
    /// first) or, when the write fails, neither does.
    public func write(shard i: Int, embeddings: UnsafeBufferPointer<Float>, dimension: Int, metadata: [Metadata]) throws {
        let npyPath = directory + "/" + embeddingPath(shard: i)
        guard dimension > 0, embeddings.count == metadata.count * dimension else {
            throw StorageError.badInput(path: npyPath, detail: "\(embeddings.count) values for \(metadata.count) rows of dimension \(dimension)")
        }
        for sub in [kind, "metadata"] {
            do { try FileManager.default.createDirectory(atPath: directory + "/" + sub, withIntermediateDirectories: true) } catch {
                throw StorageError.writeFailed(path: directory + "/" + sub, reason: FileErrorText.reason(error, at: directory + "/" + sub))
            }
        }
        let files = ShardFileSet(directory: directory)
        try files.stageJSONL(metadata, as: metadataPath(shard: i))
        try files.stageNpy(shape: [metadata.count, dimension], values: embeddings, element: element, as: embeddingPath(shard: i),
                           isMain: true)
        try files.publish()
    }
}
