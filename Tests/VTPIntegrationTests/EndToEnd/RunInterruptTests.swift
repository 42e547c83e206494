import Foundation
import Testing
import VTPTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Ctrl-C on `vtp run`, as a terminal delivers it (SIGINT to the whole process group): the workers
/// stop after the batch in hand and hand their shards back, the run ends within seconds and says
/// how to resume, and the re-run writes every image exactly once.
@Suite(.serialized)
struct RunInterruptTests {
    /// `classes` folders of 64 copies of the 1024-pixel-class fixture each, so a shard takes long.
    static func makeLargeInput(_ root: String, classes: Int) throws -> Set<String> {
        var ids: Set<String> = []
        for folder in 0..<classes {
            let name = "class\(folder)"
            try FileManager.default.createDirectory(atPath: root + "/" + name, withIntermediateDirectories: true)
            for copy in 0..<64 {
                let file = String(format: "hubble_%02d.jpg", copy)
                let target = root + "/" + name + "/" + file
                if link(Fixtures.path("images/hubble_large.jpg"), target) != 0 {
                    try FileManager.default.copyItem(atPath: Fixtures.path("images/hubble_large.jpg"), toPath: target)
                }
                ids.insert(name + "/" + file)
            }
        }
        return ids
    }

    static func text(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }

    /// A worker has started a shard (it logs the assignment; one worker may take both, prefetch 2).
    static func aWorkerIsBusy(_ state: String) -> Bool {
        (0..<2).contains { text(state + "/worker-\($0).log").contains(" items") }
    }

    @Test(.timeLimit(.minutes(6)))
    func ctrlCDuringAShardExitsWithinSecondsAndTheRerunWritesEveryImageOnce() async throws {
        let dir = try TemporaryDirectory("e2e-sigint")
        defer { RunCommandTests.stopLeftoverServer(dir.file("out")); dir.remove() }
        // 384 items in 2 shards of 192: a Zen 5 runs a shard of 96 in under 1.5 s, before the interrupt.
        let expected = try Self.makeLargeInput(dir.file("in"), classes: 6)
        let arguments = RunCommandTests.runArguments(input: dir.file("in"), output: dir.file("out"), shardSize: 192, imageSize: 256)
        let run = try RunCommandTests.spawn(arguments, logs: dir.file("first"))
        #expect(try await RunCommandTests.waitUntil(120) { Self.aWorkerIsBusy(dir.file("out/.vtp-state")) })
        try await Task.sleep(for: .seconds(1))  // well inside the shards, past their first batches
        #expect(RunCommandTests.summaries(dir.file("out")).count < 2, "the job finished before the interrupt")

        let interruptedAt = ContinuousClock.now
        kill(-run.pid, SIGINT)  // what Ctrl-C in a terminal does
        let ending = try await run.wait(seconds: 30)
        let took = ContinuousClock.now - interruptedAt
        print("vtp run exited \(took) after SIGINT")
        let stderr = Self.text(dir.file("first.err"))
        #expect(ending == .exited(130), "stderr: \(stderr)")
        #expect(took < .seconds(5), "exited \(took) after SIGINT; stderr: \(stderr)")
        #expect(stderr.contains("stopping: workers hand their shards back after the current batch"))
        #expect(stderr.contains("to resume, run the same command again:"), "stderr: \(stderr)")
        #expect(stderr.contains(" run latents --model "), "the resume hint should repeat the command: \(stderr)")
        #expect(RunCommandTests.summaries(dir.file("out")).count < 2, "nothing was interrupted")
        let logs = Self.text(dir.file("out/.vtp-state/worker-0.log")) + Self.text(dir.file("out/.vtp-state/worker-1.log"))
        #expect(logs.contains("handing it back"), "worker logs: \(logs)")

        let again = try VTPExecutable.run(arguments)
        #expect(again.status == 0, "stdout: \(again.stdout)\nstderr: \(again.stderr)")
        #expect(again.stderr.contains("resuming job 1:"))
        // Handed-back shards spent no attempt and nothing failed.
        #expect(again.stdout.contains("job 1 completed: 384 items, 384 written, 0 failed"), "stdout: \(again.stdout)")
        let written = try RunCommandTests.writtenIDs(dir.file("out"))
        #expect(written.count == 384)
        #expect(Set(written) == expected)
    }

    @Test(.timeLimit(.minutes(4)))
    func aSecondCtrlCStopsAtOnceAndTheRerunStillCompletes() async throws {
        let dir = try TemporaryDirectory("e2e-sigint2")
        defer { RunCommandTests.stopLeftoverServer(dir.file("out")); dir.remove() }
        let expected = try Self.makeLargeInput(dir.file("in"), classes: 2)  // 128 items in 2 shards of 64
        let arguments = RunCommandTests.runArguments(input: dir.file("in"), output: dir.file("out"), shardSize: 64, imageSize: 256)
        let run = try RunCommandTests.spawn(arguments, logs: dir.file("first"))
        #expect(try await RunCommandTests.waitUntil(120) { Self.aWorkerIsBusy(dir.file("out/.vtp-state")) })
        let workers = RunCommandTests.children(of: run.pid, containing: " worker ")
        // Only `vtp run` gets the signals here: it passes the first on and kills on the second.
        let interruptedAt = ContinuousClock.now
        kill(run.pid, SIGINT)
        try await Task.sleep(for: .milliseconds(100))
        kill(run.pid, SIGINT)
        let ending = try await run.wait(seconds: 30)
        let took = ContinuousClock.now - interruptedAt
        let stderr = Self.text(dir.file("first.err"))
        #expect(ending == .exited(130), "stderr: \(stderr)")
        #expect(took < .seconds(5), "exited \(took) after SIGINT; stderr: \(stderr)")
        #expect(stderr.contains("stopping now"))
        #expect(try await RunCommandTests.waitUntil(5) { workers.allSatisfy { kill($0, 0) != 0 } })

        let again = try VTPExecutable.run(arguments)
        #expect(again.status == 0, "stdout: \(again.stdout)\nstderr: \(again.stderr)")
        #expect(again.stdout.contains("job 1 completed: 128 items, 128 written, 0 failed"), "stdout: \(again.stdout)")
        let written = try RunCommandTests.writtenIDs(dir.file("out"))
        #expect(written.count == 128)
        #expect(Set(written) == expected)
    }
}
