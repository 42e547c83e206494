import Foundation
import Logging
import Synchronization
import VTPQueue
import VTPRuntimeSupport
import VTPTransport
import VTPVocabulary

/// Something the coordinator reports to whoever embeds it (`vtp run`, tests). Worker comings and
/// goings are in the ledger's worker table.
public enum CoordinatorNotification: Sendable, Equatable {
    /// A job's finalizer ran: the manifest it wrote, or why it failed.
    case jobFinalized(jobID: Int64, result: FinalizeResult)

    public enum FinalizeResult: Sendable, Equatable {
        case written(JobCounts)
        case failed(String)
    }
}

/// The coordinator service: a ROUTER socket, the ledger and the `CoordinatorCore` state machine.
///
/// `init` binds the socket (so callers know the endpoint before workers start); `run()` serves
/// until `requestShutdown()` (SIGTERM) has drained the workers, then returns. All waiting is on
/// streams, the NOTIFY listener and a timer; ledger calls run on the ledger's own connection
/// thread and the injected finalizer (`JobFinalizing`) does its blocking work off the pool, so
/// this module links no model, image or index code.
public final class Coordinator: Sendable {
    /// Socket and timing settings.
    public struct Options: Sendable {
        public var bindEndpoints: [String]
        public var curve: CurveServerSecurity?
        public var core: CoordinatorCore.Configuration
        public var maxMessageBytes: Int
        /// How often the loop ticks when nothing else happens (well below the heartbeat interval).
        public var tickInterval: Duration
        /// Receives measurements (metrics); nil: none.
        public var observer: (any CoordinatorObserver)?

        public init(bindEndpoints: [String], curve: CurveServerSecurity? = nil,
                    core: CoordinatorCore.Configuration = CoordinatorCore.Configuration(),
                    maxMessageBytes: Int = WireLimits.maxFrameBytes, tickInterval: Duration = .milliseconds(200),
                    observer: (any CoordinatorObserver)? = nil) {
            self.bindEndpoints = bindEndpoints
            self.curve = curve
            self.core = core
            self.maxMessageBytes = maxMessageBytes
            self.tickInterval = tickInterval
            self.observer = observer
        }
    }

    /// The endpoints actually bound (ephemeral ports resolved).
    public let boundEndpoints: [String]
    /// Registrations, losses and finalized jobs, in order.
    public let notifications: AsyncStream<CoordinatorNotification>
    /// The live state machine's counters after the last event (for tests and monitoring).
    public var counters: CoordinatorCore.Counters { state.withLock { $0 } }

    /// Items of job `jobID` that workers reported done in shards still running (not yet in the
    /// ledger): what a progress display adds to the ledger's count to move per batch.
    public func itemsInProgress(job jobID: Int64) -> Int { inProgress.withLock { $0[jobID] ?? 0 } }
    /// Writes a finished job's artefacts.
    public let finalizer: any JobFinalizing

    private let options: Options
    private let ledger: Ledger
    private let notifier: WorkNotifier?
    private let router: RouterEndpoint
    private let events = EventQueue<CoordinatorCore.Event>()
    /// Worker rows are written by one task, without holding up the loop, each worker's latest
    /// report only (a late heartbeat must not overwrite an "offline"), all pending in one statement.
    private let workerReports = LatestReports()
    /// Worker rows go through a connection of their own, so that a thousand heartbeats a second
    /// never queue claims and completions behind them.
    private let workerLedger: Ledger
    private let notify: AsyncStream<CoordinatorNotification>.Continuation
    private let state: Mutex<CoordinatorCore.Counters>
    /// ``CoordinatorCore/itemsInProgress(job:)`` of every job with leases, after the last event.
    private let inProgress = Mutex<[Int64: Int]>([:])
    private let logger: Logger

    /// Binds the ROUTER socket. `notifier` wakes an idle coordinator when work is enqueued; without
    /// one the coordinator only notices new jobs through requeues and lease releases (tests).
    public init(ledger: Ledger, notifier: WorkNotifier?, finalizer: any JobFinalizing, options: Options, context: ZMQContext,
                logger: Logger = Logger(label: "vtp.coordinator")) throws {
        var configuration = RouterConfiguration(bindEndpoints: options.bindEndpoints, curve: options.curve)
        configuration.maxMessageBytes = options.maxMessageBytes
        router = try RouterEndpoint(context: context, configuration: configuration, logger: logger)
        boundEndpoints = router.boundEndpoints
        self.options = options
        self.ledger = ledger
        workerLedger = Ledger(database: ledger.database, leasePolicy: ledger.leasePolicy, reconnect: ledger.reconnect,
                              logger: logger)
        self.notifier = notifier
        self.finalizer = finalizer
        self.logger = logger
        (notifications, notify) = AsyncStream.makeStream(of: CoordinatorNotification.self)
        state = Mutex(CoordinatorCore.Counters())
    }

