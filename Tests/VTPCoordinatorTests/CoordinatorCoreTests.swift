import Foundation
import Testing
import VTPVocabulary
import VTPCoordinator
import VTPQueue
import VTPRuntimeSupport
import VTPTransport

/// Drives `CoordinatorCore` with hand-made events and checks the actions; no sockets, no database.
struct CoordinatorCoreTests {
    static let t0 = MonotonicInstant(nanoseconds: 1_000_000_000_000)
    static func at(_ seconds: Double) -> MonotonicInstant { t0 + .milliseconds(Int64(seconds * 1000)) }

    let alice = PeerIdentity("alice")
    let bob = PeerIdentity("bob")

    func makeCore() -> CoordinatorCore {
        let liveness = try! WorkerLiveness<PeerIdentity>.Configuration(heartbeatInterval: .seconds(1), missedHeartbeatsBeforeDead: 3)
        return CoordinatorCore(configuration: .init(liveness: liveness, leaseRenewalInterval: .seconds(2),
                                                    releaseInterval: .seconds(5), shutdownGrace: .seconds(10)),
                               now: Self.t0)
    }

    func registration(_ id: String, prefetch: UInt32, session: UInt64 = 1) -> WireMessage {
        .register(RegisterMessage(workerID: id, host: "h", capabilities: WorkerCapabilities(jobTypes: ["latents"], threads: 2,
                                                                                           prefetch: prefetch, memoryBytes: 1),
                                  session: session))
    }

    func wire(_ shard: LeasedShard) -> Int64 { ShardDispatchID(jobID: shard.shard.jobID, index: shard.shard.index).wire! }

    func heartbeat(_ sequence: UInt64, holding held: [LeasedShard] = []) -> WireMessage {
        .heartbeat(HeartbeatMessage(sequence: sequence, heldShards: held.map(wire).sorted()))
    }

    func releases(_ actions: [CoordinatorCore.Action]) -> [([CoordinatorCore.HeldLease], String)] {
        actions.compactMap { if case let .releaseLeases(held, reason) = $0 { (held, reason) } else { nil } }
    }

    func rows(_ actions: [CoordinatorCore.Action]) -> [WorkerReport] {
        actions.compactMap { if case let .upsertWorker(r) = $0 { r } else { nil } }
    }

    func held(_ shards: LeasedShard...) -> [CoordinatorCore.HeldLease] {
        shards.map { CoordinatorCore.HeldLease(shard: $0.shard, token: $0.token) }
    }

    func lease(job: Int64 = 7, index: Int32) -> LeasedShard {
        LeasedShard(shard: ShardRef(jobID: job, index: index), token: LeaseToken.random(), jobType: "latents", parametersJSON: "{}",
                    model: "/m", outputDirectory: "/out",
                    items: [JobItem(ordinal: Int(index) * 2, sourceId: "a\(index)", location: .file(path: "/in/a\(index).jpg")),
                            JobItem(ordinal: Int(index) * 2 + 1, sourceId: "b\(index)", location: .file(path: "/in/b\(index).jpg"))])
    }

    /// Alice (one slot) holds shard 0 of job 7; Bob (two slots) holds shard 1 of job 7 and shard 0 of job 8.
    func aliceAndBobHoldingThreeShards() -> (CoordinatorCore, a: LeasedShard, b: LeasedShard, other: LeasedShard) {
        var core = makeCore()
        _ = core.handle(.received(alice, registration("w-alice", prefetch: 1)), at: Self.at(0))
        _ = core.handle(.received(bob, registration("w-bob", prefetch: 2)), at: Self.at(0))
        _ = core.handle(.received(alice, .credit(1)), at: Self.at(0))
        _ = core.handle(.received(bob, .credit(2)), at: Self.at(0))
        let a = lease(index: 0), b = lease(index: 1), other = lease(job: 8, index: 0)
        _ = core.handle(.claimed(alice, a), at: Self.at(0))
        _ = core.handle(.claimed(bob, b), at: Self.at(0))
        _ = core.handle(.claimed(bob, other), at: Self.at(0))
        return (core, a, b, other)
    }

    func claims(_ actions: [CoordinatorCore.Action]) -> [PeerIdentity] {
        actions.compactMap { if case let .claim(peer) = $0 { peer } else { nil } }
    }

    func assignments(_ actions: [CoordinatorCore.Action]) -> [(PeerIdentity, AssignShardMessage)] {
        actions.compactMap { if case let .send(.assignShard(a), peer) = $0 { (peer, a) } else { nil } }
    }

    @Test func registerUpsertsTheWorkerAndCreditTriggersOneClaimPerSlot() {
        var core = makeCore()
        let registered = core.handle(.received(alice, registration("w-alice", prefetch: 2)), at: Self.at(0))
        #expect(registered.contains { if case let .upsertWorker(r) = $0 { r.id == "w-alice" && r.state == .idle } else { false } })
        #expect(claims(registered).isEmpty)  // no credit yet

        let credited = core.handle(.received(alice, .credit(5)), at: Self.at(0.1))
        // Five credits offered, but the window holds at most the announced prefetch of two.
        #expect(claims(credited) == [alice, alice])
        // More credit while claims are outstanding does not add claims beyond the window.
        #expect(claims(core.handle(.received(alice, .credit(1)), at: Self.at(0.2))).isEmpty)
    }

