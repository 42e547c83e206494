import Benchmark
import Foundation
import Synchronization
import VTPBenchmarkSupport
import VTPBenchmarks
import VTPModel
import VTPRandom
import VTPTensor

// The model's batched methods at each compute precision, on Tests/Fixtures/vtp-tiny or on the
// checkpoint $VTP_BENCH_MODEL names. Baselines, each measured in the same run:
// - bf16: the same method at fp32 on the same batch (what switching precision buys);
// - fp32: this machine's fastest OpenBLAS sgemm on the model's largest GEMM shape, as the share
//   of its GFLOP/s the method reaches (what `vtp bench model` prints as "% of the engine GEMM").

/// Where the suite reads its settings: the checkpoint, the batch and the thread count.
enum Settings {
    static let environment = ProcessInfo.processInfo.environment
    static let modelDirectory = environment["VTP_BENCH_MODEL"]
        ?? URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Tests/Fixtures/vtp-tiny").path
    static let batch = environment["VTP_BENCH_BATCH"].flatMap(Int.init) ?? 4
    static let threads = environment["VTP_BENCH_THREADS"].flatMap(Int.init)
}

/// Models and inputs, loaded on first use (in a benchmark's run, not when the suite is listed)
/// and kept for the rest of the process: loading is not what is measured.
final class Loaded: Sendable {
    static let shared = Loaded()

    private let models = Mutex<[ComputePrecision: VTPModel]>([:])
    private let sgemm = Mutex<Double?>(nil)

    func model(_ precision: ComputePrecision) throws -> VTPModel {
        if let model = models.withLock({ $0[precision] }) { return model }
        let model = try VTPModel(directory: Settings.modelDirectory, threads: Settings.threads, precision: precision)
        models.withLock { $0[precision] = model }
        return model
    }

    /// GFLOP/s of the fastest sgemm on the model's largest shape with the model's thread count.
    func sgemmGFlops(threads: Int) -> Double {
        if let known = sgemm.withLock({ $0 }) { return known }
        let measured = ModelBenchmark.sgemmGFlops(threads: threads)
        sgemm.withLock { $0 = measured }
        return measured
    }
}

/// Synthetic inputs of one batch: normal-distributed images and short token sequences.
struct Inputs: Sendable {
    let images: Tensor
    let tokens: [Int32]
    let count: Int

    init(config: VTPConfig, batch: Int) {
        let size = config.imageSize
        images = Tensor(zeros: [batch, 3, size, size])
        var rng = SplitMix64(seed: 7)
        for i in 0..<images.count { images.mutablePointer[i] = rng.nextNormal() }
        var tokens = [Int32](repeating: 0, count: batch * config.textContextLength)
        for t in 0..<batch {
            tokens[t * config.textContextLength] = 49406
            for j in 1..<12 { tokens[t * config.textContextLength + j] = Int32(320 + j * 17 + t) }
            tokens[t * config.textContextLength + 12] = 49407
        }
        self.tokens = tokens
        count = batch
    }
}

/// One batched method: its FLOPs for a batch and the call itself.
struct Method: Sendable {
    let name: String
    let flops: @Sendable (VTPModel, Int) -> Double
    let run: @Sendable (VTPModel, Inputs) throws -> Void
}

func methods(of config: VTPConfig) -> [Method] {
    var methods = [
        Method(name: "encode", flops: { $0.encodeFlops(batch: $1) }) { model, inputs in
            blackHole(try model.reconstructionLatents(inputs.images))
        },
        Method(name: "features", flops: { $0.encodeFlops(batch: $1) }) { model, inputs in
            blackHole(try model.lastLayerFeatures(inputs.images))
        },
    ]
    if config.trainReconstruction {
        // Decoding starts from the latents of the same images; making them is not timed.
        methods.append(Method(name: "decode", flops: { $0.decodeFlops(batch: $1) }) { model, inputs in
            let latents = try LatentsCache.shared.latents(model: model, inputs: inputs)
            blackHole(try model.decode(latents: latents))
        })
    }
    if config.trainClip {
        methods.append(Method(name: "clip-image", flops: { $0.encodeFlops(batch: $1) }) { model, inputs in
            blackHole(try model.clipImageFeatures(inputs.images))
        })
        methods.append(Method(name: "clip-text", flops: { $0.textFlops(texts: $1) }) { model, inputs in
            blackHole(try model.clipTextFeatures(tokens: inputs.tokens, count: inputs.count))
        })
    }
    return methods
}

/// The decoder's input per precision, encoded once.
final class LatentsCache: Sendable {
    static let shared = LatentsCache()
    private let latents = Mutex<[ComputePrecision: Tensor]>([:])

    func latents(model: VTPModel, inputs: Inputs) throws -> Tensor {
        let precision = model.engine.precision
        if let known = latents.withLock({ $0[precision] }) { return known }
        let made = try model.reconstructionLatents(inputs.images)
        latents.withLock { $0[precision] = made }
        return made
    }
}

let benchmarks: @Sendable () -> Void = {
    let config: VTPConfig
    do {
        config = try VTPConfig.load(path: Settings.modelDirectory + "/config.json")
    } catch {
        fatalError("Model suite: cannot read \(Settings.modelDirectory)/config.json (set VTP_BENCH_MODEL to a checkpoint directory): \(error)")
    }
    let batch = Settings.batch
    let inputs = Inputs(config: config, batch: batch)
    let comparisons = SameRunBaselines()
    let configuration = Benchmark.Configuration(
        metrics: [.wallClock, .throughput, .peakMemoryResident], warmupIterations: 1,
        maxDuration: .seconds(5), maxIterations: 20)

    for precision in [ComputePrecision.fp32, .bf16] {
        for method in methods(of: config) {
            let name = "\(method.name) \(precision.rawValue) batch \(batch)"
            Benchmark(name, configuration: configuration) { benchmark in
                let model = try Loaded.shared.model(precision)
                let comparison = try comparisons.comparison(name) {
                    if precision == .bf16 {
                        let fp32 = try Loaded.shared.model(.fp32)
                        return try SameRunBaseline(name, against: "\(method.name) fp32 of the same batch", runs: 3) {
                            try method.run(fp32, inputs)
                        }
                    }
                    // fp32's baseline is sgemm's rate rather than a timed closure: the time this
                    // machine's fastest sgemm would take for the method's FLOPs.
                    let gflops = Loaded.shared.sgemmGFlops(threads: model.pool.threads)
                    return SameRunBaseline(name, against: String(format: "OpenBLAS sgemm at %.1f GFLOP/s for the same FLOPs", gflops),
                                           baselineSeconds: method.flops(model, batch) / (gflops * 1e9))
                }
                benchmark.startMeasurement()
                for _ in benchmark.scaledIterations {
                    try comparison.measure { try method.run(model, inputs) }
                }
                benchmark.stopMeasurement()
            } teardown: {
                comparisons.printReport(name)
            }
        }
    }
}
