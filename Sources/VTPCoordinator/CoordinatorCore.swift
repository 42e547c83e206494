import Foundation
import VTPQueue
import VTPRuntimeSupport
import VTPTransport
import VTPVocabulary

/// The coordinator's protocol logic as a pure state machine: it takes events (a message from a
/// worker, a timer tick, the result of a ledger call) and returns the actions to carry out. It
/// does no I/O, so every rule below is unit-tested without sockets or a database.
///
/// Rules:
/// - A worker is known after `register`; anything else from an unknown peer is answered with
///   `disconnect` so the worker registers again (e.g. after a coordinator restart).
/// - A worker session is one process lifetime, named by the nonce in `register`. A register from a
///   known identity with a new nonce means the old process is gone (a restart under the same
///   `--worker-id`, or a pod restart repeating the default `host-pid` id): its session ends at once,
///   credit window reset and leases released in the ledger, before the new session starts. The same
///   nonce again is a reconnect and keeps the session and its leases.
/// - `credit` opens slots in the worker's `CreditWindow`; the machine asks the ledger for one shard
///   per open slot (never more claims in flight than free credit) and assigns what comes back. The
///   window holds at most `maxPrefetchPerWorker` shards whatever prefetch the worker announces, and
///   credit beyond it is ignored, so one greedy peer cannot take the queue from the others.
/// - When a claim finds nothing, claiming stops until new work is signalled (LISTEN/NOTIFY), a
///   shard is requeued, expired leases are released, or the ledger's next eligible time passes:
///   an idle coordinator never polls the shard table.
/// - A worker's heartbeat renews the leases it lists as held, its progress the lease of that shard
///   (each at most once per `leaseRenewalInterval`); a lease the worker no longer lists (its result
///   was lost on the way) is left to expire. A renewal the ledger refuses cancels the shard on the
///   worker.
/// - `shardDone` / `shardFailed` go to the ledger with the lease token; the ledger rejects late or
///   duplicate results and the machine counts them.
/// - A shard whose worker ended abnormally comes back isolated (the ledger flags it): its worker
///   runs the items one at a time and reports `progress` before each, which the machine echoes
///   once it has noted the item in hand. A worker dying of a fatal signal says so (`crashed`);
///   its session's release then names the item in hand of each isolated shard, which the ledger
///   fails on its own, so one poison input costs only itself and the rest of the shard is written.
/// - A session also ends when the worker says goodbye (`disconnect`) or is silent for the liveness
///   limit (declared dead). Ending a session releases its leases in the ledger immediately (back to
///   pending, or failed when out of attempts: the lost attempt counts, since the shard may be what
///   killed the worker); a late result of the old session is then refused by its lease token.
/// - Worker rows in the ledger follow the machine: every heartbeat refreshes the row, and a change
///   of state or current shard (assignment, progress, result, lease loss) is written when it
///   happens. Rows silent for twice the liveness limit (workers of an earlier coordinator, peers
///   that registered and vanished) are marked offline on the release schedule.
/// - A job is finalized once per time it finishes, on every path that finishes it: a completion or
///   failure recorded, leases released by expiry or by a session's end, a cancel (the cancelled
///   job's shards are also cancelled on the workers holding them), or found finished at start-up;
///   again after a retry re-opens it, never twice for the same finish.
/// - After `shutdownRequested` no shard is claimed; the machine exits once no worker holds a shard,
///   or at the grace deadline (unfinished leases then simply expire).
public struct CoordinatorCore: Sendable {
    /// Timing of the coordinator's periodic duties.
    public struct Configuration: Sendable, Equatable {
        public var liveness: WorkerLiveness<PeerIdentity>.Configuration
        /// Shortest time between two ledger renewals of one lease.
        public var leaseRenewalInterval: Duration
        /// How often expired leases are released.
        public var releaseInterval: Duration
        /// How long a shutdown waits for shards in flight.
        public var shutdownGrace: Duration
        /// Most shards one worker holds at once (assigned plus unused credit), whatever prefetch it
        /// announces (`coordinator.max_prefetch_per_worker`); at least 1.
        public var maxPrefetchPerWorker: UInt32

        public init(liveness: WorkerLiveness<PeerIdentity>.Configuration = .standard, leaseRenewalInterval: Duration = .seconds(10),
                    releaseInterval: Duration = .seconds(5), shutdownGrace: Duration = .seconds(30), maxPrefetchPerWorker: UInt32 = 4) {
            self.liveness = liveness
            self.leaseRenewalInterval = leaseRenewalInterval
            self.releaseInterval = releaseInterval
            self.shutdownGrace = shutdownGrace
            self.maxPrefetchPerWorker = max(1, maxPrefetchPerWorker)
        }
    }

