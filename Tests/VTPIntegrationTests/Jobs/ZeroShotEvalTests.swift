import Foundation
import Testing
import VTPJobs
import VTPTestSupport
import VTPVocabulary

/// `vtp run zero-shot` (the built binary) against the official zero-shot evaluation script run on
/// the same ImageFolder and checkpoint (`Tests/Fixtures/zero-shot-eval.json`, written by
/// scripts/reference/zero_shot_eval.py): the 1,000 ImageNet classes, the 80 OpenAI templates,
/// Resize((S, S)), logits 100 · cos.
@Suite struct ZeroShotEvalTests {
    struct Golden: Decodable {
        struct Image: Decodable {
            var path: String
            var label: Int
            var top_classes: [Int]
            var top_logits: [Double]
        }
        struct Generator: Decodable { var pillow: String }
        var generator: Generator
        var tree: [String: [String]]
        var top1: Double
        var top5: Double
        var images: [Image]
    }

    @Test(.timeLimit(.minutes(5)))
    func topFiveAndAccuracyEqualTheOfficialScript() throws {
        let golden = try JSONDecoder().decode(Golden.self, from: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("zero-shot-eval.json"))))
        let input = try InputTree("zero-shot-eval")
        defer {
            RunCommandTests.stopLeftoverServer(input.dir.file("out"))
            input.dir.remove()
        }
        for (cls, names) in golden.tree {
            for name in names { try input.copy(name, to: "val/" + cls + "/" + name) }
        }
        let pillow = String(golden.generator.pillow.prefix(while: { $0 != "." }))
        let run = try VTPExecutable.run(["run", "zero-shot", "--model", Fixtures.path("vtp-tiny"), "--input", input.dir.file("val"),
                                         "--output", input.dir.file("out"), "--workers", "1", "--pillow", pillow, "--shard-size", "3"],
                                        environment: ["VTP_CACHE_DIR": input.dir.file("cache")])
        #expect(run.status == 0, "\(run.stdout)\n\(run.stderr)")
        #expect(run.stderr.contains("encoding 80000 class prompts"), "\(run.stderr)")

        let out = ClipOutput(directory: input.dir.file("out"))
        var rows: [ClipScoreRow] = []
        for shard in 0..<3 { rows += try out.jsonl(try ClipLayout.scores(shard: shard), as: ClipScoreRow.self) }
        #expect(rows.count == golden.images.count)
        for (row, expected) in zip(rows, golden.images) {
            #expect(row.path.hasSuffix(expected.path) && row.label == expected.label, "\(row.path) label \(String(describing: row.label))")
            #expect(row.topClasses == expected.top_classes, "\(expected.path): top-5 \(row.topClasses ?? []) vs upstream's \(expected.top_classes)")
            // softmax(100 · cos): neighbouring probabilities differ by the upstream logits' gaps.
            let probabilities = row.topProbabilities ?? []
            for k in 0..<min(4, probabilities.count - 1) {
                let gap = log(Double(probabilities[k]) / Double(probabilities[k + 1]))
                #expect(abs(gap - (expected.top_logits[k] - expected.top_logits[k + 1])) < 2e-3,
                        "\(expected.path): logit gap \(k) is \(gap), upstream's \(expected.top_logits[k] - expected.top_logits[k + 1])")
            }
        }
        let zeroShot = try #require(try out.manifestObject()["zero_shot"] as? [String: Any])
        #expect(zeroShot["classes"] as? String == "imagenet" && zeroShot["templates"] as? String == "openai")
        #expect(zeroShot["labeled"] as? Int == golden.images.count)
        #expect(zeroShot["top1_percent"] as? Double == golden.top1 && zeroShot["top5_percent"] as? Double == golden.top5)
        let manifest = try out.manifestObject()
        let preprocessing = manifest["preprocessing"] as? [String: String]
        #expect(preprocessing?["transform"] == "resize" && preprocessing?["image_size"] == "256")
    }

    /// The preset keeps what upstream's definition needs.
    @Test func zeroShotRefusesOptionsThatChangeTheDefinition() throws {
        let out = try TemporaryDirectory("zero-shot-refused")
        defer { out.remove() }
        for (extra, words) in [(["--transform", "adm-center-crop"], "upstream resizes to (S, S)"),
                               (["--top-k", "3"], "--top-k must be at least 5")] {
            let run = try VTPExecutable.run(["run", "zero-shot", "--model", Fixtures.path("vtp-tiny"), "--input", out.path,
                                             "--output", out.file("o")] + extra)
            #expect(run.status != 0 && run.stderr.contains(words), "\(run.stderr)")
        }
    }
}
