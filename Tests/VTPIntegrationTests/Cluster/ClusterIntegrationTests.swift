import Foundation
import Testing
import VTPVocabulary
import VTPCoordinator
import VTPJobs
import VTPQueue
import VTPRuntimeSupport
import VTPStorage
import VTPTestSupport
import VTPTransport
import VTPWorker

/// A migrated database of its own on the shared test PostgreSQL.
func withDatabase<T>(_ body: (DatabaseURL) async throws -> T) async throws -> T {
    try await withLedgerDatabase(body)
}

/// Fast heartbeats so liveness decisions happen within a test's patience.
func fastCore(leaseSeconds: Double) -> CoordinatorCore.Configuration {
    let liveness = try! WorkerLiveness<PeerIdentity>.Configuration(heartbeatInterval: .milliseconds(200), missedHeartbeatsBeforeDead: 3)
    return CoordinatorCore.Configuration(liveness: liveness, leaseRenewalInterval: .milliseconds(Int64(leaseSeconds * 250)),
                                         releaseInterval: .milliseconds(300), shutdownGrace: .seconds(5))
}

func fastWorkerLiveness() -> CoordinatorLiveness.Configuration {
    try! CoordinatorLiveness.Configuration(heartbeatInterval: .milliseconds(200), missedHeartbeatsBeforeLost: 3,
                                           initialBackoff: .milliseconds(200), maxBackoff: .seconds(2))
}

/// A registration of worker `id`; each call is a new session (a new process) unless `session` is given.
func registration(_ id: String, prefetch: UInt32 = 1, session: UInt64 = RegisterMessage.newSession()) -> RegisterMessage {
    RegisterMessage(workerID: id, host: "localhost",
                    capabilities: WorkerCapabilities(jobTypes: ["latents"], threads: 1, prefetch: prefetch, memoryBytes: 1),
                    session: session)
}

/// Polls `condition` every 50 ms until it holds or `seconds` pass.
func eventually(_ seconds: Double, _ condition: () async throws -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + .milliseconds(Int64(seconds * 1000))
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try await Task.sleep(for: .milliseconds(50))
    }
    return try await condition()
}

/// An ImageFolder input with `good` fixture images and one corrupt file.
func makeInput(_ dir: TemporaryDirectory, good: Int) throws -> (input: String, corruptID: String) {
    let names = ["chelsea.jpg", "coffee.jpg", "rocket.jpg", "dog.png", "camera_gray.png", "chelsea_tiny.jpg"]
    for i in 0..<good {
        let target = dir.file("in/class\(i % 2)/img\(i)_" + names[i % names.count])
        try FileManager.default.createDirectory(atPath: (target as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: Fixtures.path("images/" + names[i % names.count]), toPath: target)
    }
    let corrupt = Array(try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("images/coffee.jpg"))).prefix(2000))
    try Data(corrupt).write(to: URL(fileURLWithPath: dir.file("in/class1/zz_corrupt.jpg")))
    return (dir.file("in"), "class1/zz_corrupt.jpg")
}

/// A hand-driven DEALER playing a worker, to send exactly what a test needs.
struct FakeWorker {
    let dealer: DealerEndpoint
    var inbound: AsyncStream<DealerInbound>.Iterator

    init(context: ZMQContext, endpoint: String, id: String) throws {
        dealer = try DealerEndpoint(context: context, configuration: DealerConfiguration(endpoint: endpoint, identity: PeerIdentity(id)))
        inbound = dealer.inbound.makeAsyncIterator()
    }

    /// The next message that is not a heartbeat.
    mutating func next() async throws -> WireMessage {
        while let message = await inbound.next() {
            let decoded = try message.get()
            if decoded.type != .heartbeat { return decoded }
        }
        throw CancellationError()
    }