    /// Something that happened.
    public enum Event: Sendable, Equatable {
        /// A decoded message from a worker.
        case received(PeerIdentity, WireMessage)
        /// Time passed (the shell ticks a few times per heartbeat interval).
        case tick
        /// New work may exist: a NOTIFY arrived or the listener reconnected.
        case workAvailable
        /// The ledger answered a `claim` for `peer`: a leased shard, or nil when none is eligible.
        case claimed(PeerIdentity, LeasedShard?)
        /// A `claim` failed (database trouble); claiming pauses briefly.
        case claimFailed(PeerIdentity)
        /// Answer to `queryNextEligible`: seconds until a pending shard becomes eligible, nil if none.
        case nextEligible(seconds: Double?)
        /// The ledger's verdict on a `complete` or `fail`, and whether the job is now finished.
        case recorded(ShardRef, CompletionOutcome, jobFinished: Bool)
        /// The ledger answered a `renewLease`.
        case leaseRenewed(LeaseToken, held: Bool)
        /// The ledger released these leases (by expiry, or because their session ended); the jobs in
        /// `finishedJobs` finished by it (their last shard ran out of attempts).
        case leasesReleased([HeldLease], finishedJobs: [Int64])
        /// A job is finished (seen at start-up, or after a notification) and may still need finalizing.
        case jobFinished(Int64)
        /// A job was cancelled (`vtp job cancel`): its shards are revoked and it is finalized.
        case jobCancelled(Int64)
        /// SIGTERM or an orderly stop: dispatch nothing more.
        case shutdownRequested
    }

    /// Something the shell must do.
    public enum Action: Sendable, Equatable {
        case send(WireMessage, to: PeerIdentity)
        case upsertWorker(WorkerReport)
        /// Lease one shard from the ledger for `peer` and answer with `.claimed`.
        case claim(for: PeerIdentity)
        case renewLease(ShardRef, token: LeaseToken)
        case complete(ShardRef, token: LeaseToken, results: [ItemResult])
        case fail(ShardRef, token: LeaseToken, error: String)
        /// Nothing of the shard's job can run (the worker says so): fail the whole job with `error`.
        case failJob(ShardRef, token: LeaseToken, error: String)
        /// The worker stopped and gave the shard back: requeue it without spending an attempt.
        case handBack(ShardRef, token: LeaseToken, reason: String)
        case releaseExpiredLeases
        /// Return these leases to the ledger now (back to pending, or failed when out of attempts),
        /// recording `reason`, and answer with `.leasesReleased`.
        case releaseLeases([HeldLease], reason: String)
        /// Mark worker rows not refreshed for `olderThanSeconds` offline.
        case markSilentWorkersOffline(olderThanSeconds: Double)
        case queryNextEligible
        /// Run the job finalizer (the machine emits this once per job).
        case finalize(jobID: Int64)
        /// A claimed shard could not be handed to any worker; its lease will expire.
        case abandonLease(ShardRef)
        /// Stop the run loop.
        case exit
    }

    /// What the coordinator knows about one registered worker.
    public struct WorkerEntry: Sendable, Equatable {
        public var workerID: String
        public var host: String
        public var capabilities: WorkerCapabilities
        /// The nonce of the process this entry belongs to.
        public var session: UInt64
        public var window: CreditWindow
        /// Claims asked of the ledger for this worker and not yet answered.
        public var claimsInFlight: Int = 0
        /// The worker announced it is draining: it gets no more shards.
        public var draining = false
        public var itemsCompleted: UInt64 = 0
        public var imagesPerSecond: Double = 0
        public var memoryBytes: UInt64 = 0
        /// The shard the worker last reported progress on (the one it is running).
        public var runningShard: ShardRef?
        /// The row last written to the ledger, so unchanged state is not written again.
        public var published: WorkerReport?

        /// Credit not yet covered by an outstanding claim.
        var openSlots: Int { draining ? 0 : max(0, Int(window.credits) - claimsInFlight) }
    }

    /// One lease the coordinator handed out to a live session.
    public struct LeaseEntry: Sendable, Equatable {
        public var shard: ShardRef
        /// The worker holding it.
        public var peer: PeerIdentity
        public var lastRenewal: MonotonicInstant
        public var renewalInFlight = false
        /// Isolated shards only: the ordinals of the assigned items, in the order they run.
        public var isolatedItems: [Int]?
        /// Isolated shards only: the ordinal of the item the worker last said it is starting.
        public var itemInHand: Int?
        /// Items of the shard the worker reported done (its last `progress`), not yet in the ledger.
        public var itemsDone = 0
    }