    /// Stop dispatching and exit once workers hand in what they hold (or the grace period ends).
    public func requestShutdown() { events.post(.shutdownRequested) }

    /// What the ZAP handler admitted and refused (nil without CURVE).
    public var authenticationStatistics: ZAPHandler.Statistics? { router.authenticationStatistics }

    /// Serves until shutdown completes.
    ///
    /// Everything it starts is a child task: the socket reader, timer and NOTIFY listener are
    /// cancelled once the loop exits; ledger calls, worker-row writes and finalizations already
    /// under way are awaited (never cancelled halfway), so `run()` returns only when nothing it
    /// started is still running.
    public func run() async {
        var core = CoordinatorCore(configuration: options.core, now: .now())
        await withDiscardingTaskGroup { calls in
            calls.addTask { await self.finalizeUnfinishedJobs() }
            calls.addTask { [workerLedger, workerReports, logger] in
                for await _ in workerReports.posted {
                    let reports = workerReports.takeAll()
                    do { try await workerLedger.upsertWorkers(reports) } catch {
                        logger.error("upsert of \(reports.count) worker row(s) failed: \(error)")
                    }
                }
            }
            await withDiscardingTaskGroup { services in
                services.addTask { [router, events, logger] in
                    var refused: Set<PeerIdentity> = []
                    for await message in router.inbound {
                        switch message.message {
                        case let .success(decoded): events.post(.received(message.peer, decoded))
                        case let .failure(error):
                            if case .unsupportedVersion = error {
                                // Every message of such a worker fails alike: one line says why it is never served.
                                let level: Logger.Level = refused.insert(message.peer).inserted ? .warning : .debug
                                logger.log(level: level, "worker refused", metadata: ["event": "worker_refused", "worker": "\(message.peer)",
                                                                                    "reason": "\(error)"])
                            } else {
                                logger.warning("dropping undecodable message from \(message.peer): \(error)")
                            }
                        }
                    }
                }
                services.addTask { [events, options] in
                    while !Task.isCancelled {
                        try? await Task.sleep(for: options.tickInterval)
                        events.post(.tick)
                    }
                }
                services.addTask { [notifier, events, logger] in
                    guard let notifier else { return }
                    while !Task.isCancelled {
                        do {
                            guard let signal = try await notifier.waitForNotification(timeout: 2) else { continue }
                            events.post(.workAvailable)
                            // Enqueue, resume, retry and cancel name their job: one that a cancel (or
                            // a resume with nothing left) finished is finalized without waiting for a shard.
                            if case let .newWork(jobID?) = signal { await self.checkJobEnded(jobID) }
                        } catch {
                            logger.warning("work listener: \(error); retrying")
                            try? await Task.sleep(for: .seconds(1))
                        }
                    }
                }
                await serve(&core, calls: &calls)
                services.cancelAll()
            }
            // Events posted by calls still finishing are dropped; the ledger has their effect.
            events.finish()
            workerReports.finish()
        }
        await router.shutdown()
        notify.finish()
        logger.info("coordinator stopped: \(core.counters)")
    }

