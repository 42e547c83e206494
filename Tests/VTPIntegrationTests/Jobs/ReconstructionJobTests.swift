import Foundation
import Testing
import VTPImage
import VTPJobs
import VTPSafeTensors
import VTPStorage
import VTPTensor
import VTPTestSupport
import VTPVocabulary

/// `reconstruction` jobs end to end through `vtp run`'s orchestration (``JobRun``), against the
/// official evaluation script's own numbers and images (`Tests/Fixtures/reconstruction-eval.json`,
/// written by scripts/reference/reconstruction_eval.py).
@Suite struct ReconstructionJobTests {
    struct Golden: Decodable {
        struct Image: Decodable {
            var path: String
            var psnr: Double
            var ssim: Double
            var reference_fnv1a64: String
            var reconstructed_fnv1a64: String
            var reconstructed_sum: Int
            var lpips: Double
        }
        struct Generator: Decodable { var pillow: String }
        var generator: Generator
        var tree: [String: [String]]
        var psnr: Double
        var ssim: Double
        var lpips: Double
        var rfid_by_script: Double
        var images: [Image]
    }

    static func golden() throws -> Golden {
        try JSONDecoder().decode(Golden.self, from: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("reconstruction-eval.json"))))
    }

    static func imageFolder(_ golden: Golden) throws -> InputTree {
        let tree = try InputTree("reconstruction-in")
        for (cls, names) in golden.tree {
            for name in names { try tree.copy(name, to: cls + "/" + name) }
        }
        return tree
    }

    static func relative(_ ours: Double, _ reference: Double) -> Double { abs(ours - reference) / abs(reference) }

    static func fnv1a64(_ bytes: [UInt8]) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
        return h
    }

    static func pixels(_ path: String) throws -> [UInt8] { try ImageDecoder().decode(contentsOf: path).pixels }

    /// PSNR and SSIM per image and in total within 1e-4 of upstream's script on the same folder
    /// and checkpoint; the saved originals are its PNGs' exact pixels, the reconstructions within
    /// a level on a few pixels (the decoder matches the reference to float tolerance, not bits).
    @Test func metricsAndImagesMatchTheOfficialEvaluation() async throws {
        let golden = try Self.golden()
        let input = try Self.imageFolder(golden)
        let output = try TemporaryDirectory("reconstruction-out")
        defer { input.dir.remove(); output.remove() }
        let pillow = try #require(PillowOption(name: String(golden.generator.pillow.prefix(while: { $0 != "." }))))
        let parameters = ReconstructionParameters(batchSize: 3, pillow: pillow, saveImages: true)
        let result = try await JobRun.run(input: input.path, output: output.path, model: TinyModel.directory,
                                          parameters: .reconstruction(parameters), shardSize: 4)
        #expect(result.manifest.format == "reconstruction-metrics")
        #expect(result.manifest.counts.written == golden.images.count && result.manifest.counts.failed == 0)
        #expect(result.manifest.counts.shards == 3)
        #expect(result.manifest.preprocessing["transform"] == "adm-center-crop" && result.manifest.preprocessing["image_size"] == "256")

        let out = ClipOutput(directory: output.path)
        var rows: [ReconstructionRow] = []
        for shard in 0..<3 { rows += try out.jsonl(try ReconstructionLayout.metrics(shard: shard), as: ReconstructionRow.self) }
        #expect(rows.map(\.ordinal) == Array(0..<golden.images.count))
        for (row, expected) in zip(rows, golden.images) {
            #expect(row.path.hasSuffix("/" + expected.path), "row \(row.ordinal) is \(row.path), upstream's \(expected.path)")
            let psnr = try #require(row.psnr)
            #expect(Self.relative(psnr, expected.psnr) < 1e-4, "\(expected.path) PSNR \(psnr) vs \(expected.psnr)")
            #expect(Self.relative(row.ssim, expected.ssim) < 1e-4, "\(expected.path) SSIM \(row.ssim) vs \(expected.ssim)")

            let reference = try Self.pixels(output.path + "/" + ReconstructionLayout.referenceImage(ordinal: row.ordinal))
            #expect(String(Self.fnv1a64(reference)) == expected.reference_fnv1a64, "\(expected.path): the saved original differs from upstream's")
            let reconstructed = try Self.pixels(output.path + "/" + ReconstructionLayout.reconstructedImage(ordinal: row.ordinal))
            #expect(reconstructed.count == reference.count)
            let sum = reconstructed.reduce(0) { $0 + Int($1) }
            // 256·256·3 values: a few truncations landing on the other side of a level move the sum by a few.
            #expect(abs(sum - expected.reconstructed_sum) <= 64, "\(expected.path): reconstruction sums \(sum), upstream's \(expected.reconstructed_sum)")
        }

        let section = try #require(try out.manifestObject()["reconstruction"] as? [String: Any])
        #expect(section["images"] as? Int == golden.images.count && section["identical_images"] as? Int == 0)
        let psnr = try #require(section["psnr"] as? Double), ssim = try #require(section["ssim"] as? Double)
        #expect(Self.relative(psnr, golden.psnr) < 1e-4, "PSNR \(psnr) vs upstream's \(golden.psnr)")
        #expect(Self.relative(ssim, golden.ssim) < 1e-4, "SSIM \(ssim) vs upstream's \(golden.ssim)")
        let referenceFiles = try FileManager.default.contentsOfDirectory(atPath: output.path + "/" + ReconstructionLayout.referenceDirectory)
        let reconstructedFiles = try FileManager.default.contentsOfDirectory(atPath: output.path + "/" + ReconstructionLayout.reconstructedDirectory)
        #expect(referenceFiles.count == golden.images.count && reconstructedFiles.count == golden.images.count)
        #expect(!FileManager.default.fileExists(atPath: output.path + "/.reconstruction-staging"))
    }

    /// With stand-in weights for both networks (the ones the golden script gave the reference):
    /// each pair's LPIPS equals upstream's LPIPS, the FID features of the saved originals equal
    /// pytorch-fid's activations of upstream's PNGs, those of the reconstructions agree to 1e-3 (a
    /// few of their pixels differ by a level), and the manifest's rFID is the one
    /// upstream's script computed from its two folders.
    @Test(.timeLimit(.minutes(5)))
    func lpipsAndFidMatchTheOfficialEvaluation() async throws {
        let golden = try Self.golden()
        let input = try Self.imageFolder(golden)
        let output = try TemporaryDirectory("reconstruction-nets-out")
        let weights = try TemporaryDirectory("reconstruction-weights")
        defer { input.dir.remove(); output.remove(); weights.remove() }
        try StandInWeights.write(network: "inception", to: weights.file("inception.safetensors"))
        try StandInWeights.write(network: "lpips", to: weights.file("lpips.safetensors"))
        let pillow = try #require(PillowOption(name: String(golden.generator.pillow.prefix(while: { $0 != "." }))))
        let parameters = ReconstructionParameters(batchSize: 4, pillow: pillow, inceptionWeights: weights.file("inception.safetensors"),
                                                  lpipsWeights: weights.file("lpips.safetensors"))
        let result = try await JobRun.run(input: input.path, output: output.path, model: TinyModel.directory,
                                          parameters: .reconstruction(parameters), shardSize: 6, workers: 2)
        #expect(result.manifest.counts.written == golden.images.count && result.manifest.counts.shards == 2)

        let out = ClipOutput(directory: output.path)
        let rows = try out.jsonl(try ReconstructionLayout.metrics(shard: 0), as: ReconstructionRow.self)
            + out.jsonl(try ReconstructionLayout.metrics(shard: 1), as: ReconstructionRow.self)
        for (row, expected) in zip(rows, golden.images) {
            let lpips = try #require(row.lpips)
            #expect(Self.relative(lpips, expected.lpips) < 1e-4, "\(expected.path) LPIPS \(lpips) vs \(expected.lpips)")
        }
        let reference = try SafeTensorsFile(path: Fixtures.path("reconstruction-eval-fid-features.safetensors"))
        for side in ReconstructionLayout.Side.allCases {
            let expected = try reference.tensor(side.rawValue).toArray()
            let ours = try out.npy(try ReconstructionLayout.fidFeatures(side, shard: 0)).values
                + out.npy(try ReconstructionLayout.fidFeatures(side, shard: 1)).values
            #expect(ours.count == expected.count)
            for i in 0..<golden.images.count {
                let report = ToleranceReport(ours: ours[(i * 2048)..<((i + 1) * 2048)], reference: expected[(i * 2048)..<((i + 1) * 2048)])
                // The originals are upstream's exact pixels; a few reconstruction pixels sit a level apart.
                let (mean, max) = side == .reference ? (1e-5, 1e-4) : (1e-3, 5e-3)
                #expect(report.meanRelative < mean && report.maxRelative < max, "\(side) features of \(golden.images[i].path): \(report)")
            }
        }
        let section = try #require(try out.manifestObject()["reconstruction"] as? [String: Any])
        let lpips = try #require(section["lpips"] as? Double), fid = try #require(section["fid"] as? Double, "\(section)")
        #expect(Self.relative(lpips, golden.lpips) < 1e-4, "LPIPS \(lpips) vs upstream's \(golden.lpips)")
        #expect(Self.relative(fid, golden.rfid_by_script) < 1e-4, "rFID \(fid) vs upstream's \(golden.rfid_by_script)")
    }

    /// An unreadable image is a failed row, not a failed shard; the others are scored and saved,
    /// and no image exists for the failed one.
    @Test func aBadImageFailsAloneAndLeavesNoImages() async throws {
        let input = try InputTree("reconstruction-bad")
        let output = try TemporaryDirectory("reconstruction-bad-out")
        defer { input.dir.remove(); output.remove() }
        try input.copy("chelsea_tiny.jpg", to: "a/0.jpg")
        try input.write(try InputTree.truncated("rocket.jpg", keep: 0.05), to: "a/1.jpg")
        try input.copy("coffee.jpg", to: "b/2.jpg")
        let result = try await JobRun.run(input: input.path, output: output.path, model: TinyModel.directory,
                                          parameters: .reconstruction(ReconstructionParameters(batchSize: 2, saveImages: true)), shardSize: 8)
        #expect(result.manifest.counts.written == 2 && result.manifest.counts.failed == 1)
        #expect(result.manifest.failures.first?.sourceId.hasSuffix("a/1.jpg") == true)
        let rows = try ClipOutput(directory: output.path).jsonl(try ReconstructionLayout.metrics(shard: 0), as: ReconstructionRow.self)
        #expect(rows.map(\.ordinal) == [0, 2])
        let saved = try FileManager.default.contentsOfDirectory(atPath: output.path + "/" + ReconstructionLayout.referenceDirectory).sorted()
        #expect(saved == ["ref_000000.png", "ref_000002.png"])
        let section = try #require(try ClipOutput(directory: output.path).manifestObject()["reconstruction"] as? [String: Any])
        let mean = (rows[0].psnr! + rows[1].psnr!) / 2
        #expect(section["images"] as? Int == 2 && abs((section["psnr"] as? Double ?? 0) - mean) < 1e-12)
    }
}
