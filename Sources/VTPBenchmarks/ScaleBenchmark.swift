import Foundation
import Logging
import VTPConcurrency
import VTPQueue
import VTPTransport
import VTPVocabulary
#if canImport(Glibc)
import Glibc
#endif

/// A cluster simulated on one machine (`vtp bench scale`): a real `vtp coordinator` process, a
/// real private PostgreSQL (``EmbeddedPostgres``, as `vtp run` starts it) and real ZeroMQ over
/// TCP loopback, with `workers` model-less workers in this process (``SimulatedWorkers``) that
/// spend `itemMilliseconds` on each item of a synthetic job.
///
/// It measures what the dispatch path (coordinator, ledger, transport) sustains: how busy it keeps
/// the workers, how long a free slot waits for its shard, and what the ledger costs per item.
/// docs/scale.md defines every number of the ``Report``.
public enum ScaleBenchmark {
    /// The simulated cluster and job.
    public struct Options: Sendable {
        public var workers: Int
        public var items: Int
        public var itemMilliseconds: Double
        /// Items per shard (`limits.shard_size`, 256 by default).
        public var shardSize: Int
        /// Shards each worker asks for at once (`worker.prefetch`, 2 by default).
        public var prefetch: Int
        /// The coordinator's `coordinator.max_prefetch_per_worker` (4 by default).
        public var maxPrefetchPerWorker: Int
        /// Items between two progress messages of a worker (`worker.batch_size`, 8 by default).
        public var progressEvery: Int
        /// PostgreSQL with fsync and synchronous commits, as `vtp run` starts it; false: the test
        /// servers' unsafe fast writes.
        public var durableWrites: Bool
        /// The `vtp` executable whose `coordinator` command is measured.
        public var coordinatorExecutable: String
        /// Threads driving the simulated workers' sockets (default: one per 250 workers, 1...8).
        public var driverThreads: Int?
        /// Give up after this long (default: 60 s plus five times the job's ideal duration).
        public var timeoutSeconds: Double?
        /// Keep the temporary directory (coordinator log, configuration) instead of deleting it.
        public var keepDirectory: Bool
        /// An existing, migrated, otherwise empty PostgreSQL database to use instead of a private
        /// server (tests use the shared test server); its CPU time is then not measured.
        public var database: String?

        public init(workers: Int, items: Int, itemMilliseconds: Double, shardSize: Int = 256, prefetch: Int = 2,
                    maxPrefetchPerWorker: Int = 4, progressEvery: Int = 8, durableWrites: Bool = true,
                    coordinatorExecutable: String, driverThreads: Int? = nil, timeoutSeconds: Double? = nil,
                    keepDirectory: Bool = false, database: String? = nil) {
            self.workers = workers
            self.items = items
            self.itemMilliseconds = itemMilliseconds
            self.shardSize = shardSize
            self.prefetch = prefetch
            self.maxPrefetchPerWorker = maxPrefetchPerWorker
            self.progressEvery = progressEvery
            self.durableWrites = durableWrites
            self.coordinatorExecutable = coordinatorExecutable
            self.driverThreads = driverThreads
            self.timeoutSeconds = timeoutSeconds
            self.keepDirectory = keepDirectory
            self.database = database
        }

        /// Seconds the job would take with the workers never waiting.
        public var idealSeconds: Double { Double(items) * itemMilliseconds / 1000 / Double(workers) }

