import Logging
import ServiceLifecycle

/// The coordinator's event loop as a service, for `vtp coordinator`'s group and `vtp run`'s:
/// graceful shutdown is its drain (no more dispatching; shards in flight finish).
public struct CoordinatorService: Service {
    public let coordinator: Coordinator
    public let logger: Logger

    public init(coordinator: Coordinator, logger: Logger) {
        self.coordinator = coordinator
        self.logger = logger
    }

    public func run() async throws {
        await withGracefulShutdownHandler {
            await coordinator.run()
        } onGracefulShutdown: { [coordinator, logger] in
            logger.info("shutdown requested: no more dispatching; waiting for shards in flight")
            coordinator.requestShutdown()
        }
    }
}
