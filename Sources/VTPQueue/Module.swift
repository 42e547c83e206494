/// PostgreSQL job ledger.
public enum VTPQueueModule {
    /// Human-readable module name, used in version output.
    public static let name = "VTPQueue"
}