        func validate() throws {
            func check(_ ok: Bool, _ field: String, _ expected: String) throws {
                if !ok { throw ScaleBenchmarkError.invalidOption(field: field, expected: expected) }
            }
            try check(workers >= 1, "--workers", "at least 1, got \(workers)")
            try check(items >= 1, "--items", "at least 1, got \(items)")
            try check(itemMilliseconds >= 0 && itemMilliseconds.isFinite, "--item-ms", "0 or more, got \(itemMilliseconds)")
            try check((1...1_000_000).contains(shardSize), "--shard-size", "between 1 and 1000000, got \(shardSize)")
            try check((1...64).contains(prefetch), "--prefetch", "between 1 and 64, got \(prefetch)")
            try check((1...64).contains(maxPrefetchPerWorker), "--max-prefetch", "between 1 and 64, got \(maxPrefetchPerWorker)")
            try check(progressEvery >= 1, "--progress-every", "at least 1, got \(progressEvery)")
            try check(FileManager.default.isExecutableFile(atPath: coordinatorExecutable), "coordinator executable",
                      "an executable vtp at \(coordinatorExecutable)")
        }
    }

    /// What one run measured (docs/scale.md, "Simulated cluster", defines each).
    public struct Report: Sendable {
        public var workers: Int
        public var items: Int
        public var itemMilliseconds: Double
        public var shardSize: Int
        public var prefetch: Int
        public var durableWrites: Bool
        public var jobID: Int64
        public var enqueueSeconds: Double
        /// Items completed per second, from the first assignment to the ledger's job completion.
        public var dispatchItemsPerSecond: Double
        public var claimLatencyP50Milliseconds: Double
        public var claimLatencyP99Milliseconds: Double
        public var claimLatencyMaxMilliseconds: Double
        /// Working time over worker time in the saturated window (first to last assignment).
        public var workerBusyFraction: Double
        /// Working time over worker time from the first assignment to the job's completion.
        public var overallBusyFraction: Double
        public var saturatedWindowSeconds: Double
        public var makespanSeconds: Double
        public var idealSeconds: Double
        public var ledgerBytesPerItem: Double
        public var ledgerRelationBytes: [String: Int64]
        /// Peak resident set of the `vtp coordinator` child (VmHWM of /proc/PID/status).
        public var coordinatorMaxRSSBytes: Int64
        public var coordinatorCPUSeconds: Double
        public var postgresCPUSeconds: Double
        public var simulatorCPUSeconds: Double
        /// How late the simulator noticed a shard's time was up (its own overhead, counted as idle).
        public var simulatorLagP99Milliseconds: Double
        public var itemsReported: Int
        public var itemsExecutedTwice: Int
        public var itemsNeverExecuted: Int
        /// The ledger's counts at the end.
        public var ledgerItemsDone: Int64
        public var ledgerItemsFailed: Int64
        public var ledgerRejectedCompletions: Int64
        public var reconnects: Int
        public var sendFailures: Int
        public var fileDescriptorLimit: Int
        /// The temporary directory, when ``Options/keepDirectory`` kept it.
        public var keptDirectory: String?

        /// The JSON object `vtp bench scale --json` prints.
        public var jsonObject: [String: Any] {
            [
                "dispatch_items_per_second": dispatchItemsPerSecond,
                "claim_latency_p50_ms": claimLatencyP50Milliseconds,
                "claim_latency_p99_ms": claimLatencyP99Milliseconds,
                "worker_busy_fraction": workerBusyFraction,
                "ledger_bytes_per_item": ledgerBytesPerItem,
                "coordinator_max_rss_bytes": Int(coordinatorMaxRSSBytes),
                "enqueue_seconds": enqueueSeconds,
                // Extras.
                "workers": workers, "items": items, "item_ms": itemMilliseconds, "shard_size": shardSize,
                "prefetch": prefetch, "durable_writes": durableWrites, "job_id": Int(jobID),
                "claim_latency_max_ms": claimLatencyMaxMilliseconds,
                "overall_busy_fraction": overallBusyFraction, "saturated_window_seconds": saturatedWindowSeconds,
                "makespan_seconds": makespanSeconds, "ideal_seconds": idealSeconds,
                "ledger_relation_bytes": ledgerRelationBytes.mapValues { Int($0) },
                "coordinator_rss_source": "VmHWM of the vtp coordinator child process",
                "coordinator_cpu_seconds": coordinatorCPUSeconds, "postgres_cpu_seconds": postgresCPUSeconds,
                "simulator_cpu_seconds": simulatorCPUSeconds, "simulator_lag_p99_ms": simulatorLagP99Milliseconds,
                "items_reported": itemsReported, "items_executed_twice": itemsExecutedTwice,
                "items_never_executed": itemsNeverExecuted, "ledger_items_done": Int(ledgerItemsDone),
                "ledger_items_failed": Int(ledgerItemsFailed), "ledger_rejected_completions": Int(ledgerRejectedCompletions),
                "reconnects": reconnects, "send_failures": sendFailures, "file_descriptor_limit": fileDescriptorLimit,
            ]
        }

