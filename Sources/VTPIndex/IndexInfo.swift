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
    /// Size of the index file (of all parts together when there are several).
    public var sizeInBytes: Int
    /// The index files over consecutive row ranges, when the build split the collection
    /// (`nil` for a single `image.index` built in memory).
    public var parts: [Part]? = nil
    /// How many index files there are (1 unless the memory budget forced a split).
    public var indexCount: Int? = nil
    /// The memory budget the build was given, in bytes (`nil`: none).
    public var memoryBudget: Int? = nil
    /// The build's estimate of the most memory it holds at once (training or adding one part), in bytes.
    public var memoryEstimate: Int? = nil
    /// How recall was measured: `leave-one-out` means each sampled query row (never a training row) was
    /// left out of its own exact and approximate top-10, so finding itself earns nothing.
    public var recallMethod: String? = nil

    /// One index file of a split build: rows `firstRow ..< firstRow + count` of the collection, which the
    /// file labels `0 ..< count` (add `firstRow` to a hit's label to get the collection row).
    public struct Part: Codable, Sendable, Equatable {
        public var indexPath: String
        public var firstRow: Int
        public var count: Int
        public var sizeInBytes: Int

        public init(indexPath: String, firstRow: Int, count: Int, sizeInBytes: Int) {
            self.indexPath = indexPath
            self.firstRow = firstRow
            self.count = count
            self.sizeInBytes = sizeInBytes
        }

        enum CodingKeys: String, CodingKey {
            case indexPath = "index_path", firstRow = "first_row", count = "n", sizeInBytes = "size_in_bytes"
        }
    }

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
        case parts, indexCount = "nb_indices", memoryBudget = "index_memory_budget", memoryEstimate = "index_memory_estimate"
        case recallMethod = "recall_method"
    }
}
