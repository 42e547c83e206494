import ArgumentParser
import Foundation
import VTPConcurrency
import VTPJobs
import VTPVocabulary
import VTPDatasets
import Logging
import VTPCoordinator
import VTPQueue
import VTPRuntimeSupport
import VTPSettings
import VTPTransport
#if canImport(Glibc)
import Glibc
#endif

/// `vtp run JOBTYPE ...`: the whole cluster on one machine. A private PostgreSQL in the state
/// directory (unless `--database`), an in-process coordinator on an ipc:// endpoint, and N local
/// worker processes; re-running the same command after a crash resumes the same job.
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a job on this machine with local worker processes (resumes an interrupted run of the same job).")

    @OptionGroup var job: JobOptions

    @Option(name: .long, help: "Worker processes (default: one per 2 cores).")
    var workers: Int?

    @Option(name: .long, help: "Model threads per worker (default: cores / workers).")
    var threads: Int?

    @Option(name: .long, help: "Use this PostgreSQL instead of a private one.")
    var database: String?

    @Option(name: .long, help: "Configuration file (worker and limit settings; see config/vtp.toml).")
    var config: String?

    @Option(name: .customLong("state-dir"), help: "Ledger, sockets and worker logs (default: <output>/.vtp-state).")
    var stateDir: String?

    @Option(name: .customLong("lease-seconds"), help: "Lease of a shard without heartbeats; a killed worker's shards return after it.")
    var leaseSeconds: Int = 15

    func run() async throws {
        let settings = try ClusterSetup.settings(config)
        let request = try job.request(settings: settings)
        guard leaseSeconds >= 2 else { throw ValidationError("--lease-seconds must be at least 2, got \(leaseSeconds)") }
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let workerCount = workers ?? max(1, cores / 2)
        guard workerCount >= 1 else { throw ValidationError("--workers must be at least 1, got \(workerCount)") }
        let threadCount = threads ?? max(1, cores / workerCount)
        let state = stateDir.map { URL(fileURLWithPath: ClusterSettings.expandTilde($0)).standardizedFileURL.path } ?? request.output + "/.vtp-state"
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        let quiet = ClusterSetup.logger("vtp.run", level: .warning)
        let start = ContinuousClock.now

        var postgres: EmbeddedPostgres?
        let url: DatabaseURL
        if let database {
            url = try DatabaseURL(database)
        } else {
            let server = try EmbeddedPostgres(stateDirectory: URL(fileURLWithPath: state), logger: quiet)
            try await server.start()
            postgres = server
            url = server.databaseURL
        }
        do {
            let code = try await serve(request: request, url: url, state: state, workerCount: workerCount, threadCount: threadCount,
                                       settings: settings, logger: quiet, start: start)
            try? await postgres?.stop()
            if code != 0 { throw ExitCode(code) }
        } catch {
            try? await postgres?.stop()
            throw error
        }
    }

    private func serve(request: JobRequest, url: DatabaseURL, state: String, workerCount: Int, threadCount: Int,
                       settings: ClusterSettings, logger: Logger, start: ContinuousClock.Instant) async throws -> Int32 {
        _ = try await Migrator.migrate(database: url, logger: logger)
        let policy = ClusterSetup.leasePolicy(leaseSeconds: leaseSeconds)
        let ledger = Ledger(database: url, leasePolicy: policy, logger: logger)
        try await ledger.verifySchema()

        let jobID: Int64
        if let existing = try await request.existingJob(in: ledger) {
            jobID = existing.id
            if existing.state.isFinished, FileManager.default.fileExists(atPath: existing.outputLocation + "/manifest.json") {
                printError("job \(jobID) already finished")
                return try await summarize(jobID: jobID, record: existing, ledger: ledger, finalize: nil, start: start)
            }
            if existing.state == .paused { try await ledger.resume(job: jobID) }
            let done = existing.itemsDone + existing.itemsFailed
            printError("resuming job \(jobID): \(done)/\(existing.itemCount) items already done")
        } else {
            let maxItems = settings.limits.maxJobItems
            let listing = try await BlockingWork.run(name: "vtp-list") { try request.listItems(maxItems: maxItems) }
            jobID = try await ledger.enqueue(request.spec, items: listing.items, skipped: listing.skipped)
            let shards = (listing.items.count + request.shardSize - 1) / request.shardSize
            printError("job \(jobID): \(listing.items.count) items in \(shards) shards, \(workerCount) workers x \(threadCount) threads")
            for sample in listing.skipped { printError("skipped \(sample.sourceId): \(sample.reason)") }
        }

        let endpoint = Self.ipcEndpoint(stateDirectory: state)
        unlink(String(endpoint.dropFirst("ipc://".count)))
        let notifier = WorkNotifier(database: url, logger: logger)
        try await notifier.start()
        let coordinator = try Coordinator(
            ledger: Ledger(database: url, leasePolicy: policy, logger: logger), notifier: notifier, finalizer: ManifestFinalizer(),
            options: Coordinator.Options(bindEndpoints: [endpoint],
                                         core: try ClusterSetup.coordinatorCore(settings, leaseSeconds: leaseSeconds)),
            context: try ZMQContext(), logger: logger)
        let serving = Task { await coordinator.run() }
        let finalized = FinalizedJobs()
        let finalizeWatcher = Task {
            for await note in coordinator.notifications {
                if case let .jobFinalized(id, result) = note { finalized.record(id, result) }
            }
        }

        var arguments = ["worker", "--endpoint", endpoint, "--threads", String(threadCount), "--exit-with-parent", String(getpid())]
        if let config { arguments += ["--config", config] }
        let pool = LocalWorkerPool(arguments: arguments, count: workerCount, threads: threadCount, jobID: jobID, logDirectory: state)
        try pool.start()

        let signals = SignalWatcher()
        let interrupted = FinalizedJobs()
        let signalWatcher = Task { for await _ in signals.signals { interrupted.record(0, .failed("interrupted")) } }
        var renderer = ProgressRenderer(interactive: isatty(2) == 1)
        var record = try await ledger.job(jobID)
        while true {
            if let progress = try? await ledger.progress(job: jobID) {
                record = progress.job
                renderer.show(progress)
            }
            if record.state.isFinished, finalized.result(for: jobID) != nil { break }
            if record.state == .cancelled { break }
            if interrupted.result(for: 0) != nil { break }
            try pool.replaceExited()
            try? await Task.sleep(for: .milliseconds(500))
        }
        renderer.finish()
        signalWatcher.cancel()

        await pool.stop()
        coordinator.requestShutdown()
        await serving.value
        finalizeWatcher.cancel()

        if interrupted.result(for: 0) != nil {
            printError("interrupted; run the same command again to resume job \(jobID)")
            return 130
        }
        return try await summarize(jobID: jobID, record: try await ledger.job(jobID), ledger: ledger,
                                   finalize: finalized.result(for: jobID), start: start)
    }

    private func summarize(jobID: Int64, record: JobRecord, ledger: Ledger, finalize: CoordinatorNotification.FinalizeResult?,
                           start: ContinuousClock.Instant) async throws -> Int32 {
        let elapsed = ContinuousClock.now - start
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        print("job \(jobID) \(record.state.rawValue): \(record.itemCount) items, \(record.itemsDone) written, "
              + "\(record.itemsFailed) failed; shards \(record.shardsDone) done, \(record.shardsFailed) failed")
        print("output: \(record.outputLocation)")
        print(String(format: "elapsed: %.1fs", seconds))
        if record.rejectedCompletions > 0 { print("late or duplicate shard results rejected: \(record.rejectedCompletions)") }
        if case let .failed(reason)? = finalize { print("finalizer failed: \(reason)") }
        var after: Int64 = -1
        var listed = 0
        while listed < 1000 {
            let page = try await ledger.failures(job: jobID, limit: 100, afterOrdinal: after)
            if page.isEmpty { break }
            if listed == 0 { print("failed items:") }
            for failure in page { print("  \(failure.sourceID): \(failure.error)") }
            listed += page.count
            after = page.last!.ordinal
        }
        var failed = record.itemsFailed > 0 || record.shardsFailed > 0
        if case .failed? = finalize { failed = true }
        return failed ? 1 : 0
    }

    /// An ipc endpoint in the state directory, or under /tmp when that path is too long for a
    /// Unix socket name (about 107 bytes).
    static func ipcEndpoint(stateDirectory: String) -> String {
        let preferred = stateDirectory + "/coordinator.ipc"
        if preferred.utf8.count < 100 { return "ipc://" + preferred }
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in stateDirectory.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return "ipc:///tmp/vtp-\(String(hash, radix: 36)).ipc"
    }
}

/// Finalizer results (and the interrupt flag) shared between watcher tasks and the progress loop.
///
/// `@unchecked Sendable`: `results` is only touched under `lock`.
final class FinalizedJobs: @unchecked Sendable {
    private let lock = NSLock()
    private var results: [Int64: CoordinatorNotification.FinalizeResult] = [:]

    func record(_ id: Int64, _ result: CoordinatorNotification.FinalizeResult) {
        lock.lock()
        results[id] = result
        lock.unlock()
    }

    func result(for id: Int64) -> CoordinatorNotification.FinalizeResult? {
        lock.lock()
        defer { lock.unlock() }
        return results[id]
    }
}

func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}
