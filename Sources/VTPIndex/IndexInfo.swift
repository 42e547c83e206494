/// What `IndexBuilder` built, as recorded in `index/infos.json` next to `index/image.index`.
public struct IndexInfo: Codable, Sendable, Equatable {
    /// faiss `index_factory` string of the structure: `Flat`, `IVF{nlist},SQ8` or `IVF{nlist},PQ{m}x{nbits}`.
    public var indexKey: String
    /// Search-time parameters baked into the file, in faiss `ParameterSpace` syntax (`nprobe=16`); empty for `Flat`.
    public var indexParam: String
    /// Always `IP` (inner product, i.e. cosine on the normalized embeddings).
    public var metricType: String
    /// Number of indexed vectors.
    public var count: Int
    /// Vector dimension.
    public var dimension: Int
    /// Mean fraction of the exact top-10 found in the index's top-10, over `recallQueries` sampled rows.
    public var recallAt10: Double
    /// How many database rows were used as queries for `recallAt10`.
    public var recallQueries: Int
    /// `nprobe` for IVF indexes, `nil` for exact ones.
    public var probeCount: Int?
    /// Vectors the quantizers were trained on (0 for exact indexes).
    public var trainingVectors: Int
    /// Wall-clock seconds from the first faiss call to the index file being in place, recall tuning included.
    public var buildSeconds: Double
    /// File name of the index inside the index directory.
    public var indexPath: String
    /// Size of the index file.
    public var sizeInBytes: Int

    enum CodingKeys: String, CodingKey {
        case indexKey = "index_key"
        case indexParam = "index_param"
        case metricType = "metric_type"
        case count = "n"
        case dimension = "d"
        case recallAt10 = "recall_at_10"
        case recallQueries = "recall_queries"
        case probeCount = "nprobe"
        case trainingVectors = "training_vectors"
        case buildSeconds = "build_seconds"
        case indexPath = "index_path"
        case sizeInBytes = "size_in_bytes"
    }
}
