import Foundation
import Logging
import VTPTransport
import VTPVocabulary
import VTPWorker
#if canImport(Glibc)
import Glibc
#endif

/// The workers of a local run. Processes are the same binary started as `vtp worker`, each
/// logging to `worker-<i>.log` in the state directory; one that exits while the job runs is
/// replaced (up to a limit, so a worker that cannot start does not loop forever). In-process
/// workers are real `Worker`s on the same ipc endpoint, run by the caller's task group.
final class WorkerPool {
    private let workers: LocalRun.Workers
    private let endpoint: String
    private let jobID: Int64
    private let logDirectory: String
    private let context: ZMQContext
    private let logger: Logger
    private var processes: [Process?] = []
    private var inProcess: [Worker] = []
    private var replacements = 0

    init(_ workers: LocalRun.Workers, endpoint: String, jobID: Int64, logDirectory: String, context: ZMQContext, logger: Logger) {
        self.workers = workers
        self.endpoint = endpoint
        self.jobID = jobID
        self.logDirectory = logDirectory
        self.context = context
        self.logger = logger
    }

    /// Starts the processes, or creates the in-process workers and returns them for the caller to run.
    func start() throws -> [Worker] {
        switch workers {
        case let .processes(_, _, count, _):
            processes = Array(repeating: nil, count: count)
            for slot in 0..<count { try launch(slot) }
            return []
        case let .inProcess(handler, count):
            inProcess = try (0..<count).map { slot in
                let registration = RegisterMessage(
                    workerID: Self.workerIDPrefix(jobID: jobID) + "inproc-\(slot)", host: ProcessInfo.processInfo.hostName,
                    capabilities: WorkerCapabilities(jobTypes: JobType.allCases.map(\.rawValue), threads: 1, prefetch: 1, memoryBytes: 0))
                return try Worker(options: Worker.Options(endpoint: endpoint, registration: registration), handler: handler,
                                  context: context, logger: logger)
            }
            return inProcess
        }
    }

    /// Restarts worker processes that exited, returning (slot, exit status) of each; fails once
    /// more than `3 × count` replacements were needed.
    func replaceExited() throws -> [(Int, Int32)] {
        var replaced: [(Int, Int32)] = []
        for slot in processes.indices {
            guard let process = processes[slot], !process.isRunning else { continue }
            replacements += 1
            guard replacements <= 3 * processes.count else {
                throw WorkerPoolError(message: "worker processes keep exiting (last status \(process.terminationStatus)); see \(logDirectory)/worker-*.log")
            }
            replaced.append((slot, process.terminationStatus))
            try launch(slot)
        }
        return replaced
    }

    /// Asks every worker to stop, SIGKILL after 20 s. After SIGINT each stops after its current
    /// batch and hands its shard back (processes get SIGUSR1: they ignore the terminal's SIGINT,
    /// see `vtp worker --exit-with-parent`); otherwise each finishes its shard (SIGTERM).
    func stop(signal: Int32 = SIGTERM) async {
        let interrupt = signal == SIGINT
        for worker in inProcess {
            if interrupt { worker.requestInterrupt() } else { worker.requestShutdown() }
        }
        let running = processes.compactMap { $0 }.filter(\.isRunning)
        for process in running { kill(process.processIdentifier, interrupt ? SIGUSR1 : SIGTERM) }
        let deadline = ContinuousClock.now + .seconds(20)
        while running.contains(where: \.isRunning), ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(100))
        }
        for process in running where process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    /// How the ids of this process's workers for `jobID` begin (the ledger's lease owners).
    static func workerIDPrefix(jobID: Int64) -> String { "run\(jobID)-\(getpid())-" }

    /// Ends every worker without waiting (the second Ctrl-C): processes are killed, in-process
    /// workers hand their shards back at once. Safe to call from any thread, after ``stop`` began.
    var stopNow: @Sendable () -> Void {
        let pids = processes.compactMap { $0?.processIdentifier }
        let workers = inProcess
        return {
            for pid in pids { kill(pid, SIGKILL) }
            for worker in workers {
                worker.requestInterrupt()
                worker.requestShutdown()
            }
        }
    }

    private func launch(_ slot: Int) throws {
        guard case let .processes(executable, arguments, _, threads) = workers else { return }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments + ["--endpoint", endpoint, "--exit-with-parent", String(getpid()),
                                         "--worker-id", Self.workerIDPrefix(jobID: jobID) + "\(slot)-\(replacements)"]
        var environment = ProcessInfo.processInfo.environment
        environment["OPENBLAS_NUM_THREADS"] = String(threads)
        process.environment = environment
        let logPath = logDirectory + "/worker-\(slot).log"
        if !FileManager.default.fileExists(atPath: logPath) { _ = FileManager.default.createFile(atPath: logPath, contents: nil) }
        if let log = FileHandle(forWritingAtPath: logPath) {
            log.seekToEndOfFile()
            process.standardOutput = log
            process.standardError = log
        }
        process.standardInput = FileHandle.nullDevice
        try process.run()
        processes[slot] = process
    }
}

/// Worker processes of a local run keep failing to stay up.
public struct WorkerPoolError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}
