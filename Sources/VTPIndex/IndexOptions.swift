/// How vectors are stored inside the inverted lists of an approximate index.
public enum VectorEncoding: Sendable, Equatable {
    /// One byte per dimension (`SQ8`): each dimension of the IVF residual quantized to 256 levels
    /// between its trained minimum and maximum.
    case scalar8
    /// Product quantization (`PQ{m}x{bits}`): `m` sub-quantizers, each encoding
    /// `dimensionsPerSubquantizer` consecutive dimensions with a learned `2^bits`-entry codebook;
    /// `m` is the largest divisor of d not above d / `dimensionsPerSubquantizer`.
    case productQuantizer(dimensionsPerSubquantizer: Int, bitsPerCode: Int)
}

/// How `IndexBuilder` chooses and tunes an index.
///
/// Below `exactThreshold` vectors the index is exact (`IndexFlatIP`): brute force over 10^5 vectors
/// is a few milliseconds per query and recall is perfect. From the threshold up it is an inverted
/// file (`IVF{nlist}`) under inner product, as clip-retrieval's autofaiss indexes are: a query scans
/// only a few lists, the coarse quantizer trains on a sample, and the codes are compact, which is
/// what makes 10^7 CLIP vectors searchable from RAM on a CPU box. HNSW was not chosen: over raw
/// vectors it needs 4·d bytes plus its graph per vector and a long single-machine build at 10^7.
///
/// The list encoding defaults to `SQ8`. Measured with faiss on 100,000 clustered unit vectors of
/// d = 512 (1,024 lists, 2 threads): `SQ8` reached recall@10 0.978 training in 1.7 s and adding in
/// 0.5 s; `PQ512x8` (one dimension per sub-quantizer, the same 512 bytes per vector) 0.956 with
/// 44 s training and 28 s adding (m = 512 codebooks are slow to train and encode); `PQ256x8` (half
/// the memory) 0.845. PQ remains available through `encoding` where memory matters more than recall.
/// `nprobe` is raised until the measured recall@10 reaches `targetRecall`.
public struct IndexOptions: Sendable, Equatable {
    /// Collections with at least this many vectors get the approximate IVF index.
    public var exactThreshold: Int = 100_000
    /// Inverted lists (`nlist`); `nil` picks a power of two near 4·√n, keeping ≥ 39 training points per list.
    public var lists: Int? = nil
    /// Encoding of the vectors in the inverted lists.
    public var encoding: VectorEncoding = .scalar8
    /// Vectors sampled to train the coarse quantizer and encoding; `nil` takes max(40·nlist, 65,536), capped at n.
    public var trainingSampleSize: Int? = nil
    /// Database rows sampled as queries when measuring recall@10 against exact search.
    public var recallQueries: Int = 1_000
    /// `nprobe` is doubled from 1 until recall@10 reaches this (or stops improving, or every list is probed).
    public var targetRecall: Double = 0.95
    /// Most bytes the build may hold (`nil`: no limit). Builds from shard files then stream the rows
    /// from the files, shrink the training sample to fit, and split the index into parts over
    /// consecutive rows (each its own faiss file, all sharing one trained quantizer) when one index's
    /// codes would not fit; see ``IndexBuilder/build(shardFiles:outputDirectory:options:)``.
    public var memoryBudget: Int? = nil
    /// Rows read from a shard file, widened to float32 and added per faiss call in streaming builds.
    public var chunkRows: Int = 16_384
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
        if case let .productQuantizer(dimensions, bits) = encoding {
            guard dimensions >= 1 else { throw bad("encoding", "dimensionsPerSubquantizer must be positive, got \(dimensions)") }
            guard (1...16).contains(bits) else { throw bad("encoding", "bitsPerCode must be 1...16, got \(bits)") }
        }
        if let trainingSampleSize, trainingSampleSize < 1 { throw bad("trainingSampleSize", "must be positive, got \(trainingSampleSize)") }
        guard recallQueries >= 1 else { throw bad("recallQueries", "must be positive, got \(recallQueries)") }
        guard targetRecall > 0, targetRecall <= 1 else { throw bad("targetRecall", "must be in (0, 1], got \(targetRecall)") }
        if let memoryBudget, memoryBudget < 1 { throw bad("memoryBudget", "must be at least one byte, got \(memoryBudget)") }
        guard chunkRows >= 1 else { throw bad("chunkRows", "must be positive, got \(chunkRows)") }
    }
}
