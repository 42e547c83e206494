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
    @Test func aShardTheHandlerRefusesFailsItsItemsAndTheJobIsStillFinalized() async throws {
        let input = try InputTree("localrun-refused")
        let output = try TemporaryDirectory("localrun-refused-out")
        defer { input.dir.remove(); output.remove() }
        try input.copy("dog.png", to: "dog.png")
        try input.copy("rocket.jpg", to: "rocket.jpg")
        let run = try await JobRun.run(input: input.path, output: output.path, model: Fixtures.path("vtp-tiny-ae-only"),
                                       parameters: .clipEmbed(ClipEmbedParameters()), shardSize: 4, maxAttempts: 1)
        let record = run.report.record
        #expect(record.state.isFinished && record.shardsFailed == 1 && record.shardsDone == 0, "\(record)")
        #expect(record.itemsFailed == 2 && record.itemsDone == 0)
        #expect(Set(run.report.failures.map(\.sourceID)) == ["dog.png", "rocket.jpg"])
        #expect(run.report.failures.allSatisfy { $0.error.contains("vtp-tiny-ae-only") }, "\(run.report.failures)")
        #expect(run.manifest.counts.written == 0 && run.manifest.counts.failed == 2)
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
