import ArgumentParser
import Foundation
import Synchronization
import VTPLocalRun
import VTPMetrics
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

/// `vtp run JOBTYPE ...`: the whole cluster on one machine (``LocalRun``, the road the job tests
/// drive too): a private PostgreSQL for the state directory (unless `--database`), an in-process
/// coordinator on an ipc:// endpoint, and N local worker processes; re-running the same command
/// after a crash resumes the same job.
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a job on this machine with local worker processes (resumes an interrupted run of the same job).")

    @OptionGroup var job: JobOptions

    @Option(name: .long, parsing: .unconditional, help: "Worker processes (default: one per 2 cores).")
    var workers: Int?

    @Option(name: .long, parsing: .unconditional, help: "Model threads per worker (default: cores / workers).")
    var threads: Int?

    @Option(name: .long, help: "Use this PostgreSQL instead of a private one.")
    var database: String?

    @Option(name: .long, help: "Configuration file (worker and limit settings; see config/vtp.toml).")
    var config: String?

    @Option(name: .customLong("state-dir"), help: "Ledger, sockets and worker logs (default: database.state_dir of the configuration, else <output>/.vtp-state).")
    var stateDir: String?

    @Flag(name: .long, help: "The input gained images since this output's job was created: add them to the job (as new shards; manifest and statistics are recomputed over everything). Without it a changed input is an error.")
    var update = false

    @Option(name: .customLong("lease-seconds"), parsing: .unconditional, help: "Lease of a shard without heartbeats; a killed worker's shards return after it.")
    var leaseSeconds: Int = 15

    @OptionGroup var logging: LoggingOptions

    func run() async throws {
        let setup = try logging.start(config: config)
        let settings = setup.settings
        let request = try job.request(settings: settings)
        guard leaseSeconds >= 2 else { throw ValidationError("--lease-seconds must be at least 2, got \(leaseSeconds)") }
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let workerCount = workers ?? max(1, cores / 2)
        guard workerCount >= 1 else { throw ValidationError("--workers must be at least 1, got \(workerCount)") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1, got \(threads)") }
        let threadCount = threads ?? max(1, cores / workerCount)
        try OutputDirectory.prepareWritable(request.output, option: "--output")
        let state = Self.stateDirectory(flag: stateDir, settings: settings, output: request.output)
        // The terminal shows progress: the run's own coordinator logs warnings and worse unless
        // --log-level asks for more; the workers log at the chosen level into the state directory.
        let quiet = ClusterSetup.logger("vtp.run", level: logging.logLevel == nil ? max(setup.level, .warning) : setup.level)
        let start = ContinuousClock.now

        // The run's workers share this machine and would all ask for worker.metrics_port: none serves metrics.
        var arguments = ["worker", "--threads", String(threadCount), "--metrics-port", "0",
                         "--log-format", setup.format.rawValue, "--log-level", setup.level.rawValue]
        if let config { arguments += ["--config", config] }
        let local = LocalRun(
            request: request, finalizer: ManifestFinalizer(),
            workers: .processes(executable: Self.executablePath(), arguments: arguments, count: workerCount, threads: threadCount),
            stateDirectory: state, database: try database.map { try DatabaseURL($0) },
            leasePolicy: ClusterSetup.leasePolicy(leaseSeconds: leaseSeconds),
            core: try ClusterSetup.coordinatorCore(settings, leaseSeconds: leaseSeconds),
            maxJobItems: settings.limits.maxJobItems, update: update, logger: quiet)
        let renderer = Mutex(ProgressRenderer(interactive: isatty(2) == 1))
        if case let .clipScore(parameters) = request.parameters {
            try await ZeroShotProgress.prepare(parameters, request: request, threads: cores, interactive: isatty(2) == 1)
        }
        let report = try await local.run { event in
            switch event {
            case let .resumed(jobID, done, total): printError("resuming job \(jobID): \(done)/\(total) items already done")
            case let .alreadyFinished(jobID): printError("job \(jobID) already finished")
            case let .updated(jobID, change, shards):
                printError("input changed: \(change.summary()); job \(jobID) gets \(change.addedCount) new items in \(shards) new shards"
                           + (change.missingCount == 0 ? "" : "; missing items keep their outputs"))
                for sample in change.addedSkipped { printError("skipped \(sample.sourceId): \(sample.reason)") }
            case let .retrying(jobID, items, error):
                printError("job \(jobID) " + (error.map { "had failed (\($0))" } ?? "finished with failures")
                           + "; running \(items) items again")
            case let .enqueued(jobID, items, shards, skipped):
                printError("job \(jobID): \(items) items in \(shards) shards, \(workerCount) workers x \(threadCount) threads")
                for sample in skipped { printError("skipped \(sample.sourceId): \(sample.reason)") }
            case let .progress(progress): renderer.withLock { $0.show(progress) }
            case let .workerReplaced(slot, status): printError("worker \(slot) exited with status \(status); starting a new one")
            case let .stopping(signal):
                renderer.withLock { $0.finish() }
                let how = signal == SIGINT ? "after the current batch" : "after the current shard"
                printError("stopping: workers hand their shards back \(how); press Ctrl-C again to stop at once")
            case .stoppingNow:
                printError("stopping now")
            }
        }
        renderer.withLock { $0.finish() }
        if report.interrupted {
            printError("interrupted: job \(report.jobID) is \(report.record.itemsDone + report.record.itemsFailed)/\(report.record.itemCount) items done; "
                       + "to resume, run the same command again:\n  \(Self.commandLine())")
            throw ExitCode(130)
        }
        let code = summarize(report, start: start)
        if code != 0 { throw ExitCode(code) }
    }

    private func summarize(_ report: LocalRun.Report, start: ContinuousClock.Instant) -> Int32 {
        let record = report.record
        let elapsed = ContinuousClock.now - start
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        if record.state == .failed {
            printError("Error: job \(report.jobID) failed: \(record.error ?? "no reason recorded")")
            printError("nothing was marked failed; fix the cause and run the same command again:\n  \(Self.commandLine())")
            return 1
        }
        print("job \(report.jobID) \(record.state.rawValue): \(record.itemCount) items, \(record.itemsDone) written, "
              + "\(record.itemsFailed) failed; shards \(record.shardsDone) done, \(record.shardsFailed) failed")
        print("output: \(record.outputLocation)")
        print(String(format: "elapsed: %.1fs", seconds))
        if record.rejectedCompletions > 0 { print("late or duplicate shard results rejected: \(record.rejectedCompletions)") }
        if case let .failed(reason)? = report.finalize { print("finalizer failed: \(reason)") }
        if !report.failures.isEmpty { print("failed items:") }
        for failure in report.failures { print("  \(failure.sourceID): \(failure.error)") }
        var failed = record.itemsFailed > 0 || record.shardsFailed > 0
        if case .failed? = report.finalize { failed = true }
        return failed ? 1 : 0
    }

    /// `--state-dir`, else `database.state_dir`, else `<output>/.vtp-state`; absolute.
    static func stateDirectory(flag: String?, settings: ClusterSettings, output: String) -> String {
        let chosen = flag ?? (settings.database.stateDirectory.isEmpty ? nil : settings.database.stateDirectory)
        return chosen.map { URL(fileURLWithPath: ClusterSettings.expandTilde($0)).standardizedFileURL.path } ?? output + "/.vtp-state"
    }

    /// The command as typed, quoted for a POSIX shell where needed.
    static func commandLine() -> String {
        CommandLine.arguments.map { argument in
            let plain = !argument.isEmpty && argument.allSatisfy { $0.isLetter || $0.isNumber || "-_./=:,+@%".contains($0) }
            return plain ? argument : "'" + argument.replacingOccurrences(of: "'", with: "'\\''") + "'"
        }.joined(separator: " ")
    }

    /// This very binary (so workers always match the coordinator's protocol and schema version).
    static func executablePath() -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let length = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        if length > 0 { return String(decoding: buffer[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self) }
        return CommandLine.arguments[0]
    }
}

func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}