    /// A shard and the lease token it was leased under.
    public struct HeldLease: Sendable, Hashable {
        public var shard: ShardRef
        public var token: LeaseToken
        /// For an isolated shard whose session ended: the ordinal of the item being processed.
        public var itemInHand: Int?

        public init(shard: ShardRef, token: LeaseToken, itemInHand: Int? = nil) {
            self.shard = shard
            self.token = token
            self.itemInHand = itemInHand
        }
    }

    /// Counters for logs and monitoring.
    public struct Counters: Sendable, Equatable {
        public var assigned = 0
        public var completed = 0
        public var failed = 0
        /// Results the ledger refused (late, duplicate, or for a lost lease).
        public var rejected = 0
        public var workersDeclaredDead = 0
        public var leasesAbandoned = 0
        /// Sessions ended by a register with a new nonce (the worker process was replaced).
        public var sessionsReplaced = 0
        /// Leases handed back to the ledger because their session ended.
        public var leasesReleasedOnSessionEnd = 0
        /// Shards assigned to run one item at a time (after a worker ended abnormally holding them).
        public var isolatedAssignments = 0
        /// Workers that reported dying of a fatal signal.
        public var workersCrashed = 0
        /// Jobs failed as a whole because a worker found that nothing of them can run.
        public var jobsFailed = 0
    }

    public let configuration: Configuration
    public private(set) var workers: [PeerIdentity: WorkerEntry] = [:]
    public private(set) var leases: [LeaseToken: LeaseEntry] = [:]
    /// The tokens of ``leases`` by the peer holding them: heartbeats, progress and reports are per
    /// peer, and with a thousand workers a scan of every lease per message was most of the
    /// coordinator's time. Changed only by ``storeLease(_:_:)`` and ``dropLease(_:)``.
    private var tokensByPeer: [PeerIdentity: Set<LeaseToken>] = [:]
    /// The sum of ``LeaseEntry/itemsDone`` over ``leases`` by job, kept as they change: the shell
    /// reads it after every event.
    private var itemsDoneByJob: [Int64: Int] = [:]
    public private(set) var counters = Counters()
    /// Jobs finalized (or being finalized) by this coordinator.
    public private(set) var finalizedJobs: Set<Int64> = []
    /// True after a claim found nothing and before anything suggests there is work again.
    public private(set) var idle = false
    public private(set) var draining = false
    private var liveness: WorkerLiveness<PeerIdentity>
    /// Registration order, so claims are spread deterministically.
    private var order: [PeerIdentity] = []
    private var retryClaimsAt: MonotonicInstant?
    private var nextEligibleQueryInFlight = false
    private var nextRelease: MonotonicInstant
    private var drainDeadline: MonotonicInstant?
    private var exited = false
    private var heartbeatSequence: UInt64 = 0

    public init(configuration: Configuration = Configuration(), now: MonotonicInstant) {
        self.configuration = configuration
        liveness = WorkerLiveness(configuration: configuration.liveness)
        nextRelease = now + configuration.releaseInterval
    }