        /// The readable table `vtp bench scale` prints.
        public var table: String {
            let rows: [(String, String)] = [
                ("simulated workers", "\(workers) (prefetch \(prefetch))"),
                ("job", "\(items) items, \(itemMilliseconds) ms each, shards of \(shardSize)"),
                ("PostgreSQL", durableWrites ? "durable (fsync on, as vtp run)" : "unsafe fast writes (fsync off)"),
                ("enqueue", String(format: "%.2f s", enqueueSeconds)),
                ("dispatch", String(format: "%.0f items/s", dispatchItemsPerSecond)),
                ("claim latency p50 / p99 / max", String(format: "%.2f / %.2f / %.2f ms", claimLatencyP50Milliseconds,
                                                         claimLatencyP99Milliseconds, claimLatencyMaxMilliseconds)),
                ("worker busy (saturated window)", String(format: "%.1f %% over %.2f s", 100 * workerBusyFraction, saturatedWindowSeconds)),
                ("worker busy (whole job)", String(format: "%.1f %%", 100 * overallBusyFraction)),
                ("makespan / ideal", String(format: "%.2f s / %.2f s", makespanSeconds, idealSeconds)),
                ("ledger bytes per item", String(format: "%.0f", ledgerBytesPerItem)),
                ("coordinator peak RSS", String(format: "%.1f MiB (VmHWM of the child process)", Double(coordinatorMaxRSSBytes) / 1_048_576)),
                ("CPU: coordinator / postgres / simulator", String(format: "%.1f / %.1f / %.1f s", coordinatorCPUSeconds, postgresCPUSeconds,
                                                                   simulatorCPUSeconds)),
                ("simulator lag p99", String(format: "%.2f ms", simulatorLagP99Milliseconds)),
                ("items done in ledger / failed", "\(ledgerItemsDone) / \(ledgerItemsFailed)"),
                ("items run twice / never", "\(itemsExecutedTwice) / \(itemsNeverExecuted)"),
                ("rejected results, reconnects, send failures", "\(ledgerRejectedCompletions), \(reconnects), \(sendFailures)"),
            ]
            let width = rows.map(\.0.count).max() ?? 0
            return rows.map { $0.0.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + $0.1 }.joined(separator: "\n")
        }
    }

    /// The job type of the synthetic job (no worker handler knows it; the coordinator's finalizer
    /// refuses it, which only costs a log line).
    public static let jobType = "scale-benchmark"

    /// Runs the simulation once and tears everything down.
    public static func run(_ options: Options, logger: Logger = Logger(label: "vtp.bench.scale")) async throws -> Report {
        try options.validate()
        let limit = try raiseFileDescriptorLimit(needed: 3 * options.workers + 1024)
        let directory = try temporaryDirectory()
        defer { if !options.keepDirectory { try? FileManager.default.removeItem(atPath: directory) } }
        if let database = options.database {
            return try await measure(options, database: try DatabaseURL(database), connection: database, dataDirectory: nil,
                                     directory: directory, fileDescriptorLimit: limit, logger: logger)
        }
        let server = try EmbeddedPostgres.temporary(configuration: EmbeddedPostgres.Configuration(unsafeFastWrites: !options.durableWrites),
                                                    logger: logger)
        try await server.start()
        do {
            _ = try await Migrator.migrate(database: server.databaseURL, logger: logger)
            let report = try await measure(options, database: server.databaseURL, connection: server.connectionURL,
                                           dataDirectory: server.dataDirectory.path, directory: directory,
                                           fileDescriptorLimit: limit, logger: logger)
            try await server.stop()
            return report
        } catch {
            try? await server.stop()
            throw error
        }
    }

