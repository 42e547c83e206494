/// The worker side of the cluster runtime.
///
/// - `WorkerCore`: the protocol as a pure state machine: register and announce credit, queue and
///   run one shard at a time, report progress and results with the lease token, watch the
///   coordinator (heartbeats, reconnect with jittered backoff), honour cancels, drain on shutdown.
/// - `Worker`: the shell: a DEALER socket and a `ShardHandling` that executes shards off the
///   cooperative pool. the real one is injected: `VTPJobs.JobShardHandler`, built on `ShardExecutor`
///   (decoding on its own threads overlapping batched inference, per-item failures recorded,
///   outputs written atomically).
public enum VTPWorkerModule {
    /// Human-readable module name, used in version output.
    public static let name = "VTPWorker"
}
