import Foundation
import Synchronization
import Testing
import VTPVocabulary
import VTPCoordinator
import VTPJobs
import VTPQueue
import VTPRuntimeSupport
import VTPTestSupport
import VTPTransport
import VTPWorker

/// A DEALER playing a worker step by step, whose inbound messages are collected so a test can wait
/// for them with a deadline (a coordinator that never sends must fail the test, not hang it).
struct ScriptedWorker {
    let dealer: DealerEndpoint
    let inbox: Collector<DealerInbound>

    init(context: ZMQContext, endpoint: String, id: String) throws {
        dealer = try DealerEndpoint(context: context, configuration: DealerConfiguration(endpoint: endpoint, identity: PeerIdentity(id)))
        inbox = Collector(dealer.inbound)
    }

    /// Everything received so far that is not a heartbeat.
    var messages: [WireMessage] { inbox.snapshot.compactMap { try? $0.get() }.filter { $0.type != .heartbeat } }

    var assignments: [AssignShardMessage] { messages.compactMap { if case let .assignShard(a) = $0 { a } else { nil } } }

    /// Waits up to `seconds` for `count` assignments in all; returns those received.
    func assignments(_ count: Int, within seconds: Double) async -> [AssignShardMessage] {
        _ = await inbox.wait(timeout: .milliseconds(Int64(seconds * 1000))) { received in
            received.filter { if case .success(.assignShard) = $0 { true } else { false } }.count >= count
        }
        return assignments
    }

    func register(_ registration: RegisterMessage, credit: UInt32) async throws {
        try await dealer.send(.register(registration))
        try await dealer.send(.credit(credit))
    }

    /// Heartbeats every 100 ms listing `held()`, as a live worker does; cancel the task to go silent.
    func heartbeating(_ held: @escaping @Sendable () -> [Int64]) -> Task<Void, Never> {
        Task { [dealer] in
            var sequence: UInt64 = 0
            while !Task.isCancelled {
                sequence += 1
                try? await dealer.send(.heartbeat(HeartbeatMessage(sequence: sequence, heldShards: Array(Set(held())).sorted())))
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
    }
}

/// Shard ids a scripted worker reports holding, shared with its heartbeat task.
final class HeldShards: Sendable {
    private let ids = Mutex<[Int64]>([])
    func set(_ new: [Int64]) { ids.withLock { $0 = new } }
    var current: [Int64] { ids.withLock { $0 } }
}

/// A handler standing in for a long shard: it computes for `seconds`, reporting progress every
/// 50 ms like the executor does per batch, then succeeds for every item.
struct LongShardHandler: ShardHandling {
    let seconds: Double

    func run(_ task: ShardTask, progress: @escaping @Sendable (Int) -> Void) async throws -> [ItemResult] {
        let deadline = ContinuousClock.now + .milliseconds(Int64(seconds * 1000))
        var done = 0
        while ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
            done += 1
            progress(min(done, task.items.count))
        }
        return task.items.map { .success($0.ordinal, output: "long#\($0.ordinal)") }
    }
}

/// Worker sessions, fair credit, finalization on every ending and the workers table, against a real
/// coordinator, real sockets and a real PostgreSQL ledger.
@Suite(.serialized)
struct SessionIntegrationTests {
    /// Leases far longer than any test here: whatever frees a shard in these tests, it is not expiry.
    static let longLeases = LeasePolicy(leaseSeconds: 120, backoffBaseSeconds: 0, backoffCapSeconds: 0)

    func plainJob(_ ledger: Ledger, shards: Int) async throws -> Int64 {
        try await ledger.enqueue(
            JobSpec(type: "latents", parametersJSON: "{}", model: "/m", inputLocation: "/in", outputLocation: scratchOutput(), shardSize: 1),
            items: (0..<shards).map { JobItem(ordinal: $0, sourceId: "s\($0)", location: .file(path: "/in/\($0).jpg")) })
    }

    func startCoordinator(_ url: DatabaseURL, endpoint: String, policy: LeasePolicy, notifier: WorkNotifier? = nil,
                          context: ZMQContext) throws -> (Coordinator, Task<Void, Never>) {
        let coordinator = try Coordinator(ledger: Ledger(database: url, leasePolicy: policy), notifier: notifier, finalizer: ManifestFinalizer(),
                                          options: Coordinator.Options(bindEndpoints: [endpoint],
                                                                       core: fastCore(leaseSeconds: policy.leaseSeconds)),
                                          context: context)
        return (coordinator, Task { await coordinator.run() })
    }

