import Testing
import VTPVocabulary
import VTPRuntimeSupport
import VTPTransport
@testable import VTPWorker

/// What the worker tells its metrics observer, derived from what `WorkerCore` sends: each shard
/// result once, with the job type of the assignment it is about.
struct WorkerObservationTests {
    let cores = WorkerCoreTests()

    func assignment(_ index: Int32, type: String) -> AssignShardMessage {
        var message = cores.assignment(index)
        message.jobType = type
        return message
    }

    /// Handles `event` as the worker's loop does, returning the observations.
    func handle(_ core: inout WorkerCore, _ event: WorkerCore.Event, at seconds: Double) -> [WorkerObservation] {
        let concerned = Worker.assignments(heldBy: core, or: event)
        return Worker.observations(of: core.handle(event, at: WorkerCoreTests.at(seconds)), concerning: concerned)
    }

    @Test func completionsFailuresAndHandBacksCarryTheirJobType() {
        var core = cores.makeCore()
        _ = core.handle(.started, at: WorkerCoreTests.at(0))
        let a = assignment(0, type: "latents"), b = assignment(1, type: "clip-embed"), c = assignment(2, type: "features")
        #expect(handle(&core, .received(.assignShard(a)), at: 0.1).isEmpty)
        #expect(handle(&core, .received(.assignShard(b)), at: 0.2).isEmpty)
        let results = [ItemResult(ordinal: 0, status: .ok, outputLocation: "f#0",
                                  timings: [StageTiming(stage: "decode", seconds: 0.01)]),
                       ItemResult(ordinal: 1, status: .failed, error: "bad")]
        #expect(handle(&core, .shardFinished(shardID: a.shardID, token: a.leaseToken, .done(results), seconds: 1), at: 1)
            == [.shardCompleted(jobType: "latents", results: results)])
        #expect(handle(&core, .shardFinished(shardID: b.shardID, token: b.leaseToken, .jobFailed("no model"), seconds: 1), at: 2)
            == [.shardFailed(jobType: "clip-embed")])
        // Held, then handed back on shutdown; then one offered while draining, refused at once.
        #expect(handle(&core, .received(.assignShard(c)), at: 3).isEmpty)
        let d = assignment(3, type: "clip-score")
        #expect(handle(&core, .interruptRequested, at: 4).isEmpty, "the running shard is asked to stop, not yet handed back")
        #expect(handle(&core, .received(.assignShard(d)), at: 4.5) == [.shardHandedBack(jobType: "clip-score")])
        #expect(handle(&core, .shardFinished(shardID: c.shardID, token: c.leaseToken, .stopped(itemsDone: 0), seconds: 1), at: 5)
            == [.shardHandedBack(jobType: "features")])
    }

    @Test func queuedShardsHandedBackAtShutdownAreEachObservedOnce() {
        var core = cores.makeCore()
        _ = core.handle(.started, at: WorkerCoreTests.at(0))
        let a = assignment(0, type: "latents"), b = assignment(1, type: "features")
        _ = handle(&core, .received(.assignShard(a)), at: 0.1)
        _ = handle(&core, .received(.assignShard(b)), at: 0.2)
        #expect(handle(&core, .shutdownRequested, at: 1) == [.shardHandedBack(jobType: "features")])
        #expect(handle(&core, .shutdownRequested, at: 2) == [.shardHandedBack(jobType: "latents")], "the second request hands the running one back")
        // Its late result is dropped by the core, so nothing more is counted.
        #expect(handle(&core, .shardFinished(shardID: a.shardID, token: a.leaseToken, .done([]), seconds: 1), at: 3).isEmpty)
    }
}
