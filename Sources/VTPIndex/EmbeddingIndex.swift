import CFaissShim

/// A loaded or freshly built faiss index over embeddings, ranked by inner product (cosine similarity
/// for the L2-normalized embeddings `clip-embed` writes). Rows are labelled in insertion order, so a
/// hit's `row` is the item's position across `img_emb/img_emb_*.npy` in file order.
///
/// Every method that reaches faiss blocks the calling thread (faiss parallelizes with OpenMP), so
/// call them from your own `Thread` or `DispatchQueue`, not from the Swift concurrency pool.
///
/// This file is the only layer holding the raw faiss pointer; it is freed in `deinit`.
///
/// `@unchecked Sendable` is safe because the public surface only performs faiss's `const` operations
/// (search, counts), which faiss documents as safe to run concurrently on CPU indexes; the mutating
/// calls (`train`, `add`, `setProbeCount`) are internal and used only by `IndexBuilder` before the
/// instance is handed to anyone else.
public final class EmbeddingIndex: @unchecked Sendable {
    private let handle: OpaquePointer

    private init(handle: OpaquePointer) {
        self.handle = handle
    }

    deinit {
        vtp_faiss_index_free(handle)
    }

    /// Loads an index written by faiss (`image.index`, or anything `faiss.write_index` produced). Blocking.
    /// - Throws: `IndexError.faiss` naming `path` when the file is missing or not a faiss index.
    public convenience init(contentsOf path: String) throws {
        var raw: OpaquePointer?
        try faissCall("read_index", path: path) { vtp_faiss_read(path, &raw, $0) }
        guard let raw else { throw IndexError.faiss(operation: "read_index", path: path, status: -1, message: "no index returned") }
        self.init(handle: raw)
    }

    /// Opens an index written by faiss with its inverted lists memory-mapped (`faiss::IO_FLAG_MMAP`):
    /// an IVF index's codes stay in the file and are paged in as searches touch them, so opening costs
    /// only the quantizer. Flat indexes have no inverted lists and are read into memory. Blocking.
    /// - Throws: `IndexError.faiss` naming `path` when the file is missing or not a faiss index.
    public convenience init(mappingContentsOf path: String) throws {
        var raw: OpaquePointer?
        try faissCall("read_index(IO_FLAG_MMAP)", path: path) { vtp_faiss_read_mapped(path, &raw, $0) }
        guard let raw else { throw IndexError.faiss(operation: "read_index", path: path, status: -1, message: "no index returned") }
        self.init(handle: raw)
    }

    /// Whether this index's inverted lists are memory-mapped from its file rather than held in memory.
    public var listsAreMapped: Bool { vtp_faiss_lists_are_mapped(handle) != 0 }

    /// Number of inverted lists; 0 for exact indexes.
    var listCount: Int { Int(vtp_faiss_nlist(handle)) }

    /// Bytes of one stored vector's code.
    var codeSize: Int { Int(vtp_faiss_code_size(handle)) }

    /// A deep copy; cloning one trained, empty index per part gives every part the same quantizer.
    func clone() throws -> EmbeddingIndex {
        var raw: OpaquePointer?
        try faissCall("clone_index") { vtp_faiss_clone(handle, &raw, $0) }
        return EmbeddingIndex(handle: raw!)
    }

    /// The inverted list each row-major vector falls in (IVF only). Blocking.
    func assignLists(_ vectors: UnsafeBufferPointer<Float>, into lists: UnsafeMutableBufferPointer<Int64>) throws {
        precondition(lists.count == vectors.count / dimension)
        try faissCall("assign lists") { vtp_faiss_assign_lists(handle, Int64(lists.count), vectors.baseAddress, lists.baseAddress, $0) }
    }

    /// Reserves room for `extra[i]` more vectors in list `i` (IVF), or `extra[0]` more vectors (flat),
    /// so the adds that follow do not reallocate.
    func reserve(_ extra: [Int64]) throws {
        try faissCall("reserve") { error in extra.withUnsafeBufferPointer { vtp_faiss_reserve(handle, $0.baseAddress, error) } }
    }

