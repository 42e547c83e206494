/// The coordinator side of the cluster runtime.
///
/// - `CoordinatorCore`: the protocol as a pure state machine (events in, actions out), covering
///   registration, credit-bounded claims, lease renewal, result recording, Paranoid-Pirate worker
///   liveness, periodic lease release, exactly-once finalization and graceful shutdown.
/// - `Coordinator`: the shell: a ROUTER socket (`VTPTransport`), the PostgreSQL `Ledger` and its
///   LISTEN/NOTIFY `WorkNotifier` (`VTPQueue`), and an injected `JobFinalizing` (`VTPJobs`'
///   `ManifestFinalizer` in the product), so the control plane links no data-plane code. `run()` serves
///   until `requestShutdown()`; `notifications` reports finalized jobs; `CoordinatorObserver`
///   receives measurements for metrics.
/// - `JobRequest`: a job as `vtp run` / `vtp submit` describe it, turned into ledger rows, and
///   matched against earlier submissions so an interrupted `vtp run` resumes its job.
public enum VTPCoordinatorModule {
    /// Human-readable module name, used in version output.
    public static let name = "VTPCoordinator"
}
