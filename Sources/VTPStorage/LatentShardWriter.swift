import VTPVocabulary
/// Geometry of one latent: channels × height × width.
public struct LatentGeometry: Sendable, Hashable, Codable {
    /// C.
    public var channels: Int
    /// H.
    public var height: Int
    /// W.
    public var width: Int

    public init(channels: Int, height: Int, width: Int) {
        self.channels = channels
        self.height = height
        self.width = width
    }

    /// Elements per latent.
    public var elementCount: Int { channels * height * width }
}

/// What a shard write produced.
public struct WrittenShard: Sendable, Equatable, Codable {
    /// File name of the tensor shard inside the output directory.
    public var fileName: String
    /// File name of its id sidecar.
    public var sidecarName: String
    /// Rows in the shard.
    public var rows: Int

    /// Creates the record of a shard written by any job type.
    public init(fileName: String, sidecarName: String, rows: Int) {
        self.fileName = fileName
        self.sidecarName = sidecarName
        self.rows = rows
    }

    // snake_case like every other key of manifest.json and the shard summaries.
    enum CodingKeys: String, CodingKey { case fileName = "file_name", sidecarName = "sidecar_name", rows }
}

/// Writes LightningDiT-compatible latent shards: what `extract_features.py` saves and
/// `ImgLatentDataset` reads.
///
/// Each shard is `latents_rank{RR}_shard{SSS}.safetensors` holding `latents` and `latents_flip`
/// (N,C,H,W) and `labels` (N,) int64, with metadata `total_size` (N), `dtype` (`torch.float32`,
/// `torch.float16` or `torch.bfloat16`) and `device` (`cpu`). The `ids_rank{RR}_shard{SSS}.jsonl`
/// sidecar maps each row to its source id. The two are published together (``ShardFileSet``): the
/// sidecar is renamed into place first, so every visible shard has one, and a failed write leaves
/// neither.
public struct LatentShardWriter: Sendable {
    /// Output directory (must exist).
    public let directory: String
    /// Worker rank in the file name.
    public let rank: Int
    /// Stored element type.
    public let dtype: OutputDType
    /// Latent geometry every row must have.
    public let geometry: LatentGeometry

    public init(directory: String, rank: Int = 0, geometry: LatentGeometry, dtype: OutputDType = .float32) {
        self.directory = directory
        self.rank = rank
        self.geometry = geometry
        self.dtype = dtype
    }

    /// Writes shard `shard` from N rows of latents, their flipped-image latents, labels and source
    /// ids; `metadata` (empty, or one entry per row) goes into the id sidecar.
    public func write(shard: Int, latents: UnsafeBufferPointer<Float>, latentsFlip: UnsafeBufferPointer<Float>,
                      labels: [Int64], sourceIds: [String], metadata: [[String: JSONValue]] = []) throws -> WrittenShard {
        let fileName = ShardNaming.tensorShard(prefix: "latents", rank: rank, shard: shard)
        let path = directory + "/" + fileName
        let n = labels.count
        guard sourceIds.count == n else {
            throw StorageError.badInput(path: path, detail: "\(n) labels but \(sourceIds.count) source ids")
        }
        guard metadata.isEmpty || metadata.count == n else {
            throw StorageError.badInput(path: path, detail: "\(n) rows but \(metadata.count) metadata entries")
        }
        for (name, buffer) in [("latents", latents), ("latents_flip", latentsFlip)] where buffer.count != n * geometry.elementCount {
            throw StorageError.badInput(path: path,
                detail: "'\(name)' has \(buffer.count) values, expected \(n) × \(geometry.channels)×\(geometry.height)×\(geometry.width)")
        }
        let sidecarName = ShardNaming.idSidecar(rank: rank, shard: shard)
        let files = ShardFileSet(directory: directory)
        try files.stageJSONL(sourceIds.enumerated().map {
            SourceIdRow(row: $0.offset, sourceId: $0.element, label: labels[$0.offset], metadata: metadata.isEmpty ? [:] : metadata[$0.offset])
        }, as: sidecarName)
        let shape = [n, geometry.channels, geometry.height, geometry.width]
        try labels.withUnsafeBufferPointer { labelBuffer in
            try files.stageSafeTensors([
                .floats("latents", shape: shape, latents, as: dtype),
                .floats("latents_flip", shape: shape, latentsFlip, as: dtype),
                .int64s("labels", shape: [n], labelBuffer),
            ], metadata: ["total_size": String(n), "dtype": dtype.torchName, "device": "cpu"], as: fileName, isMain: true)
        }
        try files.publish()
        return WrittenShard(fileName: fileName, sidecarName: sidecarName, rows: n)
    }
}

