import Foundation
import Synchronization
import Testing
import VTPCoordinator
import VTPJobs
import VTPLocalRun
import VTPQueue
import VTPStorage
import VTPTestSupport
import VTPVocabulary

/// `LocalRun` itself with in-process workers: how a run ends when a shard cannot be executed, and
/// what re-running a finished request does.
@Suite struct LocalRunTests {
    /// A shard the handler refuses (a CLIP job on a checkpoint without CLIP towers) fails after its
    /// attempts; the job still finishes and is finalized, its items failed with the handler's error.
    /// A model that cannot serve the job (a CLIP job on an autoencoder-only checkpoint) fails the
    /// job at once with the model's message: no item is failed, no manifest is written, and the
    /// run ends instead of spending every shard's attempts.
    @Test func aModelThatDoesNotFitTheJobFailsTheJobAtOnceWithoutFailingItems() async throws {
        let input = try InputTree("localrun-refused")
        let output = try TemporaryDirectory("localrun-refused-out")
        let state = try TemporaryDirectory("localrun-refused-state")
        defer { input.dir.remove(); output.remove(); state.remove() }
        for name in ["dog.png", "rocket.jpg", "chelsea.jpg"] { try input.copy(name, to: name) }
        try await SharedPostgres.withDatabase(migrate: false) { url, _ in
            let request = JobRequest(parameters: .clipEmbed(ClipEmbedParameters()), input: input.path, output: output.path,
                                     model: Fixtures.path("vtp-tiny-ae-only"), shardSize: 1, maxAttempts: 3)
            let local = LocalRun(request: request, finalizer: ManifestFinalizer(),
                                 workers: .inProcess(handler: JobShardHandler(), count: 2), stateDirectory: state.path, database: url)
            let report = try await local.run()
            let record = report.record
            #expect(record.state == .failed, "\(record)")
            #expect(record.error?.contains("vtp-tiny-ae-only") == true && record.error?.contains("train_clip") == true, "\(record)")
            #expect(record.itemsFailed == 0 && record.shardsFailed == 0 && report.failures.isEmpty)
            #expect(report.finalize == nil && !FileManager.default.fileExists(atPath: output.file(JobFinalizer.manifestFileName)))
            // The failing attempt was given back: a retry starts every shard fresh.
            let ledger = Ledger(database: url)
            #expect(try await ledger.sql("SELECT string_agg(state || ':' || attempts, ',' ORDER BY shard_index) FROM shards") == ["paused:0,paused:0,paused:0"])
        }
    }

    /// Running a request that already finished reports it and runs nothing (`vtp run` twice).
    @Test func rerunningAFinishedRequestReportsItInsteadOfRunningAgain() async throws {
        let input = try InputTree("localrun-again")
        let output = try TemporaryDirectory("localrun-again-out")
        let state = try TemporaryDirectory("localrun-again-state")
        defer { input.dir.remove(); output.remove(); state.remove() }
        try input.copy("chelsea.jpg", to: "chelsea.jpg")
        try await SharedPostgres.withDatabase(migrate: false) { url, _ in
            let request = JobRequest(parameters: .latents(LatentsParameters(imageSize: 64)), input: input.path, output: output.path,
                                     model: TinyModel.directory, shardSize: 2)
            let local = LocalRun(request: request, finalizer: ManifestFinalizer(),
                                 workers: .inProcess(handler: JobShardHandler(), count: 1), stateDirectory: state.path, database: url)
            let first = try await local.run()
            guard case let .written(counts)? = first.finalize else { Issue.record("not finalized: \(first)"); return }
            #expect(counts.written == 1 && first.record.state == .completed)

            let events = Mutex<[String]>([])
            let second = try await local.run { event in
                if case let .alreadyFinished(jobID) = event { events.withLock { $0.append("finished \(jobID)") } }
                if case .enqueued = event { events.withLock { $0.append("enqueued") } }
            }
            #expect(second.jobID == first.jobID && second.finalize == nil && !second.interrupted)
            #expect(events.withLock { $0 } == ["finished \(first.jobID)"])
            #expect(try await Ledger(database: url).listJobs().count == 1)
        }
    }
}
