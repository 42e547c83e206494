import CoreMetrics
import VTPVocabulary
import class Prometheus.PrometheusCollectorRegistry

/// The metrics a `vtp worker` publishes on its own `/metrics` (`worker.metrics_port`), made
/// through swift-metrics on the Prometheus backend (``DescribedPrometheusFactory``), like
/// ``CoordinatorMetrics``. The coordinator's series sum over the cluster; these say what one
/// worker does, so a slow or failing machine can be told from the rest.
///
/// | name | type | meaning |
/// |---|---|---|
/// | `vtp_worker_items_processed_total{job_type}` | counter | items finished successfully, in shards sent to the coordinator |
/// | `vtp_worker_items_failed_total{job_type}` | counter | items finished with an error |
/// | `vtp_worker_shards_completed_total{job_type}` | counter | shards finished and sent to the coordinator |
/// | `vtp_worker_shards_failed_total{job_type}` | counter | shards that could not run (the job's failures included) |
/// | `vtp_worker_shards_handed_back_total{job_type}` | counter | shards given back unfinished (interrupt, shutdown) |
/// | `vtp_worker_stage_duration_seconds{job_type,stage}` | histogram | seconds per item per stage |
/// | `vtp_worker_model_load_seconds` | histogram | seconds each model load took |
/// | `vtp_worker_batch_size{job_type}` | histogram | rows per model call |
/// | `vtp_worker_busy` | gauge | 1 while a shard executes, else 0 |
/// | `vtp_worker_resident_memory_bytes` | gauge | the worker process's resident set size |
///
/// The only labels are the job type (one of ``JobType``; a name this build does not know counts as
/// `other`) and the stage: a handful of values each, never item, shard or job ids. Every series
/// of a known job type exists from the start, at zero.
public struct WorkerMetrics: Sendable {
    /// Pipeline stages, as the coordinator's ``CoordinatorMetrics/Stage``.
    public typealias Stage = CoordinatorMetrics.Stage

    /// Metric names, for dashboards and tests.
    public enum Name {
        public static let itemsProcessed = "vtp_worker_items_processed_total"
        public static let itemsFailed = "vtp_worker_items_failed_total"
        public static let shardsCompleted = "vtp_worker_shards_completed_total"
        public static let shardsFailed = "vtp_worker_shards_failed_total"
        public static let shardsHandedBack = "vtp_worker_shards_handed_back_total"
        public static let stageDuration = "vtp_worker_stage_duration_seconds"
        public static let modelLoad = "vtp_worker_model_load_seconds"
        public static let batchSize = "vtp_worker_batch_size"
        public static let busy = "vtp_worker_busy"
        public static let residentMemory = "vtp_worker_resident_memory_bytes"

        /// Every name above.
        public static let allNames = [itemsProcessed, itemsFailed, shardsCompleted, shardsFailed, shardsHandedBack, stageDuration,
                                      modelLoad, batchSize, busy, residentMemory]
    }

    /// Every metric with its `# HELP` text.
    public static let descriptions: [String: String] = [
        Name.itemsProcessed: "Items this worker processed successfully.",
        Name.itemsFailed: "Items this worker finished with an error.",
        Name.shardsCompleted: "Shards this worker finished and sent to the coordinator.",
        Name.shardsFailed: "Shards this worker could not run.",
        Name.shardsHandedBack: "Shards this worker gave back unfinished.",
        Name.stageDuration: "Seconds per item spent in each pipeline stage.",
        Name.modelLoad: "Seconds each model load took.",
        Name.batchSize: "Rows per model call.",
        Name.busy: "1 while a shard executes, else 0.",
        Name.residentMemory: "Resident set size of the worker process, in bytes.",
    ]

    /// The `job_type` label of a job type name: itself when this build knows it, else `other`.
    public static func jobTypeLabel(_ name: String) -> String {
        JobType(rawValue: name) == nil ? "other" : name
    }

    /// The backend these metrics are registered in (serve `factory.registry` with ``MetricsServer``).
    public let factory: DescribedPrometheusFactory
    public let modelLoad: Recorder
    public let busy: Gauge
    public let residentMemory: Gauge

    /// Registers the worker metrics in a registry of their own (one per worker).
    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        factory = DescribedPrometheusFactory(registry: registry, descriptions: Self.descriptions,
                                             buckets: [Name.stageDuration: CoordinatorMetrics.stageBuckets,
                                                       Name.modelLoad: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
                                                       Name.batchSize: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096]])
        modelLoad = Recorder(label: Name.modelLoad, aggregate: true, factory: factory)
        busy = Gauge(label: Name.busy, factory: factory)
        residentMemory = Gauge(label: Name.residentMemory, factory: factory)
        // Counters appear in the exposition from their first increment; zero every known job type's now.
        for type in JobType.allCases.map(\.rawValue) {
            for name in [Name.itemsProcessed, Name.itemsFailed, Name.shardsCompleted, Name.shardsFailed, Name.shardsHandedBack] {
                counter(name, jobType: type).increment(by: 0)
            }
            _ = batchSize(jobType: type)
            for stage in Stage.allCases { _ = stageDuration(stage, jobType: type) }
        }
        busy.record(0)
        residentMemory.record(0)
    }

    /// A counter of one job type. swift-metrics hands back the series already registered under the
    /// same name and labels, so asking again is a lookup, not a new series.
    private func counter(_ name: String, jobType: String) -> Counter {
        Counter(label: name, dimensions: [("job_type", Self.jobTypeLabel(jobType))], factory: factory)
    }

    public func itemsProcessed(jobType: String) -> Counter { counter(Name.itemsProcessed, jobType: jobType) }
    public func itemsFailed(jobType: String) -> Counter { counter(Name.itemsFailed, jobType: jobType) }
    public func shardsCompleted(jobType: String) -> Counter { counter(Name.shardsCompleted, jobType: jobType) }
    public func shardsFailed(jobType: String) -> Counter { counter(Name.shardsFailed, jobType: jobType) }
    public func shardsHandedBack(jobType: String) -> Counter { counter(Name.shardsHandedBack, jobType: jobType) }

    /// The per-item timing histogram of one stage of one job type (seconds).
    public func stageDuration(_ stage: Stage, jobType: String) -> Recorder {
        Recorder(label: Name.stageDuration, dimensions: [("job_type", Self.jobTypeLabel(jobType)), ("stage", stage.rawValue)],
                 aggregate: true, factory: factory)
    }

    /// The rows-per-model-call histogram of one job type.
    public func batchSize(jobType: String) -> Recorder {
        Recorder(label: Name.batchSize, dimensions: [("job_type", Self.jobTypeLabel(jobType))], aggregate: true, factory: factory)
    }

    /// The exposition text, as a scrape returns it.
    public func render() -> String { factory.registry.emitToString() }
}