    /// Applies `event` observed at `now` and returns what to do, in order.
    public mutating func handle(_ event: Event, at now: MonotonicInstant) -> [Action] {
        guard !exited else { return [] }
        var actions: [Action] = []
        switch event {
        case let .received(peer, message):
            receive(message, from: peer, at: now, into: &actions)
        case .tick:
            tick(at: now, into: &actions)
        case .workAvailable:
            idle = false
            retryClaimsAt = nil
        case let .claimed(peer, shard):
            if workers[peer] != nil { workers[peer]!.claimsInFlight = max(0, workers[peer]!.claimsInFlight - 1) }
            if let shard {
                // A job with work again (retry-failed) was re-opened: its next finish is finalized anew.
                finalizedJobs.remove(shard.shard.jobID)
                assign(shard, preferring: peer, at: now, into: &actions)
            } else {
                idle = true
                if !nextEligibleQueryInFlight {
                    nextEligibleQueryInFlight = true
                    actions.append(.queryNextEligible)
                }
            }
        case let .claimFailed(peer):
            if workers[peer] != nil { workers[peer]!.claimsInFlight = max(0, workers[peer]!.claimsInFlight - 1) }
            idle = true
            retryClaimsAt = now + .seconds(1)
        case let .nextEligible(seconds):
            nextEligibleQueryInFlight = false
            if let seconds {
                let at = now + .milliseconds(Int64(max(0.05, seconds) * 1000))
                retryClaimsAt = min(retryClaimsAt ?? at, at)
            }
        case let .recorded(shard, outcome, jobFinished):
            switch outcome {
            case .applied: counters.completed += 1
            case .failed: counters.failed += 1
            case .requeued: idle = false
            case .duplicate, .leaseLost, .unknownShard: counters.rejected += 1
            case .jobFailed:
                counters.jobsFailed += 1
                // The ledger parked the job's other shards; their workers need not finish them.
                revokeShards(ofJob: shard.jobID, reason: "job failed", at: now, into: &actions)
            }
            if jobFinished { finalize(shard.jobID, into: &actions) }
        case let .leaseRenewed(token, held):
            guard var entry = leases[token] else { break }
            entry.renewalInFlight = false
            if held {
                leases[token] = entry
            } else {
                // Someone else holds the shard now (expired and re-issued, or the job was cancelled).
                revoke(token, reason: "lease lost", at: now, into: &actions)
            }
        case let .leasesReleased(released, finishedJobs):
            // Expired leases still in the table belong to a live worker whose renewals failed or
            // that no longer listed the shard; the worker is told, and its slot is free again.
            for lease in released where leases[lease.token] != nil {
                revoke(lease.token, reason: "lease expired", at: now, into: &actions)
            }
            if !released.isEmpty { idle = false }
            for jobID in finishedJobs { finalize(jobID, into: &actions) }
        case let .jobFinished(jobID):
            finalize(jobID, into: &actions)
        case let .jobCancelled(jobID):
            revokeShards(ofJob: jobID, reason: "job cancelled", at: now, into: &actions)
            // A cancel is a finish of its own, even of a job finalized before a retry re-opened it.
            finalizedJobs.remove(jobID)
            finalize(jobID, into: &actions)
        case .shutdownRequested:
            if !draining {
                draining = true
                drainDeadline = now + configuration.shutdownGrace
            } else {
                // Asked twice: stop waiting for shards in flight (their leases expire).
                drainDeadline = now
            }
        }
        // Heartbeats and progress, most of the traffic of a large cluster, change no worker's
        // credit or claims in flight, so they open no slot: the scan of every worker is skipped.
        switch event {
        case .received(_, .heartbeat), .received(_, .progress): break
        default: dispatchClaims(into: &actions)
        }
        if draining { checkDrained(at: now, into: &actions) }
        return actions
    }

    /// When the shell should tick next at the latest.
    public var nextDeadline: MonotonicInstant {
        var deadline = nextRelease
        if let next = liveness.nextDeadline { deadline = min(deadline, next) }
        if let retry = retryClaimsAt { deadline = min(deadline, retry) }
        if let drain = drainDeadline { deadline = min(deadline, drain) }
        return deadline
    }

    /// Leases held by live workers.
    public var shardsInFlight: Int { leases.count }

    // MARK: Messages

    private mutating func receive(_ message: WireMessage, from peer: PeerIdentity, at now: MonotonicInstant, into actions: inout [Action]) {
        if case let .register(registration) = message {
            register(registration, peer: peer, at: now, into: &actions)
            return
        }
        guard workers[peer] != nil else {
            // Results carry their own proof (the lease token), so they count even from a worker this
            // coordinator has not met, e.g. one that worked through a coordinator restart.
            switch message {
            case let .shardDone(done): recordDone(done, at: now, into: &actions)
            case let .shardFailed(failed): recordFailed(failed, into: &actions)
            case .disconnect, .crashed: return
            default: break
            }
            send(.disconnect(reason: "not registered: send register first"), to: peer, at: now, into: &actions, track: false)
            return
        }
        liveness.heard(from: peer, at: now)
        switch message {
        case .register:
            break
        case let .credit(n):
            // Clamped by the window: credit beyond the (capped) prefetch is ignored.
            workers[peer]!.window.grant(n)
        case let .progress(shardID, itemsDone):
            renewLeases(of: peer, held: [shardID], at: now, into: &actions)
            if let (token, entry) = leases(of: peer).first(where: { key($0.entry.shard) == shardID }) {
                workers[peer]!.runningShard = entry.shard
                leases[token]!.itemsDone = Int(itemsDone)
                itemsDoneByJob[entry.shard.jobID, default: 0] += Int(itemsDone) - entry.itemsDone
                if let ordinals = entry.isolatedItems {
                    leases[token]!.itemInHand = Int(itemsDone) < ordinals.count ? ordinals[Int(itemsDone)] : nil
                }
            }
            // The echo tells an isolated shard's worker the item in hand is noted: it may start it.
            send(.progress(shardID: shardID, itemsDone: itemsDone), to: peer, at: now, into: &actions)
            publish(peer, into: &actions)
        case let .heartbeat(beat):
            workers[peer]!.itemsCompleted = beat.itemsCompleted
            workers[peer]!.imagesPerSecond = beat.imagesPerSecond
            workers[peer]!.memoryBytes = beat.residentMemoryBytes
            renewLeases(of: peer, held: Set(beat.heldShards), at: now, into: &actions)
            publish(peer, force: true, into: &actions)
        case let .shardDone(done):
            recordDone(done, at: now, into: &actions)
            publish(peer, into: &actions)
        case let .shardFailed(failed):
            recordFailed(failed, into: &actions)
            publish(peer, into: &actions)
        case .drain:
            workers[peer]!.draining = true
            publish(peer, force: true, into: &actions)
        case .disconnect:
            remove(peer, reason: "worker \(workers[peer]!.workerID) disconnected while holding this shard", into: &actions)
        case let .crashed(_, reason):
            counters.workersCrashed += 1
            remove(peer, reason: "worker \(workers[peer]!.workerID) crashed (\(reason))", crashed: true, into: &actions)
        case .assignShard, .cancel:
            break  // coordinator-bound decoding never yields these
        }
    }

