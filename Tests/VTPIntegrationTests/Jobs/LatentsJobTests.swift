import Foundation
import Testing
import VTPVocabulary
import VTPDatasets
import VTPImage
import VTPJobs
import VTPLocalRun
import VTPQueue
import VTPModel
import VTPSafeTensors
import VTPStorage
import VTPTensor
import VTPTestSupport

/// Latents jobs end to end through `vtp run`'s orchestration (``JobRun``).
@Suite struct LatentsJobTests {
    /// Fixture image 1 is chelsea.jpg through center_crop_arr(256) + ImageNet mean/std, image 2 is
    /// rocket.jpg through center_crop_arr(256) + mean/std 0.5.
    @Test(arguments: [("chelsea.jpg", NormalizeOption.imagenet, 1), ("rocket.jpg", NormalizeOption.half, 2)])
    func latentsReproduceTheReferenceModel(image: String, normalize: NormalizeOption, referenceRow: Int) async throws {
        let input = try InputTree("jobs-ref")
        defer { input.dir.remove() }
        let output = try TemporaryDirectory("jobs-ref-out")
        defer { output.remove() }
        try input.copy(image, to: image)
        try input.copy("coffee.jpg", to: "other.jpg")

        let result = try await JobRun.run(input: input.path, output: output.path, model: TinyModel.directory,
                                          parameters: .latents(LatentsParameters(normalize: normalize, batchSize: 2, pillow: .pillow12)),
                                          shardSize: 8)
        #expect(result.manifest.counts == RunManifest.Counts(inputs: 2, written: 2, failed: 0, shards: 1))
        let rows = try LatentRows(directory: output.path)
        let ours = try #require(rows.latents[image])

        let expected = try Fixtures.safetensors("vtp-tiny.expected.safetensors").tensor("reconstruction_latents")
        let reference = expected.toArray()[(referenceRow * TinyModel.latentElements)..<((referenceRow + 1) * TinyModel.latentElements)]
        let report = ToleranceReport(ours: ours, reference: reference)
        #expect(report.withinFixtureTolerance, "\(image): \(report)")

        // The flip row is the encoding of the mirrored preprocessed image.
        let decoded = try ImageDecoder().decode(contentsOf: input.dir.file(image))
        let mirrored = try decoded.admCenterCrop(size: 256, compatibility: .pillow12).horizontallyFlipped()
        let pixels = Tensor(uninitialized: [1, 3, 256, 256])
        try mirrored.writeCHW(into: UnsafeMutableBufferPointer(start: pixels.mutablePointer, count: pixels.count),
                              normalization: normalize == .imagenet ? .imagenet : .half)
        let flipReference = try VTPModel(directory: TinyModel.directory).reconstructionLatents(pixels).toArray()
        let flipReport = ToleranceReport(ours: try #require(rows.flips[image]), reference: flipReference)
        #expect(flipReport.withinFixtureTolerance, "\(image) flipped: \(flipReport)")
        // Mirroring changes the latents, so the flip tensor is not a copy of the plain one.
        #expect(ToleranceReport(ours: ours, reference: flipReference).meanRelative > 1e-2)
    }

    /// An ImageFolder tree with corrupt files, in shards that do not divide N; everything is read
    /// back with the project's readers.
    @Test func imageFolderRunWritesLightningDiTLayoutStatsAndManifest() async throws {
        let input = try InputTree("jobs-folder")
        defer { input.dir.remove() }
        let output = try TemporaryDirectory("jobs-folder-out")
        defer { output.remove() }
        try input.copy("chelsea.jpg", to: "cat/chelsea.jpg")
        try input.copy("chelsea_gray.jpg", to: "cat/chelsea_gray.jpg")
        try input.write(try InputTree.truncated("coffee.jpg", keep: 0.3), to: "cat/truncated.jpg")
        try input.copy("rocket.jpg", to: "rocket/a.jpg")
        try input.copy("astronaut_rgba.png", to: "rocket/b.png")
        try input.write(Array("this is not an image at all".utf8), to: "rocket/garbage.jpg")
        try input.write([], to: "rocket/empty.png")
        try input.copy("coffee_palette.png", to: "rocket/c.png")

        let parameters = LatentsParameters(dtype: .float32, batchSize: 2)
        // Two in-process workers share the three shards.
        let result = try await JobRun.run(input: input.path, output: output.path, model: TinyModel.directory,
                                          parameters: .latents(parameters), shardSize: 3, workers: 2)
        let ids = ["cat/chelsea.jpg", "cat/chelsea_gray.jpg", "cat/truncated.jpg",
                   "rocket/a.jpg", "rocket/b.png", "rocket/c.png", "rocket/empty.png", "rocket/garbage.jpg"]
        let failedIds: Set = ["cat/truncated.jpg", "rocket/empty.png", "rocket/garbage.jpg"]
        #expect(result.listed.map(\.sourceId) == ids)
        #expect(result.report.record.shardCount == 3 && result.report.record.shardsDone == 3)
        #expect(result.listed.map(\.shardIndex) == [0, 0, 0, 1, 1, 1, 2, 2])

        // Outcomes as the ledger recorded them: every item exactly once, failures with the decoder's reason.
        let outcomes = result.listed
        #expect(outcomes.map(\.ordinal) == Array(0..<8))
        #expect(Set(outcomes.filter { $0.state == "failed" }.map(\.sourceId)) == failedIds)
        let reasons = Dictionary(uniqueKeysWithValues: outcomes.compactMap { o in o.error.map { (o.sourceId, $0) } })
        #expect(reasons["cat/truncated.jpg"]?.contains("truncated") == true, "\(reasons)")
        #expect(reasons["rocket/empty.png"]?.contains("empty file") == true, "\(reasons)")
        #expect(reasons["rocket/garbage.jpg"]?.contains("unknown image format") == true, "\(reasons)")
        for o in outcomes where o.state == "done" {
            #expect(o.outputLocation?.hasPrefix("latents_rank00_shard") == true && o.error == nil)
        }
        #expect(Set(result.report.failures.map(\.sourceID)) == failedIds, "the run reports the failed items")
        #expect(result.report.record.state == .completedWithFailures && result.report.record.itemsDone == 5 && result.report.record.itemsFailed == 3)

        // Progress is monotonic and ends at the total.
        let seen = result.progress.map { $0.job.itemsDone + $0.job.itemsFailed }
        #expect(seen.last == 8 && result.progress.last?.job.itemCount == 8)
        #expect(zip(seen, seen.dropFirst()).allSatisfy { $0 <= $1 })

        // Files: three tensor shards, their sidecars and summaries, the stats and the manifest; no temporaries.
        let names = try FileManager.default.contentsOfDirectory(atPath: output.path).sorted()
        // Shard 2 (empty.png, garbage.jpg) has no successful item, so it has a summary but no tensor file.
        // `.vtp` holds the job's shard manifests.
        #expect(names == [".vtp", "ids_rank00_shard000.jsonl", "ids_rank00_shard001.jsonl",
                          "latents_rank00_shard000.safetensors", "latents_rank00_shard001.safetensors",
                          "latents_stats.pt", "manifest.json",
                          "summary_rank00_shard000.json", "summary_rank00_shard001.json", "summary_rank00_shard002.json"])

