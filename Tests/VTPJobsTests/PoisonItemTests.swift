import Foundation
import Testing
import VTPVocabulary
import VTPDatasets
import VTPImage
import VTPSafeTensors
import VTPStorage
import VTPTensor
import VTPTestSupport
@testable import VTPJobs
#if canImport(Glibc)
import Glibc
#endif

/// Single bad inputs fail as items with a reason; the shard, and the worker, go on.
@Suite(.serialized) struct PoisonItemTests {
    func task(_ items: [JobItem], output: String, shard: Int = 0, json: String = #"{"batch_size": 2, "image_size": 64}"#) -> ShardTask {
        ShardTask(jobId: 3, shardIndex: shard, jobType: .latents, parametersJSON: json, modelDirectory: TinyModel.directory,
                  outputDirectory: output, items: items)
    }

    func item(_ ordinal: Int, _ id: String, _ path: String) -> JobItem {
        JobItem(ordinal: ordinal, sourceId: id, location: .file(path: path))
    }

    @Test(.timeLimit(.minutes(2)))
    func poisonItemsAmongGoodOnesFailAloneWithTheirReasons() async throws {
        let input = try TemporaryDirectory("poison-items"), output = try TemporaryDirectory("poison-items-out")
        defer { input.remove(); output.remove() }
        try PoisonInputs.writePNG(width: 2, height: 50_000_000, to: input.file("tall.png"))
        try PoisonInputs.makeFIFO(at: input.file("fifo.jpg"))
        let socket = try PoisonInputs.makeSocket(at: input.file("socket.jpg"))
        defer { close(socket) }
        try FileManager.default.createSymbolicLink(atPath: input.file("zero.jpg"), withDestinationPath: "/dev/zero")
        let items = [
            item(0, "chelsea", Fixtures.path("images/chelsea.jpg")), item(1, "tall", input.file("tall.png")),
            item(2, "fifo", input.file("fifo.jpg")), item(3, "dog", Fixtures.path("images/dog.png")),
            item(4, "socket", input.file("socket.jpg")), item(5, "zero", input.file("zero.jpg")),
            item(6, "rocket", Fixtures.path("images/rocket.jpg")),
        ]
        let outcome = try await ShardExecutor().run(task(items, output: output.path))
        #expect(outcome.items.map(\.status) == [.ok, .failed, .failed, .ok, .failed, .failed, .ok])
        let reasons = outcome.items.map { $0.error ?? "" }
        #expect(reasons[1].contains(input.file("tall.png")) && reasons[1].contains("2x50000000 PNG"), "\(reasons[1])")
        #expect(reasons[1].contains("more than the decode memory budget of 1073741824 bytes") && reasons[1].contains("worker.max_decode_bytes"))
        #expect(reasons[2].contains("not a regular file (FIFO)"), "\(reasons[2])")
        #expect(reasons[4].contains("not a regular file (socket)"), "\(reasons[4])")
        #expect(reasons[5].contains("not a regular file (character device)"), "\(reasons[5])")
        let rows = try SourceIdSidecar.read(output.file("ids_rank00_shard000.jsonl"))
        #expect(rows.map(\.sourceId) == ["chelsea", "dog", "rocket"])
        #expect(try SafeTensorsFile(path: output.file("latents_rank00_shard000.safetensors")).tensor("latents").shape.first == 3)
    }