    func leasedBy(_ ledger: Ledger, job: Int64) async throws -> [String: Int] {
        let rows = try await ledger.sql("SELECT lease_owner || '=' || count(*) FROM shards WHERE job_id = $1 AND state = 'leased' GROUP BY lease_owner",
                                        [String(job)])
        var counts: [String: Int] = [:]
        for row in rows.compactMap({ $0 }) {
            let parts = row.split(separator: "=")
            counts[String(parts[0])] = Int(parts[1])
        }
        return counts
    }

    @Test(.timeLimit(.minutes(2)))
    func aWorkerRestartedUnderItsIDGetsItsShardsBackAtOnceAndTheOldResultsAreRefused() async throws {
        let dir = try TemporaryDirectory("session-restart")
        defer { dir.remove() }
        try await withDatabase { url in
            let context = try ZMQContext()
            let ledger = Ledger(database: url)
            let jobID = try await plainJob(ledger, shards: 2)
            let (coordinator, serving) = try startCoordinator(url, endpoint: "ipc://" + dir.file("c.ipc"), policy: Self.longLeases,
                                                              context: context)
            let ids = (0..<2).map { ShardDispatchID(jobID: jobID, index: Int32($0)).wire! }

            let old = try ScriptedWorker(context: context, endpoint: coordinator.boundEndpoints[0], id: "phoenix")
            try await old.register(registration("phoenix", prefetch: 2, session: 1), credit: 2)
            let oldBeats = old.heartbeating { ids }
            let first = await old.assignments(2, within: 10)
            try #require(first.count == 2)

            // SIGKILL, and systemd restarts the process under the same --worker-id well within the
            // liveness limit: same routing identity, new session nonce.
            oldBeats.cancel()
            await old.dealer.shutdown()
            let new = try ScriptedWorker(context: context, endpoint: coordinator.boundEndpoints[0], id: "phoenix")
            try await new.register(registration("phoenix", prefetch: 2, session: 2), credit: 2)
            let newBeats = new.heartbeating { ids }
            defer { newBeats.cancel() }
            // The 120 s leases were released the moment the new process registered.
            let again = await new.assignments(2, within: 10)
            try #require(again.count == 2, "the restarted worker never got the shards back: \(new.messages)")
            #expect(Set(again.map(\.shardID)) == Set(ids))
            #expect(Set(again.map(\.leaseToken)).isDisjoint(with: first.map(\.leaseToken)))
            #expect(coordinator.counters.sessionsReplaced == 1)
            #expect(coordinator.counters.workersDeclaredDead == 0)

            // A result of the dead session arriving late is refused by its stale token.
            let stale = first[0]
            try await new.dealer.send(.shardDone(ShardDoneMessage(shardID: stale.shardID, leaseToken: stale.leaseToken,
                                                                  results: stale.items.map { .failure($0.ordinal, error: "stale") })))
            #expect(try await eventually(5) { try await ledger.job(jobID).rejectedCompletions == 1 })
            for assignment in again {
                try await new.dealer.send(.shardDone(ShardDoneMessage(shardID: assignment.shardID, leaseToken: assignment.leaseToken,
                                                                      results: assignment.items.map { .success($0.ordinal, output: "fresh") })))
            }
            #expect(try await eventually(5) { try await ledger.job(jobID).state == .completed })
            let job = try await ledger.job(jobID)
            #expect(job.itemsDone == 2 && job.rejectedCompletions == 1)
            // The stale session reported failures: had its result landed, they would be failure rows.
            #expect(try await ledger.scalar("SELECT count(*) FROM failed_items WHERE job_id = $1", [String(jobID)]) == "0")
            // Both attempts were spent: the killed process's and the new one's.
            #expect(try await ledger.sql("SELECT DISTINCT attempts::text FROM shards WHERE job_id = $1", [String(jobID)]) == ["2"])

            coordinator.requestShutdown()
            await serving.value
            await new.dealer.shutdown()
        }
    }

