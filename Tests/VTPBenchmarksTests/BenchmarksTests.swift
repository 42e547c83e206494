import Foundation
import Testing
import VTPBenchmarkSupport
import VTPBenchmarks
import VTPImage
import VTPModel
import VTPTestSupport
import VTPText

/// The benchmark code `vtp bench` and the Benchmarks/ suites share: each measurement runs the
/// shipped code path and reports numbers consistent with what it timed. Speed itself is not
/// asserted (shared CI cores), only that the reports are well-formed.
@Suite struct BenchmarksTests {
    @Test func tokenizerBenchmarkReportsThroughput() throws {
        let prompts = TokenizerBenchmark.captionPrompts(count: 500)
        let result = try TokenizerBenchmark.run(prompts: prompts, tokenizer: try CLIPTokenizer.bundled())
        #expect(result.seconds > 0)
        #expect(abs(result.promptsPerSecond * result.seconds - 500) < 1e-6 * 500)
    }

    @Test func captionPromptsAreDeterministicAndVaried() {
        let prompts = TokenizerBenchmark.captionPrompts(count: 1000)
        #expect(prompts.count == 1000)
        #expect(prompts == TokenizerBenchmark.captionPrompts(count: 1000))
        #expect(Set(prompts).count > 900, "the number suffix keeps most prompts distinct")
        #expect(prompts[0] == "a photo of a dog #0")
        #expect(TokenizerBenchmark.captionPrompts(count: 0).isEmpty)
    }

    /// The reference case: the built-in 500x375 JPEG through decode + adm-center-crop 256.
    /// The budget is 5 ms on one core; the assertion is looser because CI shares its cores.
    @Test func imageBenchmarkDecodesAndCropsTheBuiltInSample() throws {
        let decoded = try ImageDecoder().decode(BenchSample.jpeg, source: BenchSample.name)
        #expect(decoded.width == 500 && decoded.height == 375)
        let ms = try ImageBenchmark.run(data: BenchSample.jpeg, source: BenchSample.name, iterations: 20)
        #expect(ms > 0 && ms < 50)
    }

    @Test func imageBenchmarkNamesTheFileItCannotRead() {
        #expect {
            _ = try ImageBenchmark.run(path: "/nonexistent/bench.jpg", iterations: 1)
        } throws: { error in
            "\(error)".contains("/nonexistent/bench.jpg")
        }
    }

    @Test func modelBenchmarkTimesEveryMethodOfTheTinyModel() throws {
        let model = try VTPModel(directory: TinyModel.directory, threads: 1)
        let results = try ModelBenchmark(batch: 1, iterations: 1).run(model: model)
        let operations = results.map(\.operation)
        #expect(operations.first == "encode")
        if model.config.trainClip { #expect(operations.contains("clip-image") && operations.contains("clip-text")) }
        for result in results {
            #expect(result.secondsPerBatch > 0 && result.itemsPerSecond > 0, "\(result.operation)")
            #expect(abs(result.itemsPerSecond * result.secondsPerBatch - 1) < 1e-9, "\(result.operation): one item per batch")
        }
    }

    @Test func sameRunBaselineKeepsTheBestOfEachSide() {
        let comparison = SameRunBaseline("sleep 2 ms", against: "sleep 1 ms", runs: 2) { usleep(1000) }
        #expect(comparison.baselineSeconds >= 0.001)
        #expect(comparison.bestSeconds == .infinity)
        for _ in 0..<3 { _ = comparison.measure { usleep(2000) } }
        #expect(comparison.bestSeconds >= 0.002 && comparison.bestSeconds < .infinity)
        #expect(comparison.ratio == comparison.bestSeconds / comparison.baselineSeconds)
        #expect(comparison.report.hasPrefix("sleep 2 ms: best "))
        #expect(comparison.report.contains("vs sleep 1 ms"))
    }
}
