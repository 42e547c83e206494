import VTPVocabulary
/// Output formats: latent shards, npy, PyTorch zip archives, sidecars.
public enum VTPStorageModule {
    /// Human-readable module name, used in version output.
    public static let name = "VTPStorage"
}