    @Test(.timeLimit(.minutes(2)))
    func aDeadWorkersLeasesAreReleasedWithoutWaitingForThemToExpire() async throws {
        let dir = try TemporaryDirectory("session-dead")
        defer { dir.remove() }
        try await withDatabase { url in
            let context = try ZMQContext()
            let ledger = Ledger(database: url)
            let jobID = try await plainJob(ledger, shards: 1)
            let (coordinator, serving) = try startCoordinator(url, endpoint: "ipc://" + dir.file("c.ipc"), policy: Self.longLeases,
                                                              context: context)
            let silent = try ScriptedWorker(context: context, endpoint: coordinator.boundEndpoints[0], id: "silent")
            try await silent.register(registration("silent"), credit: 1)
            try #require(await silent.assignments(1, within: 10).count == 1)
            // It says nothing from now on: dead after 3 × 200 ms, and its 120 s lease goes back at once.
            let rescuer = try ScriptedWorker(context: context, endpoint: coordinator.boundEndpoints[0], id: "rescuer")
            try await rescuer.register(registration("rescuer"), credit: 1)
            let beats = rescuer.heartbeating { [ShardDispatchID(jobID: jobID, index: 0).wire!] }
            defer { beats.cancel() }
            let rescued = await rescuer.assignments(1, within: 10)
            #expect(rescued.count == 1, "the dead worker's shard was not re-dispatched")
            #expect(coordinator.counters.workersDeclaredDead == 1)
            #expect(try await ledger.listWorkers().first { $0.report.id == "silent" }?.report.state == .offline)
            let error = try await ledger.sql("SELECT last_error FROM shards WHERE job_id = $1", [String(jobID)])
            #expect(error.first??.contains("silent stopped responding") == true, "\(error)")
            coordinator.requestShutdown()
            await serving.value
            await silent.dealer.shutdown()
            await rescuer.dealer.shutdown()
        }
    }

    @Test(.timeLimit(.minutes(2)))
    func aGreedyPeerHoldsNoMoreThanItsCapAndItsGoodbyeReleasesThemAtOnce() async throws {
        let dir = try TemporaryDirectory("session-greedy")
        defer { dir.remove() }
        try await withDatabase { url in
            let context = try ZMQContext()
            let ledger = Ledger(database: url)
            let jobID = try await plainJob(ledger, shards: 10)
            let (coordinator, serving) = try startCoordinator(url, endpoint: "ipc://" + dir.file("c.ipc"), policy: Self.longLeases,
                                                              context: context)
            let greedyHeld = HeldShards(), modestHeld = HeldShards()
            let greedy = try ScriptedWorker(context: context, endpoint: coordinator.boundEndpoints[0], id: "greedy")
            try await greedy.register(registration("greedy", prefetch: 100_000), credit: 100_000)
            let greedyBeats = greedy.heartbeating { greedyHeld.current }
            _ = await greedy.assignments(5, within: 3)
            greedyHeld.set(greedy.assignments.map(\.shardID))
            // The default cap (coordinator.max_prefetch_per_worker = 4), however much credit it claims.
            #expect(greedy.assignments.count == 4)
            try await greedy.dealer.send(.credit(100_000))
            let modest = try ScriptedWorker(context: context, endpoint: coordinator.boundEndpoints[0], id: "modest")
            try await modest.register(registration("modest", prefetch: 2), credit: 2)
            let modestBeats = modest.heartbeating { modestHeld.current }
            defer { modestBeats.cancel() }
            #expect(await modest.assignments(2, within: 5).count == 2)
            try await Task.sleep(for: .milliseconds(500))
            #expect(greedy.assignments.count == 4)
            #expect(try await leasedBy(ledger, job: jobID) == ["greedy": 4, "modest": 2])

            // The greedy peer leaves: what it held is claimable at once, not after 120 s.
            greedyBeats.cancel()
            try await greedy.dealer.send(.disconnect(reason: "bye"))
            #expect(try await eventually(5) { try await leasedBy(ledger, job: jobID)["greedy"] == nil })
            #expect(try await ledger.sql("SELECT count(*)::text FROM shards WHERE job_id = $1 AND state = 'pending'", [String(jobID)]) == ["8"])
            #expect(try await ledger.listWorkers().first { $0.report.id == "greedy" }?.report.state == .offline)
            coordinator.requestShutdown()
            await serving.value
            await greedy.dealer.shutdown()
            await modest.dealer.shutdown()
        }
    }

