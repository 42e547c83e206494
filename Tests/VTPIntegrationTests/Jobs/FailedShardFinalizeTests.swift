import Foundation
import Testing
import VTPVocabulary
import VTPJobs
import VTPModel
import VTPTensor
import VTPStorage
import VTPTestSupport

/// A shard that exhausted its attempts leaves no output; the job still finalizes, counting its items as failed.
@Suite struct FailedShardFinalizeTests {
    @Test func finalizeSkipsWholeFailedShardsAndReportsTheirItems() async throws {
        let input = try InputTree("failed-shard")
        let output = try TemporaryDirectory("failed-shard-out")
        defer { input.dir.remove(); output.remove() }
        for (i, name) in ["chelsea.jpg", "coffee.jpg", "dog.png", "rocket.jpg"].enumerated() {
            try input.copy(name, to: "img\(i)_\(name)")
        }
        let parameters = JobParameters.latents(LatentsParameters(imageSize: 64))
        let first = try await JobRun.run(input: input.path, output: output.path, model: TinyModel.directory,
                                         parameters: parameters, shardSize: 2)
        #expect(first.manifest.counts.written == 4)
        // Make shard 1 look like it never ran: no summary, no tensors, no sidecar.
        for file in try FileManager.default.contentsOfDirectory(atPath: output.path) where file.contains("shard001") {
            try FileManager.default.removeItem(atPath: output.file(file))
        }
        let lost = [RunManifest.Failure(sourceId: "img2_dog.png", reason: "worker crashed 3 times"),
                    RunManifest.Failure(sourceId: "img3_rocket.jpg", reason: "worker crashed 3 times")]
        let manifest = try JobFinalizer.finalize(jobType: .latents, parametersJSON: parameters.json(), outputDirectory: output.path,
                                                 modelDirectory: TinyModel.directory, shardCount: 2, failedShards: [1: lost])
        #expect(manifest.counts.inputs == 4)
        #expect(manifest.counts.written == 2)
        #expect(manifest.counts.failed == 2)
        #expect(manifest.failures == lost)
        #expect(FileManager.default.fileExists(atPath: output.file(JobFinalizer.statsFileName)))
        // Without being told, a missing summary is still an error rather than silently dropped rows.
        #expect(throws: JobError.self) {
            try JobFinalizer.finalize(jobType: .latents, parametersJSON: parameters.json(), outputDirectory: output.path,
                                      modelDirectory: TinyModel.directory, shardCount: 2)
        }
    }

    /// A reconstruction shard that ends failed after an attempt published its metrics and images
    /// (its result was rejected) loses them all, so the two image folders hold only written rows;
    /// images a killed execution left in the staging folder go too.
    @Test func aFailedReconstructionShardLeavesNoImages() async throws {
        let input = try InputTree("failed-recon")
        let output = try TemporaryDirectory("failed-recon-out")
        defer { input.dir.remove(); output.remove() }
        for (i, name) in ["chelsea_tiny.jpg", "coffee.jpg", "dog.png"].enumerated() { try input.copy(name, to: "img\(i)_\(name)") }
        let parameters = JobParameters.reconstruction(ReconstructionParameters(imageSize: 64, batchSize: 2, saveImages: true))
        let first = try await JobRun.run(input: input.path, output: output.path, model: TinyModel.directory, parameters: parameters, shardSize: 2)
        #expect(first.manifest.counts.written == 3)
        #expect(try FileManager.default.contentsOfDirectory(atPath: output.file("reconstructed")).count == 3)
        try FileManager.default.removeItem(atPath: output.file(ShardSummary.fileName(shard: 1)))
        try FileManager.default.createDirectory(atPath: output.file(".reconstruction-staging/dead/reference"), withIntermediateDirectories: true)
        try Data([1]).write(to: URL(fileURLWithPath: output.file(".reconstruction-staging/dead/reference/ref_000009.png")))
        let lost = [RunManifest.Failure(sourceId: "img2_dog.png", reason: "worker crashed 3 times")]
        let manifest = try JobFinalizer.finalize(jobType: .reconstruction, parametersJSON: parameters.json(), outputDirectory: output.path,
                                                 modelDirectory: TinyModel.directory, shardCount: 2, failedShards: [1: lost])
        #expect(manifest.counts.written == 2 && manifest.counts.failed == 1)
        #expect(try FileManager.default.contentsOfDirectory(atPath: output.file("reference")).sorted() == ["ref_000000.png", "ref_000001.png"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: output.file("reconstructed")).sorted() == ["rec_000000.png", "rec_000001.png"])
        #expect(!FileManager.default.fileExists(atPath: output.file(try ReconstructionLayout.metrics(shard: 1))))
        #expect(!FileManager.default.fileExists(atPath: output.file(".reconstruction-staging")))
    }
}