    /// The event loop: feeds the state machine until it asks to exit.
    private func serve(_ core: inout CoordinatorCore, calls: inout DiscardingTaskGroup) async {
        events.post(.workAvailable)
        var published = (workers: -1, inFlight: -1)
        var counted = core.counters
        for await event in events.events {
            if let observer = options.observer, case let .received(_, .shardDone(done)) = event {
                for result in done.results {
                    for timing in result.timings { observer.observe(.stage(timing.stage, seconds: timing.seconds)) }
                }
            }
            let sender = Self.sender(of: event, core: core), joining = Self.joining(event, core: core)
            let actions = core.handle(event, at: .now())
            if let joining { Self.logJoined(joining, logger: logger) }
            state.withLock { [counters = core.counters] in $0 = counters }
            inProgress.withLock { [items = core.itemsInProgressByJob] in $0 = items }
            if let observer = options.observer, core.counters != counted {
                // The core counts these; metrics get what was added since the last event.
                let now = core.counters
                if now.workersCrashed > counted.workersCrashed { observer.observe(.workersCrashed(now.workersCrashed - counted.workersCrashed)) }
                if now.isolatedAssignments > counted.isolatedAssignments {
                    observer.observe(.isolatedAssignments(now.isolatedAssignments - counted.isolatedAssignments))
                }
                if now.jobsFailed > counted.jobsFailed { observer.observe(.jobsFailed(now.jobsFailed - counted.jobsFailed)) }
                counted = now
            }
            if let observer = options.observer, (core.workers.count, core.shardsInFlight) != published {
                published = (core.workers.count, core.shardsInFlight)
                observer.observe(.workers(published.workers))
                observer.observe(.shardsInFlight(published.inFlight))
            }
            for action in actions {
                if case .exit = action { return }
                await perform(action, core: core, sender: sender, calls: &calls)
            }
        }
    }

    /// `sender`: the id of the worker whose message led to `action`, for the event lines.
    private func perform(_ action: CoordinatorCore.Action, core: CoordinatorCore, sender: String?, calls: inout DiscardingTaskGroup) async {
        switch action {
        case let .send(message, peer):
            if case let .assignShard(assignment) = message { Self.logLeaseGranted(assignment, worker: core.workers[peer]?.workerID, logger: logger) }
            do { try await router.send(message, to: peer) } catch {
                // ROUTER_MANDATORY: the worker is gone; liveness will declare it dead.
                logger.debug("send \(message.type) to \(peer) failed: \(error)")
            }
        case let .upsertWorker(report):
            if report.state == .offline { logger.info("worker left", metadata: ["event": "worker_left", "worker": .string(report.id)]) }
            workerReports.post(report)
        case let .claim(peer):
            let owner = core.workers[peer]?.workerID ?? peer.description
            calls.addTask { [ledger, events, logger] in
                do {
                    let result = try await ledger.claim(owner: owner)
                    events.post(.claimed(peer, result.shard.map(LeasedShard.init)))
                    // A shard whose manifest could not be read failed inside the claim; when it
                    // was its job's last, no completion will announce the job's end.
                    for job in result.finishedJobs { events.post(.jobFinished(job)) }
                } catch {
                    logger.error("claim for \(owner) failed: \(error)")
                    events.post(.claimFailed(peer))
                }
            }
        case let .renewLease(shard, token):
            let holder = core.leases[token].map { core.workers[$0.peer]?.workerID ?? $0.peer.description } ?? sender
            spawn(in: &calls, "renew lease of \(shard)") { [logger] ledger, events in
                let expiry = try await ledger.heartbeat(shard, token: token.uuid)
                if expiry == nil { Self.logRejected(shard, worker: holder, of: "lease renewal", reason: "lease no longer held", logger: logger) }
                events.post(.leaseRenewed(token, held: expiry != nil))
            }
        case let .complete(shard, token, results):
            let observer = options.observer
            spawn(in: &calls, "complete shard \(shard)") { [logger] ledger, events in
                let outcome = try await ledger.completeShard(shard, token: token.uuid, results: results)
                let ok = results.filter(\.ok).count
                Self.logRecorded(outcome, of: .done(itemsOK: ok, itemsFailed: results.count - ok), shard: shard, worker: sender, logger: logger)
                observer?.observe(.shardRecorded(outcome, itemsOK: ok, itemsFailed: results.count - ok))
                let finished = outcome == .applied ? try await ledger.job(shard.jobID).state.isFinalizable : false
                events.post(.recorded(shard, outcome, jobFinished: finished))
            }
        case let .fail(shard, token, error):
            let observer = options.observer
            spawn(in: &calls, "fail shard \(shard)") { [logger] ledger, events in
                let outcome = try await ledger.failShard(shard, token: token.uuid, error: error)
                Self.logRecorded(outcome, of: .failed(error: error), shard: shard, worker: sender, logger: logger)
                observer?.observe(.shardRecorded(outcome, itemsOK: 0, itemsFailed: 0))
                let finished = outcome == .failed ? try await ledger.job(shard.jobID).state.isFinalizable : false
                events.post(.recorded(shard, outcome, jobFinished: finished))
            }
        case let .failJob(shard, token, error):
            spawn(in: &calls, "fail job \(shard.jobID)") { [logger] ledger, events in
                let outcome = try await ledger.failJob(shard, token: token.uuid, error: error)
                Self.logRecorded(outcome, of: .jobFailed(error: error), shard: shard, worker: sender, logger: logger)
                events.post(.recorded(shard, outcome, jobFinished: false))
            }
        case let .handBack(shard, token, reason):
            spawn(in: &calls, "hand back shard \(shard)") { [logger] ledger, events in
                let outcome = try await ledger.handBackShard(shard, token: token.uuid, reason: reason)
                Self.logRecorded(outcome, of: .handedBack(reason: reason), shard: shard, worker: sender, logger: logger)
                events.post(.recorded(shard, outcome, jobFinished: false))
            }
        case .releaseExpiredLeases:
            let observer = options.observer
            let holders = Self.leaseHolders(core)
            spawn(in: &calls, "release expired leases") { [logger] ledger, events in
                let released = try await ledger.releaseExpiredLeases()
                for lease in released { Self.logExpired(lease, worker: holders[lease.token], logger: logger) }
                if !released.isEmpty { observer?.observe(.leasesExpired(released.count)) }
                events.post(.leasesReleased(released.map(Self.held), finishedJobs: try await Self.finishedJobs(released, ledger)))
            }
        case let .releaseLeases(held, reason):
            let listed = held.map { lease in "\(lease.shard)" + (lease.itemInHand.map { " (item \($0) in hand)" } ?? "") }
            logger.warning("\(reason): releasing \(held.count) lease(s): \(listed.joined(separator: ", "))")
            spawn(in: &calls, "release leases of an ended session") { ledger, events in
                let leases = held.map { SessionLease(shard: $0.shard, token: $0.token.uuid, itemInHand: $0.itemInHand) }
                let released = try await ledger.releaseLeases(leases, reason: reason)
                events.post(.leasesReleased(released.map(Self.held), finishedJobs: try await Self.finishedJobs(released, ledger)))
            }
        case let .markSilentWorkersOffline(seconds):
            spawn(in: &calls, "mark silent workers offline") { [logger] ledger, _ in
                let marked = try await ledger.markSilentWorkersOffline(olderThanSeconds: seconds)
                if !marked.isEmpty { logger.info("workers silent for \(seconds) s marked offline: \(marked.joined(separator: ", "))") }
            }
        case .queryNextEligible:
            calls.addTask { [ledger, events] in
                events.post(.nextEligible(seconds: (try? await ledger.secondsUntilNextEligibleShard()) ?? 1))
            }
        case let .finalize(jobID):
            calls.addTask { await self.finalize(jobID: jobID) }
        case let .abandonLease(shard):
            logger.warning("no worker could take shard \(shard); its lease will expire and it will be re-dispatched")
        case .exit:
            break
        }
    }