        // Shapes, metadata, labels and ids.
        let rowsPerShard = [2, 3]  // [chelsea, gray, (truncated) | a, b, c | (empty, garbage)]
        for (shard, n) in rowsPerShard.enumerated() {
            let file = try SafeTensorsFile(path: output.file(String(format: "latents_rank00_shard%03d.safetensors", shard)))
            #expect(try file.info("latents").shape == [n, 16, 16, 16])
            #expect(try file.info("latents_flip").shape == [n, 16, 16, 16])
            #expect(try file.info("labels").shape == [n])
            #expect(file.metadata["total_size"] == String(n) && file.metadata["dtype"] == "torch.float32")
        }
        let rows = try LatentRows(directory: output.path)
        #expect(rows.order == ids.filter { !failedIds.contains($0) }, "each successful item once, in order")
        #expect(rows.labels == ["cat/chelsea.jpg": 0, "cat/chelsea_gray.jpg": 0, "rocket/a.jpg": 1, "rocket/b.png": 1, "rocket/c.png": 1])

        // Stats: a valid torch archive holding the exact mean / unbiased std over `latents` only.
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: output.file("latents_stats.pt"))))
        let entries = try readZip(bytes)
        let byName = Dictionary(uniqueKeysWithValues: entries.map { ($0.name, $0.data) })
        #expect(entries.allSatisfy { $0.dataOffset % 64 == 0 })
        #expect(byName["latents_stats/version"] == Array("3\n".utf8))
        let (value, _) = try PickleVM.run(try #require(byName["latents_stats/data.pkl"]))
        let tensorShape = { (key: String) in
            PickledTensor(storageType: "torch.FloatStorage", storageKey: key, location: "cpu", numel: 16,
                          storageOffset: 0, shape: [1, 16, 1, 1], stride: [16, 1, 1, 1], requiresGrad: false)
        }
        #expect(value == .dict(["mean": .tensor(tensorShape("0")), "std": .tensor(tensorShape("1"))]))
        func floats(_ b: [UInt8]) -> [Float] { stride(from: 0, to: b.count, by: 4).map { Float(bitPattern: UInt32(b.u32($0))) } }
        let storedMean = floats(try #require(byName["latents_stats/data/0"]))
        let storedStd = floats(try #require(byName["latents_stats/data/1"]))
        let (mean, std) = channelStats(rows.allLatents, channels: 16, spatial: 256)
        #expect(storedMean.count == 16 && storedStd.count == 16)
        for c in 0..<16 {
            #expect(abs(Double(storedMean[c]) - mean[c]) <= 1e-6 * max(1, abs(mean[c])), "mean[\(c)]")
            #expect(abs(Double(storedStd[c]) - std[c]) <= 1e-6 * max(1, std[c]), "std[\(c)]")
        }

        // Manifest.
        let manifest = try RunManifest.read(output.file("manifest.json"))
        #expect(manifest == result.manifest)
        #expect(manifest.format == "lightningdit-latents")
        #expect(manifest.counts == RunManifest.Counts(inputs: 8, written: 5, failed: 3, shards: 3))
        #expect(Set(manifest.failures.map(\.sourceId)) == failedIds)
        #expect(manifest.shards.map(\.rows) == rowsPerShard)
        #expect(manifest.preprocessing["transform"] == "adm-center-crop" && manifest.preprocessing["normalize"] == "imagenet")

        // Running the same job again (a new ledger, so every shard is executed again) replaces its
        // files: same names, same bytes, no duplicates.
        let before = try snapshot(output.path)
        _ = try await JobRun.run(input: input.path, output: output.path, model: TinyModel.directory,
                                 parameters: .latents(parameters), shardSize: 3)
        #expect(try snapshot(output.path) == before)

        // Finalizing again alone is idempotent too (with the job's parameters as the ledger holds
        // them: the listing added the tree's class names, which the manifest records).
        #expect(manifest.classes == ["cat", "rocket"])
        try JobFinalizer.finalize(jobType: .latents, parametersJSON: result.report.record.parametersJSON,
                                  outputDirectory: output.path, modelDirectory: TinyModel.directory, shardCount: 3)
        #expect(try snapshot(output.path) == before)
    }

    /// Every item appears exactly once whatever the shard size, and the latents do not depend on
    /// how items were sharded or batched.
    @Test(arguments: [1, 2, 4, 5, 9])
    func shardSizesThatDoNotDivideNKeepEveryItemOnce(shardSize: Int) async throws {
        let input = try InputTree("jobs-shards")
        defer { input.dir.remove() }
        let output = try TemporaryDirectory("jobs-shards-out")
        defer { output.remove() }
        let images = ["chelsea.jpg", "rocket.jpg", "coffee.jpg", "chelsea_tiny.jpg", "camera_gray.png", "dog.png", "coffee_cmyk.jpg"]
        for (i, name) in images.enumerated() { try input.copy(name, to: String(format: "img%02d_%@", i, name)) }
        let result = try await JobRun.run(input: input.path, output: output.path, model: TinyModel.directory,
                                          parameters: .latents(LatentsParameters(batchSize: 3)), shardSize: shardSize)
        let n = images.count
        #expect(result.report.record.shardCount == (n + shardSize - 1) / shardSize)
        #expect(result.listed.map(\.ordinal) == Array(0..<n))
        #expect(result.listed.map(\.shardIndex) == (0..<n).map { $0 / shardSize })
        #expect(result.listed.allSatisfy { $0.state == "done" })
        let rows = try LatentRows(directory: output.path)
        #expect(rows.order == result.listed.map(\.sourceId))
        #expect(rows.allLatents.count == n * TinyModel.latentElements)
        #expect(rows.labels.values.allSatisfy { $0 == -1 }, "a plain folder has no labels")

        // Compare against one unsharded single-batch reference run.
        let single = try TemporaryDirectory("jobs-shards-ref")
        defer { single.remove() }
        _ = try await JobRun.run(input: input.path, output: single.path, model: TinyModel.directory,
                                 parameters: .latents(LatentsParameters(batchSize: n)), shardSize: n)
        let reference = try LatentRows(directory: single.path)
        let report = ToleranceReport(ours: rows.allLatents, reference: reference.allLatents)
        // Batch composition changes BLAS blocking (and the bfloat16 rotary rounding downstream), so
        // rows agree to the fixture tolerance rather than bit for bit.
        #expect(report.withinFixtureTolerance, "\(report)")
    }

    @Test func webDatasetTarMembersAreReadByOffset() async throws {
        let src = try InputTree("jobs-wds")
        defer { src.dir.remove() }
        try src.copy("chelsea.jpg", to: "s/000.jpg")
        try src.write(Array("7".utf8), to: "s/000.cls")
        try src.copy("rocket.jpg", to: "s/001.jpg")
        try src.write(Array("3".utf8), to: "s/001.cls")
        try src.write(Array("no image here".utf8), to: "s/002.txt")
        try FileManager.default.createDirectory(atPath: src.dir.file("shards"), withIntermediateDirectories: true)
        try runTar(["--format=ustar", "-cf", src.dir.file("shards/00000.tar"), "000.jpg", "000.cls", "001.jpg", "001.cls", "002.txt"],
                   in: src.dir.file("s"))
        let output = try TemporaryDirectory("jobs-wds-out")
        defer { output.remove() }
        // Batches of one, so both runs below do exactly the same arithmetic.
        let result = try await JobRun.run(input: src.dir.file("shards"), output: output.path, model: TinyModel.directory,
                                          parameters: .latents(LatentsParameters(batchSize: 1)), shardSize: 10)
        #expect(result.listed.count == 2 && result.listed.allSatisfy { $0.location.hasPrefix("tar:") }, "\(result.items)")
        let rows = try LatentRows(directory: output.path)
        #expect(rows.labels == ["00000.tar/000": 7, "00000.tar/001": 3])
        #expect(result.manifest.counts == RunManifest.Counts(inputs: 3, written: 2, failed: 1, shards: 1))
        #expect(result.manifest.failures.map(\.sourceId) == ["00000.tar/002"])

        // The same image through a plain file gives the same latents.
        let folderOut = try TemporaryDirectory("jobs-wds-folder")
        defer { folderOut.remove() }
        let plain = try InputTree("jobs-wds-plain")
        defer { plain.dir.remove() }
        try plain.copy("chelsea.jpg", to: "chelsea.jpg")
        _ = try await JobRun.run(input: plain.path, output: folderOut.path, model: TinyModel.directory,
                                 parameters: .latents(LatentsParameters(batchSize: 1)), shardSize: 10)
        let viaFile = try LatentRows(directory: folderOut.path)
        let fromTar = try #require(rows.latents["00000.tar/000"])
        #expect(viaFile.latents["chelsea.jpg"] == fromTar, "tar member and file give bit-identical latents")
    }

    @Test func halfPrecisionShardsAndStatsDescribeTheStoredValues() async throws {
        let input = try InputTree("jobs-bf16")
        defer { input.dir.remove() }
        let output = try TemporaryDirectory("jobs-bf16-out")
        defer { output.remove() }
        try input.copy("chelsea.jpg", to: "a.jpg")
        try input.copy("rocket.jpg", to: "b.jpg")
        let result = try await JobRun.run(input: input.path, output: output.path, model: TinyModel.directory,
                                          parameters: .latents(LatentsParameters(dtype: .bfloat16, flip: false)), shardSize: 1)
        let file = try SafeTensorsFile(path: output.file("latents_rank00_shard000.safetensors"))
        #expect(try file.info("latents").dtype == .bf16)
        #expect(file.metadata["dtype"] == "torch.bfloat16")
        let rows = try LatentRows(directory: output.path)
        #expect(rows.flips["a.jpg"] == rows.latents["a.jpg"], "flip=false stores the unflipped latents in latents_flip")
        #expect(result.manifest.preprocessing["flip"]?.hasPrefix("false") == true)
        let entries = try readZip([UInt8](try Data(contentsOf: URL(fileURLWithPath: output.file("latents_stats.pt")))))
        let meanBytes = try #require(entries.first { $0.name == "latents_stats/data/0" }).data
        let storedMean = stride(from: 0, to: meanBytes.count, by: 4).map { Float(bitPattern: UInt32(meanBytes.u32($0))) }
        let (mean, _) = channelStats(rows.allLatents, channels: 16, spatial: 256)
        for c in 0..<16 { #expect(abs(Double(storedMean[c]) - mean[c]) <= 1e-6 * max(1, abs(mean[c]))) }
    }
}

/// Per-channel mean and unbiased std over (N, C, spatial) in float64, computed independently of
/// the accumulator (two plain passes).
func channelStats(_ values: [Float], channels: Int, spatial: Int) -> (mean: [Double], std: [Double]) {
    let rows = values.count / (channels * spatial)
    var mean = [Double](repeating: 0, count: channels), std = mean
    for c in 0..<channels {
        var s = 0.0
        for r in 0..<rows { for i in 0..<spatial { s += Double(values[(r * channels + c) * spatial + i]) } }
        let m = s / Double(rows * spatial)
        var q = 0.0
        for r in 0..<rows { for i in 0..<spatial { let d = Double(values[(r * channels + c) * spatial + i]) - m; q += d * d } }
        mean[c] = m
        std[c] = (q / Double(rows * spatial - 1)).squareRoot()
    }
    return (mean, std)
}

/// Every output file's name and bytes; `.vtp` holds the ledger's shard manifests, which every
/// enqueue writes afresh, not outputs.
func snapshot(_ directory: String) throws -> [String: Data] {
    var out: [String: Data] = [:]
    for name in try FileManager.default.contentsOfDirectory(atPath: directory) where name != ".vtp" {
        out[name] = try Data(contentsOf: URL(fileURLWithPath: directory + "/" + name))
    }
    return out
}
