import Foundation
import Logging
import Synchronization
import VTPProcesses
import VTPTransport
import VTPVocabulary
import VTPWorker
#if canImport(Glibc)
import Glibc
#endif

/// The workers of a local run. Processes are the same binary started as `vtp worker`, each
/// logging to `worker-<i>.log` in the state directory; one that exits while the job runs is
/// replaced (up to a limit, so a worker that cannot start does not loop forever). In-process
/// workers are real `Worker`s on the same ipc endpoint, run by the pool's service.
final class WorkerPool: Sendable {
    private struct Slots {
        var processes: [SupervisedChild?] = []
        var inProcess: [Worker] = []
        var replacements = 0
    }

    private let workers: LocalRun.Workers
    private let endpoint: String
    private let jobID: Int64
    private let logDirectory: String
    private let context: ZMQContext
    private let logger: Logger
    private let slots = Mutex(Slots())

    init(_ workers: LocalRun.Workers, endpoint: String, jobID: Int64, logDirectory: String, context: ZMQContext, logger: Logger) {
        self.workers = workers
        self.endpoint = endpoint
        self.jobID = jobID
        self.logDirectory = logDirectory
        self.context = context
        self.logger = logger
    }

    /// Starts the processes, or creates the in-process workers and returns them for the caller to run.
    func start() async throws -> [Worker] {
        switch workers {
        case let .processes(_, _, count, _):
            slots.withLock { $0.processes = Array(repeating: nil, count: count) }
            for slot in 0..<count { try await launch(slot) }
            return []
        case let .inProcess(handler, count):
            let made = try (0..<count).map { slot in
                let registration = RegisterMessage(
                    workerID: Self.workerIDPrefix(jobID: jobID) + "inproc-\(slot)", host: ProcessInfo.processInfo.hostName,
                    capabilities: WorkerCapabilities(jobTypes: JobType.allCases.map(\.rawValue), threads: 1, prefetch: 1, memoryBytes: 0))
                return try Worker(options: Worker.Options(endpoint: endpoint, registration: registration), handler: handler,
                                  context: context, logger: logger)
            }
            slots.withLock { $0.inProcess = made }
            return made
        }
    }

    /// Restarts worker processes that exited, returning (slot, exit status) of each; fails once
    /// more than `3 × count` replacements were needed.
    func replaceExited() async throws -> [(Int, Int32)] {
        let exited = slots.withLock { slots in
            slots.processes.indices.compactMap { slot in slots.processes[slot]?.exitStatus.map { (slot, $0) } }
        }
        for (_, status) in exited {
            let (replacements, count) = slots.withLock { slots in
                slots.replacements += 1
                return (slots.replacements, slots.processes.count)
            }
            guard replacements <= 3 * count else {
                throw WorkerPoolError(message: "worker processes keep exiting (last status \(status)); see \(logDirectory)/worker-*.log")
            }
        }
        for (slot, _) in exited { try await launch(slot) }
        return exited
    }

    /// Asks every worker to stop, SIGKILL after 20 s, and returns once every process has exited.
    /// After SIGINT each stops after its current batch and hands its shard back (processes get
    /// SIGUSR1: they ignore the terminal's SIGINT, see `vtp worker --exit-with-parent`); otherwise
    /// each finishes its shard (SIGTERM).
    func stop(signal: Int32 = SIGTERM) async {
        let interrupt = signal == SIGINT
        let (processes, inProcess) = slots.withLock { ($0.processes.compactMap { $0 }, $0.inProcess) }
        for worker in inProcess {
            if interrupt { worker.requestInterrupt() } else { worker.requestShutdown() }
        }
        let running = processes.filter(\.isRunning)
        for process in running { process.send(interrupt ? SIGUSR1 : SIGTERM) }
        let deadline = ContinuousClock.now + .seconds(20)
        while running.contains(where: \.isRunning), ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(100))
        }
        for process in running { process.send(SIGKILL) }
        for process in running { _ = await process.waitForExit() }
    }

    /// How the ids of this process's workers for `jobID` begin (the ledger's lease owners).
    static func workerIDPrefix(jobID: Int64) -> String { "run\(jobID)-\(getpid())-" }

    /// Ends every worker without waiting (the second Ctrl-C): processes are killed, in-process
    /// workers hand their shards back at once. Safe to call from any thread, after ``stop`` began.
    func stopNow() {
        let (processes, inProcess) = slots.withLock { ($0.processes.compactMap { $0 }, $0.inProcess) }
        for child in processes { child.send(SIGKILL) }
        for worker in inProcess {
            worker.requestInterrupt()
            worker.requestShutdown()
        }
    }

    private func launch(_ slot: Int) async throws {
        guard case let .processes(executable, arguments, _, threads) = workers else { return }
        var environment = ProcessInfo.processInfo.environment
        environment["OPENBLAS_NUM_THREADS"] = String(threads)
        let replacements = slots.withLock { $0.replacements }
        let child: SupervisedChild
        do {
            child = try await SupervisedChild.launch(
                executable: executable,
                arguments: arguments + ["--endpoint", endpoint, "--exit-with-parent", String(getpid()),
                                        "--worker-id", Self.workerIDPrefix(jobID: jobID) + "\(slot)-\(replacements)"],
                environment: environment, logPath: logDirectory + "/worker-\(slot).log")
        } catch {
            throw WorkerPoolError(message: "cannot start worker \(slot): \(error)")
        }
        slots.withLock { $0.processes[slot] = child }
    }
}

/// Worker processes of a local run keep failing to stay up.
public struct WorkerPoolError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}
