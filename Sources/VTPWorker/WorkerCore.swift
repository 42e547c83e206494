import VTPRuntimeSupport
import VTPTransport
import VTPVocabulary

/// The worker's protocol logic as a pure state machine: events in (a message from the coordinator,
/// a timer tick, a shard finishing, a signal), actions out (send, execute, reconnect, exit). The
/// `Worker` shell does the I/O; every rule is unit-tested without sockets.
///
/// Rules:
/// - On start and after every reconnect: `register`, then `credit` for the slots not already held.
/// - One shard executes at a time; further assignments queue (the coordinator never sends more
///   than the announced prefetch). Each assignment, once resolved (done, failed, cancelled or
///   handed back), returns exactly one credit, unless the worker is draining.
/// - A cancelled queued shard is dropped; a cancelled running shard finishes but its result is
///   discarded (the coordinator no longer holds its lease).
/// - The coordinator is watched Paranoid-Pirate style (`CoordinatorLiveness`): reconnect with
///   jittered exponential backoff after three silent intervals. Heartbeats go out every interval
///   whatever else is sent (progress of a busy shard does not replace them): they carry the
///   worker's counters and the shards it holds, whose leases the coordinator renews from them.
/// - `registration.session` is drawn once per process; every (re)registration repeats it, so the
///   coordinator keeps this process's leases across reconnects and tells a restart apart.
/// - A `disconnect` from the coordinator (it restarted or does not know this worker) triggers an
///   immediate re-registration.
/// - First shutdown request (SIGTERM): take no more work, hand queued shards back (`shardFailed`
///   with ``ShardFailedMessage/handBack(shardID:leaseToken:reason:)``, which spends no attempt),
///   finish the running one, say `disconnect`, exit. A second request (or an interrupt) hands the
///   running shard back too, without waiting for it.
/// - An interrupt (SIGINT, Ctrl-C) is the impatient stop: as a shutdown, but the running shard is
///   told to stop (`.stop`) after the batch in hand and handed back once it has; a second
///   interrupt (or a shutdown request) hands it back at once.
public struct WorkerCore: Sendable {
    /// Why a shard did not produce a result.
    public enum ShardResult: Sendable, Equatable {
        case done([ItemResult])
        case failed(String)
        /// Nothing of the job can run here or elsewhere (``JobError/failsWholeJob``): the job fails.
        case jobFailed(String)
        /// Stopped on request (``Action/stop(shardID:token:)``) after this many items.
        case stopped(itemsDone: Int)
    }

    public enum Event: Sendable, Equatable {
        case started
        case received(WireMessage)
        case tick
        /// The executor reported `itemsDone` items of the running shard.
        case progress(shardID: Int64, itemsDone: UInt32)
        /// The running shard finished after `seconds`.
        case shardFinished(shardID: Int64, token: LeaseToken, ShardResult, seconds: Double)
        case shutdownRequested
        /// Stop soon: the running shard after its current batch (SIGINT).
        case interruptRequested
    }

    public enum Action: Sendable, Equatable {
        case send(WireMessage)
        /// Start executing this shard (the shell answers with `.shardFinished`).
        case execute(AssignShardMessage)
        /// Let an isolated shard's executor start item `itemsDone` (the coordinator acknowledged its
        /// progress), or stop waiting for acknowledgements altogether (`.max`: the shard was cancelled
        /// or handed back, and no acknowledgement will come).
        case acknowledge(shardID: Int64, itemsDone: UInt32)
        /// Make the running shard's executor stop at its next item boundary (it then finishes with
        /// `.stopped`).
        case stop(shardID: Int64, token: LeaseToken)
        /// Replace the socket with a fresh connection (registration messages follow in the same batch).
        case reconnect
        case exit
    }

    public let registration: RegisterMessage
    public private(set) var queued: [AssignShardMessage] = []
    public private(set) var running: AssignShardMessage?
    public private(set) var runningCancelled = false
    public private(set) var draining = false
    /// Shutdown was requested twice: do not wait for the running shard.
    public private(set) var forced = false
    /// An interrupt asked the running shard to stop after its current batch.
    public private(set) var interrupted = false
    public private(set) var itemsCompleted: UInt64 = 0
    public private(set) var imagesPerSecond: Double = 0
    /// Set by the shell before ticks; reported in heartbeats.
    public var residentMemoryBytes: UInt64 = 0
    private var liveness: CoordinatorLiveness
    private var heartbeatSequence: UInt64 = 0
    private var exited = false