    private mutating func register(_ registration: RegisterMessage, peer: PeerIdentity, at now: MonotonicInstant,
                                   into actions: inout [Action]) {
        liveness.heard(from: peer, at: now)
        let prefetch = min(registration.capabilities.prefetch, configuration.maxPrefetchPerWorker)
        if var entry = workers[peer], entry.session == registration.session {
            // A reconnect of the same process: it still holds its shards.
            entry.workerID = registration.workerID
            entry.host = registration.host
            entry.capabilities = registration.capabilities
            entry.window.updatePrefetch(prefetch)
            entry.draining = false
            workers[peer] = entry
        } else {
            var claimsInFlight = 0
            if let old = workers[peer] {
                // The identity is back with a new process: the old one crashed or was killed, and
                // nothing it held will ever be reported. Free it now rather than at lease expiry.
                counters.sessionsReplaced += 1
                endSession(of: peer, reason: "worker \(old.workerID) restarted (a new process registered under its id) while holding this shard",
                           into: &actions)
                // Claims still out for the old session come back to this identity: they count
                // against the new window, or they would be claimed twice over and abandoned.
                claimsInFlight = old.claimsInFlight
            } else {
                order.append(peer)
            }
            workers[peer] = WorkerEntry(workerID: registration.workerID, host: registration.host,
                                        capabilities: registration.capabilities, session: registration.session,
                                        window: CreditWindow(prefetch: prefetch), claimsInFlight: claimsInFlight)
        }
        publish(peer, force: true, into: &actions)
    }

    private mutating func recordDone(_ done: ShardDoneMessage, at now: MonotonicInstant, into actions: inout [Action]) {
        guard let shard = release(token: done.leaseToken, wireID: done.shardID) else {
            counters.rejected += 1
            return
        }
        // Timings went to the observer; the ledger records outcomes only.
        let results = done.results.map { result in
            var recorded = result
            recorded.timings = []
            if recorded.status == .failed, recorded.error == nil { recorded.error = "failed" }
            return recorded
        }
        actions.append(.complete(shard, token: done.leaseToken, results: results))
    }

    private mutating func recordFailed(_ failed: ShardFailedMessage, into actions: inout [Action]) {
        guard let shard = release(token: failed.leaseToken, wireID: failed.shardID) else {
            counters.rejected += 1
            return
        }
        switch failed.kind {
        case .handBack: actions.append(.handBack(shard, token: failed.leaseToken, reason: failed.error))
        case .shard: actions.append(.fail(shard, token: failed.leaseToken, error: failed.error))
        case .job: actions.append(.failJob(shard, token: failed.leaseToken, error: failed.error))
        }
    }

    /// Forgets every lease of `jobID` and tells the workers holding them to stop that job.
    private mutating func revokeShards(ofJob jobID: Int64, reason: String, at now: MonotonicInstant,
                                       into actions: inout [Action]) {
        let revoked = leases.filter { $0.value.shard.jobID == jobID }
        var peers: [PeerIdentity] = []
        for (token, entry) in revoked.sorted(by: { ($0.value.shard.index) < ($1.value.shard.index) }) {
            dropLease(token)
            guard workers[entry.peer] != nil else { continue }
            workers[entry.peer]!.window.complete(key(entry.shard))
            if workers[entry.peer]!.runningShard == entry.shard { workers[entry.peer]!.runningShard = nil }
            if !peers.contains(entry.peer) { peers.append(entry.peer) }
        }
        for peer in peers {
            send(.cancel(.job(jobID), reason: reason), to: peer, at: now, into: &actions)
            publish(peer, into: &actions)
        }
    }

