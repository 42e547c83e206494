/// ZeroMQ transport and wire protocol.
public enum VTPTransportModule {
    /// Human-readable module name, used in version output.
    public static let name = "VTPTransport"
}
