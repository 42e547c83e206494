import Foundation
import Logging
import Synchronization
import VTPRuntimeSupport
import VTPTransport
import VTPVocabulary

/// The worker service: a DEALER socket, an injected `ShardHandling` (`VTPJobs`' `JobShardHandler`
/// in the product, so this module links no model, image or index code) and the `WorkerCore`
/// state machine.
///
/// `run()` registers, serves assignments until shutdown (`requestShutdown()`, i.e. SIGTERM) and
/// returns after saying goodbye. It reconnects on its own when the coordinator goes silent.
public final class Worker: Sendable {
    public struct Options: Sendable {
        public var endpoint: String
        public var registration: RegisterMessage
        public var curve: CurveClientSecurity?
        public var liveness: CoordinatorLiveness.Configuration
        public var maxMessageBytes: Int
        public var tickInterval: Duration
        /// Told what the worker did (shards resolved, busy, memory), for metrics; nil for none.
        public var observer: (any WorkerObserver)?

        public init(endpoint: String, registration: RegisterMessage, curve: CurveClientSecurity? = nil,
                    liveness: CoordinatorLiveness.Configuration = .standard, maxMessageBytes: Int = WireLimits.maxFrameBytes,
                    tickInterval: Duration = .milliseconds(200), observer: (any WorkerObserver)? = nil) {
            self.observer = observer
            self.endpoint = endpoint
            self.registration = registration
            self.curve = curve
            self.liveness = liveness
            self.maxMessageBytes = maxMessageBytes
            self.tickInterval = tickInterval
        }
    }

    private let options: Options
    private let handler: any ShardHandling
    private let dealer: DealerEndpoint
    private let events = EventQueue<WorkerCore.Event>()
    private let acknowledgements = ProgressAcknowledgements()
    /// The stop signal of each shard executing, by lease.
    private let stopSignals = Mutex<[LeaseToken: ShardStopSignal]>([:])
    private let logger: Logger

    /// Creates the socket and starts connecting (nothing is sent before `run()`).
    public init(options: Options, handler: any ShardHandling, context: ZMQContext,
                logger: Logger = Logger(label: "vtp.worker")) throws {
        var logger = logger
        // Every line names the worker, as metadata a log collector can filter on.
        logger[metadataKey: "worker"] = .string(options.registration.workerID)
        var configuration = DealerConfiguration(endpoint: options.endpoint, identity: PeerIdentity(options.registration.workerID),
                                                curve: options.curve)
        configuration.maxMessageBytes = options.maxMessageBytes
        dealer = try DealerEndpoint(context: context, configuration: configuration, logger: logger)
        self.options = options
        self.handler = handler
        self.logger = logger
    }

    /// First call: finish the running shard, hand queued ones back, exit. Second call: hand the
    /// running one back too.
    public func requestShutdown() { events.post(.shutdownRequested) }

    /// First call (SIGINT): stop the running shard after its current batch and hand it back, hand
    /// queued ones back, exit. Second call: hand the running one back at once.
    public func requestInterrupt() { events.post(.interruptRequested) }

    /// Tells the coordinator this process is dying of fatal signal `signal` (call it from
    /// ``FatalSignalReporter``'s reporter thread): the coordinator then blames the item in hand of
    /// each isolated shard it holds, instead of treating the end like a kill. Blocks at most about
    /// a second; the short pause after queuing lets libzmq put the frame on the wire before the
    /// process ends.
    public func reportCrash(signal: Int32) {
        let reason = "signal \(signal), \(FatalSignalReporter.name(of: signal))"
        logger.critical("worker \(options.registration.workerID) is crashing (\(reason)); telling the coordinator")
        if dealer.sendBlocking(.crashed(signal: signal, reason: reason), timeout: 0.7) {
            Thread.sleep(forTimeInterval: 0.3)
        }
    }