    public init(registration: RegisterMessage, liveness: CoordinatorLiveness.Configuration = .standard,
                now: MonotonicInstant, seed: UInt64) {
        self.registration = registration
        self.liveness = CoordinatorLiveness(configuration: liveness, now: now, seed: seed)
    }

    private var prefetch: UInt32 { registration.capabilities.prefetch }

    /// Assignments currently held (queued or running).
    public var held: Int { queued.count + (running == nil ? 0 : 1) }

    /// Dispatch ids of the shards held, ascending, once each (a shard re-assigned while its
    /// cancelled predecessor still runs appears once).
    public var heldShardIDs: [Int64] { Set(queued.map(\.shardID) + [running?.shardID].compactMap { $0 }).sorted() }

    /// When the shell must tick next at the latest.
    public var nextDeadline: MonotonicInstant { liveness.nextDeadline }

    public mutating func handle(_ event: Event, at now: MonotonicInstant) -> [Action] {
        guard !exited else { return [] }
        var actions: [Action] = []
        switch event {
        case .started:
            announce(at: now, into: &actions)
        case let .received(message):
            liveness.received(at: now)
            receive(message, at: now, into: &actions)
        case .tick:
            for action in liveness.tick(at: now) {
                switch action {
                case .sendHeartbeat:
                    heartbeatSequence += 1
                    actions.append(.send(.heartbeat(HeartbeatMessage(sequence: heartbeatSequence, imagesPerSecond: imagesPerSecond,
                                                                     residentMemoryBytes: residentMemoryBytes,
                                                                     itemsCompleted: itemsCompleted, heldShards: heldShardIDs))))
                case .coordinatorLost:
                    break  // the socket is replaced when `.reconnect` comes due, unless the coordinator is heard first
                case .reconnect:
                    actions.append(.reconnect)
                    announce(at: now, into: &actions)
                }
            }
        case let .progress(shardID, itemsDone):
            guard running?.shardID == shardID, !runningCancelled else {
                actions.append(.acknowledge(shardID: shardID, itemsDone: .max))
                break
            }
            send(.progress(shardID: shardID, itemsDone: itemsDone), at: now, into: &actions)
        case let .shardFinished(shardID, token, result, seconds):
            guard let current = running, current.shardID == shardID, current.leaseToken == token else { break }
            running = nil
            if case let .done(results) = result {
                itemsCompleted += UInt64(results.count)
                if seconds > 0 { imagesPerSecond = Double(results.count) / seconds }
            }
            if !runningCancelled && !forced {
                switch result {
                case let .done(results):
                    send(.shardDone(ShardDoneMessage(shardID: shardID, leaseToken: token, results: results)), at: now, into: &actions)
                case let .failed(error):
                    send(.shardFailed(ShardFailedMessage(shardID: shardID, leaseToken: token, error: error)), at: now, into: &actions)
                case let .jobFailed(error):
                    send(.shardFailed(ShardFailedMessage(shardID: shardID, leaseToken: token, error: error, kind: .job)),
                         at: now, into: &actions)
                case let .stopped(itemsDone):
                    send(.shardFailed(.handBack(shardID: shardID, leaseToken: token,
                                                reason: "worker interrupted after \(itemsDone) of \(current.items.count) items")),
                         at: now, into: &actions)
                }
            }
            runningCancelled = false
            if !draining { send(.credit(1), at: now, into: &actions) }
            startNext(into: &actions)
        case .shutdownRequested:
            if draining {
                handBackRunningNow(at: now, into: &actions)
            } else {
                draining = true
                send(.drain(reason: "worker shutting down"), at: now, into: &actions)
                handBackQueued(at: now, into: &actions)
            }
        case .interruptRequested:
            if interrupted {
                handBackRunningNow(at: now, into: &actions)
            } else {
                interrupted = true
                if !draining {
                    draining = true
                    send(.drain(reason: "worker interrupted"), at: now, into: &actions)
                }
                handBackQueued(at: now, into: &actions)
                if let current = running, !runningCancelled, !forced {
                    actions.append(.stop(shardID: current.shardID, token: current.leaseToken))
                    // An isolated shard's executor may be waiting for an acknowledgement; free it.
                    actions.append(.acknowledge(shardID: current.shardID, itemsDone: .max))
                }
            }
        }
        if draining && running == nil && queued.isEmpty {
            actions.append(.send(.disconnect(reason: "worker stopped")))
            actions.append(.exit)
            exited = true
        }
        return actions
    }

