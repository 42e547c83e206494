import ArgumentParser
import Foundation
import VTPModel
import VTPTensor

/// `vtp bench ...`: throughput measurements, each with its baseline measured in the same run.
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure throughput on this machine.",
        subcommands: [Model.self]
    )

    struct Model: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Images/s of encode, decode and CLIP features, with GFLOP/s against this machine's sgemm.")

        @Option(help: "Checkpoint directory.") var model: String
        @Option(help: "Images (or texts) per batch.") var batch: Int = 8
        @Option(help: "Timed iterations per operation (the best is reported).") var iterations: Int = 3
        @Option(help: "BLAS threads (default: all cores).") var threads: Int?
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            let vtp = try VTPModel(directory: model, threads: threads)
            let sgemm = ModelBenchmark.sgemmGFlops(threads: vtp.pool.threads)
            let results = try ModelBenchmark(batch: batch, iterations: iterations).run(model: vtp)
            if json {
                let object: [String: Any] = [
                    "model": model, "batch": batch, "threads": vtp.pool.threads, "sgemm_gflops": sgemm,
                    "results": results.map { ["operation": $0.operation, "items_per_second": $0.itemsPerSecond,
                                              "gflops": $0.gflops, "seconds_per_batch": $0.secondsPerBatch,
                                              "fraction_of_sgemm": $0.gflops / sgemm] },
                ]
                let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
                print(String(decoding: data, as: UTF8.self))
                return
            }
            print("model \(model), batch \(batch), \(vtp.pool.threads) thread(s)")
            print(String(format: "sgemm 2048x2048x768: %.1f GFLOP/s", sgemm))
            for r in results {
                print(String(format: "%-11@ %8.2f items/s  %7.1f GFLOP/s  (%.0f%% of sgemm)  %.3f s/batch",
                             r.operation as NSString, r.itemsPerSecond, r.gflops, 100 * r.gflops / sgemm, r.secondsPerBatch))
            }
        }
    }
}
