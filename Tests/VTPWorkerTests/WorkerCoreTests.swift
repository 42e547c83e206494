import Testing
import VTPVocabulary
import VTPRuntimeSupport
import VTPTransport
import VTPWorker

/// Drives `WorkerCore` with hand-made events; no sockets, no model.
struct WorkerCoreTests {
    static let t0 = MonotonicInstant(nanoseconds: 5_000_000_000_000)
    static func at(_ seconds: Double) -> MonotonicInstant { t0 + .milliseconds(Int64(seconds * 1000)) }

    let registration = RegisterMessage(workerID: "w1", host: "h",
                                       capabilities: WorkerCapabilities(jobTypes: ["latents"], threads: 2, prefetch: 2, memoryBytes: 1))

    func makeCore() -> WorkerCore {
        let liveness = try! CoordinatorLiveness.Configuration(heartbeatInterval: .seconds(1), missedHeartbeatsBeforeLost: 3,
                                                              initialBackoff: .seconds(1), maxBackoff: .seconds(8), jitterFraction: 0)
        return WorkerCore(registration: registration, liveness: liveness, now: Self.t0, seed: 1)
    }

    func assignment(_ index: Int32, job: Int64 = 1) -> AssignShardMessage {
        AssignShardMessage(jobID: job, shardID: ShardDispatchID(jobID: job, index: index).wire!, leaseToken: LeaseToken.random(),
                           jobType: "latents", parametersJSON: "{}", modelPath: "/m", outputDirectory: "/o",
                           items: [JobItem(ordinal: 0, sourceId: "x", location: .file(path: "/x.jpg"))])
    }

    func sent(_ actions: [WorkerCore.Action]) -> [WireMessage] {
        actions.compactMap { if case let .send(m) = $0 { m } else { nil } }
    }

    @Test func startRegistersThenGrantsPrefetchCredit() {
        var core = makeCore()
        #expect(sent(core.handle(.started, at: Self.at(0))) == [.register(registration), .credit(2)])
    }

