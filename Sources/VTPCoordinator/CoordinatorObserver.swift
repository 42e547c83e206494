import VTPQueue

/// Something the coordinator measured, for metrics and dashboards. The coordinator does not depend
/// on a metrics library; the embedding program adapts these to its own (see `vtp coordinator`).
public enum CoordinatorObservation: Sendable, Equatable {
    /// Registered workers, after a change.
    case workers(Int)
    /// Shards leased to live workers, after a change.
    case shardsInFlight(Int)
    /// The ledger's verdict on a shard result, with the item counts the result carried.
    case shardRecorded(CompletionOutcome, itemsOK: Int, itemsFailed: Int)
    /// Expired leases the ledger released (requeued or failed).
    case leasesExpired(Int)
    /// Seconds one item spent in a pipeline stage (`read`, `decode`, `preprocess`, `infer`, `write`).
    case stage(String, seconds: Double)
    /// Workers that reported dying of a fatal signal, since the last observation of this kind.
    case workersCrashed(Int)
    /// Shards dispatched to run one item at a time (after an abnormal end of their worker).
    case isolatedAssignments(Int)
    /// Jobs failed as a whole because nothing of them could run.
    case jobsFailed(Int)
}

/// Receives observations on the coordinator's loop; must return quickly and never block.
public protocol CoordinatorObserver: Sendable {
    func observe(_ observation: CoordinatorObservation)
}
