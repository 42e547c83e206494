import Benchmark
import VTPBenchmarkSupport
import VTPBenchmarks
import VTPText

// The CLIP BPE tokenizer (the vocabulary vtp ships, Sources/VTPText/Resources) on caption-like
// prompts, one core, as `vtp bench tokenizer` runs it. Baseline, measured in the same run: the
// bare text handling every tokenizer does first (lower-casing and splitting the same prompts on
// spaces), so the ratio is what byte-pair merging and vocabulary look-ups cost on top of it.

let benchmarks: @Sendable () -> Void = {
    let promptCount = 10_000
    let prompts = TokenizerBenchmark.captionPrompts(count: promptCount)
    let comparisons = SameRunBaselines()
    let name = "CLIP BPE, \(promptCount) caption prompts"
    Benchmark(name, configuration: .init(metrics: [.wallClock, .throughput, .mallocCountTotal], warmupIterations: 1,
                                         maxDuration: .seconds(5), maxIterations: 50)) { benchmark in
        let tokenizer = try CLIPTokenizer.bundled()
        let comparison = try comparisons.comparison(name) {
            SameRunBaseline(name, against: "lower-case + split on spaces of the same prompts", runs: 5) {
                var words = 0
                for prompt in prompts { words &+= prompt.lowercased().split(separator: " ").count }
                blackHole(words)
            }
        }
        benchmark.startMeasurement()
        comparison.measure {
            var checksum: Int32 = 0
            for prompt in prompts { checksum &+= tokenizer.tokenize(prompt)[1] }
            blackHole(checksum)
        }
        benchmark.stopMeasurement()
    } teardown: {
        comparisons.printReport(name)
    }
}