    /// A job whose last shard ends by lease expiry (its worker is alive but lost the assignment, so
    /// it never lists it) or by its worker's death is finalized at once, not at the next restart.
    @Test(.timeLimit(.minutes(2)))
    func jobsEndedByLeaseExpiryOrByAWorkersDeathAreFinalizedAtOnce() async throws {
        let dir = try TemporaryDirectory("session-finalize")
        defer { dir.remove() }
        let (input, _) = try makeInput(dir, good: 2)
        try await withDatabase { url in
            let context = try ZMQContext()
            let policy = LeasePolicy(leaseSeconds: 1, backoffBaseSeconds: 0, backoffCapSeconds: 0)
            let ledger = Ledger(database: url, leasePolicy: policy)
            let (coordinator, serving) = try startCoordinator(url, endpoint: "ipc://" + dir.file("c.ipc"), policy: policy, context: context)
            let notes = Collector(coordinator.notifications)
            func enqueue(_ output: String) async throws -> Int64 {
                try FileManager.default.createDirectory(atPath: dir.file(output), withIntermediateDirectories: true)
                let request = JobRequest(parameters: .latents(LatentsParameters(imageSize: 64, batchSize: 2)), input: input,
                                         output: dir.file(output), model: Fixtures.path("vtp-tiny"), shardSize: 100, maxAttempts: 1)
                return try await ledger.enqueue(request.spec, items: try request.listItems().items)
            }
            func finalized(_ job: Int64) async -> CoordinatorNotification? {
                await notes.wait(timeout: .seconds(10)) { $0.contains { if case .jobFinalized(job, _) = $0 { true } else { false } } }
                    .first { if case .jobFinalized(job, _) = $0 { true } else { false } }
            }

            let expiring = try await enqueue("out-expiry")
            let forgetful = try ScriptedWorker(context: context, endpoint: coordinator.boundEndpoints[0], id: "forgetful")
            try await forgetful.register(registration("forgetful"), credit: 1)
            let beats = forgetful.heartbeating { [] }
            try #require(await forgetful.assignments(1, within: 10).count == 1)
            guard case let .jobFinalized(_, .written(counts))? = await finalized(expiring) else {
                Issue.record("the job whose only shard expired was not finalized: \(notes.snapshot)")
                return
            }
            #expect(counts.failed == 3 && counts.written == 0)
            #expect(FileManager.default.fileExists(atPath: dir.file("out-expiry/manifest.json")))
            #expect(try await ledger.job(expiring).state == .completedWithFailures)
            beats.cancel()
            await forgetful.dealer.shutdown()

            let orphaned = try await enqueue("out-death")
            let doomed = try ScriptedWorker(context: context, endpoint: coordinator.boundEndpoints[0], id: "doomed")
            try await doomed.register(registration("doomed"), credit: 1)
            try #require(await doomed.assignments(1, within: 10).count == 1)
            guard case .jobFinalized(_, .written)? = await finalized(orphaned) else {
                Issue.record("the job whose worker died was not finalized: \(notes.snapshot)")
                return
            }
            #expect(FileManager.default.fileExists(atPath: dir.file("out-death/manifest.json")))
            let reasons = try await ledger.failures(job: orphaned).map(\.error)
            #expect(reasons.count == 3 && reasons.allSatisfy { $0.contains("doomed stopped responding") }, "\(reasons)")
            coordinator.requestShutdown()
            await serving.value
            await doomed.dealer.shutdown()
        }
    }

    @Test(.timeLimit(.minutes(2)))
    func aCancelRevokesTheJobOnItsWorkersAndFinalizesIt() async throws {
        let dir = try TemporaryDirectory("session-cancel")
        defer { dir.remove() }
        let (input, _) = try makeInput(dir, good: 5)
        try await withDatabase { url in
            let context = try ZMQContext()
            let ledger = Ledger(database: url, leasePolicy: Self.longLeases)
            let notifier = WorkNotifier(database: url)
            try await notifier.start()
            let (coordinator, serving) = try startCoordinator(url, endpoint: "ipc://" + dir.file("c.ipc"), policy: Self.longLeases,
                                                              notifier: notifier, context: context)
            let notes = Collector(coordinator.notifications)
            try FileManager.default.createDirectory(atPath: dir.file("out"), withIntermediateDirectories: true)
            let request = JobRequest(parameters: .latents(LatentsParameters(imageSize: 64, batchSize: 2)), input: input,
                                     output: dir.file("out"), model: Fixtures.path("vtp-tiny"), shardSize: 2)
            let jobID = try await ledger.enqueue(request.spec, items: try request.listItems().items)
            let held = HeldShards()
            let worker = try ScriptedWorker(context: context, endpoint: coordinator.boundEndpoints[0], id: "busy")
            try await worker.register(registration("busy", prefetch: 2), credit: 2)
            let beats = worker.heartbeating { held.current }
            defer { beats.cancel() }
            held.set(await worker.assignments(2, within: 10).map(\.shardID))
            try #require(held.current.count == 2)

            try await ledger.cancel(job: jobID)
            let revoked = await worker.inbox.wait(timeout: .seconds(5)) { $0.contains { if case .success(.cancel(.job(jobID), _)) = $0 { true } else { false } } }
            #expect(revoked.contains { if case .success(.cancel(.job(jobID), _)) = $0 { true } else { false } },
                    "the worker was not told to drop the cancelled job: \(worker.messages)")
            let finalized = await notes.wait(timeout: .seconds(10)) { !$0.isEmpty }
            guard case let .jobFinalized(id, .written(counts))? = finalized.first else {
                Issue.record("the cancelled job was not finalized: \(finalized)")
                return
            }
            #expect(id == jobID && counts.inputs == 6 && counts.written == 0 && counts.failed == 6)
            let manifest = try String(contentsOfFile: dir.file("out/manifest.json"), encoding: .utf8)
            #expect(manifest.contains(FailedShard.cancelledError))
            coordinator.requestShutdown()
            await serving.value
            await worker.dealer.shutdown()
        }
    }

