import VTPVocabulary

/// Something a worker did or measured, for metrics and dashboards. Like the coordinator, the
/// worker does not depend on a metrics library; the embedding program adapts these to its own
/// (see `vtp worker`).
public enum WorkerObservation: Sendable, Equatable {
    /// A shard finished and its results went to the coordinator (with their per-stage timings).
    case shardCompleted(jobType: String, results: [ItemResult])
    /// A shard could not run (``WorkerCore/ShardResult/failed(_:)`` or `jobFailed`) and was reported failed.
    case shardFailed(jobType: String)
    /// A shard went back to the coordinator unfinished: stopped on an interrupt, queued at shutdown,
    /// or refused while draining.
    case shardHandedBack(jobType: String)
    /// Whether a shard is executing, after a change.
    case busy(Bool)
    /// The process's resident set size, sampled on each tick.
    case residentMemory(bytes: UInt64)
}

/// Receives observations on the worker's event loop; must return quickly and never block.
public protocol WorkerObserver: Sendable {
    func observe(_ observation: WorkerObservation)
}
