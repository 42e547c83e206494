import ArgumentParser
import Foundation
import VTPConcurrency
import VTPJobs
import VTPVocabulary
import VTPSettings
import Logging
import VTPCoordinator
import VTPMetrics
import ServiceLifecycle
import VTPQueue
import VTPRuntimeSupport
import VTPTransport

/// `vtp coordinator --config FILE`: serve the ledger's shards to workers until SIGTERM.
struct CoordinatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coordinator",
        abstract: "Dispatch queued shards to workers (ROUTER socket + PostgreSQL ledger); SIGTERM drains and exits.")

    @Option(name: .long, help: "Configuration file (see config/vtp.toml).")
    var config: String?

    @Option(name: .long, help: "PostgreSQL URL (overrides the configuration and VTP_DATABASE_URL).")
    var database: String?

    @Option(name: .long, help: "Endpoint to bind (overrides coordinator.endpoint).")
    var endpoint: String?

    @OptionGroup var logging: LoggingOptions

    func run() async throws {
        let setup = try logging.start(config: config)
        var settings = setup.settings
        if let endpoint { settings.coordinator.endpoint = endpoint }
        guard let url = try ClusterSetup.database(database, settings) else {
            throw ValidationError("no database: set database.url in the configuration, VTP_DATABASE_URL or --database")
        }
        let logger = ClusterSetup.logger("vtp.coordinator", level: setup.level)
        let lease = settings.coordinator.leaseSeconds
        let ledger = Ledger(database: url, leasePolicy: ClusterSetup.leasePolicy(leaseSeconds: lease))
        try await ledger.verifySchema()
        let notifier = WorkNotifier(database: url)
        try await notifier.start()
        var bridge: CoordinatorMetricsBridge?
        var server: MetricsServer?
        if settings.coordinator.metricsPort != 0 {
            let metrics = CoordinatorMetrics()
            bridge = CoordinatorMetricsBridge(metrics: metrics)
            server = try await MetricsServer.start(registry: metrics.factory.registry, address: settings.coordinator.metricsAddress,
                                                   port: settings.coordinator.metricsPort,
                                                   logger: ClusterSetup.logger("vtp.metrics", level: setup.level))
            logger.info("metrics endpoint listening", metadata: ["url": "http://\(settings.coordinator.metricsAddress):\(server!.port)/metrics"])
        }
        let options = Coordinator.Options(bindEndpoints: [settings.coordinator.endpoint],
                                          curve: try ClusterSetup.serverSecurity(settings),
                                          core: try ClusterSetup.coordinatorCore(settings, leaseSeconds: lease),
                                          maxMessageBytes: settings.limits.maxMessageBytes, observer: bridge)
        let coordinator = try Coordinator(ledger: ledger, notifier: notifier, finalizer: ManifestFinalizer(), options: options, context: try ZMQContext(),
                                          logger: logger)
        logger.info("coordinator listening", metadata: ["endpoints": .array(coordinator.boundEndpoints.map { .string($0) }),
                                                        "ledger": .string(url.redacted)])
        try await CoordinatorServices.group(coordinator: coordinator, metrics: server, bridge: bridge, ledger: Ledger(database: url),
                                            logger: logger).run()
    }
}
