/// The VTP model: configuration, checkpoint loading, vision encoder, pixel decoder, text tower.
public enum VTPModelModule {
    /// Human-readable module name, used in version output.
    public static let name = "VTPModel"
}
