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
/// - `credit` opens slots in the worker's `CreditWindow`; the machine asks the ledger for one shard
///   per open slot (never more claims in flight than free credit) and assigns what comes back.
/// - When a claim finds nothing, claiming stops until new work is signalled (LISTEN/NOTIFY), a
///   shard is requeued, expired leases are released, or the ledger's next eligible time passes:
///   an idle coordinator never polls the shard table.
/// - Heartbeats and progress from a worker renew the leases it holds (at most once per
///   `leaseRenewalInterval` per lease); a renewal the ledger refuses cancels the shard on the worker.
/// - `shardDone` / `shardFailed` go to the ledger with the lease token; the ledger rejects late or
///   duplicate results and the machine counts them.
/// - A worker silent for the liveness limit is declared dead; its leases are left to expire in the
///   ledger and are re-dispatched after the periodic `releaseExpiredLeases`.
/// - A job whose last shard resolved is finalized once per time it finishes (again after a retry
///   re-opens it), never twice for the same finish.
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

        public init(liveness: WorkerLiveness<PeerIdentity>.Configuration = .standard, leaseRenewalInterval: Duration = .seconds(10),
                    releaseInterval: Duration = .seconds(5), shutdownGrace: Duration = .seconds(30)) {
            self.liveness = liveness
            self.leaseRenewalInterval = leaseRenewalInterval
            self.releaseInterval = releaseInterval
            self.shutdownGrace = shutdownGrace
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
        /// The ledger answered `releaseExpiredLeases` with the shards whose leases it released.
        case leasesReleased([ShardRef])
        /// A job is finished (seen at start-up) and may still need finalizing.
        case jobFinished(Int64)
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
        case releaseExpiredLeases
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
        public var window: CreditWindow
        /// Claims asked of the ledger for this worker and not yet answered.
        public var claimsInFlight: Int = 0
        /// The worker announced it is draining: it gets no more shards.
        public var draining = false
        public var itemsCompleted: UInt64 = 0
        public var imagesPerSecond: Double = 0
        public var memoryBytes: UInt64 = 0

        /// Credit not yet covered by an outstanding claim.
        var openSlots: Int { draining ? 0 : max(0, Int(window.credits) - claimsInFlight) }
    }

    /// One lease the coordinator handed out (or inherited through a result).
    public struct LeaseEntry: Sendable, Equatable {
        public var shard: ShardRef
        /// The worker holding it; nil after that worker was declared dead (the lease then runs out).
        public var peer: PeerIdentity?
        public var lastRenewal: MonotonicInstant
        public var renewalInFlight = false
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
    }

    public let configuration: Configuration
    public private(set) var workers: [PeerIdentity: WorkerEntry] = [:]
    public private(set) var leases: [LeaseToken: LeaseEntry] = [:]
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
            }
            if jobFinished { finalize(shard.jobID, into: &actions) }
        case let .leaseRenewed(token, held):
            guard var entry = leases[token] else { break }
            entry.renewalInFlight = false
            if held {
                leases[token] = entry
            } else {
                // Someone else holds the shard now (expired and re-issued, or the job was cancelled).
                leases[token] = nil
                if let peer = entry.peer, workers[peer] != nil {
                    workers[peer]!.window.complete(key(entry.shard))
                    if let wire = ShardDispatchID(jobID: entry.shard.jobID, index: entry.shard.index).wire {
                        send(.cancel(.shard(wire), reason: "lease lost"), to: peer, at: now, into: &actions)
                    }
                }
            }
        case let .leasesReleased(released):
            let refs = Set(released)
            for (token, entry) in leases where entry.peer == nil && refs.contains(entry.shard) { leases[token] = nil }
            if !released.isEmpty { idle = false }
        case let .jobFinished(jobID):
            finalize(jobID, into: &actions)
        case .shutdownRequested:
            if !draining {
                draining = true
                drainDeadline = now + configuration.shutdownGrace
            }
        }
        dispatchClaims(into: &actions)
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
    public var shardsInFlight: Int { leases.values.filter { $0.peer != nil }.count }

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
            case .disconnect: return
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
            workers[peer]!.window.grant(n)
        case let .progress(shardID, _):
            renewLeases(of: peer, only: shardID, at: now, into: &actions)
        case let .heartbeat(beat):
            workers[peer]!.itemsCompleted = beat.itemsCompleted
            workers[peer]!.imagesPerSecond = beat.imagesPerSecond
            workers[peer]!.memoryBytes = beat.residentMemoryBytes
            renewLeases(of: peer, only: nil, at: now, into: &actions)
            actions.append(.upsertWorker(report(for: peer, state: nil)))
        case let .shardDone(done):
            recordDone(done, at: now, into: &actions)
        case let .shardFailed(failed):
            recordFailed(failed, into: &actions)
        case .drain:
            workers[peer]!.draining = true
            actions.append(.upsertWorker(report(for: peer, state: .draining)))
        case .disconnect:
            remove(peer, into: &actions)
        case .assignShard, .cancel:
            break  // coordinator-bound decoding never yields these
        }
    }

    private mutating func register(_ registration: RegisterMessage, peer: PeerIdentity, at now: MonotonicInstant,
                                   into actions: inout [Action]) {
        liveness.heard(from: peer, at: now)
        if var entry = workers[peer] {
            entry.workerID = registration.workerID
            entry.host = registration.host
            entry.capabilities = registration.capabilities
            entry.window.updatePrefetch(registration.capabilities.prefetch)
            entry.draining = false
            workers[peer] = entry
        } else {
            workers[peer] = WorkerEntry(workerID: registration.workerID, host: registration.host,
                                        capabilities: registration.capabilities,
                                        window: CreditWindow(prefetch: registration.capabilities.prefetch))
            order.append(peer)
        }
        actions.append(.upsertWorker(report(for: peer, state: .idle)))
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
        actions.append(.fail(shard, token: failed.leaseToken, error: failed.error))
    }

    /// Frees the credit slot of a resolved lease and names its shard (from the lease table, or
    /// from the wire id for leases this coordinator did not issue).
    private mutating func release(token: LeaseToken, wireID: Int64) -> ShardRef? {
        if let entry = leases.removeValue(forKey: token) {
            if let peer = entry.peer, workers[peer] != nil { workers[peer]!.window.complete(key(entry.shard)) }
            return entry.shard
        }
        guard let id = ShardDispatchID(wire: wireID) else { return nil }
        return ShardRef(jobID: id.jobID, index: id.index)
    }

    private mutating func renewLeases(of peer: PeerIdentity, only wireID: Int64?, at now: MonotonicInstant, into actions: inout [Action]) {
        for (token, entry) in leases.sorted(by: { ($0.value.shard.jobID, $0.value.shard.index) < ($1.value.shard.jobID, $1.value.shard.index) })
        where entry.peer == peer && !entry.renewalInFlight && now - entry.lastRenewal >= configuration.leaseRenewalInterval {
            if let wireID, ShardDispatchID(jobID: entry.shard.jobID, index: entry.shard.index).wire != wireID { continue }
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
        leases[token] = LeaseEntry(shard: claimed.shard, peer: target, lastRenewal: now)
        counters.assigned += 1
        let message = AssignShardMessage(jobID: claimed.shard.jobID, shardID: wire, leaseToken: token, jobType: claimed.jobType,
                                         parametersJSON: claimed.parametersJSON, modelPath: claimed.model,
                                         outputDirectory: claimed.outputDirectory, items: claimed.items)
        send(.assignShard(message), to: target, at: now, into: &actions)
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
                remove(peer, into: &actions)
            }
        }
        if now >= nextRelease {
            nextRelease = now + configuration.releaseInterval
            actions.append(.releaseExpiredLeases)
        }
        if let retry = retryClaimsAt, now >= retry {
            retryClaimsAt = nil
            idle = false
        }
    }

    /// Forgets a dead or departed worker. Its leases stay in the ledger until they expire; they are
    /// kept here without an owner so a late result can still be matched.
    private mutating func remove(_ peer: PeerIdentity, into actions: inout [Action]) {
        guard workers[peer] != nil else { return }
        actions.append(.upsertWorker(report(for: peer, state: .offline)))
        _ = workers[peer]!.window.reset()
        workers[peer] = nil
        order.removeAll { $0 == peer }
        liveness.forget(peer)
        for (token, entry) in leases where entry.peer == peer { leases[token]!.peer = nil }
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

    private func report(for peer: PeerIdentity, state: WorkerState?) -> WorkerReport {
        let entry = workers[peer]!
        let busy = !entry.window.outstanding.isEmpty
        let current = leases.values.filter { $0.peer == peer }.map(\.shard).min { ($0.jobID, $0.index) < ($1.jobID, $1.index) }
        let capabilities = "{\"job_types\":\(jsonArray(entry.capabilities.jobTypes)),\"threads\":\(entry.capabilities.threads),"
            + "\"prefetch\":\(entry.capabilities.prefetch),\"memory_bytes\":\(entry.capabilities.memoryBytes)}"
        return WorkerReport(id: entry.workerID, host: entry.host, capabilitiesJSON: capabilities,
                            state: state ?? (entry.draining ? .draining : busy ? .busy : .idle),
                            currentShard: current, itemsDone: Int64(clamping: entry.itemsCompleted),
                            imagesPerSecond: entry.imagesPerSecond, memoryBytes: Int64(clamping: entry.memoryBytes))
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

    public init(shard: ShardRef, token: LeaseToken, jobType: String, parametersJSON: String, model: String,
                outputDirectory: String, items: [JobItem]) {
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
                  outputDirectory: claimed.job.outputLocation, items: claimed.items)
    }
}