    /// Serves until shut down.
    public func run() async {
        var core = WorkerCore(registration: options.registration, liveness: options.liveness, now: .now(),
                              seed: UInt64(truncatingIfNeeded: options.registration.workerID.hashValue))
        let inbound = Task { [dealer, events, logger] in
            for await message in dealer.inbound {
                switch message {
                case let .success(decoded): events.post(.received(decoded))
                case let .failure(error): logger.warning("dropping undecodable message: \(error)")
                }
            }
        }
        let ticker = Task { [events, options] in
            while !Task.isCancelled {
                try? await Task.sleep(for: options.tickInterval)
                events.post(.tick)
            }
        }
        defer {
            inbound.cancel()
            ticker.cancel()
        }
        events.post(.started)
        let observer = options.observer
        var busy = false
        loop: for await event in events.events {
            if case .tick = event {
                core.residentMemoryBytes = ResidentMemory.bytes()
                observer?.observe(.residentMemory(bytes: core.residentMemoryBytes))
            }
            // The assignments a result sent while handling this event can be about: those held
            // before it, and one refused as it arrives. Only gathered when someone observes.
            let concerned = observer == nil ? [] : Self.assignments(heldBy: core, or: event)
            let actions = core.handle(event, at: .now())
            if let observer {
                for observation in Self.observations(of: actions, concerning: concerned) { observer.observe(observation) }
                if (core.running != nil) != busy {
                    busy.toggle()
                    observer.observe(.busy(busy))
                }
            }
            for action in actions {
                switch action {
                case let .send(message):
                    do { try await dealer.send(message) } catch {
                        // Liveness notices a dead link and reconnects; nothing to do per message.
                        logger.debug("send \(message.type) failed: \(error)")
                    }
                case let .execute(assignment):
                    execute(assignment)
                case let .stop(_, token):
                    stopSignals.withLock { $0[token] }?.raise()
                case let .acknowledge(shardID, itemsDone):
                    acknowledgements.acknowledge(shardID: shardID, itemsDone: itemsDone)
                case .reconnect:
                    // A refused key looks like silence at this level; the dealer's monitor knows better.
                    let why = dealer.handshakeRejection.map { " (\($0))" } ?? ""
                    logger.warning("coordinator silent; reconnecting to \(options.endpoint)\(why)")
                    do { try await dealer.reconnect() } catch { logger.error("reconnect failed: \(error)") }
                case .exit:
                    break loop
                }
            }
        }
        events.finish()
        await dealer.shutdown()
    }

    private func execute(_ assignment: AssignShardMessage) {
        let shardID = assignment.shardID, token = assignment.leaseToken
        let isolated = assignment.isolated
        let mode = isolated ? ", one at a time (a worker ended abnormally holding it)" : ""
        let ids = Self.ids(assignment)
        logger.info("shard received", metadata: ids.merging(["event": "shard_received", "items": "\(assignment.items.count)",
                                                            "isolated": "\(isolated)"]) { $1 })
        if isolated { logger.info("running the shard\(mode)", metadata: ids) }
        let stop = ShardStopSignal()
        stopSignals.withLock { $0[token] = stop }
        Task { [self, handler, events, logger, acknowledgements] in
            let start = ContinuousClock.now
            let result: WorkerCore.ShardResult
            defer {
                acknowledgements.forget(shardID: shardID)
                self.stopSignals.withLock { _ = $0.removeValue(forKey: token) }
            }
            do {
                var task = try Self.task(for: assignment)
                task.stop = stop
                result = .done(try await handler.run(task) { done in
                    let count = UInt32(clamping: done)
                    events.post(.progress(shardID: shardID, itemsDone: count))
                    if isolated {
                        let acknowledged = acknowledgements.wait(shardID: shardID, itemsDone: count) {
                            events.post(.progress(shardID: shardID, itemsDone: count))
                        }
                        if !acknowledged { logger.warning("shard \(shardID): progress \(count) not acknowledged; going on") }
                    }
                })
            } catch let stopped as ShardStopped {
                result = .stopped(itemsDone: stopped.itemsDone)
            } catch let error as JobError where error.failsWholeJob {
                result = .jobFailed("\(error)")
            } catch {
                result = .failed("\(error)")
            }
            let elapsed = ContinuousClock.now - start
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            Self.logFinished(result, ids: ids, seconds: seconds, logger: logger)
            events.post(.shardFinished(shardID: shardID, token: token, result, seconds: seconds))
        }
    }
}