    /// Appends row-major vectors whose lists `assignLists` computed; rows continue from `count`. Blocking.
    func add(_ vectors: UnsafeBufferPointer<Float>, assignedTo lists: UnsafeBufferPointer<Int64>) throws {
        precondition(lists.count == vectors.count / dimension)
        try faissCall("add") { vtp_faiss_add_assigned(handle, Int64(lists.count), vectors.baseAddress, lists.baseAddress, $0) }
    }

    /// A new exact inner-product index (`IndexFlatIP`).
    static func flatInnerProduct(dimension: Int) throws -> EmbeddingIndex {
        var raw: OpaquePointer?
        try faissCall("IndexFlatIP(\(dimension))") { vtp_faiss_new_flat_ip(Int64(dimension), &raw, $0) }
        return EmbeddingIndex(handle: raw!)
    }

    /// A new, untrained `IVF{nlist},PQ{m}x{bits}` inner-product index.
    static func ivfProductQuantizer(dimension: Int, lists: Int, subquantizers: Int, bitsPerCode: Int) throws -> EmbeddingIndex {
        var raw: OpaquePointer?
        try faissCall("IndexIVFPQ(d=\(dimension), nlist=\(lists), m=\(subquantizers), nbits=\(bitsPerCode))") {
            vtp_faiss_new_ivfpq_ip(Int64(dimension), Int64(lists), Int64(subquantizers), Int64(bitsPerCode), &raw, $0)
        }
        return EmbeddingIndex(handle: raw!)
    }

    /// A new, untrained `IVF{nlist},SQ8` inner-product index.
    static func ivfScalar8(dimension: Int, lists: Int) throws -> EmbeddingIndex {
        var raw: OpaquePointer?
        try faissCall("IndexIVFScalarQuantizer(d=\(dimension), nlist=\(lists), SQ8)") {
            vtp_faiss_new_ivfsq8_ip(Int64(dimension), Int64(lists), &raw, $0)
        }
        return EmbeddingIndex(handle: raw!)
    }

    /// Number of indexed vectors.
    public var count: Int { Int(vtp_faiss_ntotal(handle)) }

    /// Dimension of the indexed vectors.
    public var dimension: Int { Int(vtp_faiss_dimension(handle)) }

    /// Whether the index ranks by inner product (every index this module builds does).
    public var isInnerProduct: Bool { vtp_faiss_metric_type(handle) == VTP_FAISS_METRIC_INNER_PRODUCT }

    /// How many inverted lists a search visits; 0 for exact (non-IVF) indexes. faiss stores it in the file.
    public var probeCount: Int { Int(vtp_faiss_nprobe(handle)) }

    /// The `k` best rows for each of the `queries.count / dimension` row-major queries, best first.
    /// Fewer than `k` hits come back when the index holds fewer rows (or the probed lists do). Blocking.
    /// - Throws: `IndexError.raggedBuffer` / `.invalidArgument` for malformed queries or `k`, `.faiss` if faiss fails.
    public func search(queries: [Float], k: Int) throws -> [[(score: Float, row: Int)]] {
        try queries.withUnsafeBufferPointer { try search(queries: $0, k: k) }
    }

    /// The `k` best rows for one query of exactly `dimension` values, best first. Blocking.
    /// - Throws: `IndexError.dimensionMismatch` when `query.count != dimension`.
    public func search(query: [Float], k: Int) throws -> [(score: Float, row: Int)] {
        guard query.count == dimension else { throw IndexError.dimensionMismatch(source: "query", expected: dimension, found: query.count) }
        return try search(queries: query, k: k)[0]
    }

