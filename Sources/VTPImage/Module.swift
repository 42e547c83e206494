/// Image decoding, preprocessing and encoding.
public enum VTPImageModule {
    /// Human-readable module name, used in version output.
    public static let name = "VTPImage"
}
