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
}

/// Receives observations on the coordinator's loop; must return quickly and never block.
public protocol CoordinatorObserver: Sendable {
    func observe(_ observation: CoordinatorObservation)
}