    /// Items of job `jobID` that workers reported done in shards still leased (their results are
    /// not in the ledger yet): added to the ledger's count, progress moves per batch, not per shard.
    public func itemsInProgress(job jobID: Int64) -> Int {
        itemsDoneByJob[jobID] ?? 0
    }

    /// ``itemsInProgress(job:)`` for every job with items reported, at once.
    public var itemsInProgressByJob: [Int64: Int] { itemsDoneByJob.filter { $0.value > 0 } }

    /// Frees the credit slot of a resolved lease and names its shard (from the lease table, or
    /// from the wire id for leases this coordinator did not issue or already released).
    private mutating func release(token: LeaseToken, wireID: Int64) -> ShardRef? {
        if let entry = dropLease(token) {
            if workers[entry.peer] != nil {
                workers[entry.peer]!.window.complete(key(entry.shard))
                if workers[entry.peer]!.runningShard == entry.shard { workers[entry.peer]!.runningShard = nil }
            }
            return entry.shard
        }
        guard let id = ShardDispatchID(wire: wireID) else { return nil }
        return ShardRef(jobID: id.jobID, index: id.index)
    }

    private mutating func storeLease(_ token: LeaseToken, _ entry: LeaseEntry) {
        leases[token] = entry
        tokensByPeer[entry.peer, default: []].insert(token)
    }

    @discardableResult
    private mutating func dropLease(_ token: LeaseToken) -> LeaseEntry? {
        guard let entry = leases.removeValue(forKey: token) else { return nil }
        tokensByPeer[entry.peer]?.remove(token)
        if entry.itemsDone != 0 {
            let left = itemsDoneByJob[entry.shard.jobID, default: 0] - entry.itemsDone
            itemsDoneByJob[entry.shard.jobID] = left == 0 ? nil : left
        }
        if tokensByPeer[entry.peer]?.isEmpty == true { tokensByPeer[entry.peer] = nil }
        return entry
    }

    /// The leases `peer` holds, in no particular order.
    private func leases(of peer: PeerIdentity) -> [(token: LeaseToken, entry: LeaseEntry)] {
        (tokensByPeer[peer] ?? []).compactMap { token in leases[token].map { (token, $0) } }
    }

    /// Renews the leases of `peer` whose dispatch ids are in `held`.
    private mutating func renewLeases(of peer: PeerIdentity, held: Set<Int64>, at now: MonotonicInstant, into actions: inout [Action]) {
        for (token, entry) in leases(of: peer).sorted(by: { ($0.entry.shard.jobID, $0.entry.shard.index) < ($1.entry.shard.jobID, $1.entry.shard.index) })
        where !entry.renewalInFlight && now - entry.lastRenewal >= configuration.leaseRenewalInterval {
            guard held.contains(key(entry.shard)) else { continue }
            leases[token]!.renewalInFlight = true
            leases[token]!.lastRenewal = now
            actions.append(.renewLease(entry.shard, token: token))
        }
    }

    // MARK: Dispatch

    private mutating func dispatchClaims(into actions: inout [Action]) {
        guard !draining, !idle else { return }
        for peer in order {
            guard let entry = workers[peer] else { continue }
            for _ in 0..<entry.openSlots {
                workers[peer]!.claimsInFlight += 1
                actions.append(.claim(for: peer))
            }
        }
    }

    private mutating func assign(_ claimed: LeasedShard, preferring peer: PeerIdentity, at now: MonotonicInstant,
                                 into actions: inout [Action]) {
        let token = claimed.token
        guard !draining, let wire = ShardDispatchID(jobID: claimed.shard.jobID, index: claimed.shard.index).wire else {
            counters.leasesAbandoned += 1
            actions.append(.abandonLease(claimed.shard))
            return
        }
        // The worker that asked may have died or drained meanwhile; any worker with free credit will do.
        let candidates = [peer] + order.filter { $0 != peer }
        guard let target = candidates.first(where: { workers[$0].map { !$0.draining && $0.window.canAssign } ?? false }) else {
            counters.leasesAbandoned += 1
            actions.append(.abandonLease(claimed.shard))
            return
        }
        do { try workers[target]!.window.assign(key(claimed.shard)) } catch {
            counters.leasesAbandoned += 1
            actions.append(.abandonLease(claimed.shard))
            return
        }
        storeLease(token, LeaseEntry(shard: claimed.shard, peer: target, lastRenewal: now,
                                     isolatedItems: claimed.isolated ? claimed.items.map(\.ordinal) : nil))
        counters.assigned += 1
        if claimed.isolated { counters.isolatedAssignments += 1 }
        let message = AssignShardMessage(jobID: claimed.shard.jobID, shardID: wire, leaseToken: token, jobType: claimed.jobType,
                                         parametersJSON: claimed.parametersJSON, modelPath: claimed.model,
                                         outputDirectory: claimed.outputDirectory, items: claimed.items,
                                         isolated: claimed.isolated, excluded: claimed.excluded)
        send(.assignShard(message), to: target, at: now, into: &actions)
        publish(target, into: &actions)
    }