    private static func held(_ released: ReleasedLease) -> CoordinatorCore.HeldLease {
        CoordinatorCore.HeldLease(shard: released.shard, token: LeaseToken(uuid: released.token))
    }

    /// The jobs among `released` that a failed shard may have finished, and that are finished.
    private static func finishedJobs(_ released: [ReleasedLease], _ ledger: Ledger) async throws -> [Int64] {
        var finished: [Int64] = []
        for jobID in Set(released.filter(\.failed).map(\.shard.jobID)).sorted() where try await ledger.job(jobID).state.isFinalizable {
            finished.append(jobID)
        }
        return finished
    }

    /// Posts `.jobCancelled` or `.jobFinished` for a job a notification named, when it has ended.
    private func checkJobEnded(_ jobID: Int64) async {
        do {
            let job = try await ledger.job(jobID)
            if job.state == .cancelled {
                events.post(.jobCancelled(jobID))
            } else if job.state.isFinalizable, !finalizer.isFinalized(outputDirectory: job.outputLocation) {
                events.post(.jobFinished(jobID))
            }
        } catch {
            logger.warning("could not read job \(jobID) after a notification: \(error)")
        }
    }

    /// Runs a ledger call as a child task of `run()`, logging (not propagating) failures: the ledger
    /// is the source of truth and every operation here is safe to lose (leases expire and are re-issued).
    private func spawn(in calls: inout DiscardingTaskGroup, _ what: String,
                       _ body: @escaping @Sendable (Ledger, EventQueue<CoordinatorCore.Event>) async throws -> Void) {
        calls.addTask { [ledger, events, logger] in
            do { try await body(ledger, events) } catch { logger.error("\(what) failed: \(error)") }
        }
    }