    private mutating func receive(_ message: WireMessage, at now: MonotonicInstant, into actions: inout [Action]) {
        switch message {
        case let .assignShard(assignment):
            if running?.leaseToken == assignment.leaseToken || queued.contains(where: { $0.leaseToken == assignment.leaseToken }) {
                return  // a duplicate delivery
            }
            if draining {
                send(.shardFailed(.handBack(shardID: assignment.shardID, leaseToken: assignment.leaseToken,
                                            reason: "worker shutting down")), at: now, into: &actions)
                return
            }
            queued.append(assignment)
            startNext(into: &actions)
        case let .cancel(scope, _):
            let matches: (AssignShardMessage) -> Bool = {
                switch scope {
                case let .shard(id): $0.shardID == id
                case let .job(id): $0.jobID == id
                }
            }
            let before = queued.count
            queued.removeAll(where: matches)
            if !draining {
                for _ in 0..<(before - queued.count) { send(.credit(1), at: now, into: &actions) }
            }
            if let current = running, matches(current) {
                runningCancelled = true
                actions.append(.acknowledge(shardID: current.shardID, itemsDone: .max))
            }
        case .drain:
            // The coordinator wants this worker to finish what it holds and take nothing more.
            if !draining {
                draining = true
                send(.drain(reason: "drain requested by coordinator"), at: now, into: &actions)
            }
        case .disconnect:
            announce(at: now, into: &actions)
        case let .progress(shardID, itemsDone):
            if running?.shardID == shardID { actions.append(.acknowledge(shardID: shardID, itemsDone: itemsDone)) }
        case .heartbeat, .register, .credit, .shardDone, .shardFailed, .crashed:
            break
        }
    }

    /// Register, then grant the slots not already occupied.
    private mutating func announce(at now: MonotonicInstant, into actions: inout [Action]) {
        send(.register(registration), at: now, into: &actions)
        let free = draining ? 0 : max(0, Int(prefetch) - held)
        if free > 0 { send(.credit(UInt32(free)), at: now, into: &actions) }
    }

    private mutating func handBackQueued(at now: MonotonicInstant, into actions: inout [Action]) {
        for shard in queued {
            send(.shardFailed(.handBack(shardID: shard.shardID, leaseToken: shard.leaseToken, reason: "worker shutting down")),
                 at: now, into: &actions)
        }
        queued = []
    }

    /// The impatient end: the running shard goes back now and its result, if it ever comes, is dropped.
    private mutating func handBackRunningNow(at now: MonotonicInstant, into actions: inout [Action]) {
        forced = true
        guard let current = running else { return }
        if !runningCancelled {
            send(.shardFailed(.handBack(shardID: current.shardID, leaseToken: current.leaseToken, reason: "worker stopped")),
                 at: now, into: &actions)
        }
        actions.append(.stop(shardID: current.shardID, token: current.leaseToken))
        actions.append(.acknowledge(shardID: current.shardID, itemsDone: .max))
        running = nil
    }

    private mutating func startNext(into actions: inout [Action]) {
        guard running == nil, !queued.isEmpty else { return }
        let next = queued.removeFirst()
        running = next
        runningCancelled = false
        actions.append(.execute(next))
    }

    /// Other traffic does not count as a heartbeat (`liveness.sent` is not called): the
    /// coordinator's view of this worker (its row, counters and held leases) comes from heartbeats,
    /// and a busy worker sending progress many times a second must still send them.
    private mutating func send(_ message: WireMessage, at now: MonotonicInstant, into actions: inout [Action]) {
        actions.append(.send(message))
    }
}
