import Foundation
import Testing
import VTPVocabulary
import VTPJobs
import VTPModel
import VTPStorage
import VTPTensor
import VTPTestSupport
import VTPText

/// clip-score jobs end to end through `vtp run`'s orchestration (``JobRun``).
@Suite struct ClipScoreTests {
    /// Softmax over `cos` scaled by 100, in float64.
    func probabilities(_ cos: [Float]) -> [Double] {
        let scaled = cos.map { 100 * Double($0) }
        let m = scaled.max()!
        let e = scaled.map { Foundation.exp($0 - m) }
        let s = e.reduce(0, +)
        return e.map { $0 / s }
    }

    /// Each fixture image against the fixture texts as classes (one `{}` template, so each class
    /// embedding is the text's own embedding) and as its captions: logits, caption scores, top-5
    /// and accuracy all follow the reference's `clip_logits_per_image`.
    @Test(arguments: [0, 1, 2]) func zeroShotAndCaptionLogitsMatchTheReference(_ index: Int) async throws {
        let image = ClipReference.images[index]
        let input = try InputTree("clip-score-ref")
        let output = try TemporaryDirectory("clip-score-ref-out")
        defer { input.dir.remove(); output.remove() }
        try input.copy(image.name, to: image.name)
        try input.write(Array((ClipReference.texts.joined(separator: "\n") + "\n").utf8), to: "classes.txt")
        try input.write(Array("{}\n".utf8), to: "templates.txt")
        let rows: [[String: Any]] = ClipReference.texts.enumerated().map { ["path": image.name, "id": "c\($0)", "caption": $1, "label": $0] }
        let manifest = try writeManifest(rows, in: input)
        let parameters = ClipScoreParameters(preprocessing: ClipPreprocessing(transform: image.transform, normalize: image.normalize, pillow: .pillow12),
                                             classes: input.dir.file("classes.txt"), templates: input.dir.file("templates.txt"),
                                             saveLogits: true)
        let result = try await JobRun.run(input: manifest, output: output.path, model: TinyModel.directory,
                                          parameters: .clipScore(parameters), shardSize: 4)
        #expect(result.manifest.format == "clip-scores" && result.manifest.counts.written == 6 && result.manifest.counts.shards == 2)

        let reference = try ClipReference.row("clip_logits_per_image", image.row)
        let out = ClipOutput(directory: output.path)
        let logits0 = try out.npy("scores/logits_00000.npy"), logits1 = try out.npy("scores/logits_00001.npy")
        #expect(logits0.shape == [4, 6] && logits1.shape == [2, 6])
        let allLogits = logits0.values + logits1.values
        for r in 0..<6 {
            let report = ToleranceReport(ours: allLogits[(r * 6)..<((r + 1) * 6)], reference: reference)
            #expect(report.withinFixtureTolerance, "\(image.name) row \(r): \(report)")
        }
        let scores = try out.jsonl("scores/scores_00000.jsonl", as: ClipScoreRow.self) + out.jsonl("scores/scores_00001.jsonl", as: ClipScoreRow.self)
        #expect(scores.map(\.sourceId) == (0..<6).map { "c\($0)" })
        let captionLogits = scores.map { $0.captionLogit ?? .nan }
        let captionReport = ToleranceReport(ours: captionLogits, reference: reference)
        #expect(captionReport.withinFixtureTolerance, "\(captionReport)")

        // Expected top-5 from the reference's own features.
        let img = try ClipReference.row("clip_image_features", image.row)
        let txt = try ClipReference.rows("clip_text_features").values
        let cos = (0..<6).map { dot(img[...], txt[($0 * 64)..<(($0 + 1) * 64)]) }
        let expectedOrder = (0..<6).sorted { cos[$0] > cos[$1] }
        let expectedProbabilities = probabilities(cos)
        for row in scores {
            #expect(row.topClasses == Array(expectedOrder.prefix(5)))
            #expect(row.topNames == expectedOrder.prefix(5).map { ClipReference.texts[$0] })
            for (p, c) in zip(row.topProbabilities ?? [], expectedOrder) {
                #expect(abs(Double(p) - expectedProbabilities[c]) < 1e-3, "p(\(c)) \(p) vs \(expectedProbabilities[c])")
            }
            #expect(abs(Double(row.captionCosine ?? 9) - Double(cos[row.label!])) < 2e-3)
        }
        let zeroShot = try out.manifestObject()["zero_shot"] as? [String: Any]
        #expect(zeroShot?["labeled"] as? Int == 6 && zeroShot?["classified"] as? Int == 6)
        // Labels are 0..5, so exactly one row's label is the top class, and five are in the top 5.
        #expect(zeroShot?["top1_accuracy"] as? Double == 1.0 / 6)
        #expect(zeroShot?["top5_accuracy"] as? Double == 5.0 / 6)
        let captions = try out.manifestObject()["caption_scores"] as? [String: Any]
        #expect(captions?["count"] as? Int == 6)
    }