    /// Heartbeats every 100 ms listing what `held` returns, as a live worker does; cancel the task to go silent.
    func heartbeating(_ held: @escaping @Sendable () -> [Int64] = { [] }) -> Task<Void, Never> {
        Task { [dealer] in
            var sequence: UInt64 = 0
            while !Task.isCancelled {
                sequence += 1
                try? await dealer.send(.heartbeat(HeartbeatMessage(sequence: sequence, heldShards: held().sorted())))
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
    }
}

@Suite(.serialized)
struct ClusterIntegrationTests {
    @Test(.timeLimit(.minutes(3)))
    func workersProcessAJobEnqueuedWhileIdleAndItIsFinalizedOnce() async throws {
        let dir = try TemporaryDirectory("cluster")
        defer { dir.remove() }
        let (input, corruptID) = try makeInput(dir, good: 5)
        try await withDatabase { url in
            let context = try ZMQContext()
            let endpoint = "ipc://" + dir.file("c.ipc")
            let notifier = WorkNotifier(database: url)
            try await notifier.start()
            let coordinator = try Coordinator(ledger: Ledger(database: url, leasePolicy: LeasePolicy(leaseSeconds: 10)), notifier: notifier, finalizer: ManifestFinalizer(),
                                              options: Coordinator.Options(bindEndpoints: [endpoint], core: fastCore(leaseSeconds: 10)),
                                              context: context)
            let serving = Task { await coordinator.run() }
            let workers = try (0..<2).map { i in
                try Worker(options: Worker.Options(endpoint: endpoint, registration: registration("w\(i)", prefetch: 2),
                                                   liveness: fastWorkerLiveness()),
                           handler: JobShardHandler(), context: context)
            }
            let running = workers.map { worker in Task { await worker.run() } }
            let ledger = Ledger(database: url)
            #expect(try await eventually(10) { try await ledger.listWorkers().count == 2 })

            // Enqueued only now: the idle coordinator must be woken by NOTIFY (it does not poll).
            let request = JobRequest(parameters: .latents(LatentsParameters(imageSize: 64, batchSize: 2)), input: input,
                                     output: dir.file("out"), model: Fixtures.path("vtp-tiny"), shardSize: 2)
            let listing = try request.listItems()
            let jobID = try await ledger.enqueue(request.spec, items: listing.items)

            var finalized: [CoordinatorNotification] = []
            var notes = coordinator.notifications.makeAsyncIterator()
            if let note = await notes.next() { finalized.append(note) }
            guard case let .jobFinalized(id, .written(counts))? = finalized.first else {
                Issue.record("expected a finalized job, got \(finalized)")
                return
            }
            #expect(id == jobID)
            #expect(counts.inputs == 6 && counts.written == 5 && counts.failed == 1 && counts.shards == 3)

            let job = try await ledger.job(jobID)
            #expect(job.state == .completedWithFailures)
            #expect(job.itemsDone == 5 && job.itemsFailed == 1 && job.shardsDone == 3)
            #expect(job.rejectedCompletions == 0)
            let failures = try await ledger.failures(job: jobID)
            #expect(failures.map(\.sourceID) == [corruptID])
            #expect(FileManager.default.fileExists(atPath: dir.file("out/manifest.json")))
            #expect(FileManager.default.fileExists(atPath: dir.file("out/latents_stats.pt")))

            for worker in workers { worker.requestShutdown() }
            for task in running { await task.value }
            #expect(try await eventually(5) { try await ledger.listWorkers().allSatisfy { $0.report.state == .offline } })
            coordinator.requestShutdown()
            await serving.value
            // Exactly one finalizer run: no second notification was queued before the stream ended.
            var extra = 0
            while await notes.next() != nil { extra += 1 }
            #expect(extra == 0)
        }
    }

    @Test(.timeLimit(.minutes(2)))
    func deadWorkersShardIsRedispatchedAndItsLateResultRejected() async throws {
        let dir = try TemporaryDirectory("cluster-dead")
        defer { dir.remove() }
        try await withDatabase { url in
            let context = try ZMQContext()
            let endpoint = "ipc://" + dir.file("c.ipc")
            let lease = 1.5
            let policy = LeasePolicy(leaseSeconds: lease, backoffBaseSeconds: 0, backoffCapSeconds: 0)
            let ledger = Ledger(database: url, leasePolicy: policy)
            let jobID = try await ledger.enqueue(
                JobSpec(type: "latents", parametersJSON: "{}", model: "/m", inputLocation: "/in", outputLocation: scratchOutput(), shardSize: 2),
                items: [JobItem(ordinal: 0, sourceId: "a", location: .file(path: "/in/a.jpg")),
                        JobItem(ordinal: 1, sourceId: "b", location: .file(path: "/in/b.jpg"))])
            let coordinator = try Coordinator(ledger: Ledger(database: url, leasePolicy: policy), notifier: nil, finalizer: ManifestFinalizer(),
                                              options: Coordinator.Options(bindEndpoints: [endpoint], core: fastCore(leaseSeconds: lease)),
                                              context: context)
            let serving = Task { await coordinator.run() }

            var first = try FakeWorker(context: context, endpoint: endpoint, id: "silent")
            try await first.dealer.send(.register(registration("silent")))
            try await first.dealer.send(.credit(1))
            guard case let .assignShard(original) = try await first.next() else {
                Issue.record("expected an assignment")
                return
            }
            #expect(original.jobID == jobID)
            #expect(original.items.map(\.sourceId) == ["a", "b"])
            // "silent" now says nothing: declared dead after 3 × 200 ms, its lease expires after 1.5 s.
            #expect(try await eventually(5) { try await ledger.listWorkers().first { $0.report.id == "silent" }?.report.state == .offline })

            var second = try FakeWorker(context: context, endpoint: endpoint, id: "rescuer")
            try await second.dealer.send(.register(registration("rescuer")))
            try await second.dealer.send(.credit(1))
            let heartbeats = second.heartbeating { [original] in [original.shardID] }
            defer { heartbeats.cancel() }
            guard case let .assignShard(retry) = try await second.next() else {
                Issue.record("expected the shard to be re-dispatched")
                return
            }
            #expect(retry.shardID == original.shardID)
            #expect(retry.leaseToken != original.leaseToken)

            // The silent worker wakes up and reports: the ledger refuses its stale lease.
            try await first.dealer.send(.shardDone(ShardDoneMessage(shardID: original.shardID, leaseToken: original.leaseToken,
                                                                    results: [ItemResult(ordinal: 0, status: .ok, outputLocation: "x#0"),
                                                                              ItemResult(ordinal: 1, status: .ok, outputLocation: "x#1")])))
            #expect(try await eventually(5) { try await ledger.job(jobID).rejectedCompletions == 1 })
            #expect(try await ledger.job(jobID).itemsDone == 0)

            // The rescuer's result counts, once; a repeat of it is a counted duplicate.
            let done = ShardDoneMessage(shardID: retry.shardID, leaseToken: retry.leaseToken,
                                        results: [ItemResult(ordinal: 0, status: .ok, outputLocation: "y#0"),
                                                  ItemResult(ordinal: 1, status: .failed, error: "corrupt")])
            try await second.dealer.send(.shardDone(done))
            try await second.dealer.send(.shardDone(done))
            #expect(try await eventually(5) { try await ledger.job(jobID).rejectedCompletions == 2 })
            let job = try await ledger.job(jobID)
            #expect(job.itemsDone == 1 && job.itemsFailed == 1 && job.state == .completedWithFailures)
            #expect(coordinator.counters.rejected == 2)
            #expect(coordinator.counters.workersDeclaredDead >= 1)

            coordinator.requestShutdown()
            await serving.value
            await first.dealer.shutdown()
            await second.dealer.shutdown()
        }
    }

    @Test(.timeLimit(.minutes(2)))
    func workerReconnectsToARestartedCoordinatorAndKeepsWorking() async throws {
        let dir = try TemporaryDirectory("cluster-restart")
        defer { dir.remove() }
        let (input, _) = try makeInput(dir, good: 3)
        try await withDatabase { url in
            let endpoint = "ipc://" + dir.file("c.ipc")
            // The lease fastCore's renewals are paced for: a shard whose assignment a reconnect drops
            // comes back in seconds, not after the default five minutes (past this test's limit).
            let policy = LeasePolicy(leaseSeconds: 10, backoffBaseSeconds: 0, backoffCapSeconds: 0)
            func startCoordinator() throws -> (Coordinator, Task<Void, Never>) {
                let coordinator = try Coordinator(ledger: Ledger(database: url, leasePolicy: policy), notifier: nil, finalizer: ManifestFinalizer(),
                                                  options: Coordinator.Options(bindEndpoints: [endpoint], core: fastCore(leaseSeconds: 10)),
                                                  context: try ZMQContext())
                return (coordinator, Task { await coordinator.run() })
            }
            let ledger = Ledger(database: url)
            var (coordinator, serving) = try startCoordinator()
            let worker = try Worker(options: Worker.Options(endpoint: endpoint, registration: registration("phoenix"),
                                                            liveness: fastWorkerLiveness()),
                                    handler: JobShardHandler(), context: try ZMQContext())
            let working = Task { await worker.run() }
            #expect(try await eventually(10) { try await ledger.listWorkers().first?.report.state == .idle })

            // The coordinator goes away (it marks the worker offline on the way out) and comes back.
            coordinator.requestShutdown()
            await serving.value
            #expect(try await eventually(5) { try await ledger.listWorkers().first?.report.state == .offline })
            try await Task.sleep(for: .milliseconds(500))
            (coordinator, serving) = try startCoordinator()

            // The worker notices the silence, reconnects, registers again and takes the new job.
            let request = JobRequest(parameters: .latents(LatentsParameters(imageSize: 64, batchSize: 2)), input: input,
                                     output: dir.file("out"), model: Fixtures.path("vtp-tiny"), shardSize: 2)
            let jobID = try await ledger.enqueue(request.spec, items: try request.listItems().items)
            var notes = coordinator.notifications.makeAsyncIterator()
            guard case let .jobFinalized(id, .written(counts))? = await notes.next() else {
                Issue.record("the job was not finalized")
                return
            }
            #expect(id == jobID && counts.written == 3 && counts.failed == 1)
            #expect(try await ledger.listWorkers().map(\.report.id) == ["phoenix"])

            worker.requestShutdown()
            await working.value
            coordinator.requestShutdown()
            await serving.value
        }
    }

    /// A worker that lost the coordinator keeps its socket through the backoff, and libzmq
    /// reconnects it underneath. A coordinator heard on it in that time is back: the worker resumes
    /// heartbeats and keeps the socket. It used to replace it when the backoff ran out, dropping
    /// what was on the way (in CI an assignment, whose job then waited minutes for the lease).
    @Test(.timeLimit(.minutes(1)))
    func aCoordinatorHeardDuringTheBackoffKeepsTheWorkersConnection() async throws {
        let dir = try TemporaryDirectory("cluster-backoff")
        defer { dir.remove() }
        let endpoint = "ipc://" + dir.file("c.ipc")
        let context = try ZMQContext()
        let router = try RouterEndpoint(context: context, configuration: RouterConfiguration(bindEndpoints: [endpoint]))
        let atRouter = Collector(router.inbound)
        let backoff = Duration.seconds(3)
        let liveness = try CoordinatorLiveness.Configuration(heartbeatInterval: .milliseconds(100), missedHeartbeatsBeforeLost: 3,
                                                             initialBackoff: backoff, maxBackoff: backoff, jitterFraction: 0)
        let worker = try Worker(options: Worker.Options(endpoint: endpoint, registration: registration("phoenix"), liveness: liveness,
                                                        tickInterval: .milliseconds(20)),
                                handler: JobShardHandler(), context: context)
        let working = Task { await worker.run() }
        let peer = PeerIdentity("phoenix")
        func registers() -> Int { atRouter.snapshot.filter { $0.decoded?.type == .register }.count }
        func heartbeats() -> Int { atRouter.snapshot.filter { $0.peer == peer && $0.decoded?.type == .heartbeat }.count }

        #expect(await waitFor(timeout: .seconds(5)) { registers() == 1 })
        // Silent "coordinator": the worker declares it lost after 300 ms and stops heartbeating.
        var quietSince = ContinuousClock.now, seen = heartbeats()
        while ContinuousClock.now - quietSince < .milliseconds(500) {
            if heartbeats() != seen {
                seen = heartbeats()
                quietSince = .now
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        let beforeHeard = heartbeats()
        // Now it speaks, as a coordinator does: a heartbeat every interval, for longer than the backoff.
        let speaking = Task {
            var sequence: UInt64 = 0
            while !Task.isCancelled {
                sequence += 1
                try? await router.send(.heartbeat(HeartbeatMessage(sequence: sequence)), to: peer)
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
        #expect(await waitFor(timeout: .seconds(1)) { heartbeats() > beforeHeard }, "the worker did not resume heartbeats")
        try await Task.sleep(for: backoff + .seconds(1))
        speaking.cancel()
        #expect(registers() == 1, "the worker replaced a socket the coordinator was answering on")

        worker.requestShutdown()
        await working.value
        await router.shutdown()
    }

    @Test(.timeLimit(.minutes(2)))
    func workerWithAnUnknownCurveKeyIsRefused() async throws {
        guard ZMQContext.has("curve") else { return }
        try await withDatabase { url in
            let server = try CurveKeyPair.generate(), known = try CurveKeyPair.generate(), stranger = try CurveKeyPair.generate()
            let context = try ZMQContext()
            let coordinator = try Coordinator(
                ledger: Ledger(database: url), notifier: nil, finalizer: ManifestFinalizer(),
                options: Coordinator.Options(bindEndpoints: ["tcp://127.0.0.1:*"],
                                             curve: CurveServerSecurity(serverKeys: server, authorizedClients: [known.publicKey]),
                                             core: fastCore(leaseSeconds: 10)),
                context: context)
            let serving = Task { await coordinator.run() }
            let endpoint = coordinator.boundEndpoints[0]
            let ledger = Ledger(database: url)

            func worker(_ id: String, keys: CurveKeyPair) throws -> Worker {
                try Worker(options: Worker.Options(endpoint: endpoint, registration: registration(id),
                                                   curve: CurveClientSecurity(clientKeys: keys, serverPublicKey: server.publicKey),
                                                   liveness: fastWorkerLiveness()),
                           handler: JobShardHandler(), context: try ZMQContext())
            }
            let intruder = try worker("intruder", keys: stranger)
            let intruding = Task { await intruder.run() }
            #expect(try await eventually(5) { (coordinator.authenticationStatistics?.denied ?? 0) >= 1 })
            try await Task.sleep(for: .seconds(1))
            #expect(try await ledger.listWorkers().isEmpty)

            let member = try worker("member", keys: known)
            let serving2 = Task { await member.run() }
            #expect(try await eventually(5) { try await ledger.listWorkers().map(\.report.id) == ["member"] })
            #expect((coordinator.authenticationStatistics?.accepted ?? 0) >= 1)

            intruder.requestShutdown()
            member.requestShutdown()
            await intruding.value
            await serving2.value
            coordinator.requestShutdown()
            await serving.value
        }
    }
}