    @Test func claimedShardIsAssignedWithTheLeaseTokenAndDispatchID() throws {
        var core = makeCore()
        _ = core.handle(.received(alice, registration("w-alice", prefetch: 1)), at: Self.at(0))
        _ = core.handle(.received(alice, .credit(1)), at: Self.at(0))
        let shard = lease(index: 3)
        let actions = core.handle(.claimed(alice, shard), at: Self.at(0.1))
        let sent = assignments(actions)
        try #require(sent.count == 1)
        #expect(sent[0].0 == alice)
        #expect(sent[0].1.leaseToken == shard.token)
        #expect(ShardDispatchID(wire: sent[0].1.shardID) == ShardDispatchID(jobID: 7, index: 3))
        #expect(sent[0].1.items.map(\.sourceId) == ["a3", "b3"])
        #expect(core.shardsInFlight == 1)
        #expect(core.counters.assigned == 1)
        // The only slot is used: nothing more is claimed until the worker grants credit again.
        #expect(claims(core.handle(.tick, at: Self.at(0.2))).isEmpty)
    }

    @Test func emptyClaimStopsClaimingUntilWorkIsSignalled() {
        var core = makeCore()
        _ = core.handle(.received(alice, registration("w-alice", prefetch: 2)), at: Self.at(0))
        _ = core.handle(.received(alice, .credit(2)), at: Self.at(0))
        let empty = core.handle(.claimed(alice, nil), at: Self.at(0.1))
        #expect(empty.contains(.queryNextEligible))
        #expect(core.idle)
        _ = core.handle(.claimed(alice, nil), at: Self.at(0.1))
        _ = core.handle(.nextEligible(seconds: nil), at: Self.at(0.2))
        // Idle: ticks and heartbeats never turn into claims (no polling of the shard table).
        for step in 1...20 {
            let actions = core.handle(.received(alice, .heartbeat(HeartbeatMessage(sequence: UInt64(step)))), at: Self.at(0.2 + Double(step) * 0.1))
            #expect(claims(actions).isEmpty)
            #expect(claims(core.handle(.tick, at: Self.at(0.25 + Double(step) * 0.1))).isEmpty)
        }
        // A NOTIFY wakes it: both open slots are claimed again.
        #expect(claims(core.handle(.workAvailable, at: Self.at(3))) == [alice, alice])
    }

    @Test func backoffShardIsClaimedWhenItBecomesEligible() {
        var core = makeCore()
        _ = core.handle(.received(alice, registration("w-alice", prefetch: 1)), at: Self.at(0))
        _ = core.handle(.received(alice, .credit(1)), at: Self.at(0))
        _ = core.handle(.claimed(alice, nil), at: Self.at(0.1))
        _ = core.handle(.nextEligible(seconds: 1.5), at: Self.at(0.1))
        #expect(core.nextDeadline <= Self.at(1.6))
        #expect(claims(core.handle(.tick, at: Self.at(1.0))).isEmpty)
        #expect(claims(core.handle(.tick, at: Self.at(1.7))) == [alice])
    }

    @Test func shardDoneCompletesWithTheTokenAndRejectionsAreCounted() throws {
        var core = makeCore()
        _ = core.handle(.received(alice, registration("w-alice", prefetch: 1)), at: Self.at(0))
        _ = core.handle(.received(alice, .credit(1)), at: Self.at(0))
        let shard = lease(index: 0)
        let wire = try #require(assignments(core.handle(.claimed(alice, shard), at: Self.at(0.1))).first?.1.shardID)
        let done = ShardDoneMessage(shardID: wire, leaseToken: shard.token,
                                    results: [ItemResult(ordinal: 0, status: .ok, outputLocation: "latents_rank00_shard000.safetensors#0"),
                                              ItemResult(ordinal: 1, status: .failed, error: "corrupt")])
        let actions = core.handle(.received(alice, .shardDone(done)), at: Self.at(1))
        let expected = CoordinatorCore.Action.complete(shard.shard, token: shard.token, results: [
            .success(0, output: "latents_rank00_shard000.safetensors#0"), .failure(1, error: "corrupt"),
        ])
        #expect(actions.contains(expected))
        #expect(core.shardsInFlight == 0)

        // A duplicate report still goes to the ledger (which decides), and its verdict is counted.
        let again = core.handle(.received(alice, .shardDone(done)), at: Self.at(1.1))
        #expect(again.contains { if case .complete = $0 { true } else { false } })
        _ = core.handle(.recorded(shard.shard, .applied, jobFinished: false), at: Self.at(1.2))
        _ = core.handle(.recorded(shard.shard, .duplicate, jobFinished: false), at: Self.at(1.3))
        _ = core.handle(.recorded(shard.shard, .leaseLost, jobFinished: false), at: Self.at(1.4))
        #expect(core.counters.completed == 1)
        #expect(core.counters.rejected == 2)
    }

    @Test func resultFromAnUnknownWorkerIsStillRecordedThroughItsDispatchID() {
        var core = makeCore()
        let token = LeaseToken.random()
        let wire = ShardDispatchID(jobID: 12, index: 4).wire!
        let actions = core.handle(.received(bob, .shardFailed(ShardFailedMessage(shardID: wire, leaseToken: token, error: "disk full"))),
                                  at: Self.at(0))
        #expect(actions.contains(.fail(ShardRef(jobID: 12, index: 4), token: token, error: "disk full")))
        // The unknown worker is told to register.
        #expect(actions.contains { if case .send(.disconnect, bob) = $0 { true } else { false } })
        // A forged id is rejected without touching the ledger.
        let forged = core.handle(.received(bob, .shardDone(ShardDoneMessage(shardID: -5, leaseToken: token, results: []))), at: Self.at(0.1))
        #expect(!forged.contains { if case .complete = $0 { true } else { false } })
        #expect(core.counters.rejected == 1)
    }