    private func finalize(jobID: Int64) async {
        do {
            let job = try await ledger.job(jobID)
            // Shards that exhausted their attempts left no output; their items are failures of the job.
            var failedShards: [Int: [FailedInput]] = [:]
            for shard in try await ledger.failedShards(job: jobID) {
                failedShards[shard.index] = shard.items.map {
                    FailedInput(sourceId: $0.sourceID, reason: $0.error.isEmpty ? shard.error : $0.error)
                }
            }
            // Samples the listing skipped are failed items in no shard.
            let listingFailures = try await ledger.listingFailures(job: jobID).map {
                FailedInput(sourceId: $0.sourceID, reason: $0.error)
            }
            let counts = try await finalizer.finalize(FinalizeRequest(
                jobId: jobID, jobType: job.type, parametersJSON: job.parametersJSON, modelDirectory: job.model ?? "",
                outputDirectory: job.outputLocation, shardCount: job.shardCount, listingFailures: listingFailures,
                failedShards: failedShards))
            logger.info("job \(jobID) finalized: \(counts.written) written, \(counts.failed) failed")
            notify.yield(.jobFinalized(jobID: jobID, result: .written(counts)))
        } catch {
            logger.error("finalizing job \(jobID) failed: \(error)")
            notify.yield(.jobFinalized(jobID: jobID, result: .failed("\(error)")))
        }
    }

    /// A coordinator that stopped between a job's end (its last shard, or a cancel) and its finalizer
    /// leaves a finished job without a manifest; finalize those now (the finalizer is idempotent).
    private func finalizeUnfinishedJobs() async {
        // Jobs from a ledger before migration 0007 keep their items as rows, unclaimable, until
        // their shard manifests are written (here, as the coordinator can reach the outputs).
        do { try await ledger.moveItemRowsToManifests() } catch {
            logger.error("could not move item rows to shard manifests (those jobs' shards wait): \(error)")
        }
        do {
            for job in try await ledger.listJobs(limit: 1000) where job.state.isFinalizable {
                if !finalizer.isFinalized(outputDirectory: job.outputLocation) { events.post(.jobFinished(job.id)) }
            }
        } catch {
            logger.warning("could not look for unfinalized jobs: \(error)")
        }
    }
}

// MARK: Event lines (docs/monitoring.md lists them): a stable message, an `event` key, and the
// job, shard and worker ids as metadata, never interpolated, so a collector can filter on them.
extension Coordinator {
    /// What a worker handed in, for ``logRecorded(_:of:shard:worker:logger:)``.
    enum HandedIn {
        case done(itemsOK: Int, itemsFailed: Int)
        case failed(error: String)
        case handedBack(reason: String)
        /// Nothing of the shard's job can run: the job fails.
        case jobFailed(error: String)
    }

    static func ids(_ shard: ShardRef, worker: String?) -> Logger.Metadata {
        var metadata: Logger.Metadata = ["job": "\(shard.jobID)", "shard": "\(shard.index)"]
        if let worker { metadata["worker"] = .string(worker) }
        return metadata
    }

    /// The worker id of the peer a received message came from (resolved before the state machine
    /// forgets the lease the message resolves).
    static func sender(of event: CoordinatorCore.Event, core: CoordinatorCore) -> String? {
        guard case let .received(peer, _) = event else { return nil }
        return core.workers[peer]?.workerID ?? peer.description
    }

    /// The registration when `event` starts a new worker session (not a reconnect of a known one).
    static func joining(_ event: CoordinatorCore.Event, core: CoordinatorCore) -> RegisterMessage? {
        guard case let .received(peer, .register(registration)) = event,
              core.workers[peer]?.session != registration.session else { return nil }
        return registration
    }

    /// Who holds each lease of the state machine, by token.
    static func leaseHolders(_ core: CoordinatorCore) -> [UUID: String] {
        core.leases.reduce(into: [:]) { holders, lease in
            holders[lease.key.uuid] = core.workers[lease.value.peer]?.workerID ?? lease.value.peer.description
        }
    }

