import VTPVocabulary

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
    public var items: [ItemResult]
    public var timings: StageTimings
    /// Files written (relative to the output directory), tensor file first, summary last.
    public var files: [String]
    /// Seconds this shard spent loading its model; nil when the model was already loaded.
    public var modelLoadSeconds: Double? = nil
    /// Rows of each model call, in order (the last batch of a shard is often short; an isolated
    /// shard's are all 1).
    public var batchSizes: [Int] = []

    /// Items written.
    public var succeeded: Int { items.filter { $0.status == .ok }.count }
    /// Items that failed.
    public var failed: Int { items.count - succeeded }
}