    /// Drops a lease the ledger no longer honours: the worker's slot is freed and it is told to
    /// stop the shard.
    private mutating func revoke(_ token: LeaseToken, reason: String, at now: MonotonicInstant, into actions: inout [Action]) {
        guard let entry = dropLease(token), workers[entry.peer] != nil else { return }
        workers[entry.peer]!.window.complete(key(entry.shard))
        if workers[entry.peer]!.runningShard == entry.shard { workers[entry.peer]!.runningShard = nil }
        if let wire = ShardDispatchID(jobID: entry.shard.jobID, index: entry.shard.index).wire {
            send(.cancel(.shard(wire), reason: reason), to: entry.peer, at: now, into: &actions)
        }
        publish(entry.peer, into: &actions)
    }

    // MARK: Time

    private mutating func tick(at now: MonotonicInstant, into actions: inout [Action]) {
        for action in liveness.tick(at: now) {
            switch action {
            case let .sendHeartbeat(peer):
                heartbeatSequence += 1
                actions.append(.send(.heartbeat(HeartbeatMessage(sequence: heartbeatSequence)), to: peer))
            case let .declareDead(peer):
                counters.workersDeclaredDead += 1
                let silence = configuration.liveness.heartbeatInterval * configuration.liveness.missedHeartbeatsBeforeDead
                remove(peer, reason: "worker \(workers[peer]?.workerID ?? peer.description) stopped responding (silent for \(silence)) while holding this shard",
                       into: &actions)
            }
        }
        if now >= nextRelease {
            nextRelease = now + configuration.releaseInterval
            actions.append(.releaseExpiredLeases)
            // A live worker's row is refreshed every heartbeat; twice the liveness limit without one
            // means no coordinator is hearing from it (a coordinator was killed, or a peer vanished).
            let silence = configuration.liveness.heartbeatInterval * (2 * configuration.liveness.missedHeartbeatsBeforeDead)
            actions.append(.markSilentWorkersOffline(olderThanSeconds: Self.seconds(silence)))
        }
        if let retry = retryClaimsAt, now >= retry {
            retryClaimsAt = nil
            idle = false
        }
    }

    /// Forgets a dead or departed worker and ends its session; `crashed`: it said it is dying of a
    /// fatal signal (then the item in hand of an isolated shard is to blame).
    private mutating func remove(_ peer: PeerIdentity, reason: String, crashed: Bool = false, into actions: inout [Action]) {
        guard workers[peer] != nil else { return }
        actions.append(.upsertWorker(report(for: peer, state: .offline)))
        endSession(of: peer, reason: reason, crashed: crashed, into: &actions)
        workers[peer] = nil
        order.removeAll { $0 == peer }
        liveness.forget(peer)
    }

    /// Ends the session of `peer`: its credit is gone and its leases go back to the ledger now. A
    /// late result of the session is still passed on (through its dispatch id) and refused there by
    /// its lease token.
    private mutating func endSession(of peer: PeerIdentity, reason: String, crashed: Bool = false, into actions: inout [Action]) {
        _ = workers[peer]?.window.reset()
        // Only a crash report blames an item: a process killed from outside (an operator, a
        // restart, a partition) died holding whatever it held, through no fault of the item.
        let held = leases(of: peer)
            .map { HeldLease(shard: $0.entry.shard, token: $0.token, itemInHand: crashed ? $0.entry.itemInHand : nil) }
            .sorted { ($0.shard.jobID, $0.shard.index) < ($1.shard.jobID, $1.shard.index) }
        guard !held.isEmpty else { return }
        for lease in held { dropLease(lease.token) }
        counters.leasesReleasedOnSessionEnd += held.count
        actions.append(.releaseLeases(held, reason: reason))
    }

    private mutating func checkDrained(at now: MonotonicInstant, into actions: inout [Action]) {
        guard shardsInFlight == 0 || now >= (drainDeadline ?? now) else { return }
        // Workers are unserved until they register with a coordinator again.
        for peer in order {
            actions.append(.upsertWorker(report(for: peer, state: .offline)))
            actions.append(.send(.disconnect(reason: "coordinator shutting down"), to: peer))
        }
        actions.append(.exit)
        exited = true
    }