    @Test func runsOneShardAtATimeAndReturnsOneCreditPerShard() {
        var core = makeCore()
        _ = core.handle(.started, at: Self.at(0))
        let a = assignment(0), b = assignment(1)
        #expect(core.handle(.received(.assignShard(a)), at: Self.at(0.1)) == [.execute(a)])
        #expect(core.handle(.received(.assignShard(b)), at: Self.at(0.2)).isEmpty)  // queued behind a
        #expect(core.handle(.received(.assignShard(b)), at: Self.at(0.2)).isEmpty)  // duplicate delivery ignored
        #expect(core.held == 2)
        let results = [ItemResult(ordinal: 0, status: .ok, outputLocation: "f#0")]
        let finished = core.handle(.shardFinished(shardID: a.shardID, token: a.leaseToken, .done(results), seconds: 0.5), at: Self.at(1))
        #expect(finished == [.send(.shardDone(ShardDoneMessage(shardID: a.shardID, leaseToken: a.leaseToken, results: results))),
                             .send(.credit(1)), .execute(b)])
        #expect(core.itemsCompleted == 1)
        #expect(core.imagesPerSecond == 2)
        let failed = core.handle(.shardFinished(shardID: b.shardID, token: b.leaseToken, .failed("model missing"), seconds: 1), at: Self.at(2))
        #expect(sent(failed) == [.shardFailed(ShardFailedMessage(shardID: b.shardID, leaseToken: b.leaseToken, error: "model missing")),
                                 .credit(1)])
    }

    @Test func progressIsForwardedForTheRunningShardOnly() {
        var core = makeCore()
        let a = assignment(0)
        _ = core.handle(.received(.assignShard(a)), at: Self.at(0))
        #expect(sent(core.handle(.progress(shardID: a.shardID, itemsDone: 4), at: Self.at(0.5)))
            == [.progress(shardID: a.shardID, itemsDone: 4)])
        // Not the running shard: nothing is sent, and a waiting executor would be let go.
        #expect(core.handle(.progress(shardID: 999, itemsDone: 4), at: Self.at(0.6)) == [.acknowledge(shardID: 999, itemsDone: .max)])
    }

    @Test func anIsolatedShardStartsEachItemOnlyOnceTheCoordinatorEchoedItsProgress() {
        var core = makeCore()
        var a = assignment(0)
        a.isolated = true
        _ = core.handle(.received(.assignShard(a)), at: Self.at(0))
        #expect(sent(core.handle(.progress(shardID: a.shardID, itemsDone: 0), at: Self.at(0.1))) == [.progress(shardID: a.shardID, itemsDone: 0)])
        #expect(core.handle(.received(.progress(shardID: a.shardID, itemsDone: 0)), at: Self.at(0.2))
            == [.acknowledge(shardID: a.shardID, itemsDone: 0)])
        // An echo for a shard not running (a late one) releases nothing.
        #expect(core.handle(.received(.progress(shardID: 999, itemsDone: 3)), at: Self.at(0.3)).isEmpty)
        // Cancelled mid-shard: no acknowledgement will come, so the executor stops waiting at once.
        let cancelled = core.handle(.received(.cancel(.shard(a.shardID), reason: "lease lost")), at: Self.at(0.4))
        #expect(cancelled.contains(.acknowledge(shardID: a.shardID, itemsDone: .max)))
        #expect(core.handle(.progress(shardID: a.shardID, itemsDone: 1), at: Self.at(0.5)) == [.acknowledge(shardID: a.shardID, itemsDone: .max)])
    }

    @Test func aSecondShutdownReleasesTheRunningShardFromWaiting() {
        var core = makeCore()
        var a = assignment(0)
        a.isolated = true
        _ = core.handle(.received(.assignShard(a)), at: Self.at(0))
        _ = core.handle(.shutdownRequested, at: Self.at(0.1))
        #expect(core.handle(.shutdownRequested, at: Self.at(0.2)).contains(.acknowledge(shardID: a.shardID, itemsDone: .max)))
    }

    @Test func cancelDropsAQueuedShardAndDiscardsARunningOnesResult() {
        var core = makeCore()
        let a = assignment(0), b = assignment(1)
        _ = core.handle(.received(.assignShard(a)), at: Self.at(0))
        _ = core.handle(.received(.assignShard(b)), at: Self.at(0))
        #expect(sent(core.handle(.received(.cancel(.shard(b.shardID), reason: "lease lost")), at: Self.at(0.1))) == [.credit(1)])
        #expect(core.queued.isEmpty)
        #expect(core.handle(.received(.cancel(.job(1), reason: "job cancelled")), at: Self.at(0.2))
            == [.acknowledge(shardID: a.shardID, itemsDone: .max)])
        #expect(core.runningCancelled)
        let finished = core.handle(.shardFinished(shardID: a.shardID, token: a.leaseToken, .done([]), seconds: 1), at: Self.at(1))
        #expect(sent(finished) == [.credit(1)])  // no shardDone for a lease the coordinator revoked
    }

    @Test func heartbeatsWhenQuietAndReconnectsWithBackoffWhenTheCoordinatorIsSilent() {
        var core = makeCore()
        _ = core.handle(.started, at: Self.at(0))
        let beat = sent(core.handle(.tick, at: Self.at(1.0)))
        #expect(beat.count == 1)
        if case let .heartbeat(h)? = beat.first { #expect(h.sequence == 1) } else { Issue.record("expected a heartbeat, got \(beat)") }
        _ = core.handle(.tick, at: Self.at(2.0))
        // Three silent intervals: the coordinator is lost; the reconnect comes after the 1 s backoff.
        #expect(!core.handle(.tick, at: Self.at(3.0)).contains(.reconnect))
        #expect(!core.handle(.tick, at: Self.at(3.5)).contains(.reconnect))
        let reconnect = core.handle(.tick, at: Self.at(4.0))
        #expect(reconnect == [.reconnect, .send(.register(registration)), .send(.credit(2))])
        // Lost again without hearing anything: the backoff doubles.
        _ = core.handle(.tick, at: Self.at(7.0))
        #expect(!core.handle(.tick, at: Self.at(8.5)).contains(.reconnect))
        #expect(core.handle(.tick, at: Self.at(9.0)).contains(.reconnect))
    }

    /// The CI timeline of `workerReconnectsToARestartedCoordinatorAndKeepsWorking`: lost during a
    /// coordinator restart, the worker's socket reconnected underneath and the new coordinator
    /// assigned it a shard within the backoff. Replacing the socket when the backoff ran out dropped
    /// the next assignment on the way, which then waited for its lease to expire.
    @Test func aCoordinatorHeardDuringTheBackoffKeepsTheSocket() {
        var core = makeCore()
        _ = core.handle(.started, at: Self.at(0))
        _ = core.handle(.tick, at: Self.at(1.0))
        _ = core.handle(.tick, at: Self.at(2.0))
        #expect(!core.handle(.tick, at: Self.at(3.0)).contains(.reconnect))  // lost; reconnect due at 4.0
        let a = assignment(0)
        #expect(core.handle(.received(.assignShard(a)), at: Self.at(3.2)) == [.execute(a)])
        // Heard again: the heartbeat (none went out while waiting) is due at once, and no reconnect follows.
        let resumed = core.handle(.tick, at: Self.at(3.3))
        #expect(sent(resumed).count == 1)
        if case .heartbeat(let beat)? = sent(resumed).first { #expect(beat.heldShards == [a.shardID]) }
        for tick in [4.0, 4.5, 5.0, 6.0] { #expect(!core.handle(.tick, at: Self.at(tick)).contains(.reconnect)) }
        // Silent again for three intervals after the assignment: lost, and the first backoff (1 s) applies.
        #expect(!core.handle(.tick, at: Self.at(6.2)).contains(.reconnect))
        #expect(core.handle(.tick, at: Self.at(7.2)).contains(.reconnect))
    }

    /// A busy worker reports progress several times a second; its heartbeats (which carry the
    /// shards it holds and keep its row fresh) must go out on their own clock anyway.
    @Test func heartbeatsKeepTheirPaceWhileProgressFlowsAndListTheShardsHeld() {
        var core = makeCore()
        _ = core.handle(.started, at: Self.at(0))
        let a = assignment(3), b = assignment(1)
        _ = core.handle(.received(.assignShard(a)), at: Self.at(0.05))
        _ = core.handle(.received(.assignShard(b)), at: Self.at(0.05))
        var beats: [HeartbeatMessage] = []
        for step in 1...30 {
            let now = Self.at(Double(step) * 0.1)
            _ = core.handle(.received(.heartbeat(HeartbeatMessage(sequence: UInt64(step)))), at: now)  // the coordinator is alive
            #expect(sent(core.handle(.progress(shardID: a.shardID, itemsDone: UInt32(step)), at: now)).count == 1)
            for case let .heartbeat(beat) in sent(core.handle(.tick, at: now)) { beats.append(beat) }
        }
        #expect(beats.count == 3, "one heartbeat per second over 3 s of progress, got \(beats.count)")
        #expect(beats.allSatisfy { $0.heldShards == [b.shardID, a.shardID].sorted() })
        #expect(core.heldShardIDs == [a.shardID, b.shardID].sorted())
    }

    @Test func everyRegistrationOfOneWorkerCarriesItsOneSession() {
        var core = makeCore()
        let first = sent(core.handle(.started, at: Self.at(0)))
        let again = sent(core.handle(.received(.disconnect(reason: "not registered")), at: Self.at(0.5)))
        guard case let .register(r1)? = first.first, case let .register(r2)? = again.first else {
            Issue.record("expected registrations, got \(first) and \(again)")
            return
        }
        #expect(r1.session == registration.session && r2.session == registration.session && r1.session != 0)
    }

    @Test func reregistrationGrantsOnlyTheSlotsNotHeld() {
        var core = makeCore()
        _ = core.handle(.started, at: Self.at(0))
        _ = core.handle(.received(.assignShard(assignment(0))), at: Self.at(0.1))
        // The coordinator restarted and does not know us: register again, with one free slot.
        #expect(sent(core.handle(.received(.disconnect(reason: "not registered")), at: Self.at(0.2)))
            == [.register(registration), .credit(1)])
    }

    @Test func shutdownHandsBackQueuedShardsFinishesTheRunningOneAndExits() {
        var core = makeCore()
        let a = assignment(0), b = assignment(1)
        _ = core.handle(.received(.assignShard(a)), at: Self.at(0))
        _ = core.handle(.received(.assignShard(b)), at: Self.at(0))
        let stopping = core.handle(.shutdownRequested, at: Self.at(1))
        #expect(sent(stopping) == [.drain(reason: "worker shutting down"),
                                   .shardFailed(.handBack(shardID: b.shardID, leaseToken: b.leaseToken,
                                                                   reason: "worker shutting down"))])
        #expect(!stopping.contains(.exit))
        // A late assignment is handed straight back.
        let c = assignment(2)
        #expect(sent(core.handle(.received(.assignShard(c)), at: Self.at(1.1)))
            == [.shardFailed(.handBack(shardID: c.shardID, leaseToken: c.leaseToken, reason: "worker shutting down"))])
        let done = core.handle(.shardFinished(shardID: a.shardID, token: a.leaseToken, .done([]), seconds: 1), at: Self.at(2))
        #expect(done == [.send(.shardDone(ShardDoneMessage(shardID: a.shardID, leaseToken: a.leaseToken, results: []))),
                         .send(.disconnect(reason: "worker stopped")), .exit])
    }

    @Test func secondShutdownHandsBackTheRunningShard() {
        var core = makeCore()
        let a = assignment(0)
        _ = core.handle(.received(.assignShard(a)), at: Self.at(0))
        _ = core.handle(.shutdownRequested, at: Self.at(1))
        let forced = core.handle(.shutdownRequested, at: Self.at(2))
        #expect(forced == [.send(.shardFailed(.handBack(shardID: a.shardID, leaseToken: a.leaseToken,
                                                                 reason: "worker stopped"))),
                           .stop(shardID: a.shardID, token: a.leaseToken),
                           .acknowledge(shardID: a.shardID, itemsDone: .max),
                           .send(.disconnect(reason: "worker stopped")), .exit])
    }

    @Test func idleWorkerExitsAtOnceOnShutdown() {
        var core = makeCore()
        _ = core.handle(.started, at: Self.at(0))
        #expect(core.handle(.shutdownRequested, at: Self.at(1))
            == [.send(.drain(reason: "worker shutting down")), .send(.disconnect(reason: "worker stopped")), .exit])
    }

    @Test func interruptStopsTheRunningShardAfterItsBatchAndHandsEverythingBack() {
        var core = makeCore()
        let a = assignment(0), b = assignment(1)
        _ = core.handle(.received(.assignShard(a)), at: Self.at(0))
        _ = core.handle(.received(.assignShard(b)), at: Self.at(0))
        let stopping = core.handle(.interruptRequested, at: Self.at(1))
        #expect(stopping == [.send(.drain(reason: "worker interrupted")),
                             .send(.shardFailed(.handBack(shardID: b.shardID, leaseToken: b.leaseToken, reason: "worker shutting down"))),
                             .stop(shardID: a.shardID, token: a.leaseToken),
                             .acknowledge(shardID: a.shardID, itemsDone: .max)])
        #expect(core.interrupted && core.draining)
        let stopped = core.handle(.shardFinished(shardID: a.shardID, token: a.leaseToken, .stopped(itemsDone: 0), seconds: 0.2),
                                  at: Self.at(1.2))
        let handBack = ShardFailedMessage.handBack(shardID: a.shardID, leaseToken: a.leaseToken, reason: "worker interrupted after 0 of 1 items")
        #expect(stopped == [.send(.shardFailed(handBack)), .send(.disconnect(reason: "worker stopped")), .exit])
        #expect(handBack.isHandBack)
        #expect(!ShardFailedMessage(shardID: 1, leaseToken: a.leaseToken, error: "model missing").isHandBack)
        // A text that happens to start like a hand-back is still a failure: the kind decides.
        #expect(!ShardFailedMessage(shardID: 1, leaseToken: a.leaseToken, error: "handed back: no").isHandBack)
    }

    @Test func aShardWhoseJobCannotRunIsReportedAsAJobFailure() {
        var core = makeCore()
        let a = assignment(0)
        _ = core.handle(.received(.assignShard(a)), at: Self.at(0))
        let failed = core.handle(.shardFinished(shardID: a.shardID, token: a.leaseToken,
                                                .jobFailed("/m: cannot load model: model.safetensors is truncated"), seconds: 0.1),
                                 at: Self.at(0.2))
        #expect(sent(failed).contains(.shardFailed(ShardFailedMessage(
            shardID: a.shardID, leaseToken: a.leaseToken, error: "/m: cannot load model: model.safetensors is truncated", kind: .job))))
        let plain = makeCoreWith(assignment: a, finishing: .failed("disk full"))
        #expect(plain.contains(.shardFailed(ShardFailedMessage(shardID: a.shardID, leaseToken: a.leaseToken, error: "disk full"))))
    }

    private func makeCoreWith(assignment a: AssignShardMessage, finishing result: WorkerCore.ShardResult) -> [WireMessage] {
        var core = makeCore()
        _ = core.handle(.received(.assignShard(a)), at: Self.at(0))
        return sent(core.handle(.shardFinished(shardID: a.shardID, token: a.leaseToken, result, seconds: 0.1), at: Self.at(0.2)))
    }

    @Test func aShardThatFinishesDespiteTheInterruptIsReportedDone() {
        var core = makeCore()
        let a = assignment(0)
        _ = core.handle(.received(.assignShard(a)), at: Self.at(0))
        _ = core.handle(.interruptRequested, at: Self.at(1))
        let results = [ItemResult(ordinal: 0, status: .ok, outputLocation: "f#0")]
        #expect(core.handle(.shardFinished(shardID: a.shardID, token: a.leaseToken, .done(results), seconds: 1), at: Self.at(1.5))
            == [.send(.shardDone(ShardDoneMessage(shardID: a.shardID, leaseToken: a.leaseToken, results: results))),
                .send(.disconnect(reason: "worker stopped")), .exit])
    }

    @Test func aSecondInterruptOrAShutdownAfterItHandsTheRunningShardBackAtOnce() {
        for second in [WorkerCore.Event.interruptRequested, .shutdownRequested] {
            var core = makeCore()
            let a = assignment(0)
            _ = core.handle(.received(.assignShard(a)), at: Self.at(0))
            #expect(!core.handle(.interruptRequested, at: Self.at(1)).contains(.exit))
            let now = core.handle(second, at: Self.at(1.1))
            #expect(now == [.send(.shardFailed(.handBack(shardID: a.shardID, leaseToken: a.leaseToken, reason: "worker stopped"))),
                            .stop(shardID: a.shardID, token: a.leaseToken), .acknowledge(shardID: a.shardID, itemsDone: .max),
                            .send(.disconnect(reason: "worker stopped")), .exit])
        }
    }

    @Test func anInterruptAfterAShutdownStopsTheShardItWasFinishing() {
        var core = makeCore()
        let a = assignment(0)
        _ = core.handle(.received(.assignShard(a)), at: Self.at(0))
        _ = core.handle(.shutdownRequested, at: Self.at(1))
        #expect(core.handle(.interruptRequested, at: Self.at(2))
            == [.stop(shardID: a.shardID, token: a.leaseToken), .acknowledge(shardID: a.shardID, itemsDone: .max)])
    }

    @Test func idleWorkerExitsAtOnceOnInterrupt() {
        var core = makeCore()
        _ = core.handle(.started, at: Self.at(0))
        #expect(core.handle(.interruptRequested, at: Self.at(1))
            == [.send(.drain(reason: "worker interrupted")), .send(.disconnect(reason: "worker stopped")), .exit])
    }
}
