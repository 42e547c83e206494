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
}
