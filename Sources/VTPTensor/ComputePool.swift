import Dispatch
import Synchronization

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

    /// Calls `body(worker, range)` for consecutive chunks covering `0..<count`, handed out one at a
    /// time to whichever of the pool's threads is free; `worker` is the thread's index in
    /// `0..<workerCount(count, chunk:)`, so a worker can own a slice of a shared scratch buffer.
    ///
    /// Chunks hold `chunk` items while much work is left, then shrink (to half of each thread's
    /// share of what is left, in whole `granule`s, at least one) so the threads finish together. Static
    /// halves left a thread idle whenever the other ran slower (a busy sibling, a lower clock): 7%
    /// of a ViT-B pass on a 2-core VM. A chunk's size depends only on where it starts, so the
    /// chunks are the same whichever thread claims them, and every item's result the same bits.
    public func dynamicChunks(_ count: Int, chunk: Int, granule: Int = 1, _ body: (Int, Range<Int>) -> Void) {
        let granule = max(1, granule), largest = max(granule, chunk)
        let workers = workerCount(count, chunk: largest)
        guard workers > 0 else { return }
        if workers == 1 {
            var start = 0
            while start < count {
                let end = min(count, start + largest)
                body(0, start..<end)
                start = end
            }
            return
        }
        let threads = self.threads
        @Sendable func end(after start: Int) -> Int {
            let share = (count - start + 2 * threads - 1) / (2 * threads)
            let size = min(largest, max(granule, (share + granule - 1) / granule * granule))
            return min(count, start + size)
        }
        // Safe to share: concurrentPerform returns only after every worker finished, and the
        // chunks are disjoint ranges, each claimed by exactly one worker.
        nonisolated(unsafe) let work = body
        let next = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            var start = next.load(ordering: .relaxed)
            while start < count {
                let stop = end(after: start)
                let (exchanged, current) = next.compareExchange(expected: start, desired: stop, ordering: .relaxed)
                if exchanged {
                    work(worker, start..<stop)
                    start = next.load(ordering: .relaxed)
                } else {
                    start = current
                }
            }
        }
    }

    /// How many workers ``dynamicChunks(_:chunk:granule:_:)`` runs for `count` items in chunks of at most `chunk`.
    public func workerCount(_ count: Int, chunk: Int) -> Int {
        count > 0 ? min(threads, (count + max(1, chunk) - 1) / max(1, chunk)) : 0
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
