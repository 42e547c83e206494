import Foundation
import Testing
import VTPVocabulary
import VTPJobs
import VTPSafeTensors
import VTPStorage
import VTPTensor
import VTPTestSupport

@Suite struct FeaturesJobTests {
    /// Row `row` of a fixture tensor.
    func reference(_ name: String, row: Int) throws -> [Float] {
        let t = try Fixtures.safetensors("vtp-tiny.expected.safetensors").tensor(name)
        let per = t.count / t.shape[0]
        return Array(t.toArray()[(row * per)..<((row + 1) * per)])
    }

    /// The mean over tokens of (T, D) values.
    func tokenMean(_ tokens: [Float], dim: Int) -> [Float] {
        let t = tokens.count / dim
        return (0..<dim).map { i in Float((0..<t).reduce(0.0) { $0 + Double(tokens[$1 * dim + i]) } / Double(t)) }
    }

    /// Runs a features job on chelsea.jpg (fixture image 1: ADM crop + ImageNet) and returns the shard file.
    func run(_ parameters: FeaturesParameters, _ output: TemporaryDirectory) async throws -> SafeTensorsFile {
        let input = try InputTree("jobs-feat")
        defer { input.dir.remove() }
        try input.copy("chelsea.jpg", to: "chelsea.jpg")
        // The reference tensors come from Pillow <= 12 preprocessing.
        var parameters = parameters
        parameters.pillow = .pillow12
        let result = try await JobRun.run(input: input.path, output: output.path, model: TinyModel.directory,
                                          parameters: .features(parameters), shardSize: 4)
        #expect(result.manifest.format == "features" && result.manifest.counts.written == 1)
        let rows = try SourceIdSidecar.read(output.file("ids_rank00_shard000.jsonl"))
        #expect(rows.map(\.sourceId) == ["chelsea.jpg"] && rows.map(\.label) == [-1])
        return try SafeTensorsFile(path: output.file("features_rank00_shard000.safetensors"))
    }

    @Test func lastLayerClsAndPatchTokensMatchTheReference() async throws {
        let output = try TemporaryDirectory("jobs-feat-last")
        defer { output.remove() }
        let file = try await run(FeaturesParameters(transform: .admCenterCrop, pool: .cls, keepPatchTokens: true), output)
        #expect(Set(file.names) == ["pooled", "patch_tokens", "labels"])
        #expect(try file.info("pooled").shape == [1, 96] && file.info("patch_tokens").shape == [1, 256, 96])
        #expect(file.metadata["pool"] == "cls" && file.metadata["layers"] == "last")
        let cls = ToleranceReport(ours: try file.tensor("pooled").toArray(), reference: try reference("last_cls_token", row: 1))
        let patches = ToleranceReport(ours: try file.tensor("patch_tokens").toArray(), reference: try reference("last_patch_tokens", row: 1))
        #expect(cls.withinFixtureTolerance, "\(cls)")
        #expect(patches.withinFixtureTolerance, "\(patches)")
    }

    @Test func intermediateLayersPoolClsPlusMean() async throws {
        let output = try TemporaryDirectory("jobs-feat-inter")
        defer { output.remove() }
        let file = try await run(FeaturesParameters(transform: .admCenterCrop, layers: .intermediate(2), pool: .clsMean,
                                                    keepPatchTokens: true), output)
        #expect(Set(file.names) == ["intermediate_0_pooled", "intermediate_0_patch_tokens", "intermediate_1_pooled",
                                    "intermediate_1_patch_tokens", "labels"])
        for i in 0..<2 {
            let patchesRef = try reference("intermediate_\(i)_patch_tokens", row: 1)
            let pooledRef = try reference("intermediate_\(i)_cls_token", row: 1) + tokenMean(patchesRef, dim: 96)
            #expect(try file.info("intermediate_\(i)_pooled").shape == [1, 192])
            let pooled = ToleranceReport(ours: try file.tensor("intermediate_\(i)_pooled").toArray(), reference: pooledRef)
            let patches = ToleranceReport(ours: try file.tensor("intermediate_\(i)_patch_tokens").toArray(), reference: patchesRef)
            #expect(pooled.withinFixtureTolerance, "layer \(i) pooled: \(pooled)")
            #expect(patches.withinFixtureTolerance, "layer \(i) patches: \(patches)")
        }
    }

    @Test func prenormLastLayerMeanPoolInHalfPrecision() async throws {
        let output = try TemporaryDirectory("jobs-feat-prenorm")
        defer { output.remove() }
        let file = try await run(FeaturesParameters(transform: .admCenterCrop, norm: false, pool: .mean, dtype: .float16), output)
        #expect(Set(file.names) == ["pooled", "labels"])
        #expect(try file.info("pooled").dtype == .f16)
        // With two blocks, the last block's prenorm tokens are the fixture's intermediate_1 prenorm tokens.
        let expected = tokenMean(try reference("intermediate_1_patch_tokens_prenorm", row: 1), dim: 96)
        let report = ToleranceReport(ours: try file.tensor("pooled").toArray(), reference: expected)
        // float16 storage rounds to 2^-11 relative, well inside the max tolerance but not the mean one.
        #expect(report.maxRelative < 5e-3 && report.meanRelative < 1e-3, "\(report)")
    }

    @Test func resizeTransformMatchesQuickStartImage() async throws {
        // Fixture image 0 is dog.png through Resize((256,256)) + ImageNet: the features job's defaults.
        let input = try InputTree("jobs-feat-dog")
        defer { input.dir.remove() }
        let output = try TemporaryDirectory("jobs-feat-dog-out")
        defer { output.remove() }
        try input.copy("dog.png", to: "dog.png")
        _ = try await JobRun.run(input: input.path, output: output.path, model: TinyModel.directory,
                                 parameters: .features(FeaturesParameters()), shardSize: 1)
        let file = try SafeTensorsFile(path: output.file("features_rank00_shard000.safetensors"))
        let report = ToleranceReport(ours: try file.tensor("pooled").toArray(), reference: try reference("last_cls_token", row: 0))
        #expect(report.withinFixtureTolerance, "\(report)")
    }
}