    /// `search(queries:k:)` on a caller-owned buffer, without copying it. Blocking.
    public func search(queries: UnsafeBufferPointer<Float>, k: Int) throws -> [[(score: Float, row: Int)]] {
        let raw = try rawSearch(queries: queries, k: k)
        var results: [[(score: Float, row: Int)]] = []
        results.reserveCapacity(raw.queryCount)
        for q in 0..<raw.queryCount {
            var hits: [(score: Float, row: Int)] = []
            hits.reserveCapacity(k)
            for j in (q * k)..<(q * k + k) where raw.labels[j] >= 0 {
                hits.append((score: raw.scores[j], row: Int(raw.labels[j])))
            }
            results.append(hits)
        }
        return results
    }

    /// Flat row-major search results: `queryCount * k` scores and labels, label -1 where nothing was found.
    struct RawResults {
        var queryCount: Int
        var scores: [Float]
        var labels: [Int64]
    }

    func rawSearch(queries: UnsafeBufferPointer<Float>, k: Int) throws -> RawResults {
        let d = dimension
        guard k > 0 else { throw IndexError.invalidArgument(name: "k", detail: "must be positive, got \(k)") }
        guard queries.count % d == 0 else { throw IndexError.raggedBuffer(source: "queries", count: queries.count, dimension: d) }
        let n = queries.count / d
        var scores = [Float](repeating: 0, count: n * k)
        var labels = [Int64](repeating: -1, count: n * k)
        guard n > 0 else { return RawResults(queryCount: 0, scores: [], labels: []) }
        try scores.withUnsafeMutableBufferPointer { s in
            try labels.withUnsafeMutableBufferPointer { l in
                try faissCall("search") { vtp_faiss_search(handle, Int64(n), queries.baseAddress, Int64(k), s.baseAddress, l.baseAddress, $0) }
            }
        }
        return RawResults(queryCount: n, scores: scores, labels: labels)
    }

    /// Trains on `rows` row-major vectors (a no-op for exact indexes). Blocking.
    func train(_ vectors: UnsafeBufferPointer<Float>) throws {
        try faissCall("train") { vtp_faiss_train(handle, Int64(vectors.count / dimension), vectors.baseAddress, $0) }
    }

    /// Appends row-major vectors; their rows continue from `count`. Blocking.
    func add(_ vectors: UnsafeBufferPointer<Float>) throws {
        try faissCall("add") { vtp_faiss_add(handle, Int64(vectors.count / dimension), vectors.baseAddress, $0) }
    }

    /// Sets how many inverted lists a search visits (IVF indexes only).
    func setProbeCount(_ probes: Int) throws {
        try faissCall("set nprobe=\(probes)") { vtp_faiss_set_nprobe(handle, Int64(probes), $0) }
    }

    /// Writes the index in faiss's format to `path` (not atomically; `IndexBuilder` renames into place). Blocking.
    func write(to path: String) throws {
        try faissCall("write_index", path: path) { vtp_faiss_write(handle, path, $0) }
    }

    /// Exact inner-product top-`k` of `queries` among `database` (both row-major, `dimension` wide),
    /// computed straight on the buffers: the ground truth recall is measured against. Blocking.
    static func exactSearch(queries: UnsafeBufferPointer<Float>, database: UnsafeBufferPointer<Float>, dimension: Int, k: Int) throws -> RawResults {
        let nq = queries.count / dimension
        let nb = database.count / dimension
        var scores = [Float](repeating: 0, count: nq * k)
        var labels = [Int64](repeating: -1, count: nq * k)
        try scores.withUnsafeMutableBufferPointer { s in
            try labels.withUnsafeMutableBufferPointer { l in
                try faissCall("knn_inner_product") {
                    vtp_faiss_knn_inner_product(queries.baseAddress, Int64(nq), database.baseAddress, Int64(nb), Int64(dimension), Int64(k),
                                                s.baseAddress, l.baseAddress, $0)
                }
            }
        }
        return RawResults(queryCount: nq, scores: scores, labels: labels)
    }
}
