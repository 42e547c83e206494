import Logging
import ServiceLifecycle
import Synchronization
import VTPCoordinator
import VTPRuntimeSupport
import VTPWorker
#if canImport(Glibc)
import Glibc
#endif

/// What a local run's services found out, for ``LocalRun`` to report once the group has ended.
final class RunOutcome: Sendable {
    private struct State {
        var finalize: CoordinatorNotification.FinalizeResult?
        var signal: Int32?
    }

    private let state = Mutex(State())

    /// The finalizer's result, once the job was finalized during the run.
    var finalize: CoordinatorNotification.FinalizeResult? { state.withLock { $0.finalize } }
    /// The first SIGINT or SIGTERM, when one ended the run.
    var signal: Int32? { state.withLock { $0.signal } }

    func finalized(_ result: CoordinatorNotification.FinalizeResult?) { state.withLock { $0.finalize = result } }

    /// Records the first signal; false for any later one.
    func signalled(_ number: Int32) -> Bool {
        state.withLock { state in
            guard state.signal == nil else { return false }
            state.signal = number
            return true
        }
    }
}

/// `vtp run`'s local cluster as a ServiceGroup. Listed in start order; the group shuts them down in
/// reverse: the job watcher first, then the workers (which stop as the first signal asked: after the
/// batch in hand, handing their shards back, on SIGINT; after their shard on SIGTERM or when the
/// job is done), then the coordinator drains, and the signal service goes last so that a second
/// signal during the drain still stops everything at once.
///
/// The group has no shutdown signals of its own: which signal came changes how the workers stop,
/// and ServiceGroup does not say which one it saw, so ``RunSignals`` starts the shutdown itself.
enum RunServices {
    /// `signals` must be watching SIGINT and SIGTERM before the workers start, so that no signal
    /// between the two meets the default disposition.
    static func group(coordinator: Coordinator, pool: WorkerPool, signals: SignalWatcher, outcome: RunOutcome, logger: Logger,
                      events: @escaping @Sendable (LocalRun.Event) -> Void,
                      watch: @escaping @Sendable () async throws -> CoordinatorNotification.FinalizeResult?) -> ServiceGroup {
        let trigger = ShutdownTrigger()
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: [
                .init(service: RunSignals(signals: signals, outcome: outcome, trigger: trigger, events: events) {
                    pool.stopNow()
                    coordinator.requestShutdown()
                    coordinator.requestShutdown()
                }, successTerminationBehavior: .ignore),
                .init(service: RunCoordinatorService(coordinator: coordinator, outcome: outcome, logger: logger),
                      successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup),
                .init(service: WorkerPoolService(pool: pool, outcome: outcome), successTerminationBehavior: .ignore,
                      failureTerminationBehavior: .gracefullyShutdownGroup),
                // The job's end (finalized, cancelled, failed) ends the run.
                .init(service: JobWatchService(outcome: outcome, watch: watch),
                      successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup),
            ],
            gracefulShutdownSignals: [], logger: logger))
        trigger.set(group)
        return group
    }
}

/// Lets a service start its own group's graceful shutdown (the group exists only after its services).
private final class ShutdownTrigger: Sendable {
    private let group = Mutex<ServiceGroup?>(nil)

    func set(_ group: ServiceGroup) { self.group.withLock { $0 = group } }

    func fire() async { await group.withLock { $0 }?.triggerGracefulShutdown() }
}

/// SIGINT and SIGTERM for the whole run: the first is recorded (it decides how the workers stop)
/// and starts the group's shutdown; the second stops the workers and the coordinator at once.
private struct RunSignals: Service {
    let signals: SignalWatcher
    let outcome: RunOutcome
    let trigger: ShutdownTrigger
    let events: @Sendable (LocalRun.Event) -> Void
    let stopNow: @Sendable () -> Void

    func run() async throws {
        await cancelWhenGracefulShutdown { [signals, outcome, trigger, events, stopNow] in
            var seen = 0
            for await number in signals.signals {
                seen += 1
                if seen == 1, outcome.signalled(number) {
                    events(.stopping(signal: number))
                    await trigger.fire()
                } else if seen == 2 {
                    events(.stoppingNow)
                    stopNow()
                }
            }
        }
    }
}

/// The coordinator of the run. After a second signal it stops before its turn in the shutdown
/// order; a service that ends out of turn is an error to ServiceGroup, so it waits for its turn.
private struct RunCoordinatorService: Service {
    let coordinator: Coordinator
    let outcome: RunOutcome
    let logger: Logger

    func run() async throws {
        try await CoordinatorService(coordinator: coordinator, logger: logger).run()
        if outcome.signal != nil { try? await gracefulShutdown() }
    }
}

/// The run's workers: in-process ones run here; processes are replaced by the job watcher when
/// they exit. Graceful shutdown stops them the way the first signal asked (SIGTERM when none came:
/// the job is over) and waits until they are gone.
private struct WorkerPoolService: Service {
    let pool: WorkerPool
    let outcome: RunOutcome

    func run() async throws {
        let inProcess = try await pool.start()
        await withTaskGroup(of: Void.self) { group in
            for worker in inProcess { group.addTask { await worker.run() } }
            // The group's children end only when the workers do, so the pool is stopped from here.
            try? await gracefulShutdown()
            await pool.stop(signal: outcome.signal ?? SIGTERM)
            await group.waitForAll()
        }
    }
}

/// Follows the job until it ends; a signal's shutdown cancels it.
private struct JobWatchService: Service {
    let outcome: RunOutcome
    let watch: @Sendable () async throws -> CoordinatorNotification.FinalizeResult?

    func run() async throws {
        try await cancelWhenGracefulShutdown { [outcome, watch] in
            do {
                outcome.finalized(try await watch())
            } catch is CancellationError {
                // The run was stopped by a signal.
            }
        }
    }
}
