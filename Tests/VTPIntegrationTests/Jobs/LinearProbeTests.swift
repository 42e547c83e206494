import Foundation
import Testing
import VTPJobs
import VTPSafeTensors
import VTPStorage
import VTPTensor
import VTPTestSupport
import VTPVocabulary
#if canImport(Glibc)
import Glibc
#endif

/// `vtp run linear-probe` (the built binary) against the official linear probing run on the same
/// features, order and initial weights (`Tests/Fixtures/linear-probe-eval.{json,safetensors}`,
/// written by scripts/reference/linear_probe_eval.py): upstream's heads, SGD, cosine schedule,
/// evaluation and choice of the best head.
@Suite struct LinearProbeTests {
    struct Golden: Decodable {
        struct Settings: Decodable {
            var blocks: [Int]
            var learning_rates: [Double]
            var batch_size: Int
            var epochs: Int
            var epoch_length: Int
            var seed: Int
        }
        struct Generator: Decodable { var pillow: String }
        var generator: Generator
        var trees: [String: [String: [String]]]
        var settings: Settings
        var classes: Int
        var heads: [String]
        var epochs: [[String: Double]]
        var best_accuracy: Double
        var best_classifier: String
    }

    static func golden() throws -> Golden {
        try JSONDecoder().decode(Golden.self, from: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("linear-probe-eval.json"))))
    }

    static func arguments(_ settings: Golden.Settings, learningRates: [Double]? = nil) -> [String] {
        ["--blocks", settings.blocks.map(String.init).joined(separator: ","),
         "--learning-rates", (learningRates ?? settings.learning_rates).map { "\($0)" }.joined(separator: ","),
         "--batch-size", String(settings.batch_size), "--epochs", String(settings.epochs),
         "--epoch-length", String(settings.epoch_length), "--seed", String(settings.seed)]
    }

    /// Lays the golden's features of `split` out as a finished features job's output folder.
    static func featuresFolder(_ split: String, at directory: String, pool: String = "cls+mean", labels: [Int64]? = nil) throws {
        let golden = try Fixtures.safetensors("linear-probe-eval.safetensors")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var writer = SafeTensorsWriter()
        for i in 0..<2 { writer.add("intermediate_\(i)_pooled", try golden.tensor("\(split)/intermediate_\(i)_pooled")) }
        let stored = try labels ?? golden.int64s("\(split)/labels")
        writer.add("labels", shape: [stored.count], int64s: stored)
        let name = "features_rank00_shard000.safetensors"
        try writer.write(to: directory + "/" + name)
        let manifest = RunManifest(format: "features", model: ["directory": TinyModel.directory],
                                   preprocessing: ["layers": "intermediate:2", "pool": pool, "norm": "true", "transform": "resize-center-crop",
                                                   "image_size": "224", "normalize": "imagenet"],
                                   dtype: .float32, counts: .init(inputs: stored.count, written: stored.count, failed: 0, shards: 1),
                                   shards: [WrittenShard(fileName: name, sidecarName: "ids_rank00_shard000.jsonl", rows: stored.count)],
                                   failures: [], classes: ["a", "b", "c"])
        try manifest.write(to: directory + "/manifest.json")
    }

    /// A temporary folder holding the golden's train and val features as `train/` and `val/`.
    static func probeInputs(_ label: String) throws -> TemporaryDirectory {
        let dir = try TemporaryDirectory(label)
        try featuresFolder("train", at: dir.file("train"))
        try featuresFolder("val", at: dir.file("val"))
        return dir
    }

    static func results(in output: String) throws -> [LinearProbeHeadResult] {
        var results: [LinearProbeHeadResult] = []
        for name in try FileManager.default.contentsOfDirectory(atPath: output + "/probe").sorted() where name.hasPrefix("results_") {
            let data = try Data(contentsOf: URL(fileURLWithPath: output + "/probe/" + name))
            for line in data.split(separator: UInt8(ascii: "\n")) { results.append(try JSONDecoder().decode(LinearProbeHeadResult.self, from: Data(line))) }
        }
        return results.sorted { $0.ordinal < $1.ordinal }
    }

    static func manifest(_ output: String) throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: output + "/manifest.json"))
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    /// Heads spread over shards that mix block counts, on two workers: every head's accuracy after
    /// every epoch, the best head and its accuracy equal upstream's; the final weights match.
    @Test(.timeLimit(.minutes(5)))
    func headsTrainAndSelectAsTheOfficialScript() throws {
        let golden = try Self.golden()
        let dir = try Self.probeInputs("linear-probe")
        defer {
            RunCommandTests.stopLeftoverServer(dir.file("out"))
            dir.remove()
        }
        let command = ["run", "linear-probe", "--input", dir.file("train"), "--val", dir.file("val"), "--output", dir.file("out"),
                       "--workers", "2", "--shard-size", "3"] + Self.arguments(golden.settings)
        let run = try VTPExecutable.run(command)
        #expect(run.status == 0, "\(run.stdout)\n\(run.stderr)")
        #expect(run.stdout.contains("10 items, 10 written, 0 failed; shards 4 done"), "\(run.stdout)")

        let results = try Self.results(in: dir.file("out"))
        #expect(results.map(\.head.key) == golden.heads)
        for result in results {
            let accuracies = result.epochs.map(\.accuracyPercent)
            let expected = golden.epochs.map { $0[result.head.key] ?? -1 }
            #expect(accuracies == expected, "\(result.head.key): \(accuracies) vs upstream's \(expected)")
        }
        // The 64 and 64.0001 heads share upstream's key, and the later one is the one trained.
        let shared = try #require(results.first { $0.head.key == "classifier_1_blocks_avgpool_True_lr_1_00000" })
        #expect(shared.head.learningRate == 64.0001)

        let reference = try Fixtures.safetensors("linear-probe-eval.safetensors")
        var weights: [String: Tensor] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: dir.file("out/probe")) where name.hasSuffix(".safetensors") {
            let file = try SafeTensorsFile(path: dir.file("out/probe/" + name))
            for tensor in file.names { weights[tensor] = try file.tensor(tensor) }
        }
        #expect(weights.count == 2 * golden.heads.count)
        for key in golden.heads {
            for part in ["weight", "bias"] {
                let ours = try #require(weights["\(key).\(part)"])
                let expected = try reference.tensor("\(key).\(part)")
                #expect(ours.shape == expected.shape)
                let report = ToleranceReport(ours: ours.toArray(), reference: expected.toArray())
                #expect(report.meanRelative < 1e-5 && report.maxRelative < 1e-4, "\(key).\(part): \(report)")
            }
        }

        let upstream = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir.file("out/linear_probing_results.json")))) as? [String: Any])
        #expect(upstream["best_accuracy"] as? Double == golden.best_accuracy)
        #expect(upstream["best_classifier"] as? String == golden.best_classifier)
        #expect(upstream["all_accuracies"] as? [String: Double] == golden.epochs.last)
        let manifest = try Self.manifest(dir.file("out"))
        #expect(manifest["format"] as? String == "linear-probe" && manifest["classes"] as? [String] == ["a", "b", "c"])
        let probe = try #require(manifest["linear_probe"] as? [String: Any])
        #expect(probe["best_classifier"] as? String == golden.best_classifier && probe["heads"] as? Int == golden.heads.count)

        // The same command again finds the job finished and changes nothing.
        let before = try Data(contentsOf: URL(fileURLWithPath: dir.file("out/probe/results_00000.jsonl")))
        let again = try VTPExecutable.run(command)
        #expect(again.status == 0 && again.stderr.contains("already finished"), "\(again.stdout)\n\(again.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir.file("out/probe/results_00000.jsonl"))) == before)
    }

    /// Ctrl-C while heads train stops within seconds (a stop is checked every iteration), and the
    /// same command resumes: every head ends up written exactly once.
    @Test(.timeLimit(.minutes(5)))
    func ctrlCWhileTrainingStopsAndTheRerunWritesEveryHeadOnce() async throws {
        let golden = try Self.golden()
        let dir = try Self.probeInputs("linear-probe-sigint")
        defer {
            RunCommandTests.stopLeftoverServer(dir.file("out"))
            dir.remove()
        }
        var settings = golden.settings
        // About 10 s of training per shard (4 shards on 2 workers), so the interrupt lands inside
        // the job even when other tests slow this one's start.
        settings.epoch_length = 600_000
        settings.epochs = 2
        let command = ["run", "linear-probe", "--input", dir.file("train"), "--val", dir.file("val"), "--output", dir.file("out"),
                       "--workers", "2", "--shard-size", "3"] + Self.arguments(settings)
        let run = try RunCommandTests.spawn(command, logs: dir.file("first"))
        #expect(try await RunCommandTests.waitUntil(120) {
            (0..<2).contains { (try? String(contentsOfFile: dir.file("out/.vtp-state/worker-\($0).log"), encoding: .utf8))?.contains(" items") == true }
        })
        try await Task.sleep(for: .milliseconds(500))
        #expect(RunCommandTests.summaries(dir.file("out")).count < 4, "the job finished before the interrupt")
        let interruptedAt = ContinuousClock.now
        kill(-run.pid, SIGINT)
        let ending = try await run.wait(seconds: 30)
        #expect(ending == .exited(130))
        #expect(ContinuousClock.now - interruptedAt < .seconds(5))

        let again = try VTPExecutable.run(command)
        #expect(again.status == 0 && again.stderr.contains("resuming job 1:"), "\(again.stdout)\n\(again.stderr)")
        #expect(again.stdout.contains("job 1 completed: 10 items, 10 written, 0 failed"), "\(again.stdout)")
        let results = try Self.results(in: dir.file("out"))
        #expect(results.map(\.head.key) == golden.heads && results.allSatisfy { $0.epochs.count == 2 })
    }

    /// A head whose loss overflows is a failed item with its reason; the other heads are written
    /// and the best is chosen among them.
    @Test(.timeLimit(.minutes(5)))
    func aDivergedHeadIsRecordedAndTheOthersWritten() throws {
        let golden = try Self.golden()
        let dir = try Self.probeInputs("linear-probe-diverged")
        defer {
            RunCommandTests.stopLeftoverServer(dir.file("out"))
            dir.remove()
        }
        var settings = golden.settings
        settings.blocks = [1]
        let run = try VTPExecutable.run(["run", "linear-probe", "--input", dir.file("train"), "--val", dir.file("val"),
                                         "--output", dir.file("out"), "--workers", "1"] + Self.arguments(settings, learningRates: [1, 1e40]))
        #expect(run.status == 1, "\(run.stdout)\n\(run.stderr)")
        #expect(run.stdout.contains("2 items, 1 written, 1 failed"), "\(run.stdout)")
        let manifest = try Self.manifest(dir.file("out"))
        let failures = try #require(manifest["failures"] as? [[String: Any]])
        #expect(failures.count == 1 && (failures[0]["reason"] as? String)?.contains("training diverged") == true, "\(failures)")
        let results = try Self.results(in: dir.file("out"))
        #expect(results.map(\.head.key) == ["classifier_1_blocks_avgpool_True_lr_0_01562"])
        let probe = try #require(manifest["linear_probe"] as? [String: Any])
        #expect(probe["best_classifier"] as? String == "classifier_1_blocks_avgpool_True_lr_0_01562")
    }

    /// Inputs a probe cannot use are refused before anything starts, naming the folder and the fix.
    @Test func featuresItCannotProbeAreRefused() throws {
        let dir = try TemporaryDirectory("linear-probe-refused")
        defer { dir.remove() }
        try Self.featuresFolder("train", at: dir.file("train"))
        try Self.featuresFolder("val", at: dir.file("val-cls"), pool: "cls")
        try Self.featuresFolder("val", at: dir.file("val-unlabeled"), labels: [Int64](repeating: -1, count: 6))
        try Self.featuresFolder("val", at: dir.file("val"))
        let cases: [([String], String)] = [
            (["--val", dir.file("val-cls")], "extract with --pool cls+mean"),
            (["--val", dir.file("val-unlabeled")], "has no label"),
            (["--val", dir.file("val"), "--blocks", "1,4"], "extract with --layers 4"),
            (["--val", dir.file("train/manifest.json")], "no manifest.json"),
            (["--val", dir.file("val"), "--transform", "resize"], "--transform is an option of the jobs that read images"),
            ([], "--val is required"),
        ]
        for (extra, words) in cases {
            let run = try VTPExecutable.run(["run", "linear-probe", "--input", dir.file("train"), "--output", dir.file("out")] + extra)
            #expect(run.status != 0 && run.stderr.contains(words), "\(extra): \(run.stderr)")
        }
        #expect(!FileManager.default.fileExists(atPath: dir.file("out/manifest.json")))
    }

    /// The whole road on images: `features` with upstream's eval transform gives the features
    /// the official extractor gives, and a probe runs on them.
    @Test(.timeLimit(.minutes(5)))
    func featuresOfTheEvalTransformMatchTheOfficialExtractor() throws {
        let golden = try Self.golden()
        let dir = try InputTree("linear-probe-images")
        defer {
            for out in ["ftrain", "fval", "probe"] { RunCommandTests.stopLeftoverServer(dir.dir.file(out)) }
            dir.dir.remove()
        }
        let pillow = String(golden.generator.pillow.prefix(while: { $0 != "." }))
        let reference = try Fixtures.safetensors("linear-probe-eval.safetensors")
        for (split, output) in [("train", "ftrain"), ("val", "fval")] {
            for (cls, names) in try #require(golden.trees[split]) {
                for name in names { try dir.copy(name, to: "\(split)/\(cls)/\(name)") }
            }
            let run = try VTPExecutable.run(["run", "features", "--model", TinyModel.directory, "--input", dir.dir.file(split),
                                             "--output", dir.dir.file(output), "--transform", "resize-center-crop", "--image-size", "224",
                                             "--layers", "2", "--pool", "cls+mean", "--pillow", pillow, "--workers", "1"])
            #expect(run.status == 0, "\(run.stdout)\n\(run.stderr)")
            let file = try SafeTensorsFile(path: dir.dir.file("\(output)/features_rank00_shard000.safetensors"))
            #expect(try file.int64s("labels") == reference.int64s("\(split)/labels"))
            for i in 0..<2 {
                let report = ToleranceReport(ours: try file.tensor("intermediate_\(i)_pooled").toArray(),
                                             reference: try reference.tensor("\(split)/intermediate_\(i)_pooled").toArray())
                #expect(report.withinFixtureTolerance, "\(split) block \(i): \(report)")
            }
        }
        let probe = try VTPExecutable.run(["run", "linear-probe", "--input", dir.dir.file("ftrain"), "--val", dir.dir.file("fval"),
                                           "--output", dir.dir.file("probe"), "--workers", "1"] + Self.arguments(golden.settings))
        #expect(probe.status == 0, "\(probe.stdout)\n\(probe.stderr)")
        let manifest = try Self.manifest(dir.dir.file("probe"))
        let section = try #require(manifest["linear_probe"] as? [String: Any])
        #expect(golden.heads.contains(section["best_classifier"] as? String ?? ""), "\(section)")
        let preprocessing = manifest["preprocessing"] as? [String: String]
        #expect(preprocessing?["features_transform"] == "resize-center-crop" && manifest["model"].map { "\($0)" }?.contains(TinyModel.directory) == true)
    }
}