    /// An item that overruns the per-item time limit fails naming the stage it was in, and the
    /// items after it are still prepared (its thread is abandoned and replaced).
    @Test(.timeLimit(.minutes(2)))
    func anItemOverItsTimeLimitFailsAndTheShardGoesOn() async throws {
        let input = try TemporaryDirectory("poison-slow"), output = try TemporaryDirectory("poison-slow-out")
        defer { input.remove(); output.remove() }
        // A valid 10000 x 10000 PNG (10^8 pixels, the default pixel limit): seconds to inflate,
        // decode and halve four times, where a fixture image takes milliseconds.
        let row = (0..<30_000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        try PoisonInputs.writePNG(width: 10_000, height: 10_000, row: row, to: input.file("huge.png"))
        let items = [item(0, "chelsea", Fixtures.path("images/chelsea.jpg")), item(1, "huge", input.file("huge.png")),
                     item(2, "dog", Fixtures.path("images/dog.png")), item(3, "rocket", Fixtures.path("images/rocket.jpg"))]
        let executor = ShardExecutor(options: .init(preprocessThreads: 1, itemTimeoutSeconds: 0.25))
        let started = ContinuousClock.now
        let outcome = try await executor.run(task(items, output: output.path))
        let elapsed = ContinuousClock.now - started
        #expect(outcome.items.map(\.status) == [.ok, .failed, .ok, .ok])
        let reason = outcome.items[1].error ?? ""
        #expect(reason.hasPrefix("huge (" + input.file("huge.png") + "): "), "\(reason)")
        #expect(reason.contains("took longer than the item time limit of 0.25 s (worker.item_timeout_seconds)"), "\(reason)")
        #expect(reason.contains("decoding") || reason.contains("preprocessing"), "\(reason)")
        #expect(try SourceIdSidecar.read(output.file("ids_rank00_shard000.jsonl")).map(\.sourceId) == ["chelsea", "dog", "rocket"])

        // The image itself is fine: with no limit it is prepared, and takes far longer than the limit.
        let plan = PreprocessPlan(transform: .admCenterCrop(size: 64), normalization: .half, alsoFlipped: false,
                                  compatibility: .pillow12, maxPixels: ImageDecoder.defaultMaxPixels)
        let t0 = ContinuousClock.now
        let prepared = PreprocessPipeline.prepare(items[1], plan: plan)
        let alone = ContinuousClock.now - t0
        guard case .ok = prepared.result else { Issue.record("the large image should be valid: \(prepared.result)"); return }
        // Twice the limit at least (a Zen 5 prepares it in 0.8 s; slower machines take seconds).
        #expect(alone > .milliseconds(500), "the large image should take well over the 0.25 s limit, took \(alone)")
        #expect(elapsed < alone + .seconds(30))
    }

    @Test(.enabled(if: SizedTmpfs.available, "needs to mount a tmpfs (root)"), .timeLimit(.minutes(2)))
    func aShardWriteThatRunsOutOfSpaceLeavesNothingAndARetryWritesEverything() async throws {
        let names = ["chelsea.jpg", "coffee.jpg", "dog.png", "rocket.jpg", "astronaut.png", "camera_gray.png", "hubble_large.jpg", "coffee_cmyk.jpg"]
        let items = names.enumerated().map { item($0.offset, $0.element, Fixtures.path("images/" + $0.element)) }
        // The id sidecar fits in 16 KiB; 8 latents and their mirrors (16 KiB of floats) do not.
        let disk = try SizedTmpfs(bytes: 16 << 10)
        defer { disk.unmount() }
        do {
            _ = try await ShardExecutor().run(task(items, output: disk.path, shard: 4))
            Issue.record("the write should not fit")
        } catch let error as JobError {
            #expect("\(error)".contains("no space left on device"), "\(error)")
        }
        #expect(disk.entries() == [], "no sidecar, summary or temporary file of the failed write: \(disk.entries())")

        try disk.resize(bytes: 4 << 20)
        let outcome = try await ShardExecutor().run(task(items, output: disk.path, shard: 4))
        #expect(outcome.succeeded == 8)
        #expect(disk.entries() == ["ids_rank00_shard004.jsonl", "latents_rank00_shard004.safetensors", "summary_rank00_shard004.json"])
    }

    /// The finalizer removes what failed or interrupted writes left: partners without their main
    /// file, the outputs of shards that failed for good, and writers' temporary files.
    @Test func finalizerRemovesOrphansFailedShardOutputsAndTemporaries() async throws {
        let output = try TemporaryDirectory("poison-final")
        defer { output.remove() }
        let json = #"{"batch_size": 2, "image_size": 64}"#
        let executor = ShardExecutor()
        _ = try await executor.run(task([item(0, "chelsea", Fixtures.path("images/chelsea.jpg"))], output: output.path, shard: 0))
        // Shard 1: every item failed, but an older attempt left its sidecar behind.
        _ = try await executor.run(task([item(1, "gone", output.file("missing.jpg"))], output: output.path, shard: 1))
        try Data("{\"row\":0,\"source_id\":\"old\"}\n".utf8).write(to: URL(fileURLWithPath: output.file("ids_rank00_shard001.jsonl")))
        // Shard 2: failed for good, yet a rejected attempt wrote outputs.
        _ = try await executor.run(task([item(2, "dog", Fixtures.path("images/dog.png"))], output: output.path, shard: 2))
        try FileManager.default.removeItem(atPath: output.file("summary_rank00_shard002.json"))
        // Temporaries of a writer killed before renaming.
        for name in [".latents_rank00_shard000.safetensors.tmp-99-1234", ".ids_rank00_shard002.jsonl.tmp-5-6"] {
            try Data([1, 2, 3]).write(to: URL(fileURLWithPath: output.file(name)))
        }
        let lost = [RunManifest.Failure(sourceId: "dog", reason: "worker crashed 3 times")]
        let manifest = try JobFinalizer.finalize(jobType: .latents, parametersJSON: json, outputDirectory: output.path,
                                                 modelDirectory: TinyModel.directory, shardCount: 3, failedShards: [2: lost])
        #expect(manifest.counts.written == 1 && manifest.counts.failed == 2)
        let left = try FileManager.default.contentsOfDirectory(atPath: output.path).sorted()
        #expect(left == ["ids_rank00_shard000.jsonl", "latents_rank00_shard000.safetensors", "latents_stats.pt", "manifest.json",
                         "summary_rank00_shard000.json", "summary_rank00_shard001.json"], "\(left)")
    }
}
