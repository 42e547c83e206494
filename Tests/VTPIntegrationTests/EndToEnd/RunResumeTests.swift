import Foundation
import Testing
import VTPTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Re-running `vtp run` on an output it wrote before, as users do: after the input grew, and after
/// a job that could not run at all (a broken checkpoint) was fixed. Real binary, private
/// PostgreSQL, worker processes, tiny fixture model.
@Suite(.serialized)
struct RunResumeTests {
    static func manifest(_ output: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: output + "/manifest.json"))) as? [String: Any])
    }

    @Test(.timeLimit(.minutes(4)))
    func aGrownInputStopsThePlainReRunAndUpdateAddsExactlyTheNewImages() throws {
        let dir = try TemporaryDirectory("e2e-update")
        defer { RunCommandTests.stopLeftoverServer(dir.file("out")); dir.remove() }
        var expected = try RunCommandTests.makeInput(dir.file("in"), copies: 1)
        let arguments = RunCommandTests.runArguments(input: dir.file("in"), output: dir.file("out"), shardSize: 4)
        let first = try VTPExecutable.run(arguments)
        #expect(first.status == 0, "stdout: \(first.stdout)\nstderr: \(first.stderr)")
        let statsBefore = try Data(contentsOf: URL(fileURLWithPath: dir.file("out/latents_stats.pt")))

        // One more image: the plain re-run refuses, names it, and changes nothing.
        try FileManager.default.copyItem(atPath: Fixtures.path("images/dog.png"), toPath: dir.file("in/class00/zz_new.png"))
        let plain = try VTPExecutable.run(arguments)
        #expect(plain.status != 0, "stdout: \(plain.stdout)\nstderr: \(plain.stderr)")
        #expect(plain.stderr.contains("1 new (class00/zz_new.png), 0 missing"), "stderr: \(plain.stderr)")
        #expect(plain.stderr.contains("--update"))
        #expect(try RunCommandTests.writtenIDs(dir.file("out")).sorted() == expected.sorted())

        let update = try VTPExecutable.run(arguments + ["--update"])
        #expect(update.status == 0, "stdout: \(update.stdout)\nstderr: \(update.stderr)")
        #expect(update.stderr.contains("job 1 gets 1 new items in 1 new shards"), "stderr: \(update.stderr)")
        #expect(update.stdout.contains("job 1 completed: 14 items, 14 written, 0 failed"), "stdout: \(update.stdout)")
        expected.insert("class00/zz_new.png")
        let written = try RunCommandTests.writtenIDs(dir.file("out"))
        #expect(written.sorted() == expected.sorted(), "every image exactly once")
        let manifest = try Self.manifest(dir.file("out"))
        #expect((manifest["counts"] as? [String: Any])?["written"] as? Int == 14, "manifest: \(manifest)")
        // The statistics now cover the new latent too.
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir.file("out/latents_stats.pt"))) != statsBefore)

        // Nothing changed since: the plain re-run is content, and an image removed is reported.
        let again = try VTPExecutable.run(arguments)
        #expect(again.status == 0 && again.stderr.contains("job 1 already finished"), "stderr: \(again.stderr)")
        try FileManager.default.removeItem(atPath: dir.file("in/class00/dog.png"))
        let shrunk = try VTPExecutable.run(arguments)
        #expect(shrunk.status != 0 && shrunk.stderr.contains("0 new, 1 missing (class00/dog.png)"), "stderr: \(shrunk.stderr)")
    }

    @Test(.timeLimit(.minutes(4)))
    func aTruncatedCheckpointFailsTheJobAtOnceAndTheSameCommandCompletesAfterTheFix() throws {
        let dir = try TemporaryDirectory("e2e-badmodel")
        defer { RunCommandTests.stopLeftoverServer(dir.file("out")); dir.remove() }
        let expected = try RunCommandTests.makeInput(dir.file("in"), copies: 1)
        let model = dir.file("model")
        try FileManager.default.createDirectory(atPath: model, withIntermediateDirectories: true)
        for name in ["config.json", "model.safetensors"] {
            try FileManager.default.copyItem(atPath: Fixtures.path("vtp-tiny/" + name), toPath: model + "/" + name)
        }
        let weights = try Data(contentsOf: URL(fileURLWithPath: model + "/model.safetensors"))
        try weights.prefix(weights.count / 2).write(to: URL(fileURLWithPath: model + "/model.safetensors"))
        var arguments = RunCommandTests.runArguments(input: dir.file("in"), output: dir.file("out"), shardSize: 3)
        arguments[arguments.firstIndex(of: "--model")! + 1] = model

        let start = ContinuousClock.now
        let broken = try VTPExecutable.run(arguments)
        let elapsed = ContinuousClock.now - start
        #expect(broken.status == 1, "stdout: \(broken.stdout)\nstderr: \(broken.stderr)")
        #expect(elapsed < .seconds(10), "took \(elapsed)")
        #expect(broken.stderr.contains("job 1 failed: ") && broken.stderr.contains("model.safetensors"), "stderr: \(broken.stderr)")
        #expect(!broken.stdout.contains("failed items:"), "stdout: \(broken.stdout)")
        // No item was failed for it; the ledger (started read-only for the query) says why.
        let shown = try VTPExecutable.run(["job", "show", "1", "--output", dir.file("out"), "--json"])
        #expect(shown.status == 0, "stderr: \(shown.stderr)")
        let job = try #require(try JSONSerialization.jsonObject(with: Data(shown.stdout.utf8)) as? [String: Any])
        let record = job["job"] as? [String: Any]
        #expect(record?["state"] as? String == "failed", "\(shown.stdout)")
        #expect((record?["error"] as? String)?.contains("model.safetensors") == true)
        #expect((record?["items"] as? [String: Any])?["failed"] as? Int == 0)

        // Fixed: `vtp job retry` on the stopped run's ledger, then the same command completes.
        try weights.write(to: URL(fileURLWithPath: model + "/model.safetensors"))
        let retry = try VTPExecutable.run(["job", "retry", "1", "--output", dir.file("out")])
        #expect(retry.status == 0, "stdout: \(retry.stdout)\nstderr: \(retry.stderr)")
        let fixed = try VTPExecutable.run(arguments)
        #expect(fixed.status == 0, "stdout: \(fixed.stdout)\nstderr: \(fixed.stderr)")
        #expect(fixed.stdout.contains("job 1 completed: 13 items, 13 written, 0 failed"), "stdout: \(fixed.stdout)")
        #expect(try RunCommandTests.writtenIDs(dir.file("out")).sorted() == expected.sorted())
    }

    @Test(.timeLimit(.minutes(4)))
    func reRunningAFailedJobWithoutRetryRunsItAgain() throws {
        let dir = try TemporaryDirectory("e2e-rerun-failed")
        defer { RunCommandTests.stopLeftoverServer(dir.file("out")); dir.remove() }
        _ = try RunCommandTests.makeInput(dir.file("in"), copies: 1)
        let model = dir.file("model")
        try FileManager.default.createDirectory(atPath: model, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: Fixtures.path("vtp-tiny/config.json"), toPath: model + "/config.json")
        try Data("not a checkpoint".utf8).write(to: URL(fileURLWithPath: model + "/model.safetensors"))
        var arguments = RunCommandTests.runArguments(input: dir.file("in"), output: dir.file("out"), shardSize: 13)
        arguments[arguments.firstIndex(of: "--model")! + 1] = model
        let broken = try VTPExecutable.run(arguments)
        #expect(broken.status == 1 && broken.stderr.contains("model.safetensors"), "stderr: \(broken.stderr)")
        try FileManager.default.removeItem(atPath: model + "/model.safetensors")
        try FileManager.default.copyItem(atPath: Fixtures.path("vtp-tiny/model.safetensors"), toPath: model + "/model.safetensors")
        let fixed = try VTPExecutable.run(arguments)
        #expect(fixed.status == 0, "stdout: \(fixed.stdout)\nstderr: \(fixed.stderr)")
        #expect(fixed.stderr.contains("job 1 had failed ("), "stderr: \(fixed.stderr)")
        #expect(fixed.stdout.contains("13 items, 13 written, 0 failed"))
    }
}
