import Foundation
import Synchronization
import Testing
import VTPVocabulary
import VTPDatasets
import VTPImage
import VTPSafeTensors
import VTPStorage
import VTPTensor
import VTPTestSupport
@testable import VTPJobs

@Suite struct ExecutorTests {
    func task(_ items: [JobItem], output: String, shard: Int = 0, json: String = "{}", type: JobType = .latents,
              model: String = TinyModel.directory) -> ShardTask {
        ShardTask(jobId: 7, shardIndex: shard, jobType: type, parametersJSON: json, modelDirectory: model,
                  outputDirectory: output, items: items)
    }

    @Test func missingFilesAndBadTarRangesFailOnlyTheirItems() async throws {
        let output = try TemporaryDirectory("jobs-exec")
        defer { output.remove() }
        let items = [
            JobItem(ordinal: 10, sourceId: "good", location: .file(path: Fixtures.path("images/chelsea.jpg")), label: 4),
            JobItem(ordinal: 11, sourceId: "missing", location: .file(path: output.file("nope.jpg"))),
            JobItem(ordinal: 12, sourceId: "range", location: .tarMember(tarPath: Fixtures.path("images/rocket.jpg"), offset: 10, size: 1 << 30)),
            JobItem(ordinal: 13, sourceId: "good2", location: .file(path: Fixtures.path("images/rocket.jpg"))),
        ]
        let log = ProgressCounts()
        let outcome = try await ShardExecutor().run(task(items, output: output.path, shard: 5, json: #"{"batch_size": 1}"#)) { log.append($0) }
        #expect(outcome.items.map(\.ordinal) == [10, 11, 12, 13])
        #expect(outcome.items.map(\.status) == [.ok, .failed, .failed, .ok])
        #expect(outcome.items[1].error?.contains("nope.jpg") == true, "\(outcome.items[1])")
        #expect(outcome.items[2].error?.contains("outside the") == true, "\(outcome.items[2])")
        #expect(outcome.items[0].outputLocation == "latents_rank00_shard005.safetensors#0")
        #expect(outcome.items[3].outputLocation == "latents_rank00_shard005.safetensors#1")
        #expect(outcome.files == ["latents_rank00_shard005.safetensors", "ids_rank00_shard005.jsonl", "summary_rank00_shard005.json"])
        #expect(log.values.last == 4 && log.values == log.values.sorted())
        #expect(outcome.timings.infer > 0 && outcome.timings.decode > 0 && outcome.timings.wall >= outcome.timings.infer)

        let file = try SafeTensorsFile(path: output.file("latents_rank00_shard005.safetensors"))
        #expect(try file.int64s("labels") == [4, -1])
        let summary = try ShardSummary.read(output.file("summary_rank00_shard005.json"))
        #expect(summary.jobId == 7 && summary.inputs == 4 && summary.written?.rows == 2)
        #expect(summary.failures.map(\.sourceId) == ["missing", "range"])
        #expect(summary.stats?.count == 2 * 256)

        // The same shard re-run with every item failing leaves no stale tensor rows behind.
        let broken = items.map { JobItem(ordinal: $0.ordinal, sourceId: $0.sourceId, location: .file(path: output.file("gone"))) }
        let again = try await ShardExecutor().run(task(broken, output: output.path, shard: 5))
        #expect(again.succeeded == 0 && again.files == ["summary_rank00_shard005.json"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: output.path) == ["summary_rank00_shard005.json"])
    }

    /// Two shards of one job running at once on one cached model (as a worker with several
    /// slots does) give the same files as running them one after the other.
    @Test func concurrentShardsShareTheModelSafely() async throws {
        let items = ["chelsea.jpg", "rocket.jpg", "coffee.jpg", "dog.png"].enumerated().map {
            JobItem(ordinal: $0.offset, sourceId: $0.element, location: .file(path: Fixtures.path("images/" + $0.element)))
        }
        let together = try TemporaryDirectory("jobs-conc-a"), apart = try TemporaryDirectory("jobs-conc-b")
        defer { together.remove(); apart.remove() }
        let executor = ShardExecutor(models: ModelCache())
        async let first = executor.run(task(Array(items[0..<2]), output: together.path, shard: 0, json: #"{"batch_size": 1}"#))
        async let second = executor.run(task(Array(items[2..<4]), output: together.path, shard: 1, json: #"{"batch_size": 1}"#))
        let outcomes = try await [first, second]
        #expect(outcomes.map(\.succeeded) == [2, 2])
        _ = try await executor.run(task(Array(items[0..<2]), output: apart.path, shard: 0, json: #"{"batch_size": 1}"#))
        _ = try await executor.run(task(Array(items[2..<4]), output: apart.path, shard: 1, json: #"{"batch_size": 1}"#))
        for shard in 0..<2 {
            let name = String(format: "latents_rank00_shard%03d.safetensors", shard)
            let a = try SafeTensorsFile(path: together.file(name)).tensor("latents").toArray()
            let b = try SafeTensorsFile(path: apart.file(name)).tensor("latents").toArray()
            #expect(a == b, "shard \(shard)")
        }
    }

    @Test func shardLevelProblemsThrowNamedErrors() async throws {
        let output = try TemporaryDirectory("jobs-exec-err")
        defer { output.remove() }
        let items = [JobItem(ordinal: 0, sourceId: "a", location: .file(path: Fixtures.path("images/chelsea.jpg")))]
        await #expect(throws: JobError.invalidParameter(field: "image_size", detail: "250 is not a multiple of the model's patch size 16")) {
            try await ShardExecutor().run(task(items, output: output.path, json: #"{"image_size": 250}"#))
        }
        await #expect(throws: JobError.invalidParameter(field: "layers", detail: "cannot take the last 3 blocks of a 2-block encoder")) {
            try await ShardExecutor().run(task(items, output: output.path, json: #"{"layers": {"intermediate": 3}}"#, type: .features))
        }
        do {
            _ = try await ShardExecutor().run(task(items, output: output.path, model: output.file("no-model")))
            Issue.record("a missing model was accepted")
        } catch let error as JobError {
            guard case let .modelLoadFailed(model, _) = error else { Issue.record("\(error)"); return }
            #expect(model == output.file("no-model"))
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: output.path).isEmpty, "nothing written for a rejected shard")
    }

    @Test func finalizerNeedsEveryShardSummary() throws {
        let output = try TemporaryDirectory("jobs-final")
        defer { output.remove() }
        #expect(throws: JobError.badShardSummary(path: output.file("summary_rank00_shard000.json"), detail: "missing (the shard has not finished)")) {
            try JobFinalizer.finalize(jobType: .latents, parametersJSON: "{}", outputDirectory: output.path,
                                      modelDirectory: TinyModel.directory, shardCount: 1)
        }
    }

    @Test func pipelineNeverRunsMoreThanItsCapacityAhead() throws {
        let items = (0..<12).map { JobItem(ordinal: $0, sourceId: "\($0)", location: .file(path: Fixtures.path("images/chelsea_tiny.jpg"))) }
        let plan = PreprocessPlan(transform: .admCenterCrop(size: 32), normalization: .half, alsoFlipped: true,
                                  compatibility: .pillow12, maxPixels: 1 << 20)
        let pipeline = PreprocessPipeline(items: items, plan: plan, threads: 4, capacity: 3)
        defer { pipeline.shutdown() }
        Thread.sleep(forTimeInterval: 0.3)  // let the workers run into the bound
        #expect(pipeline.claimedAhead == 3)
        for i in 0..<12 {
            let prepared = pipeline.take(i)
            #expect(prepared.item.ordinal == i, "in order despite 4 workers")
            guard case let .ok(pixels, flipped) = prepared.result else { Issue.record("item \(i) failed"); continue }
            #expect(pixels.shape == [3, 32, 32] && flipped?.shape == [3, 32, 32])
            #expect(pipeline.claimedAhead <= 3)
        }
    }

    @Test func anOnDemandPipelinePreparesNothingAhead() throws {
        let items = (0..<4).map { JobItem(ordinal: $0, sourceId: "\($0)", location: .file(path: Fixtures.path("images/chelsea_tiny.jpg"))) }
        let plan = PreprocessPlan(transform: .admCenterCrop(size: 32), normalization: .half, alsoFlipped: false,
                                  compatibility: .pillow12, maxPixels: 1 << 20)
        let pipeline = PreprocessPipeline(items: items, plan: plan, threads: 1, capacity: 1, onDemand: true)
        defer { pipeline.shutdown() }
        Thread.sleep(forTimeInterval: 0.2)
        #expect(pipeline.claimedAhead == 0, "nothing is read before it is asked for")
        for i in 0..<4 {
            #expect(pipeline.take(i).item.ordinal == i)
            Thread.sleep(forTimeInterval: 0.05)
            #expect(pipeline.claimedAhead == 0)
        }
    }

    /// An isolated run reports each item before starting it, writes the same bits as a batched
    /// run, and lists the excluded items as failures of the shard.
    @Test func anIsolatedRunReportsEachItemBeforeItStartsAndWritesTheSameBits() async throws {
        let output = try TemporaryDirectory("jobs-isolated")
        defer { output.remove() }
        let items = [
            JobItem(ordinal: 20, sourceId: "a", location: .file(path: Fixtures.path("images/chelsea.jpg"))),
            JobItem(ordinal: 22, sourceId: "b", location: .file(path: output.file("missing.jpg"))),
            JobItem(ordinal: 23, sourceId: "c", location: .file(path: Fixtures.path("images/rocket.jpg"))),
        ]
        let batched = try await ShardExecutor().run(task(items, output: output.file("batched"), json: #"{"batch_size": 3}"#))
        var isolated = task(items, output: output.file("isolated"), json: #"{"batch_size": 3}"#)
        isolated.isolated = true
        isolated.excluded = [ExcludedItem(ordinal: 21, sourceId: "poison", reason: "the worker ended abnormally twice")]
        let log = ProgressCounts()
        let outcome = try await ShardExecutor().run(isolated) { log.append($0) }
        #expect(log.values == [0, 1, 2, 3], "item n starts only after progress(n)")
        #expect(outcome.items.map(\.ordinal) == [20, 22, 23] && outcome.items.map(\.status) == [.ok, .failed, .ok])
        let a = try Data(contentsOf: URL(fileURLWithPath: output.file("batched/latents_rank00_shard000.safetensors")))
        let b = try Data(contentsOf: URL(fileURLWithPath: output.file("isolated/latents_rank00_shard000.safetensors")))
        #expect(a == b, "batch size does not change the bits")
        #expect(batched.succeeded == 2)
        let summary = try ShardSummary.read(output.file("isolated/summary_rank00_shard000.json"))
        #expect(summary.inputs == 4 && summary.written?.rows == 2)
        #expect(summary.failures.map(\.sourceId) == ["poison", "b"])
        #expect(summary.failures.first?.reason == "the worker ended abnormally twice")
    }

    @Test func shutdownStopsWorkersOfAnAbandonedShard() {
        let items = (0..<50).map { JobItem(ordinal: $0, sourceId: "\($0)", location: .file(path: Fixtures.path("images/chelsea.jpg"))) }
        let plan = PreprocessPlan(transform: .resize(size: 64), normalization: .imagenet, alsoFlipped: false,
                                  compatibility: .pillow12, maxPixels: 1 << 24)
        let pipeline = PreprocessPipeline(items: items, plan: plan, threads: 2, capacity: 4)
        _ = pipeline.take(0)
        pipeline.shutdown()  // returns only once both workers have exited
        #expect(pipeline.claimedAhead <= 4)
    }
}

/// Progress values seen by a callback.
final class ProgressCounts: Sendable {
    private let entries = Mutex<[Int]>([])

    func append(_ v: Int) { entries.withLock { $0.append(v) } }
    var values: [Int] { entries.withLock { $0 } }
}