    static func logJoined(_ registration: RegisterMessage, logger: Logger) {
        logger.info("worker joined", metadata: [
            "event": "worker_joined", "worker": .string(registration.workerID), "host": .string(registration.host),
            "threads": "\(registration.capabilities.threads)", "prefetch": "\(registration.capabilities.prefetch)",
        ])
    }

    static func logLeaseGranted(_ assignment: AssignShardMessage, worker: String?, logger: Logger) {
        guard let id = ShardDispatchID(wire: assignment.shardID) else { return }
        var metadata = ids(ShardRef(jobID: id.jobID, index: id.index), worker: worker)
        metadata["event"] = "lease_granted"
        metadata["items"] = "\(assignment.items.count)"
        if assignment.isolated { metadata["isolated"] = "true" }
        logger.info("lease granted", metadata: metadata)
    }

    static func logExpired(_ lease: ReleasedLease, worker: String?, logger: Logger) {
        var metadata = ids(lease.shard, worker: worker)
        metadata["event"] = "lease_expired"
        metadata["outcome"] = lease.failed ? "failed" : "requeued"
        logger.warning("lease expired", metadata: metadata)
    }

    /// A result or renewal under a lease token the ledger no longer honours (late, duplicate, or
    /// the shard was re-issued or cancelled): nothing was recorded.
    static func logRejected(_ shard: ShardRef, worker: String?, of what: String, reason: String, logger: Logger) {
        var metadata = ids(shard, worker: worker)
        metadata["event"] = "lease_rejected"
        metadata["refused"] = .string(what)
        metadata["reason"] = .string(reason)
        logger.warning("lease rejected", metadata: metadata)
    }

    /// What the ledger made of a worker's result.
    static func logRecorded(_ outcome: CompletionOutcome, of handedIn: HandedIn, shard: ShardRef, worker: String?, logger: Logger) {
        var metadata = ids(shard, worker: worker)
        switch (handedIn, outcome) {
        case (_, .duplicate), (_, .leaseLost), (_, .unknownShard):
            let what = switch handedIn {
            case .done: "shard_done"
            case .failed: "shard_failed"
            case .handedBack: "hand_back"
            case .jobFailed: "job_failed"
            }
            logRejected(shard, worker: worker, of: what, reason: outcome.rawValue, logger: logger)
        case let (.done(itemsOK, itemsFailed), _):
            metadata["event"] = "shard_done"
            metadata["items_ok"] = "\(itemsOK)"
            metadata["items_failed"] = "\(itemsFailed)"
            logger.info("shard done", metadata: metadata)
        case let (.failed(error), _):
            metadata["event"] = "shard_failed"
            metadata["error"] = .string(error)
            // Requeued: it has attempts left; failed: its items are failures of the job.
            metadata["outcome"] = .string(outcome.rawValue)
            logger.log(level: outcome == .failed ? .error : .warning, "shard failed", metadata: metadata)
        case let (.handedBack(reason), _):
            metadata["event"] = "shard_handed_back"
            metadata["reason"] = .string(reason)
            logger.info("shard handed back", metadata: metadata)
        case let (.jobFailed(error), _):
            metadata["event"] = "job_failed"
            metadata["error"] = .string(error)
            // Notice, not error: the job's record carries the message, and `vtp run` prints it once.
            logger.notice("job failed", metadata: metadata)
        }
    }
}

/// Worker reports waiting to be written: the latest of each worker, taken all at once. Newer
/// reports replace older ones of the same worker, so a writer that falls behind writes fewer,
/// larger batches instead of a growing backlog of stale heartbeats.
private final class LatestReports: Sendable {
    /// One element per post, at most one waiting: the writer wakes, then takes whatever is pending.
    let posted: AsyncStream<Void>
    private let wake: AsyncStream<Void>.Continuation
    private let pending = Mutex<(order: [String], latest: [String: WorkerReport])>(([], [:]))

    init() { (posted, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1)) }

    func post(_ report: WorkerReport) {
        pending.withLock { pending in
            if pending.latest.updateValue(report, forKey: report.id) == nil { pending.order.append(report.id) }
        }
        wake.yield()
    }

    /// Every pending report, each worker's latest, in the order the workers first reported.
    func takeAll() -> [WorkerReport] {
        pending.withLock { pending in
            defer { pending = ([], [:]) }
            return pending.order.compactMap { pending.latest[$0] }
        }
    }

    func finish() { wake.finish() }
}