extension Worker {
    /// The assignments held by `core` (queued and running) and the one `event` delivers, if any.
    static func assignments(heldBy core: WorkerCore, or event: WorkerCore.Event) -> [AssignShardMessage] {
        var all = core.queued
        if let running = core.running { all.append(running) }
        if case let .received(.assignShard(arriving)) = event { all.append(arriving) }
        return all
    }

    /// The shard results among `actions` (what the coordinator will count), each with the job type
    /// of its assignment among `concerned`.
    static func observations(of actions: [WorkerCore.Action], concerning concerned: [AssignShardMessage]) -> [WorkerObservation] {
        func jobType(_ token: LeaseToken) -> String { concerned.first { $0.leaseToken == token }?.jobType ?? "unknown" }
        return actions.compactMap { action in
            guard case let .send(message) = action else { return nil }
            switch message {
            case let .shardDone(done): return .shardCompleted(jobType: jobType(done.leaseToken), results: done.results)
            case let .shardFailed(failed) where failed.isHandBack: return .shardHandedBack(jobType: jobType(failed.leaseToken))
            case let .shardFailed(failed): return .shardFailed(jobType: jobType(failed.leaseToken))
            default: return nil
            }
        }
    }

    /// The job and shard an assignment is about, as log metadata (the shard's index in its job).
    static func ids(_ assignment: AssignShardMessage) -> Logger.Metadata {
        let shard = ShardDispatchID(wire: assignment.shardID).map { String($0.index) } ?? String(assignment.shardID)
        return ["job": "\(assignment.jobID)", "shard": .string(shard)]
    }

    /// The event line of a shard's end: done, failed, or stopped and handed back.
    static func logFinished(_ result: WorkerCore.ShardResult, ids: Logger.Metadata, seconds: Double, logger: Logger) {
        let elapsed = Logger.MetadataValue.string(String(format: "%.3f", seconds))
        switch result {
        case let .done(results):
            let failed = results.filter { !$0.ok }.count
            logger.info("shard done", metadata: ids.merging(["event": "shard_done", "items_ok": "\(results.count - failed)",
                                                             "items_failed": "\(failed)", "seconds": elapsed]) { $1 })
        case let .failed(error):
            logger.error("shard failed", metadata: ids.merging(["event": "shard_failed", "error": .string(error),
                                                                "seconds": elapsed]) { $1 })
        case let .jobFailed(error):
            logger.error("job cannot run", metadata: ids.merging(["event": "job_failed", "error": .string(error),
                                                                  "seconds": elapsed]) { $1 })
        case let .stopped(itemsDone):
            logger.info("shard stopped; handing it back", metadata: ids.merging(["event": "shard_handed_back",
                                                                                 "items_done": "\(itemsDone)", "seconds": elapsed]) { $1 })
        }
    }

    /// The handler's view of an assignment: the shard index from the dispatch id, the typed job kind.
    static func task(for assignment: AssignShardMessage) throws -> ShardTask {
        let type = try JobType(name: assignment.jobType)
        guard let shard = ShardDispatchID(wire: assignment.shardID) else {
            throw JobError.badParameters(detail: "shard id \(assignment.shardID) is not a valid dispatch id")
        }
        return ShardTask(jobId: assignment.jobID, shardIndex: Int(shard.index), jobType: type,
                         parametersJSON: assignment.parametersJSON, modelDirectory: assignment.modelPath,
                         outputDirectory: assignment.outputDirectory, items: assignment.items,
                         isolated: assignment.isolated, excluded: assignment.excluded)
    }
}

/// Resident set size from `/proc/self/statm` (0 where unavailable).
enum ResidentMemory {
    static func bytes() -> UInt64 {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let fields = text.split(separator: " ")
        guard fields.count > 1, let pages = UInt64(fields[1]) else { return 0 }
        return pages * UInt64(sysconf(Int32(_SC_PAGESIZE)))
    }
}
