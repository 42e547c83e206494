import CoreMetrics
import class Prometheus.PrometheusCollectorRegistry

/// The metrics a coordinator publishes on `/metrics`, made through swift-metrics on the
/// Prometheus backend (``DescribedPrometheusFactory``).
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
/// | `vtp_workers_crashed_total` | counter | workers that reported dying of a fatal signal |
/// | `vtp_isolated_assignments_total` | counter | shards dispatched to run one item at a time after an abnormal end |
/// | `vtp_jobs_failed_total` | counter | jobs failed as a whole (model, parameters or output unusable) |
///
/// Every series exists from the start (stage histograms included), so dashboards see zeros rather
/// than gaps before the first shard. The names are the dashboards' contract: they never change.
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
        public static let workersCrashed = "vtp_workers_crashed_total"
        public static let isolatedAssignments = "vtp_isolated_assignments_total"
        public static let jobsFailed = "vtp_jobs_failed_total"

        /// Every name above.
        public static let allNames = [queueDepth, shardsInFlight, shardsCompleted, itemsProcessed, itemsFailed, itemsPerSecond,
                                      workers, leaseExpiries, lateCompletionsRejected, stageDuration, workersCrashed,
                                      isolatedAssignments, jobsFailed]
    }

    /// Every metric with its `# HELP` text.
    public static let descriptions: [String: String] = [
        Name.queueDepth: "Shards waiting to be leased.",
        Name.shardsInFlight: "Shards currently leased to workers.",
        Name.shardsCompleted: "Shard completions accepted by the ledger.",
        Name.itemsProcessed: "Items processed successfully.",
        Name.itemsFailed: "Items that finished with an error.",
        Name.itemsPerSecond: "Items resolved per second over the last minute.",
        Name.workers: "Connected workers.",
        Name.leaseExpiries: "Shard leases that expired.",
        Name.lateCompletionsRejected: "Shard completions rejected because the lease was no longer held.",
        Name.stageDuration: "Seconds workers spent per pipeline stage, per batch.",
        Name.workersCrashed: "Workers that reported dying of a fatal signal.",
        Name.isolatedAssignments: "Shards dispatched to run one item at a time after their worker ended abnormally.",
        Name.jobsFailed: "Jobs failed as a whole because their model, parameters or output could not be used.",
    ]

    /// Bucket bounds suited to per-stage timings, 0.5 ms to 60 s.
    public static let stageBuckets: [Double] = [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
    ]

    /// The backend these metrics are registered in (serve `factory.registry` with ``MetricsServer``).
    public let factory: DescribedPrometheusFactory
    public let queueDepth: Gauge
    public let shardsInFlight: Gauge
    public let shardsCompleted: Counter
    public let itemsProcessed: Counter
    public let itemsFailed: Counter
    public let itemsPerSecond: Gauge
    public let workers: Gauge
    public let leaseExpiries: Counter
    public let lateCompletionsRejected: Counter
    public let workersCrashed: Counter
    public let isolatedAssignments: Counter
    public let jobsFailed: Counter
    private let stageHistograms: [Stage: Recorder]

    /// Registers the coordinator metrics in a registry of their own (one per coordinator, so
    /// tests and embedded coordinators never share series).
    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        let factory = DescribedPrometheusFactory(registry: registry, descriptions: Self.descriptions,
                                                 buckets: [Name.stageDuration: Self.stageBuckets])
        self.factory = factory
        queueDepth = Gauge(label: Name.queueDepth, factory: factory)
        shardsInFlight = Gauge(label: Name.shardsInFlight, factory: factory)
        shardsCompleted = Counter(label: Name.shardsCompleted, factory: factory)
        itemsProcessed = Counter(label: Name.itemsProcessed, factory: factory)
        itemsFailed = Counter(label: Name.itemsFailed, factory: factory)
        itemsPerSecond = Gauge(label: Name.itemsPerSecond, factory: factory)
        workers = Gauge(label: Name.workers, factory: factory)
        leaseExpiries = Counter(label: Name.leaseExpiries, factory: factory)
        lateCompletionsRejected = Counter(label: Name.lateCompletionsRejected, factory: factory)
        workersCrashed = Counter(label: Name.workersCrashed, factory: factory)
        isolatedAssignments = Counter(label: Name.isolatedAssignments, factory: factory)
        jobsFailed = Counter(label: Name.jobsFailed, factory: factory)
        var histograms: [Stage: Recorder] = [:]
        for stage in Stage.allCases {
            histograms[stage] = Recorder(label: Name.stageDuration, dimensions: [("stage", stage.rawValue)], aggregate: true,
                                         factory: factory)
        }
        stageHistograms = histograms
        // Counters appear in the exposition from their first increment; zero them now.
        for counter in [shardsCompleted, itemsProcessed, itemsFailed, leaseExpiries, lateCompletionsRejected, workersCrashed,
                        isolatedAssignments, jobsFailed] {
            counter.increment(by: 0)
        }
        for gauge in [queueDepth, shardsInFlight, itemsPerSecond, workers] { gauge.record(0) }
    }

    /// The timing histogram of one stage (seconds per batch).
    public func stageDuration(_ stage: Stage) -> Recorder {
        // Every stage is created in init, so the lookup cannot miss.
        stageHistograms[stage]!
    }

    /// The exposition text, as a scrape returns it.
    public func render() -> String { factory.registry.emitToString() }
}
