import ArgumentParser
import Foundation
import ServiceLifecycle
import VTPConcurrency
import VTPJobs
import VTPMetrics
import VTPVocabulary
import VTPSettings
import Logging
import VTPRuntimeSupport
import VTPTransport
import VTPWorker
#if canImport(Glibc)
import Glibc
#endif

/// `vtp worker --config FILE`: connect to the coordinator and process shards until SIGTERM.
struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Process shards from a coordinator (DEALER socket); SIGTERM finishes the current shard and exits, SIGINT (Ctrl-C) stops it after the current batch and hands it back; a second signal stops at once.")

    @Option(name: .long, help: "Configuration file (see config/vtp.toml).")
    var config: String?

    @Option(name: .long, help: "Coordinator endpoint (overrides coordinator.endpoint).")
    var endpoint: String?

    @Option(name: .customLong("worker-id"), help: "Worker id (default: host-pid).")
    var workerID: String?

    @Option(name: .long, parsing: .unconditional, help: "Model threads (overrides worker.threads; 0 = all cores).")
    var threads: Int?

    @Option(name: .long, parsing: .unconditional, help: "Shards held at once (overrides worker.prefetch).")
    var prefetch: Int?

    @Option(name: .customLong("metrics-port"), parsing: .unconditional,
            help: "Serve this worker's Prometheus metrics on this port (overrides worker.metrics_port; 0 disables).")
    var metricsPort: Int?

    @Option(name: .customLong("metrics-address"), help: "Address the metrics endpoint listens on (overrides worker.metrics_address).")
    var metricsAddress: String?

    @Option(name: .customLong("exit-with-parent"), help: .hidden)
    var exitWithParent: Int32?

    @OptionGroup var logging: LoggingOptions

    func run() async throws {
        let setup = try logging.start(config: config)
        if let parent = exitWithParent {
            // A worker spawned by `vtp run` must not outlive it (e.g. when its whole process group
            // was killed): once re-parented, its results have nowhere to go, so it stops at once.
            if getppid() != parent { throw ExitCode(0) }
            Thread.detachNewThread {
                while getppid() == parent { usleep(200_000) }
                Foundation.exit(0)
            }
        }
        var settings = setup.settings
        if let endpoint { settings.coordinator.endpoint = endpoint }
        if let threads { settings.worker.threads = threads }
        if let prefetch { settings.worker.prefetch = prefetch }
        if let metricsPort { settings.worker.metricsPort = metricsPort }
        if let metricsAddress { settings.worker.metricsAddress = metricsAddress }
        try settings.validate(source: "command line")
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let threadCount = settings.worker.threads == 0 ? cores : settings.worker.threads
        var host = [CChar](repeating: 0, count: 256)
        gethostname(&host, host.count)
        let hostName = String(decoding: host.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let id = workerID ?? "\(hostName)-\(getpid())"
        let registration = RegisterMessage(
            workerID: id, host: hostName,
            capabilities: WorkerCapabilities(jobTypes: JobType.allCases.map(\.rawValue), threads: UInt32(threadCount),
                                             prefetch: UInt32(settings.worker.prefetch),
                                             memoryBytes: ProcessInfo.processInfo.physicalMemory))
        let logger = ClusterSetup.logger("vtp.worker", level: setup.level)
        var bridge: WorkerMetricsBridge?
        var server: MetricsServer?
        if settings.worker.metricsPort != 0 {
            let metrics = WorkerMetrics()
            bridge = WorkerMetricsBridge(metrics: metrics)
            let address = settings.worker.metricsAddress
            let started = try await MetricsServer.start(registry: metrics.factory.registry, address: address,
                                                        port: settings.worker.metricsPort,
                                                        logger: ClusterSetup.logger("vtp.metrics", level: setup.level))
            server = started
            logger.info("metrics endpoint listening", metadata: ["url": "http://\(address):\(started.port)/metrics"])
        }
        let executor = ShardExecutor(options: ShardExecutor.Options(preprocessThreads: settings.worker.decodeThreads,
                                                                    queueCapacity: settings.worker.queueDepth,
                                                                    maxPixels: settings.worker.maxImagePixels,
                                                                    maxDecodeBytes: settings.worker.maxDecodeBytes,
                                                                    itemTimeoutSeconds: settings.worker.itemTimeoutSeconds),
                                     models: ModelCache(threads: threadCount))
        let options = Worker.Options(endpoint: settings.coordinator.endpoint, registration: registration,
                                     curve: try ClusterSetup.clientSecurity(settings),
                                     liveness: try ClusterSetup.workerLiveness(settings),
                                     maxMessageBytes: settings.limits.maxMessageBytes, observer: bridge)
        var onOutcome: (@Sendable (ShardTask, ShardOutcome) -> Void)?
        if let bridge { onOutcome = { task, outcome in bridge.observe(task, outcome) } }
        let handler = JobShardHandler(executor: executor, onOutcome: onOutcome)
        let worker = try Worker(options: options, handler: handler, context: try ZMQContext(), logger: logger)
        // A crash (not a kill) is reported, so the item being processed alone is blamed and no other.
        FatalSignalReporter.install { signal in worker.reportCrash(signal: signal) }
        logger.info("worker connecting", metadata: ["worker": .string(id), "endpoint": .string(settings.coordinator.endpoint),
                                                    "threads": "\(threadCount)", "prefetch": "\(settings.worker.prefetch)"])
        // A worker of `vtp run` shares the terminal's process group, so Ctrl-C would reach it and
        // `vtp run` both; it ignores the terminal's SIGINT and takes the one `vtp run` passes on,
        // as SIGUSR1, so each Ctrl-C counts once (the second kills it, from `vtp run`).
        if exitWithParent != nil { signal(SIGINT, SIG_IGN) }
        try await WorkerServices.group(worker: worker, metrics: server, interruptSignal: exitWithParent != nil ? SIGUSR1 : SIGINT,
                                       logger: logger).run()
    }
}