    @Test func heartbeatsRenewLeasesAtMostOncePerInterval() throws {
        var core = makeCore()
        _ = core.handle(.received(alice, registration("w-alice", prefetch: 1)), at: Self.at(0))
        _ = core.handle(.received(alice, .credit(1)), at: Self.at(0))
        let shard = lease(index: 1)
        _ = core.handle(.claimed(alice, shard), at: Self.at(0))
        func renewals(_ actions: [CoordinatorCore.Action]) -> Int { actions.filter { if case .renewLease = $0 { true } else { false } }.count }
        #expect(renewals(core.handle(.received(alice, heartbeat(1, holding: [shard])), at: Self.at(1))) == 0)
        #expect(renewals(core.handle(.received(alice, heartbeat(2, holding: [shard])), at: Self.at(2.1))) == 1)
        // The renewal is in flight: progress does not start another.
        #expect(renewals(core.handle(.received(alice, .progress(shardID: ShardDispatchID(jobID: 7, index: 1).wire!, itemsDone: 1)),
                                     at: Self.at(4.5))) == 0)
        _ = core.handle(.leaseRenewed(shard.token, held: true), at: Self.at(4.6))
        #expect(renewals(core.handle(.received(alice, .progress(shardID: ShardDispatchID(jobID: 7, index: 1).wire!, itemsDone: 1)),
                                     at: Self.at(4.7))) == 1)
    }

    @Test func lostLeaseCancelsTheShardOnTheWorker() {
        var core = makeCore()
        _ = core.handle(.received(alice, registration("w-alice", prefetch: 1)), at: Self.at(0))
        _ = core.handle(.received(alice, .credit(1)), at: Self.at(0))
        let shard = lease(index: 2)
        _ = core.handle(.claimed(alice, shard), at: Self.at(0))
        _ = core.handle(.received(alice, heartbeat(1, holding: [shard])), at: Self.at(2.5))
        let actions = core.handle(.leaseRenewed(shard.token, held: false), at: Self.at(2.6))
        #expect(actions.contains(.send(.cancel(.shard(ShardDispatchID(jobID: 7, index: 2).wire!), reason: "lease lost"), to: alice)))
        #expect(core.shardsInFlight == 0)
    }

    @Test func silentWorkerIsDeclaredDeadAfterThreeMissedHeartbeatsAndItsLeasesAreReleasedAtOnce() {
        var core = makeCore()
        _ = core.handle(.received(alice, registration("w-alice", prefetch: 2)), at: Self.at(0))
        _ = core.handle(.received(alice, .credit(2)), at: Self.at(0))
        let first = lease(index: 0), second = lease(index: 1)
        _ = core.handle(.claimed(alice, first), at: Self.at(0))
        _ = core.handle(.claimed(alice, second), at: Self.at(0))
        // Heartbeats go out while alice is silent; she is still alive at 2.9 s.
        let beats = core.handle(.tick, at: Self.at(1.0))
        #expect(beats.contains { if case .send(.heartbeat, alice) = $0 { true } else { false } })
        #expect(!core.handle(.tick, at: Self.at(2.9)).contains { if case .upsertWorker(let r) = $0 { r.state == .offline } else { false } })
        let dead = core.handle(.tick, at: Self.at(3.0))
        #expect(rows(dead).contains { $0.state == .offline && $0.id == "w-alice" && $0.currentShard == nil })
        #expect(core.workers[alice] == nil)
        #expect(core.counters.workersDeclaredDead == 1)
        // Her leases go back to the ledger now, not after they expire; nothing is completed or failed.
        let released = releases(dead)
        #expect(released.count == 1 && released.first?.0 == held(first, second))
        #expect(released.first?.1.contains("w-alice stopped responding") == true)
        #expect(!dead.contains { if case .fail = $0 { true } else if case .complete = $0 { true } else { false } })
        #expect(core.leases.isEmpty && core.counters.leasesReleasedOnSessionEnd == 2)
        _ = core.handle(.leasesReleased(held(first, second), finishedJobs: []), at: Self.at(3.1))
        // A result arriving late from the "dead" worker is still passed on, for the ledger to refuse by its token.
        let late = core.handle(.received(alice, .shardDone(ShardDoneMessage(shardID: wire(first), leaseToken: first.token, results: []))),
                               at: Self.at(6))
        #expect(late.contains { if case .complete(first.shard, first.token, _) = $0 { true } else { false } })
    }

    @Test func aNewSessionUnderAKnownIdentityEndsTheOldOneAndReleasesItsLeasesAtOnce() throws {
        var core = makeCore()
        _ = core.handle(.received(alice, registration("w-alice", prefetch: 2, session: 11)), at: Self.at(0))
        _ = core.handle(.received(alice, .credit(2)), at: Self.at(0))
        let first = lease(index: 0), second = lease(index: 1)
        _ = core.handle(.claimed(alice, first), at: Self.at(0.1))
        _ = core.handle(.claimed(alice, second), at: Self.at(0.1))
        #expect(core.shardsInFlight == 2)

        // The process was killed and systemd restarted it under the same --worker-id (same routing
        // identity) before liveness noticed: the register carries a new session nonce.
        let restarted = core.handle(.received(alice, registration("w-alice", prefetch: 2, session: 12)), at: Self.at(0.5))
        let released = releases(restarted)
        #expect(released.count == 1 && released.first?.0 == held(first, second))
        #expect(released.first?.1.contains("w-alice restarted") == true)
        #expect(core.leases.isEmpty && core.counters.sessionsReplaced == 1)
        #expect(core.workers[alice]?.session == 12)
        // The old session's credit is gone with it: nothing is claimed until the new process grants credit.
        #expect(core.workers[alice]?.window.credits == 0 && core.workers[alice]?.window.outstanding.isEmpty == true)
        #expect(claims(restarted).isEmpty)
        #expect(rows(restarted).last?.state == .idle)
        #expect(claims(core.handle(.received(alice, .credit(2)), at: Self.at(0.6))) == [alice, alice])

        // Heartbeats of the new process renew nothing of the old one's (the stall this prevents:
        // leases renewed forever, never expiring, never finishing).
        let beat = core.handle(.received(alice, heartbeat(1)), at: Self.at(5))
        #expect(!beat.contains { if case .renewLease = $0 { true } else { false } })
        // A result of the old session still goes to the ledger, which refuses it by its stale token.
        let late = core.handle(.received(alice, .shardDone(ShardDoneMessage(shardID: wire(first), leaseToken: first.token, results: []))),
                               at: Self.at(5.1))
        #expect(late.contains { if case .complete(first.shard, first.token, _) = $0 { true } else { false } })
        #expect(core.workers[alice]?.window.outstanding.isEmpty == true)
    }

    @Test func claimsStillOutForAReplacedSessionServeTheNewOneInsteadOfBeingClaimedTwice() {
        var core = makeCore()
        _ = core.handle(.received(alice, registration("w-alice", prefetch: 2, session: 1)), at: Self.at(0))
        #expect(claims(core.handle(.received(alice, .credit(2)), at: Self.at(0))) == [alice, alice])
        // The process is replaced while both claims are still with the ledger.
        _ = core.handle(.received(alice, registration("w-alice", prefetch: 2, session: 2)), at: Self.at(0.1))
        #expect(claims(core.handle(.received(alice, .credit(2)), at: Self.at(0.1))).isEmpty)
        let first = core.handle(.claimed(alice, lease(index: 0)), at: Self.at(0.2))
        let second = core.handle(.claimed(alice, lease(index: 1)), at: Self.at(0.2))
        #expect(assignments(first + second).map(\.0) == [alice, alice])
        #expect(core.counters.leasesAbandoned == 0 && core.shardsInFlight == 2)
    }

    @Test func reRegistrationWithTheSameSessionKeepsTheSessionAndItsLeases() {
        var core = makeCore()
        _ = core.handle(.received(alice, registration("w-alice", prefetch: 2, session: 7)), at: Self.at(0))
        _ = core.handle(.received(alice, .credit(2)), at: Self.at(0))
        let shard = lease(index: 4)
        _ = core.handle(.claimed(alice, shard), at: Self.at(0))
        // A reconnect after coordinator silence: same process, same nonce.
        let again = core.handle(.received(alice, registration("w-alice", prefetch: 2, session: 7)), at: Self.at(1))
        #expect(releases(again).isEmpty)
        #expect(core.leases.count == 1 && core.counters.sessionsReplaced == 0)
        #expect(rows(again).last?.state == .busy && rows(again).last?.currentShard == shard.shard)
        #expect(core.handle(.received(alice, heartbeat(1, holding: [shard])), at: Self.at(2.5)).contains(.renewLease(shard.shard, token: shard.token)))
    }

    @Test func goodbyeFromAWorkerReleasesWhatItStillHolds() {
        var core = makeCore()
        _ = core.handle(.received(alice, registration("w-alice", prefetch: 1)), at: Self.at(0))
        _ = core.handle(.received(alice, .credit(1)), at: Self.at(0))
        let shard = lease(index: 2)
        _ = core.handle(.claimed(alice, shard), at: Self.at(0))
        let bye = core.handle(.received(alice, .disconnect(reason: "worker stopped")), at: Self.at(1))
        #expect(releases(bye).first?.0 == held(shard))
        #expect(releases(bye).first?.1.contains("disconnected") == true)
        #expect(rows(bye).map(\.state) == [.offline])
        #expect(core.workers.isEmpty && core.leases.isEmpty)
    }

    @Test func heartbeatsRenewOnlyTheLeasesTheWorkerStillHolds() {
        var core = makeCore()
        _ = core.handle(.received(alice, registration("w-alice", prefetch: 2)), at: Self.at(0))
        _ = core.handle(.received(alice, .credit(2)), at: Self.at(0))
        let kept = lease(index: 0), lost = lease(index: 1)
        _ = core.handle(.claimed(alice, kept), at: Self.at(0))
        _ = core.handle(.claimed(alice, lost), at: Self.at(0))
        // `lost`'s result vanished with a replaced socket: the worker no longer lists it.
        let beat = core.handle(.received(alice, heartbeat(1, holding: [kept])), at: Self.at(2.5))
        #expect(beat.contains(.renewLease(kept.shard, token: kept.token)))
        #expect(!beat.contains(.renewLease(lost.shard, token: lost.token)))
        // When the ledger expires it, the slot comes back and the worker is told to drop it.
        let expired = core.handle(.leasesReleased(held(lost), finishedJobs: []), at: Self.at(30))
        #expect(expired.contains(.send(.cancel(.shard(wire(lost)), reason: "lease expired"), to: alice)))
        #expect(core.leases.count == 1 && core.workers[alice]?.window.outstanding.count == 1)
    }

    @Test func expiryOfAnOlderLeaseOfAShardLeavesItsNewLeaseAlone() {
        var core = makeCore()
        _ = core.handle(.received(alice, registration("w-alice", prefetch: 1)), at: Self.at(0))
        _ = core.handle(.received(alice, .credit(1)), at: Self.at(0))
        let fresh = lease(index: 3)
        _ = core.handle(.claimed(alice, fresh), at: Self.at(0))
        // The ledger reports the shard's previous lease (another token) as released after the new claim was handled.
        let stale = CoordinatorCore.HeldLease(shard: fresh.shard, token: LeaseToken.random())
        let actions = core.handle(.leasesReleased([stale], finishedJobs: []), at: Self.at(1))
        #expect(!actions.contains { if case .send(.cancel, _) = $0 { true } else { false } })
        #expect(core.leases[fresh.token] != nil)
    }

    @Test func prefetchAndCreditAreCappedPerWorker() {
        var core = makeCore()  // max_prefetch_per_worker 4 (the default)
        let greedy = core.handle(.received(alice, registration("greedy", prefetch: 100_000)), at: Self.at(0))
        #expect(rows(greedy).first?.capabilitiesJSON.contains("\"prefetch_granted\":4") == true)
        #expect(core.workers[alice]?.window.prefetch == 4)
        #expect(claims(core.handle(.received(alice, .credit(100_000)), at: Self.at(0.1))).count == 4)
        for index in 0..<4 { _ = core.handle(.claimed(alice, lease(index: Int32(index))), at: Self.at(0.2)) }
        #expect(core.shardsInFlight == 4)
        // More credit while it holds its cap is ignored.
        #expect(claims(core.handle(.received(alice, .credit(100_000)), at: Self.at(0.3))).isEmpty)
        #expect(core.workers[alice]?.window.credits == 0)
        // A modest worker keeps the prefetch it asked for, and gets its share.
        _ = core.handle(.received(bob, registration("modest", prefetch: 2)), at: Self.at(0.4))
        #expect(claims(core.handle(.received(bob, .credit(2)), at: Self.at(0.5))) == [bob, bob])
        #expect(core.workers[bob]?.window.prefetch == 2)

        let liveness = try! WorkerLiveness<PeerIdentity>.Configuration(heartbeatInterval: .seconds(1), missedHeartbeatsBeforeDead: 3)
        var strict = CoordinatorCore(configuration: .init(liveness: liveness, maxPrefetchPerWorker: 1), now: Self.t0)
        _ = strict.handle(.received(alice, registration("greedy", prefetch: 64)), at: Self.at(0))
        #expect(claims(strict.handle(.received(alice, .credit(64)), at: Self.at(0.1))) == [alice])
    }

    @Test func workerRowFollowsAssignmentProgressAndResults() throws {
        var core = makeCore()
        let registered = core.handle(.received(alice, registration("w-alice", prefetch: 2)), at: Self.at(0))
        #expect(rows(registered).map(\.state) == [.idle])
        _ = core.handle(.received(alice, .credit(2)), at: Self.at(0))
        let first = lease(index: 0), second = lease(index: 1)
        let assigned = core.handle(.claimed(alice, first), at: Self.at(0.1))
        #expect(rows(assigned).map(\.state) == [.busy] && rows(assigned).first?.currentShard == first.shard)
        // A second assignment changes neither state nor current shard: the row is not rewritten.
        #expect(rows(core.handle(.claimed(alice, second), at: Self.at(0.1))).isEmpty)
        // Every heartbeat refreshes the row (its heartbeat time), busy while it holds shards.
        #expect(rows(core.handle(.received(alice, heartbeat(1, holding: [first, second])), at: Self.at(1))).map(\.state) == [.busy])
        let done = core.handle(.received(alice, .shardDone(ShardDoneMessage(shardID: wire(first), leaseToken: first.token, results: []))),
                               at: Self.at(2))
        #expect(rows(done).map(\.currentShard) == [second.shard])
        let progress = core.handle(.received(alice, .progress(shardID: wire(second), itemsDone: 1)), at: Self.at(2.5))
        #expect(rows(progress).isEmpty)  // already the current shard
        let idle = core.handle(.received(alice, .shardFailed(ShardFailedMessage(shardID: wire(second), leaseToken: second.token,
                                                                                error: "disk full"))), at: Self.at(3))
        #expect(rows(idle).map(\.state) == [.idle] && rows(idle).first?.currentShard == nil)
    }

    @Test func progressNamesTheShardTheWorkerIsRunning() {
        var core = makeCore()
        _ = core.handle(.received(alice, registration("w-alice", prefetch: 2)), at: Self.at(0))
        _ = core.handle(.received(alice, .credit(2)), at: Self.at(0))
        let first = lease(index: 5), second = lease(index: 2)
        _ = core.handle(.claimed(alice, first), at: Self.at(0))
        _ = core.handle(.claimed(alice, second), at: Self.at(0))
        // Without progress the lowest shard is shown; progress on shard 5 makes it the current one.
        let progress = core.handle(.received(alice, .progress(shardID: wire(first), itemsDone: 3)), at: Self.at(1))
        #expect(rows(progress).map(\.currentShard) == [first.shard])
    }

    @Test func anIsolatedShardsProgressIsEchoedAndAnEndedSessionNamesTheItemInHand() throws {
        var core = makeCore()
        _ = core.handle(.received(alice, registration("w-alice", prefetch: 2, session: 1)), at: Self.at(0))
        _ = core.handle(.received(alice, .credit(2)), at: Self.at(0))
        var isolated = lease(index: 3)
        isolated.isolated = true
        isolated.excluded = [ExcludedItem(ordinal: 9, sourceId: "poison", reason: "crashed twice")]
        let plain = lease(index: 4)
        let assigned = assignments(core.handle(.claimed(alice, isolated), at: Self.at(0.1)))
        let message = try #require(assigned.first?.1)
        #expect(message.isolated && message.excluded == isolated.excluded, "the flag and the excluded items reach the worker")
        #expect(assignments(core.handle(.claimed(alice, plain), at: Self.at(0.1))).first?.1.isolated == false)
        #expect(core.counters.isolatedAssignments == 1)

        // The worker is about to start item 1 of the isolated shard (ordinal 7): noted, then echoed.
        let progress = core.handle(.received(alice, .progress(shardID: wire(isolated), itemsDone: 1)), at: Self.at(0.2))
        #expect(progress.contains(.send(.progress(shardID: wire(isolated), itemsDone: 1), to: alice)))
        #expect(core.leases[isolated.token]?.itemInHand == 7)
        // Progress of the plain shard is echoed too but names no item.
        _ = core.handle(.received(alice, .progress(shardID: wire(plain), itemsDone: 1)), at: Self.at(0.2))
        #expect(core.leases[plain.token]?.itemInHand == nil)

        // The process dies of a fatal signal and says so: the release names the item in hand of the isolated shard only.
        let crashed = core.handle(.received(alice, .crashed(signal: 6, reason: "signal 6, SIGABRT")), at: Self.at(0.5))
        let released = try #require(releases(crashed).first)
        #expect(released.0 == [CoordinatorCore.HeldLease(shard: isolated.shard, token: isolated.token, itemInHand: 7),
                               CoordinatorCore.HeldLease(shard: plain.shard, token: plain.token)])
        #expect(released.1 == "worker w-alice crashed (signal 6, SIGABRT)")
        #expect(core.workers[alice] == nil && core.counters.workersCrashed == 1)
    }

    /// A process that ends without a crash report (SIGKILL, a restart, silence) was stopped from
    /// outside: no item is blamed, whatever it had in hand.
    @Test func anEndWithoutACrashReportBlamesNoItem() {
        var core = makeCore()
        _ = core.handle(.received(alice, registration("w-alice", prefetch: 1, session: 1)), at: Self.at(0))
        _ = core.handle(.received(alice, .credit(1)), at: Self.at(0))
        var isolated = lease(index: 3)
        isolated.isolated = true
        _ = core.handle(.claimed(alice, isolated), at: Self.at(0.1))
        _ = core.handle(.received(alice, .progress(shardID: wire(isolated), itemsDone: 0)), at: Self.at(0.2))
        #expect(core.leases[isolated.token]?.itemInHand == 6)
        let restarted = core.handle(.received(alice, registration("w-alice", prefetch: 1, session: 2)), at: Self.at(0.5))
        #expect(releases(restarted).first?.0 == held(isolated))
    }

    @Test func progressPastTheLastItemOfAnIsolatedShardNamesNoItem() {
        var core = makeCore()
        _ = core.handle(.received(alice, registration("w-alice", prefetch: 1)), at: Self.at(0))
        _ = core.handle(.received(alice, .credit(1)), at: Self.at(0))
        var isolated = lease(index: 1)
        isolated.isolated = true
        _ = core.handle(.claimed(alice, isolated), at: Self.at(0.1))
        _ = core.handle(.received(alice, .progress(shardID: wire(isolated), itemsDone: 0)), at: Self.at(0.2))
        #expect(core.leases[isolated.token]?.itemInHand == 2)
        // Every item is done: a crash while writing the shard is not any one item's fault.
        _ = core.handle(.received(alice, .progress(shardID: wire(isolated), itemsDone: 2)), at: Self.at(0.3))
        #expect(core.leases[isolated.token]?.itemInHand == nil)
    }

    @Test func silentRowsAreSweptOfflineOnTheReleaseSchedule() {
        var core = makeCore()
        let actions = core.handle(.tick, at: Self.at(5.0))
        // Twice the liveness limit (3 × 1 s) without a heartbeat: no coordinator hears from that worker.
        #expect(actions.contains(.markSilentWorkersOffline(olderThanSeconds: 6)))
        // A peer that registers and vanishes is expired by liveness and its row goes offline.
        _ = core.handle(.received(bob, registration("junk", prefetch: 1)), at: Self.at(5.1))
        let expired = core.handle(.tick, at: Self.at(8.2))
        #expect(rows(expired).contains { $0.id == "junk" && $0.state == .offline })
        #expect(core.workers.isEmpty)
    }

    @Test func aJobEndedByReleasedLeasesIsFinalizedOnce() {
        var core = makeCore()
        _ = core.handle(.received(alice, registration("w-alice", prefetch: 1)), at: Self.at(0))
        _ = core.handle(.received(alice, .credit(1)), at: Self.at(0))
        let last = lease(job: 9, index: 0)
        _ = core.handle(.claimed(alice, last), at: Self.at(0))
        // The ledger expired the job's last lease and failed the shard: that ended the job.
        #expect(core.handle(.leasesReleased(held(last), finishedJobs: [9]), at: Self.at(20)).contains(.finalize(jobID: 9)))
        #expect(!core.handle(.leasesReleased([], finishedJobs: [9]), at: Self.at(21)).contains(.finalize(jobID: 9)))
        // The same through a session's end (the answer to `.releaseLeases`).
        #expect(core.handle(.leasesReleased([], finishedJobs: [10]), at: Self.at(22)).contains(.finalize(jobID: 10)))
        #expect(core.finalizedJobs == [9, 10])
    }

    @Test func aCancelRevokesTheJobsShardsOnItsWorkersAndFinalizesIt() {
        var core = makeCore()
        _ = core.handle(.received(alice, registration("w-alice", prefetch: 3)), at: Self.at(0))
        _ = core.handle(.received(alice, .credit(3)), at: Self.at(0))
        let a = lease(job: 5, index: 0), b = lease(job: 5, index: 1), other = lease(job: 6, index: 0)
        for shard in [a, b, other] { _ = core.handle(.claimed(alice, shard), at: Self.at(0.1)) }
        let cancelled = core.handle(.jobCancelled(5), at: Self.at(1))
        #expect(cancelled.filter { if case .send(.cancel(.job(5), _), alice) = $0 { true } else { false } }.count == 1)
        #expect(cancelled.contains(.finalize(jobID: 5)))
        #expect(core.leases.count == 1 && core.leases[other.token] != nil)
        #expect(core.workers[alice]?.window.outstanding.count == 1)
        // The worker returns the credit of the dropped shards; the freed slots take new work.
        #expect(claims(core.handle(.received(alice, .credit(2)), at: Self.at(1.1))).count == 2)
        #expect(!core.handle(.jobFinished(5), at: Self.at(2)).contains(.finalize(jobID: 5)), "once per finish")
    }

    @Test func expiredLeasesAreReleasedPeriodically() {
        var core = makeCore()
        #expect(!core.handle(.tick, at: Self.at(4.9)).contains(.releaseExpiredLeases))
        #expect(core.handle(.tick, at: Self.at(5.0)).contains(.releaseExpiredLeases))
        #expect(!core.handle(.tick, at: Self.at(6.0)).contains(.releaseExpiredLeases))
        #expect(core.handle(.tick, at: Self.at(10.1)).contains(.releaseExpiredLeases))
    }

    @Test func finalizerRunsExactlyOncePerJob() {
        var core = makeCore()
        let ref = ShardRef(jobID: 3, index: 0)
        #expect(core.handle(.recorded(ref, .applied, jobFinished: true), at: Self.at(0)).contains(.finalize(jobID: 3)))
        #expect(!core.handle(.recorded(ShardRef(jobID: 3, index: 1), .applied, jobFinished: true), at: Self.at(1))
            .contains(.finalize(jobID: 3)))
        #expect(!core.handle(.jobFinished(3), at: Self.at(2)).contains(.finalize(jobID: 3)))
        #expect(core.handle(.jobFinished(4), at: Self.at(2)).contains(.finalize(jobID: 4)))
        #expect(core.finalizedJobs == [3, 4])
    }

    @Test func aJobReopenedByRetryIsFinalizedAgainWhenItFinishesAgain() {
        var core = makeCore()
        _ = core.handle(.received(alice, registration("w-alice", prefetch: 1)), at: Self.at(0))
        _ = core.handle(.received(alice, .credit(1)), at: Self.at(0))
        #expect(core.handle(.recorded(ShardRef(jobID: 3, index: 0), .applied, jobFinished: true), at: Self.at(0))
            .contains(.finalize(jobID: 3)))
        // `vtp job retry` re-opened the job: one of its shards is claimed again and finishes it again.
        _ = core.handle(.claimed(alice, lease(job: 3, index: 0)), at: Self.at(1))
        #expect(!core.finalizedJobs.contains(3))
        #expect(core.handle(.recorded(ShardRef(jobID: 3, index: 0), .applied, jobFinished: true), at: Self.at(2))
            .contains(.finalize(jobID: 3)))
    }

    @Test func claimForADeadWorkerGoesToAnotherWorkerWithCredit() throws {
        var core = makeCore()
        _ = core.handle(.received(alice, registration("w-alice", prefetch: 1)), at: Self.at(0))
        _ = core.handle(.received(alice, .credit(1)), at: Self.at(0))
        _ = core.handle(.received(bob, registration("w-bob", prefetch: 1)), at: Self.at(0))
        _ = core.handle(.received(bob, .credit(1)), at: Self.at(0))
        _ = core.handle(.received(alice, .disconnect(reason: "bye")), at: Self.at(0.1))
        let actions = core.handle(.claimed(alice, lease(index: 5)), at: Self.at(0.2))
        #expect(assignments(actions).map(\.0) == [bob])
        // Bob's only slot was taken by that shard, so his own claim, when it returns, cannot be placed.
        let orphan = core.handle(.claimed(bob, lease(index: 6)), at: Self.at(0.3))
        #expect(orphan.contains(.abandonLease(ShardRef(jobID: 7, index: 6))))
    }

    @Test func shutdownStopsDispatchingAndExitsWhenShardsAreIn() throws {
        var core = makeCore()
        _ = core.handle(.received(alice, registration("w-alice", prefetch: 2)), at: Self.at(0))
        _ = core.handle(.received(alice, .credit(2)), at: Self.at(0))
        let shard = lease(index: 0)
        _ = core.handle(.claimed(alice, shard), at: Self.at(0))
        let stopping = core.handle(.shutdownRequested, at: Self.at(1))
        #expect(!stopping.contains(.exit))
        // The second claim comes back after the shutdown: it is not handed out.
        #expect(assignments(core.handle(.claimed(alice, lease(index: 1)), at: Self.at(1.1))).isEmpty)
        #expect(claims(core.handle(.received(alice, .credit(1)), at: Self.at(1.2))).isEmpty)
        let wire = ShardDispatchID(jobID: 7, index: 0).wire!
        let done = core.handle(.received(alice, .shardDone(ShardDoneMessage(shardID: wire, leaseToken: shard.token, results: []))),
                               at: Self.at(2))
        #expect(done.contains(.exit))
        #expect(done.contains(.send(.disconnect(reason: "coordinator shutting down"), to: alice)))
        #expect(done.contains { if case let .upsertWorker(r) = $0 { r.id == "w-alice" && r.state == .offline } else { false } })
        #expect(core.handle(.tick, at: Self.at(3)).isEmpty)
    }

    @Test func shutdownGivesUpWaitingAtTheGraceDeadline() {
        var core = makeCore()
        _ = core.handle(.received(alice, registration("w-alice", prefetch: 1)), at: Self.at(0))
        _ = core.handle(.received(alice, .credit(1)), at: Self.at(0))
        _ = core.handle(.claimed(alice, lease(index: 0)), at: Self.at(0))
        _ = core.handle(.shutdownRequested, at: Self.at(0))
        #expect(!core.handle(.received(alice, heartbeat(1)), at: Self.at(5)).contains(.exit))
        #expect(core.handle(.received(alice, heartbeat(2)), at: Self.at(10)).contains(.exit))
    }

    @Test func dispatchIDRoundTripsAndRejectsOutOfRangeValues() {
        let id = ShardDispatchID(jobID: 123_456, index: 789)
        #expect(ShardDispatchID(wire: id.wire!) == id)
        #expect(ShardDispatchID(jobID: Int64(Int32.max) + 1, index: 0).wire == nil)
        #expect(ShardDispatchID(wire: -1) == nil)
        #expect(ShardDispatchID(wire: Int64(UInt32.max)) == nil)  // index half above Int32.max
        let uuid = UUID()
        #expect(LeaseToken(uuid: uuid).uuid == uuid)
    }

    @Test func aHandedBackShardIsRequeuedWithoutSpendingAnAttemptAndAFailureIsNot() {
        var core = makeCore()
        _ = core.handle(.received(alice, registration("w-alice", prefetch: 2)), at: Self.at(0))
        _ = core.handle(.received(alice, .credit(2)), at: Self.at(0))
        let first = lease(index: 0), second = lease(index: 1)
        _ = core.handle(.claimed(alice, first), at: Self.at(0))
        _ = core.handle(.claimed(alice, second), at: Self.at(0))
        let back = core.handle(.received(alice, .shardFailed(.handBack(shardID: wire(first), leaseToken: first.token,
                                                                          reason: "worker interrupted after 1 of 2 items"))),
                               at: Self.at(1))
        #expect(back.contains(.handBack(first.shard, token: first.token, reason: "worker interrupted after 1 of 2 items")))
        #expect(!back.contains { if case .fail = $0 { true } else { false } })
        let failed = core.handle(.received(alice, .shardFailed(ShardFailedMessage(shardID: wire(second), leaseToken: second.token,
                                                                                  error: "disk full"))), at: Self.at(2))
        #expect(failed.contains(.fail(second.shard, token: second.token, error: "disk full")))
        #expect(core.shardsInFlight == 0)
    }

    @Test func aWorkersRowCarriesTheItemsItReportedInItsRunningShard() {
        var core = makeCore()
        _ = core.handle(.received(alice, registration("w-alice", prefetch: 2)), at: Self.at(0))
        _ = core.handle(.received(alice, .credit(2)), at: Self.at(0))
        let a = lease(index: 0), b = lease(index: 1)
        _ = core.handle(.claimed(alice, a), at: Self.at(0))
        _ = core.handle(.claimed(alice, b), at: Self.at(0))
        _ = core.handle(.received(alice, .progress(shardID: wire(b), itemsDone: 1)), at: Self.at(0.5))
        let row = rows(core.handle(.received(alice, heartbeat(1, holding: [a, b])), at: Self.at(1))).last
        #expect(row?.currentShard == b.shard && row?.itemsInProgress == 1)
        // Recorded: the shard's items are in the ledger's counts now, the row's count goes.
        _ = core.handle(.received(alice, .shardDone(ShardDoneMessage(shardID: wire(b), leaseToken: b.token, results: []))),
                        at: Self.at(1.5))
        let after = rows(core.handle(.received(alice, heartbeat(2, holding: [a])), at: Self.at(2))).last
        #expect(after?.currentShard == a.shard && after?.itemsInProgress == 0)
    }

    @Test func aJobFailureFailsTheJobAndStopsItsOtherShardsOnEveryWorker() {
        let (start, a, b, other) = aliceAndBobHoldingThreeShards()
        var core = start
        let reason = "/models/m: cannot load model: model.safetensors: truncated"
        let failing = core.handle(.received(alice, .shardFailed(ShardFailedMessage(shardID: wire(a), leaseToken: a.token,
                                                                                   error: reason, kind: .job))), at: Self.at(1))
        #expect(failing.contains(.failJob(a.shard, token: a.token, error: reason)))
        #expect(!failing.contains { if case .fail = $0 { true } else { false } })
        let recorded = core.handle(.recorded(a.shard, .jobFailed, jobFinished: false), at: Self.at(1.1))
        // Bob's shard of the failed job is revoked; his shard of job 8 goes on.
        #expect(recorded.contains(.send(.cancel(.job(7), reason: "job failed"), to: bob)))
        #expect(!recorded.contains { if case .finalize = $0 { true } else { false } })
        #expect(core.leases.values.map(\.shard) == [other.shard])
        #expect(core.counters.jobsFailed == 1)
    }

    @Test func itemsReportedInRunningShardsAreCountedPerJobUntilTheShardIsRecorded() {
        let (start, a, b, other) = aliceAndBobHoldingThreeShards()
        var core = start
        #expect(core.itemsInProgress(job: 7) == 0)
        _ = core.handle(.received(alice, .progress(shardID: wire(a), itemsDone: 1)), at: Self.at(1))
        _ = core.handle(.received(bob, .progress(shardID: wire(b), itemsDone: 2)), at: Self.at(1))
        _ = core.handle(.received(bob, .progress(shardID: wire(other), itemsDone: 1)), at: Self.at(1))
        _ = core.handle(.received(alice, .progress(shardID: wire(a), itemsDone: 2)), at: Self.at(1.5))
        #expect(core.itemsInProgress(job: 7) == 4)
        #expect(core.itemsInProgressByJob == [7: 4, 8: 1])
        // Once a result is in, the ledger counts those items; they leave the in-progress count.
        _ = core.handle(.received(alice, .shardDone(ShardDoneMessage(shardID: wire(a), leaseToken: a.token, results: []))), at: Self.at(2))
        #expect(core.itemsInProgress(job: 7) == 2)
        // A worker that leaves takes its leases and their counts along; the other's are untouched.
        _ = core.handle(.received(bob, .disconnect(reason: "bye")), at: Self.at(3))
        #expect(core.itemsInProgressByJob.isEmpty)
        #expect(core.leases.values.allSatisfy { $0.peer == alice })
    }

    @Test func aSecondShutdownStopsWaitingForShardsInFlight() {
        var core = makeCore()
        _ = core.handle(.received(alice, registration("w-alice", prefetch: 1)), at: Self.at(0))
        _ = core.handle(.received(alice, .credit(1)), at: Self.at(0))
        _ = core.handle(.claimed(alice, lease(index: 0)), at: Self.at(0))
        #expect(!core.handle(.shutdownRequested, at: Self.at(1)).contains(.exit))
        #expect(core.handle(.shutdownRequested, at: Self.at(1.5)).contains(.exit))
    }
}
