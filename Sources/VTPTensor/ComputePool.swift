import Dispatch

/// Splits CPU work over a fixed number of threads.
///
/// The engine does its own parallelism: OpenBLAS runs single-threaded inside each task, GEMMs
/// are split by rows, attention by (image, head) and element-wise kernels by rows. One pool
/// therefore controls every core the model uses, and no two thread pools fight over them.
/// Work runs on Dispatch's worker threads, never on the Swift concurrency cooperative pool.
public struct ComputePool: Sendable {
    /// Number of parallel tasks (1 = run inline on the caller's thread).
    public let threads: Int

    /// A pool of `threads` threads (at least 1).
    public init(threads: Int) {
        self.threads = max(1, threads)
    }

    /// Calls `body` on disjoint, contiguous sub-ranges covering `0..<count`, in parallel.
    /// Ranges are at least `grain` long so tiny loops are not split.
    public func parallelFor(_ count: Int, grain: Int = 1, _ body: (Range<Int>) -> Void) {
        parallelBlocks(count, grain: grain) { _, range in body(range) }
    }

    /// How many blocks ``parallelBlocks(_:grain:_:)`` cuts `count` into.
    public func blockCount(_ count: Int, grain: Int = 1) -> Int {
        count > 0 ? min(threads, max(1, count / max(1, grain))) : 0
    }

    /// ``parallelFor(_:grain:_:)`` that also gives each call its block's index in
    /// `0..<blockCount(count, grain:)`, so a block can own a slice of a shared scratch buffer.
    public func parallelBlocks(_ count: Int, grain: Int = 1, _ body: (Int, Range<Int>) -> Void) {
        let chunks = blockCount(count, grain: grain)
        guard chunks > 0 else { return }
        if chunks == 1 { body(0, 0..<count); return }
        // Safe to share: concurrentPerform returns only after every chunk ran, so `body` outlives
        // the calls, and the chunks are disjoint ranges, which is the contract callers write to.
        nonisolated(unsafe) let work = body
        DispatchQueue.concurrentPerform(iterations: chunks) { c in
            let start = count * c / chunks, end = count * (c + 1) / chunks
            if start < end { work(c, start..<end) }
        }
    }

    /// Calls `body(i)` for every `i` in `0..<count`, spread over the threads in contiguous blocks.
    public func forEach(_ count: Int, _ body: (Int) -> Void) {
        parallelFor(count) { range in for i in range { body(i) } }
    }

    /// `C = A · op(B)` split by rows of A over the pool (see ``BLAS/gemm(m:n:k:a:lda:b:ldb:transposeB:c:ldc:alpha:beta:transposeA:)``).
    public func gemm(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int? = nil,
                     b: UnsafePointer<Float>, ldb: Int? = nil, transposeB: Bool,
                     c: UnsafeMutablePointer<Float>, ldc: Int? = nil, alpha: Float = 1, beta: Float = 0) {
        let lda = lda ?? k, ldc = ldc ?? n
        // Keep row blocks large enough that each task still runs an efficient GEMM.
        parallelFor(m, grain: 64) { rows in
            BLAS.gemm(m: rows.count, n: n, k: k, a: a + rows.lowerBound * lda, lda: lda, b: b, ldb: ldb,
                      transposeB: transposeB, c: c + rows.lowerBound * ldc, ldc: ldc, alpha: alpha, beta: beta)
        }
    }
}

extension ComputePool {
    /// Runs everything inline on the caller's thread (used inside tasks that are already parallel).
    public static let serial = ComputePool(threads: 1)
}
