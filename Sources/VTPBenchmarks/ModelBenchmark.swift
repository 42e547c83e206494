import Foundation
import VTPModel
import VTPRandom
import VTPTensor

/// Throughput of a model's batched methods and of plain sgemm, measured in one run so the
/// ratio between them is meaningful on the machine at hand.
public struct ModelBenchmark: Sendable {
    /// One measured operation.
    public struct Result: Sendable, Codable {
        public let operation: String
        public let itemsPerSecond: Double
        public let gflops: Double
        public let secondsPerBatch: Double
    }

    public let batch: Int
    public let iterations: Int

    public init(batch: Int, iterations: Int) {
        self.batch = batch
        self.iterations = iterations
    }

    /// Best (shortest) wall time of `iterations` runs of `body` after one warm-up run. The best
    /// run is the one least disturbed by other processes, for the model and sgemm alike.
    static func time(iterations: Int, _ body: () throws -> Void) rethrows -> Double {
        try body()
        var times: [Double] = []
        for _ in 0..<max(1, iterations) {
            let start = DispatchTime.now().uptimeNanoseconds
            try body()
            times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        return times.min()!
    }

    /// A (m × k), B (n × k) with fixed non-zero values, and C (m × n): the operands both GEMM
    /// baselines time, so they measure the same product.
    static func gemmOperands(m: Int, n: Int, k: Int) -> (Tensor, Tensor, Tensor) {
        let a = Tensor(zeros: [m, k]), b = Tensor(zeros: [n, k]), c = Tensor(zeros: [m, n])
        for i in 0..<a.count { a.mutablePointer[i] = Float(i % 7) * 0.01 }
        for i in 0..<b.count { b.mutablePointer[i] = Float(i % 5) * 0.01 }
        return (a, b, c)
    }

    /// GFLOP/s of an sgemm of the model's largest shape class (m × n × k, B transposed like a
    /// `Linear` weight) on `threads` cores: the better of OpenBLAS's own threading and the engine's
    /// row-split over single-threaded OpenBLAS, so the baseline is the fastest sgemm this machine gives.
    public static func sgemmGFlops(threads: Int, m: Int = 2048, n: Int = 2048, k: Int = 768, iterations: Int = 5) -> Double {
        let (a, b, c) = gemmOperands(m: m, n: n, k: k)
        defer { withExtendedLifetime((a, b, c)) {} }
        let previous = BLAS.threadCount
        defer { BLAS.setThreadCount(previous) }
        BLAS.setThreadCount(threads)
        let native = time(iterations: iterations) {
            BLAS.gemm(m: m, n: n, k: k, a: a.pointer, b: b.pointer, transposeB: true, c: c.mutablePointer)
        }
        BLAS.setThreadCount(1)
        let pool = ComputePool(threads: threads)
        let split = time(iterations: iterations) {
            pool.gemm(m: m, n: n, k: k, a: a.pointer, b: b.pointer, transposeB: true, c: c.mutablePointer)
        }
        return 2 * Double(m * n * k) / min(native, split) / 1e9
    }

    /// GFLOP/s of the engine's own product (the model's kernel path and precision) on the same shape
    /// as ``sgemmGFlops(threads:m:n:k:iterations:)``: what every layer of the model runs on.
    public static func engineGFlops(engine: MatmulEngine, threads: Int, m: Int = 2048, n: Int = 2048, k: Int = 768,
                                    iterations: Int = 5) -> Double {
        let (a, b, c) = gemmOperands(m: m, n: n, k: k)
        defer { withExtendedLifetime((a, b, c)) {} }
        let weight = PackedWeight(b, n: n, k: k, engine: engine)
        let pool = ComputePool(threads: threads)
        let t = time(iterations: iterations) { Matmul.apply(weight, a.pointer, rows: m, into: c.mutablePointer, pool: pool) }
        return 2 * Double(m * n * k) / t / 1e9
    }

    /// Peak resident memory of this process so far, in bytes.
    public static var maxResidentBytes: Int {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return usage.ru_maxrss * 1024  // Linux reports kilobytes
    }

    /// Runs encode, decode, CLIP image and CLIP text features of `model` on synthetic input.
    public func run(model: VTPModel) throws -> [Result] {
        let c = model.config
        let size = c.imageSize
        let images = Tensor(zeros: [batch, 3, size, size])
        var rng = SplitMix64(seed: 7)
        for i in 0..<images.count { images.mutablePointer[i] = rng.nextNormal() }
        var results: [Result] = []
        func record(_ name: String, flops: Double, _ body: () throws -> Void) rethrows {
            let t = try Self.time(iterations: iterations, body)
            results.append(Result(operation: name, itemsPerSecond: Double(batch) / t, gflops: flops / t / 1e9, secondsPerBatch: t))
        }
        var latents = try model.reconstructionLatents(images)
        try record("encode", flops: model.encodeFlops(batch: batch)) { latents = try model.reconstructionLatents(images) }
        if c.trainReconstruction {
            try record("decode", flops: model.decodeFlops(batch: batch)) { _ = try model.decode(latents: latents) }
        }
        if c.trainClip {
            try record("clip-image", flops: model.encodeFlops(batch: batch)) { _ = try model.clipImageFeatures(images) }
            var tokens = [Int32](repeating: 0, count: batch * c.textContextLength)
            for t in 0..<batch {
                tokens[t * c.textContextLength] = 49406
                for j in 1..<12 { tokens[t * c.textContextLength + j] = Int32(320 + j * 17 + t) }
                tokens[t * c.textContextLength + 12] = 49407
            }
            try record("clip-text", flops: model.textFlops(texts: batch)) {
                _ = try model.clipTextFeatures(tokens: tokens, count: batch)
            }
        }
        return results
    }
}
