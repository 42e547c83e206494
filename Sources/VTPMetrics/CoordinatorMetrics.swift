/// The metrics a coordinator publishes on `/metrics`, with typed accessors.
///
/// | name | type | meaning |
/// |---|---|---|
/// | `vtp_queue_pending_shards` | gauge | shards waiting to be leased (queue depth) |
/// | `vtp_shards_in_flight` | gauge | shards currently leased to workers |
/// | `vtp_shards_completed_total` | counter | shard completions the ledger accepted |
/// | `vtp_items_processed_total` | counter | items finished successfully |
/// | `vtp_items_failed_total` | counter | items finished with an error |
/// | `vtp_items_per_second` | gauge | items resolved per second over the last minute |
/// | `vtp_workers` | gauge | connected workers |
/// | `vtp_lease_expiries_total` | counter | leases that expired and went back to the queue or failed |
/// | `vtp_late_completions_rejected_total` | counter | completions refused because the lease was no longer held |
/// | `vtp_stage_duration_seconds{stage}` | histogram | time workers report per stage (`read`, `decode`, `preprocess`, `infer`, `write`) per batch |
///
/// Every series exists from the start (stage histograms included), so dashboards see zeros rather
/// than gaps before the first shard.
public struct CoordinatorMetrics: Sendable {
    /// Pipeline stages a worker times.
    public enum Stage: String, Sendable, CaseIterable {
        case read, decode, preprocess, infer, write
    }

    /// Metric names, for dashboards and tests.
    public enum Name {
        public static let queueDepth = "vtp_queue_pending_shards"
        public static let shardsInFlight = "vtp_shards_in_flight"
        public static let shardsCompleted = "vtp_shards_completed_total"
        public static let itemsProcessed = "vtp_items_processed_total"
        public static let itemsFailed = "vtp_items_failed_total"
        public static let itemsPerSecond = "vtp_items_per_second"
        public static let workers = "vtp_workers"
        public static let leaseExpiries = "vtp_lease_expiries_total"
        public static let lateCompletionsRejected = "vtp_late_completions_rejected_total"
        public static let stageDuration = "vtp_stage_duration_seconds"
    }

    /// The registry these metrics live in (serve it with `MetricsServer`).
    public let registry: MetricsRegistry
    public let queueDepth: Gauge
    public let shardsInFlight: Gauge
    public let shardsCompleted: Counter
    public let itemsProcessed: Counter
    public let itemsFailed: Counter
    public let itemsPerSecond: Gauge
    public let workers: Gauge
    public let leaseExpiries: Counter
    public let lateCompletionsRejected: Counter
    private let stageHistograms: [Stage: Histogram]

    /// Registers the coordinator metrics in `registry`.
    /// - Throws: `MetricsError.duplicateMetric` when the registry already holds one of these names.
    public init(registry: MetricsRegistry = MetricsRegistry(), stageBuckets: [Double] = Histogram.defaultTimingBuckets) throws {
        self.registry = registry
        queueDepth = try registry.gauge(Name.queueDepth, help: "Shards waiting to be leased.")
        shardsInFlight = try registry.gauge(Name.shardsInFlight, help: "Shards currently leased to workers.")
        shardsCompleted = try registry.counter(Name.shardsCompleted, help: "Shard completions accepted by the ledger.")
        itemsProcessed = try registry.counter(Name.itemsProcessed, help: "Items processed successfully.")
        itemsFailed = try registry.counter(Name.itemsFailed, help: "Items that finished with an error.")
        itemsPerSecond = try registry.gauge(Name.itemsPerSecond, help: "Items resolved per second over the last minute.")
        workers = try registry.gauge(Name.workers, help: "Connected workers.")
        leaseExpiries = try registry.counter(Name.leaseExpiries, help: "Shard leases that expired.")
        lateCompletionsRejected = try registry.counter(
            Name.lateCompletionsRejected, help: "Shard completions rejected because the lease was no longer held.")
        let family = try registry.histogramFamily(
            Name.stageDuration, help: "Seconds workers spent per pipeline stage, per batch.",
            labelNames: ["stage"], buckets: stageBuckets)
        var histograms: [Stage: Histogram] = [:]
        for stage in Stage.allCases { histograms[stage] = try family.labels([stage.rawValue]) }
        stageHistograms = histograms
    }

    /// The timing histogram of one stage.
    public func stageDuration(_ stage: Stage) -> Histogram {
        // Every stage is created in init, so the lookup cannot miss.
        stageHistograms[stage]!
    }
}