    /// A worker computing a long shard keeps heartbeating, and the workers table shows it busy on
    /// that shard with a fresh heartbeat (it used to show "idle" and a growing heartbeat age).
    @Test(.timeLimit(.minutes(2)))
    func aBusyWorkersRowShowsItBusyOnItsShardWithAFreshHeartbeat() async throws {
        let dir = try TemporaryDirectory("session-busy")
        defer { dir.remove() }
        try await withDatabase { url in
            let context = try ZMQContext()
            let ledger = Ledger(database: url)
            let jobID = try await plainJob(ledger, shards: 1)
            let (coordinator, serving) = try startCoordinator(url, endpoint: "ipc://" + dir.file("c.ipc"), policy: Self.longLeases,
                                                              context: context)
            let worker = try Worker(options: Worker.Options(endpoint: coordinator.boundEndpoints[0], registration: registration("cruncher"),
                                                            liveness: fastWorkerLiveness()),
                                    handler: LongShardHandler(seconds: 4), context: context)
            let working = Task { await worker.run() }
            #expect(try await eventually(10) { try await ledger.job(jobID).state == .running })
            try await Task.sleep(for: .seconds(2.5))
            let row = try #require(try await ledger.listWorkers().first { $0.report.id == "cruncher" })
            let age = try await ledger.databaseTime().timeIntervalSince(row.lastHeartbeat)
            #expect(row.report.state == .busy, "\(row)")
            #expect(row.report.currentShard == ShardRef(jobID: jobID, index: 0))
            #expect(age < 1.0, "heartbeat age \(age) s while the worker computes")
            #expect(try await eventually(10) { try await ledger.job(jobID).state == .completed })
            #expect(try await eventually(5) {
                try await ledger.listWorkers().first { $0.report.id == "cruncher" }.map { $0.report.state == .idle && $0.report.currentShard == nil } ?? false
            })
            worker.requestShutdown()
            await working.value
            coordinator.requestShutdown()
            await serving.value
        }
    }

    /// Rows nobody hears from (left by a coordinator that was killed, or by a peer that registered
    /// and vanished) do not stay "idle" forever.
    @Test(.timeLimit(.minutes(2)))
    func workerRowsNobodyHearsFromAreMarkedOffline() async throws {
        let dir = try TemporaryDirectory("session-rows")
        defer { dir.remove() }
        try await withDatabase { url in
            let context = try ZMQContext()
            let ledger = Ledger(database: url)
            try await ledger.upsertWorker(WorkerReport(id: "ghost", host: "gone", state: .idle))
            try await Task.sleep(for: .milliseconds(1500))
            let (coordinator, serving) = try startCoordinator(url, endpoint: "ipc://" + dir.file("c.ipc"), policy: Self.longLeases,
                                                              context: context)
            let junk = try ScriptedWorker(context: context, endpoint: coordinator.boundEndpoints[0], id: "junk")
            try await junk.dealer.send(.register(registration("junk")))
            #expect(try await eventually(5) { try await ledger.listWorkers().contains { $0.report.id == "junk" } })
            let allOffline = try await eventually(5) { try await ledger.listWorkers().allSatisfy { $0.report.state == .offline } }
            let rows = try await ledger.listWorkers().map { "\($0.report.id)=\($0.report.state)" }
            #expect(allOffline, "\(rows)")
            coordinator.requestShutdown()
            await serving.value
            await junk.dealer.shutdown()
        }
    }
}
