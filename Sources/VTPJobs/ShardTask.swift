import VTPDatasets

/// One shard to execute: what a worker receives from the coordinator (or the local runner builds).
public struct ShardTask: Sendable, Equatable {
    /// The job's ledger id (recorded in the summary, not in file names).
    public var jobId: Int64
    /// Shard index within the job; fixes every output file name, so a re-run overwrites its own files.
    public var shardIndex: Int
    /// What to compute.
    public var jobType: JobType
    /// The job's parameter document (see ``JobParameters``).
    public var parametersJSON: String
    /// Checkpoint directory (`config.json` + `model.safetensors`).
    public var modelDirectory: String
    /// Directory the shard's files go to (created if missing).
    public var outputDirectory: String
    /// Items in row order.
    public var items: [DatasetItem]

    public init(jobId: Int64, shardIndex: Int, jobType: JobType, parametersJSON: String, modelDirectory: String,
                outputDirectory: String, items: [DatasetItem]) {
        self.jobId = jobId
        self.shardIndex = shardIndex
        self.jobType = jobType
        self.parametersJSON = parametersJSON
        self.modelDirectory = modelDirectory
        self.outputDirectory = outputDirectory
        self.items = items
    }
}

/// What became of one item.
public struct ItemOutcome: Sendable, Equatable, Codable {
    public enum Status: String, Sendable, Codable { case ok, failed }

    /// The item's ordinal in the dataset listing.
    public var ordinal: Int
    /// The item's source id.
    public var sourceId: String
    public var status: Status
    /// For ok items: `<file>#<row>`, the shard file (relative to the output directory) and row.
    public var outputLocation: String?
    /// For failed items: why, naming the input.
    public var error: String?
    /// Seconds this item spent reading, decoding and preprocessing.
    public var readSeconds: Double
    public var decodeSeconds: Double
    public var preprocessSeconds: Double
}

/// Where a shard's time went.
///
/// `read`, `decode` and `preprocess` are summed over items (thread-seconds across the
/// preprocessing pool, which runs in parallel with inference); `infer`, `write` and `wall` are
/// elapsed seconds on the executing thread.
public struct StageTimings: Sendable, Equatable, Codable {
    public var read: Double = 0
    public var decode: Double = 0
    public var preprocess: Double = 0
    public var infer: Double = 0
    public var write: Double = 0
    /// Whole shard, from start to the summary being written.
    public var wall: Double = 0

    public init() {}
}

/// The result of executing one shard. Item failures are recorded here, not thrown.
public struct ShardOutcome: Sendable, Equatable, Codable {
    public var shardIndex: Int
    /// One outcome per task item, in task order.
    public var items: [ItemOutcome]
    public var timings: StageTimings
    /// Files written (relative to the output directory), tensor file first, summary last.
    public var files: [String]

    /// Items written.
    public var succeeded: Int { items.filter { $0.status == .ok }.count }
    /// Items that failed.
    public var failed: Int { items.count - succeeded }
}
