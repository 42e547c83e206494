/// How `IndexBuilder` chooses and tunes an index.
///
/// Below `exactThreshold` vectors the index is exact (`IndexFlatIP`): brute force over 10^5 vectors
/// is a few milliseconds per query and recall is perfect. From the threshold up it is
/// `IVF{nlist},PQ{m}x8` under inner product, as clip-retrieval's autofaiss indexes are: IVF keeps
/// a query to a few inverted lists and PQ keeps memory at `m` bytes per vector, which is what makes
/// 10^7 CLIP vectors fit in RAM on a CPU box (HNSW over raw vectors needs 4·d bytes plus its graph
/// per vector and hours of single-machine build at that scale). Recall is bought back with small
/// sub-vectors and by raising `nprobe` until the measured recall@10 reaches `targetRecall`.
///
/// Sub-vector size is the recall/memory dial. On clustered unit vectors with isotropic noise (the
/// hard case: near-ties inside a cluster) recall@10 measured 0.97 / 0.89 / 0.68 for 1 / 2 / 4
/// dimensions per sub-quantizer, flat in `nprobe` once past 4 lists: PQ error, not probing, is the
/// limit. The default of 1 (a learned 256-level code per dimension of the IVF residual, d bytes per
/// vector: 5 GB for 10^7 × 512) is the smallest setting that keeps recall@10 above 0.9 there.
public struct IndexOptions: Sendable, Equatable {
    /// Collections with at least this many vectors get the approximate IVF+PQ index.
    public var exactThreshold: Int = 100_000
    /// Inverted lists (`nlist`); `nil` picks a power of two near 4·√n, keeping ≥ 39 training points per list.
    public var lists: Int? = nil
    /// Dimensions each PQ sub-quantizer encodes; `m` is the largest divisor of d not above d / this.
    public var dimensionsPerSubquantizer: Int = 1
    /// Bits per PQ code (faiss's `nbits`); 8 gives 256 centroids per sub-quantizer.
    public var bitsPerCode: Int = 8
    /// Vectors sampled to train the coarse quantizer and PQ; `nil` takes max(40·nlist, 65,536), capped at n.
    public var trainingSampleSize: Int? = nil
    /// Database rows sampled as queries when measuring recall@10 against exact search.
    public var recallQueries: Int = 1_000
    /// `nprobe` is doubled from 1 until recall@10 reaches this (or stops improving, or every list is probed).
    public var targetRecall: Double = 0.95
    /// Seed of the training and query samples, so a rebuild chooses the same rows.
    public var seed: UInt64 = 0x5654_5049_6E64_6578

    public init() {}

    /// Options with a different `exactThreshold` and everything else at its default.
    public init(exactThreshold: Int) {
        self.exactThreshold = exactThreshold
    }

    func validate() throws {
        func bad(_ name: String, _ detail: String) -> IndexError { .invalidArgument(name: "IndexOptions.\(name)", detail: detail) }
        guard exactThreshold >= 0 else { throw bad("exactThreshold", "must not be negative, got \(exactThreshold)") }
        if let lists, lists < 1 { throw bad("lists", "must be positive, got \(lists)") }
        guard dimensionsPerSubquantizer >= 1 else { throw bad("dimensionsPerSubquantizer", "must be positive, got \(dimensionsPerSubquantizer)") }
        guard (1...16).contains(bitsPerCode) else { throw bad("bitsPerCode", "must be 1...16, got \(bitsPerCode)") }
        if let trainingSampleSize, trainingSampleSize < 1 { throw bad("trainingSampleSize", "must be positive, got \(trainingSampleSize)") }
        guard recallQueries >= 1 else { throw bad("recallQueries", "must be positive, got \(recallQueries)") }
        guard targetRecall > 0, targetRecall <= 1 else { throw bad("targetRecall", "must be in (0, 1], got \(targetRecall)") }
    }
}
