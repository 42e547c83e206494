/// Retrieval index over CLIP image embeddings: faiss `image.index` + `infos.json`, built at the end of
/// `clip-embed` (exact below a size threshold, IVF+SQ8 (or IVF+PQ) above it, recall@10 measured and recorded).
public enum VTPIndexModule {
    /// Human-readable module name, used in version output.
    public static let name = "VTPIndex"
}