    /// Several templates: each class embedding is the renormalized mean of its normalized prompt
    /// embeddings, computed once and cached in the output directory.
    @Test func classEmbeddingsAverageTemplatesAndAreCached() async throws {
        let input = try InputTree("clip-score-templates")
        let output = try TemporaryDirectory("clip-score-templates-out")
        defer { input.dir.remove(); output.remove() }
        try input.copy("chelsea.jpg", to: "chelsea.jpg")
        try input.copy("dog.png", to: "dog.png")
        let classes = ["tabby cat", "dog", "rocket"], templates = ["a photo of a {}.", "a drawing of the {}.", "{}"]
        try input.write(Array(classes.joined(separator: "\n").utf8), to: "lists/classes.txt")
        try input.write(Array(("\n" + templates.joined(separator: "\r\n") + "\n\n").utf8), to: "lists/templates.txt")
        let parameters = ClipScoreParameters(classes: input.dir.file("lists/classes.txt"), templates: input.dir.file("lists/templates.txt"),
                                             topK: 2)
        let images = input.dir.file("images")
        try FileManager.default.createDirectory(atPath: images, withIntermediateDirectories: true)
        for name in ["chelsea.jpg", "dog.png"] { try FileManager.default.moveItem(atPath: input.dir.file(name), toPath: images + "/" + name) }
        let result = try await JobRun.run(input: images, output: output.path, model: TinyModel.directory,
                                          parameters: .clipScore(parameters), shardSize: 1)
        #expect(result.manifest.counts.written == 2)

        let model = try VTPModel(directory: TinyModel.directory)
        let tokenizer = try CLIPTokenizer.bundled()
        var expected: [Float] = []
        for name in classes {
            let prompts = templates.map { $0.replacingOccurrences(of: "{}", with: name) }
            let features = try model.clipTextFeatures(tokens: tokenizer.tokenize(prompts, contextLength: 77).flatMap { $0 }, count: 3).toArray()
            var mean = (0..<64).map { i in (0..<3).reduce(Float(0)) { $0 + features[$1 * 64 + i] } / 3 }
            let norm = mean.reduce(0) { $0 + $1 * $1 }.squareRoot()
            mean = mean.map { $0 / norm }
            expected += mean
        }
        let cached = try NpyFile.read(output.file("zero_shot/class_embeddings.npy"))
        #expect(cached.shape == [3, 64])
        let report = ToleranceReport(ours: cached.values, reference: expected)
        #expect(report.withinFixtureTolerance, "\(report)")
        let key = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: output.file("zero_shot/classifier.json")))) as? [String: Any]
        let vocabulary = key?["vocabulary"] as? [String: Any]
        #expect(vocabulary?["classes"] as? [String] == classes && vocabulary?["templates"] as? [String] == templates)

        let scores = try ClipOutput(directory: output.path).jsonl("scores/scores_00001.jsonl", as: ClipScoreRow.self)
        #expect(scores.count == 1 && scores[0].topClasses?.count == 2 && scores[0].captionCosine == nil)

        // A matching cache is read, not recomputed: swap two cached classes and the ranking follows the swap.
        var swapped = cached.values
        for i in 0..<64 { swapped.swapAt(i, 128 + i) }
        try swapped.withUnsafeBufferPointer {
            try NpyFile.write(shape: [3, 64], values: $0, as: .float32, to: output.file("zero_shot/class_embeddings.npy"))
        }
        _ = try await JobRun.run(input: images, output: output.path, model: TinyModel.directory,
                                 parameters: .clipScore(parameters), shardSize: 1)
        let rescored = try ClipOutput(directory: output.path).jsonl("scores/scores_00001.jsonl", as: ClipScoreRow.self)
        let swap = [2, 1, 0]
        #expect(rescored[0].topClasses == scores[0].topClasses?.map { swap[$0] })
        #expect(!FileManager.default.fileExists(atPath: output.file("scores/logits_00000.npy")))
        let zeroShot = try ClipOutput(directory: output.path).manifestObject()["zero_shot"] as? [String: Any]
        #expect(zeroShot?["labeled"] as? Int == 0 && zeroShot?["top1_accuracy"] == nil)
    }

    /// A cache written for other classes (or a model) is not reused.
    @Test func staleCacheIsRecomputed() async throws {
        let input = try InputTree("clip-score-stale")
        let output = try TemporaryDirectory("clip-score-stale-out")
        defer { input.dir.remove(); output.remove() }
        try input.copy("dog.png", to: "img/dog.png")
        try input.write(Array("dog\ncat\n".utf8), to: "a.txt")
        try input.write(Array("cat\ndog\n".utf8), to: "b.txt")
        for (file, first) in [("a.txt", "dog"), ("b.txt", "cat")] {
            let parameters = ClipScoreParameters(classes: input.dir.file(file), templates: nil, topK: 2)
            _ = try await JobRun.run(input: input.dir.file("img"), output: output.path, model: TinyModel.directory,
                                     parameters: .clipScore(parameters), shardSize: 4)
            let key = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: output.file("zero_shot/classifier.json")))) as? [String: Any]
            let vocabulary = key?["vocabulary"] as? [String: Any]
            #expect((vocabulary?["classes"] as? [String])?.first == first)
            #expect((vocabulary?["templates"] as? [String])?.count == 80)
        }
    }
}