/// Writes feature shards (e.g. `cls_token` (N,D), `patch_tokens` (N,T,D), `pooled` (N,D)) in the
/// same naming and sidecar scheme as latent shards, with a caller-chosen file prefix.
public struct FeatureShardWriter: Sendable {
    /// One named feature tensor: per-row shape (without N) and values for all rows.
    public struct Feature {
        /// Tensor name in the file.
        public var name: String
        /// Shape of one row, without the leading N.
        public var rowShape: [Int]
        /// All rows, contiguous, borrowed for the duration of `write`.
        public var values: UnsafeBufferPointer<Float>

        public init(name: String, rowShape: [Int], values: UnsafeBufferPointer<Float>) {
            self.name = name
            self.rowShape = rowShape
            self.values = values
        }
    }

    /// Output directory (must exist).
    public let directory: String
    /// Worker rank in the file name.
    public let rank: Int
    /// File name prefix (`features` gives `features_rank00_shard000.safetensors`).
    public let prefix: String
    /// Stored element type.
    public let dtype: OutputDType
    /// Extra metadata (model id, layer...) stored beside `total_size`, `dtype` and `device`.
    public let metadata: [String: String]

    public init(directory: String, rank: Int = 0, prefix: String = "features", dtype: OutputDType = .float32,
                metadata: [String: String] = [:]) {
        self.directory = directory
        self.rank = rank
        self.prefix = prefix
        self.dtype = dtype
        self.metadata = metadata
    }

    /// Writes shard `shard`: every feature holds `sourceIds.count` rows; labels are optional;
    /// `rowMetadata` (empty, or one entry per row) goes into the id sidecar.
    public func write(shard: Int, features: [Feature], sourceIds: [String], labels: [Int64]? = nil,
                      rowMetadata: [[String: JSONValue]] = []) throws -> WrittenShard {
        let fileName = ShardNaming.tensorShard(prefix: prefix, rank: rank, shard: shard)
        let path = directory + "/" + fileName
        let n = sourceIds.count
        guard !features.isEmpty else { throw StorageError.badInput(path: path, detail: "no feature tensors") }
        for f in features where f.values.count != n * f.rowShape.reduce(1, *) {
            throw StorageError.badInput(path: path, detail: "'\(f.name)' has \(f.values.count) values, expected \(n) rows of \(f.rowShape)")
        }
        if let labels, labels.count != n {
            throw StorageError.badInput(path: path, detail: "\(labels.count) labels for \(n) rows")
        }
        guard rowMetadata.isEmpty || rowMetadata.count == n else {
            throw StorageError.badInput(path: path, detail: "\(n) rows but \(rowMetadata.count) metadata entries")
        }
        let sidecarName = ShardNaming.idSidecar(rank: rank, shard: shard)
        let files = ShardFileSet(directory: directory)
        try files.stageJSONL(sourceIds.enumerated().map {
            SourceIdRow(row: $0.offset, sourceId: $0.element, label: labels?[$0.offset],
                        metadata: rowMetadata.isEmpty ? [:] : rowMetadata[$0.offset])
        }, as: sidecarName)
        var meta = metadata
        meta["total_size"] = String(n)
        meta["dtype"] = dtype.torchName
        meta["device"] = "cpu"
        let labelStorage = labels ?? []
        try labelStorage.withUnsafeBufferPointer { labelBuffer in
            var payloads = features.map { TensorPayload.floats($0.name, shape: [n] + $0.rowShape, $0.values, as: dtype) }
            if labels != nil { payloads.append(.int64s("labels", shape: [n], labelBuffer)) }
            try files.stageSafeTensors(payloads, metadata: meta, as: fileName, isMain: true)
        }
        try files.publish()
        return WrittenShard(fileName: fileName, sidecarName: sidecarName, rows: n)
    }
}
