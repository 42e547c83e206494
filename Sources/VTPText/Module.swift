/// CLIP byte-level BPE text tokenizer.
public enum VTPTextModule {
    /// Human-readable module name, used in version output.
    public static let name = "VTPText"
}