    private static func measure(_ options: Options, database: DatabaseURL, connection: String, dataDirectory: String?,
                                directory: String, fileDescriptorLimit: Int, logger: Logger) async throws -> Report {
        let ledger = Ledger(database: database, logger: logger)
        try await ledger.verifySchema()
        let enqueueStart = ContinuousClock.now
        let jobID = try await enqueueSyntheticJob(ledger: ledger, items: options.items, shardSize: options.shardSize,
                                                  outputDirectory: directory + "/outputs")
        let enqueueSeconds = (ContinuousClock.now - enqueueStart).benchmarkSeconds

        let endpoint = "tcp://127.0.0.1:\(try freeLoopbackPort())"
        let config = directory + "/vtp.toml"
        try """
            [database]
            url = "\(connection)"
            [coordinator]
            endpoint = "\(endpoint)"
            metrics_port = 0
            max_prefetch_per_worker = \(options.maxPrefetchPerWorker)
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let coordinator = try CoordinatorChild.start(executable: options.coordinatorExecutable, arguments: ["coordinator", "--config", config],
                                                     log: directory + "/coordinator.log")
        var coordinatorStopped = false
        defer { if !coordinatorStopped { coordinator.kill() } }

        let simulation = SimulatedWorkers(options: SimulatedWorkers.Options(
            endpoint: endpoint, workers: options.workers, itemSeconds: options.itemMilliseconds / 1000,
            prefetch: UInt32(options.prefetch), progressEvery: options.progressEvery, jobItems: options.items,
            driverThreads: options.driverThreads ?? max(1, min(8, (options.workers + 249) / 250)), jobType: jobType))
        let cpuBefore = processCPUSeconds()
        try simulation.start()
        let deadline = ContinuousClock.now + .seconds(options.timeoutSeconds ?? (60 + 5 * options.idealSeconds))
        var finishedAt: Double?
        var peakRSS: Int64 = 0
        do {
            while finishedAt == nil {
                try await Task.sleep(for: .milliseconds(100))
                peakRSS = max(peakRSS, coordinator.peakResidentBytes ?? 0)
                if let ending = coordinator.ending() {
                    throw ScaleBenchmarkError.coordinatorExited(status: ending, logTail: tail(of: directory + "/coordinator.log"))
                }
                if simulation.itemsReported >= options.items, try await ledger.job(jobID).state.isFinished {
                    finishedAt = SimulatedWorkers.seconds(.now())
                }
                if ContinuousClock.now > deadline {
                    throw ScaleBenchmarkError.timedOut(itemsReported: simulation.itemsReported, items: options.items,
                                                       logTail: tail(of: directory + "/coordinator.log"))
                }
            }
        } catch {
            _ = try? await BlockingWork.run(name: "vtp-sim-stop") { simulation.stop() }
            throw error
        }
        peakRSS = max(peakRSS, coordinator.peakResidentBytes ?? 0)
        let coordinatorCPU = coordinator.cpuSeconds ?? 0
        let postgresCPU = dataDirectory.map(postgresCPUSeconds(dataDirectory:)) ?? 0
        let summary = try await BlockingWork.run(name: "vtp-sim-stop") { simulation.stop() }
        let simulatorCPU = processCPUSeconds() - cpuBefore
        let record = try await ledger.job(jobID)
        let relations = try await ledger.relationBytes()
        coordinatorStopped = true
        await coordinator.terminate(grace: .seconds(20))

        // The job's footprint: every ledger table but the worker rows and the migration log.
        let jobBytes = relations.filter { $0.key != "workers" && !$0.key.hasSuffix("schema_migrations") }.values.reduce(0, +)
        let times = Timeline(summary.records, workers: options.workers, end: finishedAt!)
        let latencies = summary.records.flatMap(\.claimLatencies).sorted()
        let lags = summary.records.flatMap(\.lateness).sorted()
        return Report(
            workers: options.workers, items: options.items, itemMilliseconds: options.itemMilliseconds, shardSize: options.shardSize,
            prefetch: options.prefetch, durableWrites: options.durableWrites, jobID: jobID, enqueueSeconds: enqueueSeconds,
            dispatchItemsPerSecond: times.makespan > 0 ? Double(options.items) / times.makespan : 0,
            claimLatencyP50Milliseconds: 1000 * percentile(latencies, 0.50), claimLatencyP99Milliseconds: 1000 * percentile(latencies, 0.99),
            claimLatencyMaxMilliseconds: 1000 * (latencies.last ?? 0),
            workerBusyFraction: times.busyFraction(from: times.firstAssignment, to: times.saturatedEnd),
            overallBusyFraction: times.busyFraction(from: times.firstAssignment, to: finishedAt!),
            saturatedWindowSeconds: times.saturatedEnd - times.firstAssignment, makespanSeconds: times.makespan,
            idealSeconds: options.idealSeconds, ledgerBytesPerItem: Double(jobBytes) / Double(options.items),
            ledgerRelationBytes: relations, coordinatorMaxRSSBytes: peakRSS, coordinatorCPUSeconds: coordinatorCPU,
            postgresCPUSeconds: postgresCPU, simulatorCPUSeconds: simulatorCPU,
            simulatorLagP99Milliseconds: 1000 * percentile(lags, 0.99), itemsReported: summary.itemsReported,
            itemsExecutedTwice: summary.itemsExecutedTwice, itemsNeverExecuted: summary.itemsNeverExecuted,
            ledgerItemsDone: record.itemsDone, ledgerItemsFailed: record.itemsFailed,
            ledgerRejectedCompletions: record.rejectedCompletions,
            reconnects: summary.records.reduce(0) { $0 + $1.reconnects },
            sendFailures: summary.records.reduce(0) { $0 + $1.sendFailures }, fileDescriptorLimit: fileDescriptorLimit,
            keptDirectory: options.keepDirectory ? directory : nil)
    }

    /// Enqueues the synthetic job: `items` items (`source_id` "scale/N", nothing to read) in shards
    /// of `shardSize`. The only place the benchmark writes items, so a change of the ledger's
    /// item API is adapted here alone. The items are generated as the ledger cuts them into shards
    /// (a streaming listing, as a manifest's is), so a job of 1e8 never sits in memory.
    static func enqueueSyntheticJob(ledger: Ledger, items: Int, shardSize: Int, outputDirectory: String) async throws -> Int64 {
        let spec = JobSpec(type: jobType, inputLocation: "synthetic:\(items)", outputLocation: outputDirectory, shardSize: shardSize)
        let listing = (0..<items).lazy.map { JobItem(ordinal: $0, sourceId: "scale/\($0)", location: .file(path: "/dev/null")) }
        return try await ledger.enqueue(spec, listing: listing) { ListingEnd(skipped: [], listingDigest: nil) }
    }

    // MARK: Measurements

    /// When the workers got work and worked.
    struct Timeline {
        var records: [SimulatedWorkers.Record]
        var workers: Int
        var firstAssignment: Double
        /// The last assignment: after it the queue was empty, so idleness is the job's tail, not dispatch.
        var saturatedEnd: Double
        var makespan: Double

        init(_ records: [SimulatedWorkers.Record], workers: Int, end: Double) {
            self.records = records
            self.workers = workers
            let assignments = records.flatMap(\.assignmentTimes)
            firstAssignment = assignments.min() ?? end
            saturatedEnd = assignments.max() ?? end
            makespan = end - firstAssignment
            // A job handed out in one wave has no saturated window; the whole job is the window then.
            if saturatedEnd - firstAssignment < 1e-3 { saturatedEnd = end }
        }

        /// Working time inside `[from, to]` over `workers × (to - from)`.
        func busyFraction(from: Double, to: Double) -> Double {
            guard to > from else { return 0 }
            let busy = records.reduce(0.0) { total, record in
                total + record.busy.reduce(0.0) { $0 + max(0, min($1.end, to) - max($1.start, from)) }
            }
            return busy / (Double(workers) * (to - from))
        }
    }

    static func percentile(_ sorted: [Double], _ fraction: Double) -> Double {
        guard !sorted.isEmpty else { return 0 }
        return sorted[min(sorted.count - 1, Int((Double(sorted.count - 1) * fraction).rounded()))]
    }

    /// user + system seconds of this process.
    static func processCPUSeconds() -> Double {
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
            + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
    }

    /// CPU seconds of the postmaster and its live children (the coordinator's backends among them).
    static func postgresCPUSeconds(dataDirectory: String) -> Double {
        guard let text = try? String(contentsOfFile: dataDirectory + "/postmaster.pid", encoding: .utf8),
              let line = text.split(separator: "\n").first, let postmaster = Int32(line) else { return 0 }
        var total = ProcStat(pid: postmaster)?.cpuSeconds ?? 0
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        for entry in entries {
            guard let pid = Int32(entry), let stat = ProcStat(pid: pid), stat.parent == postmaster else { continue }
            total += stat.cpuSeconds
        }
        return total
    }

    /// Raises RLIMIT_NOFILE (soft, and hard where allowed) to at least `needed`: each simulated
    /// worker holds a TCP socket and a mailbox descriptor here, and the coordinator child (which
    /// inherits the limit) one connection per worker.
    static func raiseFileDescriptorLimit(needed: Int) throws -> Int {
        var limit = rlimit()
        guard getrlimit(RLIMIT_NOFILE_VALUE, &limit) == 0 else { return needed }
        if limit.rlim_cur >= rlim_t(needed) { return Int(limit.rlim_cur) }
        var raised = limit
        raised.rlim_cur = rlim_t(needed)
        if raised.rlim_max < rlim_t(needed) { raised.rlim_max = rlim_t(needed) }
        if setrlimit(RLIMIT_NOFILE_VALUE, &raised) == 0 { return needed }
        let code = errno
        if limit.rlim_max > limit.rlim_cur {
            // Cannot lift the hard limit (not privileged): go as high as it allows and say it is not enough.
            limit.rlim_cur = limit.rlim_max
            _ = setrlimit(RLIMIT_NOFILE_VALUE, &limit)
        }
        throw ScaleBenchmarkError.fileDescriptorLimit(needed: needed, soft: Int(limit.rlim_cur), hard: Int(limit.rlim_max),
                                                      reason: String(cString: strerror(code)))
    }

    private static var RLIMIT_NOFILE_VALUE: __rlimit_resource_t { __rlimit_resource_t(UInt32(RLIMIT_NOFILE.rawValue)) }

    static func temporaryDirectory() throws -> String {
        var template = Array("/tmp/vtp-scale-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else {
            throw ScaleBenchmarkError.fileSystem(path: "/tmp", reason: "mkdtemp failed: \(String(cString: strerror(errno)))")
        }
        return String(cString: made)
    }

    /// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0 and released).
    static func freeLoopbackPort() throws -> Int {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw ScaleBenchmarkError.fileSystem(path: "socket", reason: String(cString: strerror(errno))) }
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(descriptor, pointer, length) == 0 && getsockname(descriptor, pointer, &length) == 0
            }
        }
        guard bound else { throw ScaleBenchmarkError.fileSystem(path: "127.0.0.1:0", reason: String(cString: strerror(errno))) }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    static func tail(of path: String, lines: Int = 20) -> String {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return "(no log at \(path))" }
        return text.split(separator: "\n").suffix(lines).joined(separator: "\n")
    }
}

/// Why `vtp bench scale` could not measure.
public enum ScaleBenchmarkError: Error, CustomStringConvertible, Sendable {
    case invalidOption(field: String, expected: String)
    case fileDescriptorLimit(needed: Int, soft: Int, hard: Int, reason: String)
    case fileSystem(path: String, reason: String)
    case coordinatorExited(status: String, logTail: String)
    case timedOut(itemsReported: Int, items: Int, logTail: String)

    public var description: String {
        switch self {
        case let .invalidOption(field, expected): "\(field): expected \(expected)"
        case let .fileDescriptorLimit(needed, soft, hard, reason):
            "the simulation needs \(needed) open files (RLIMIT_NOFILE) but the limit is \(soft) (hard limit \(hard)) and "
                + "raising it failed: \(reason); run `ulimit -n \(needed)` as a user allowed to, or simulate fewer workers"
        case let .fileSystem(path, reason): "\(path): \(reason)"
        case let .coordinatorExited(status, logTail): "the vtp coordinator child ended (\(status)); its log ends:\n\(logTail)"
        case let .timedOut(reported, items, logTail):
            "timed out with \(reported) of \(items) items reported; the coordinator's log ends:\n\(logTail)"
        }
    }
}

/// Fields of /proc/PID/stat.
struct ProcStat {
    var parent: Int32
    var cpuSeconds: Double

    init?(pid: Int32) {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = text.lastIndex(of: ")") else { return nil }
        // After "pid (comm) ": state ppid ... utime (14th field) stime (15th).
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let parent = Int32(fields[1]), let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        self.parent = parent
        cpuSeconds = (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}

/// The `vtp coordinator` child: spawned in a process group of its own, output to a log file,
/// reaped by `waitpid` here.
struct CoordinatorChild: Sendable {
    let pid: pid_t

    static func start(executable: String, arguments: [String], log: String) throws -> CoordinatorChild {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP))
        posix_spawnattr_setpgroup(&attributes, 0)
        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let code = posix_spawn(&pid, executable, &actions, &attributes, argv, environ)
        guard code == 0 else { throw ScaleBenchmarkError.fileSystem(path: executable, reason: "posix_spawn: \(String(cString: strerror(code)))") }
        return CoordinatorChild(pid: pid)
    }

    /// How it ended, once it has (reaping it); nil while it runs.
    func ending() -> String? {
        var status: Int32 = 0
        guard waitpid(pid, &status, WNOHANG) == pid else { return nil }
        return status & 0x7f == 0 ? "exit status \((status >> 8) & 0xff)" : "signal \(status & 0x7f)"
    }

    /// VmHWM of /proc/PID/status in bytes.
    var peakResidentBytes: Int64? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }) else { return nil }
        let fields = line.split(separator: " ", omittingEmptySubsequences: true)
        guard fields.count >= 2, let kib = Int64(fields[1]) else { return nil }
        return kib * 1024
    }

    var cpuSeconds: Double? { ProcStat(pid: pid)?.cpuSeconds }

    /// SIGTERM (the coordinator drains and exits), SIGKILL after `grace`.
    func terminate(grace: Duration) async {
        Glibc.kill(pid, SIGTERM)
        let deadline = ContinuousClock.now + grace
        while ContinuousClock.now < deadline {
            if ending() != nil { return }
            try? await Task.sleep(for: .milliseconds(50))
        }
        kill()
    }

    func kill() {
        Glibc.kill(pid, SIGKILL)
        var status: Int32 = 0
        _ = waitpid(pid, &status, 0)
    }
}