    private mutating func finalize(_ jobID: Int64, into actions: inout [Action]) {
        guard finalizedJobs.insert(jobID).inserted else { return }
        actions.append(.finalize(jobID: jobID))
    }

    // MARK: Helpers

    private mutating func send(_ message: WireMessage, to peer: PeerIdentity, at now: MonotonicInstant,
                               into actions: inout [Action], track: Bool = true) {
        if track { liveness.sent(to: peer, at: now) }
        actions.append(.send(message, to: peer))
    }

    private func key(_ shard: ShardRef) -> Int64 {
        ShardDispatchID(jobID: shard.jobID, index: shard.index).wire ?? -1
    }

    /// Writes the worker's row when it changed (state or current shard), or always with `force`
    /// (a heartbeat: the row's heartbeat time and counters are refreshed).
    private mutating func publish(_ peer: PeerIdentity, force: Bool = false, into actions: inout [Action]) {
        guard workers[peer] != nil else { return }
        let row = report(for: peer, state: nil)
        if !force, let last = workers[peer]!.published, last.state == row.state, last.currentShard == row.currentShard { return }
        workers[peer]!.published = row
        actions.append(.upsertWorker(row))
    }

    private func report(for peer: PeerIdentity, state: WorkerState?) -> WorkerReport {
        let entry = workers[peer]!
        let busy = !entry.window.outstanding.isEmpty
        let mine = leases(of: peer).map(\.entry)
        let held = mine.map(\.shard)
        // The shard it reports progress on, else the oldest it holds; none once it is offline.
        let current = state == .offline ? nil
            : entry.runningShard.flatMap { held.contains($0) ? $0 : nil } ?? held.min { ($0.jobID, $0.index) < ($1.jobID, $1.index) }
        let capabilities = "{\"job_types\":\(jsonArray(entry.capabilities.jobTypes)),\"threads\":\(entry.capabilities.threads),"
            + "\"prefetch\":\(entry.capabilities.prefetch),\"prefetch_granted\":\(entry.window.prefetch),"
            + "\"memory_bytes\":\(entry.capabilities.memoryBytes)}"
        // What it reported of that shard, so monitors see progress between the shard's records.
        let inProgress = current.flatMap { shard in mine.first { $0.shard == shard }?.itemsDone } ?? 0
        return WorkerReport(id: entry.workerID, host: entry.host, capabilitiesJSON: capabilities,
                            state: state ?? (entry.draining ? .draining : busy ? .busy : .idle),
                            currentShard: current, itemsDone: Int64(clamping: entry.itemsCompleted),
                            imagesPerSecond: entry.imagesPerSecond, memoryBytes: Int64(clamping: entry.memoryBytes),
                            itemsInProgress: Int64(inProgress))
    }

    private static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    private func jsonArray(_ strings: [String]) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: strings)) ?? Data("[]".utf8)
        return String(decoding: data, as: UTF8.self)
    }
}

/// A shard the ledger leased, in the form the state machine hands to a worker.
public struct LeasedShard: Sendable, Equatable {
    public var shard: ShardRef
    public var token: LeaseToken
    public var jobType: String
    public var parametersJSON: String
    public var model: String
    public var outputDirectory: String
    /// The shard's unfinished items; `ordinal` is the item's ordinal in the job.
    public var items: [JobItem]
    /// Run it one item at a time (``ShardTask/isolated``).
    public var isolated: Bool
    /// Items already failed for crashing workers, not to be processed.
    public var excluded: [ExcludedItem]

    public init(shard: ShardRef, token: LeaseToken, jobType: String, parametersJSON: String, model: String,
                outputDirectory: String, items: [JobItem], isolated: Bool = false, excluded: [ExcludedItem] = []) {
        self.isolated = isolated
        self.excluded = excluded
        self.shard = shard
        self.token = token
        self.jobType = jobType
        self.parametersJSON = parametersJSON
        self.model = model
        self.outputDirectory = outputDirectory
        self.items = items
    }

    /// Converts a ledger claim.
    public init(_ claimed: ClaimedShard) {
        self.init(shard: claimed.shard, token: LeaseToken(uuid: claimed.leaseToken), jobType: claimed.job.type,
                  parametersJSON: claimed.job.parametersJSON, model: claimed.job.model ?? "",
                  outputDirectory: claimed.job.outputLocation, items: claimed.items, isolated: claimed.isolated,
                  excluded: claimed.excluded)
    }
}
