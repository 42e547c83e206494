import Foundation
import Logging
import ServiceLifecycle
import UnixSignals
import VTPCoordinator
import VTPMetrics
import VTPQueue
import VTPRuntimeSupport
import VTPWorker
#if canImport(Glibc)
import Glibc
#endif

/// `vtp coordinator` as a ServiceGroup. The group's order is the shutdown order, reversed: on
/// SIGTERM or SIGINT the coordinator drains first (no more dispatching, shards in flight finish),
/// then the ledger poller stops, and the metrics endpoint goes last, so a scrape during the drain
/// still answers. A second signal ends the process at once (``SecondSignalStopsNow``).
enum CoordinatorServices {
    static func group(coordinator: Coordinator, metrics: MetricsServer?, bridge: CoordinatorMetricsBridge?, ledger: Ledger,
                      logger: Logger) -> ServiceGroup {
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: SecondSignalStopsNow(logger: logger), successTerminationBehavior: .ignore),
        ]
        if let metrics { services.append(.init(service: MetricsEndpointService(server: metrics), successTerminationBehavior: .ignore)) }
        if let bridge {
            services.append(.init(service: LedgerMetricsPoller(bridge: bridge, ledger: ledger, logger: logger),
                                  successTerminationBehavior: .ignore))
        }
        // The coordinator ending (drained, or on its own) ends the process.
        services.append(.init(service: CoordinatorService(coordinator: coordinator, logger: logger),
                              successTerminationBehavior: .gracefullyShutdownGroup,
                              failureTerminationBehavior: .gracefullyShutdownGroup))
        return ServiceGroup(configuration: ServiceGroupConfiguration(
            services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
    }
}

/// Serves `/metrics` until the group shuts down, then stops the server.
struct MetricsEndpointService: Service {
    let server: MetricsServer

    func run() async throws {
        try? await gracefulShutdown()
        await server.stop()
    }
}

/// The queue-depth and throughput gauges, polled from the ledger until shutdown.
struct LedgerMetricsPoller: Service {
    let bridge: CoordinatorMetricsBridge
    let ledger: Ledger
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown { [bridge, ledger, logger] in await bridge.pollLedger(ledger, logger: logger) }
    }
}

/// The operator's second SIGTERM or SIGINT (the first starts the group's graceful shutdown):
/// stop now, without waiting for shards in flight; their leases expire and they run elsewhere.
/// ServiceGroup cannot escalate on a repeat of its own shutdown signal, hence this watcher.
struct SecondSignalStopsNow: Service {
    let logger: Logger

    func run() async throws {
        let signals = SignalWatcher([SIGTERM, SIGINT])
        defer { signals.stop() }
        // First in the group, so its own shutdown comes last: it keeps counting during the drain.
        await cancelWhenGracefulShutdown { [logger] in
            var seen = 0
            for await _ in signals.signals {
                seen += 1
                if seen == 2 {
                    logger.notice("second signal: stopping at once")
                    Foundation.exit(0)
                }
            }
        }
    }
}

/// `vtp worker` as a ServiceGroup. SIGTERM is the group's graceful shutdown: the worker finishes
/// the shard in hand, hands queued ones back and says goodbye. The signals with meanings of their
/// own go to ``WorkerSignals``: the interrupt (SIGINT, or SIGUSR1 from `vtp run`) stops the shard
/// after its batch and hands it back; a second SIGTERM hands the running shard back at once.
/// The metrics endpoint, when there is one, stops after the worker has drained, so a scrape
/// during the drain still answers (with the drain's hand-backs counted).
enum WorkerServices {
    static func group(worker: Worker, metrics: MetricsServer?, interruptSignal: Int32, logger: Logger) -> ServiceGroup {
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: WorkerSignals(worker: worker, interruptSignal: interruptSignal), successTerminationBehavior: .ignore),
        ]
        if let metrics { services.append(.init(service: MetricsEndpointService(server: metrics), successTerminationBehavior: .ignore)) }
        // The worker ending (drained, interrupted) ends the process.
        services.append(.init(service: WorkerService(worker: worker), successTerminationBehavior: .gracefullyShutdownGroup,
                              failureTerminationBehavior: .gracefullyShutdownGroup))
        return ServiceGroup(configuration: ServiceGroupConfiguration(
            services: services, gracefulShutdownSignals: [.sigterm], logger: logger))
    }
}

/// The worker's session with its coordinator; graceful shutdown is its drain.
struct WorkerService: Service {
    let worker: Worker

    func run() async throws {
        await withGracefulShutdownHandler {
            await worker.run()
        } onGracefulShutdown: { [worker] in
            worker.requestShutdown()
        }
    }
}

/// The interrupt signal, and SIGTERM after the first (which the group turned into the drain).
struct WorkerSignals: Service {
    let worker: Worker
    let interruptSignal: Int32

    func run() async throws {
        let signals = SignalWatcher([SIGTERM, interruptSignal])
        defer { signals.stop() }
        await cancelWhenGracefulShutdown { [worker, interruptSignal] in
            var terminations = 0
            for await signal in signals.signals {
                if signal == interruptSignal {
                    worker.requestInterrupt()
                } else {
                    terminations += 1
                    if terminations >= 2 { worker.requestShutdown() }
                }
            }
        }
    }
}
