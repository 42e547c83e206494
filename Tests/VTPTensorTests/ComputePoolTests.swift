import Synchronization
import Testing
import VTPTensor

/// The pool's dynamic chunking: every item once, in chunks that depend only on where they start.
@Suite struct ComputePoolTests {
    /// The chunks one `dynamicChunks` call hands out, sorted by start, and the workers that ran them.
    static func chunks(threads: Int, count: Int, chunk: Int, granule: Int) -> (ranges: [Range<Int>], workers: Set<Int>) {
        let seen = Mutex<([Range<Int>], Set<Int>)>(([], []))
        ComputePool(threads: threads).dynamicChunks(count, chunk: chunk, granule: granule) { worker, range in
            seen.withLock { $0.0.append(range); $0.1.insert(worker) }
        }
        return seen.withLock { ($0.0.sorted { $0.lowerBound < $1.lowerBound }, $0.1) }
    }

    @Test(arguments: [(2056, 126, 14), (616, 126, 14), (257, 126, 14), (5, 126, 14), (1, 1, 1), (96, 1, 1), (0, 8, 2)])
    func everyItemOnceInWholeGranules(_ count: Int, _ chunk: Int, _ granule: Int) {
        for threads in [1, 2, 3] {
            let (ranges, workers) = Self.chunks(threads: threads, count: count, chunk: chunk, granule: granule)
            #expect(ranges.map(\.count).reduce(0, +) == count, "\(threads) threads")
            for (a, b) in zip(ranges, ranges.dropFirst()) { #expect(a.upperBound == b.lowerBound) }
            #expect(ranges.first?.lowerBound ?? 0 == 0)
            for r in ranges.dropLast() {
                #expect(r.count <= chunk && r.count % granule == 0, "chunk \(r) of \(count) with \(threads) threads")
            }
            #expect(workers.allSatisfy { $0 >= 0 && $0 < ComputePool(threads: threads).workerCount(count, chunk: chunk) })
        }
    }

    /// With a given thread count the chunks are the same on every run, whichever thread is faster:
    /// what makes a row's bits independent of timing.
    @Test func chunksDoNotDependOnTiming() {
        let first = Self.chunks(threads: 2, count: 2056, chunk: 126, granule: 14).ranges
        for _ in 0..<20 { #expect(Self.chunks(threads: 2, count: 2056, chunk: 126, granule: 14).ranges == first) }
        // Large chunks while much is left, then smaller ones so the threads finish together.
        #expect(first.first?.count == 126 && first.last!.count < 126)
    }
}
