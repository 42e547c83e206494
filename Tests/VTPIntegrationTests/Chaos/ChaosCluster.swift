import Foundation
import VTPQueue
import VTPTestSupport
import VTPVocabulary
#if canImport(Glibc)
import Glibc
#endif

/// How big a chaos run is. CI runs `.short` (520 items, a fault every 1.5 s); `VTP_CHAOS=long`
/// runs the figures of the issue: 3,000 images in 1,000 shards, lease 20 s, heartbeats 1 s × 3.
struct ChaosScale: Sendable {
    var copies: Int
    var shardSize: Int
    var imageSize: Int
    var leaseSeconds: Int
    var heartbeatMilliseconds: Int
    var workers: Int
    /// Seconds between two faults of a repeating fault.
    var faultInterval: Double
    /// The longest a scenario may take before it is declared stalled.
    var deadlineSeconds: Double

    /// 312 items in 156 shards: enough that several faults (one every 1.5 s) land mid-job, and short
    /// enough for CI, where this suite shares the two cores with the other integration suites.
    /// `VTP_CHAOS=long` runs the long scale.
    static let short = ChaosScale(copies: 24, shardSize: 2, imageSize: 256, leaseSeconds: 3, heartbeatMilliseconds: 200,
                                  workers: 3, faultInterval: 1.5, deadlineSeconds: 150)
    static let long = ChaosScale(copies: 231, shardSize: 3, imageSize: 256, leaseSeconds: 20, heartbeatMilliseconds: 1000,
                                 workers: 3, faultInterval: 10, deadlineSeconds: 3600)

    static var current: ChaosScale { ProcessInfo.processInfo.environment["VTP_CHAOS"] == "long" ? .long : .short }
    var isLong: Bool { copies == ChaosScale.long.copies }
    var items: Int { copies * RunCommandTests.images.count }
}

/// A cluster of real processes for fault injection: a private PostgreSQL (which scenarios may
/// restart), a configuration file, one `vtp coordinator` and `scale.workers` `vtp worker`
/// processes, each of which can be killed, stopped, restarted under the same or a new id.
final class ChaosCluster {
    let dir: TemporaryDirectory
    let server: EmbeddedPostgres
    let config: String
    let scale: ChaosScale
    let ledger: Ledger
    private(set) var coordinator: SpawnedProcess?
    /// Live worker processes by slot, with the id each was started under.
    private(set) var workers: [(id: String, process: SpawnedProcess)] = []
    private var spawned = 0
    /// Extra arguments of every `vtp worker` started (e.g. a different prefetch).
    var workerArguments: [String] = []
    /// A command that runs `vtp worker` (e.g. `prlimit --as=N --`), prefixed to workers started from now on.
    var workerLauncher: [String] = []
    /// How workers that died ended (restarted by ``restartDeadWorkers()``).
    private(set) var workerEndings: [SpawnedProcess.Ending] = []
    /// Every process ever started, so tear-down reaps all of them.
    private var everything: [SpawnedProcess] = []

    init(_ label: String, scale: ChaosScale = .current, maxAttempts: Int = 3, endpoint: String? = nil,
         extraConfig: String = "") async throws {
        dir = try TemporaryDirectory(label)
        self.scale = scale
        server = try EmbeddedPostgres.temporary()
        try await server.start()
        _ = try await Migrator.migrate(database: server.databaseURL)
        ledger = Ledger(database: server.databaseURL)
        config = dir.file("vtp.toml")
        try """
            [database]
            url = "\(server.connectionURL)"
            [coordinator]
            endpoint = "\(endpoint ?? "ipc://" + dir.file("c.ipc"))"
            heartbeat_interval_ms = \(scale.heartbeatMilliseconds)
            heartbeat_liveness = 3
            lease_seconds = \(scale.leaseSeconds)
            max_attempts = \(maxAttempts)
            metrics_port = 0
            [worker]
            prefetch = 2
            threads = 1
            batch_size = 2
            \(extraConfig)
            """.write(toFile: config, atomically: true, encoding: .utf8)
    }

    // MARK: Processes

    func startCoordinator() throws {
        let process = try SpawnedProcess.start(VTPExecutable.path, ["coordinator", "--config", config],
                                               stdout: dir.file("coordinator.out"), stderr: appendLog("coordinator"))
        coordinator = process
        everything.append(process)
    }

    /// Starts a worker in a new slot (or in `slot`), under `id` or a fresh one.
    @discardableResult
    func startWorker(id: String? = nil, slot: Int? = nil) throws -> String {
        spawned += 1
        let workerID = id ?? "chaos-w\(spawned)"
        let command = workerLauncher + [VTPExecutable.path, "worker", "--config", config, "--worker-id", workerID] + workerArguments
        let process = try SpawnedProcess.start(command[0], Array(command.dropFirst()),
                                               stdout: dir.file("workers.out"), stderr: appendLog("workers"))
        everything.append(process)
        if let slot { workers[slot] = (workerID, process) } else { workers.append((workerID, process)) }
        return workerID
    }

    func start() throws {
        try startCoordinator()
        for _ in 0..<scale.workers { try startWorker() }
    }

    /// SIGKILLs the worker in `slot` and starts its replacement under the same id or a new one.
    func killWorker(slot: Int, restartWithSameID: Bool) throws {
        let victim = workers[slot]
        kill(victim.process.pid, SIGKILL)
        _ = reap(victim.process)
        try startWorker(id: restartWithSameID ? victim.id : nil, slot: slot)
    }

    /// What systemd's `Restart=always` does: every worker that died is started again under its id.
    /// Returns how many were restarted.
    @discardableResult
    func restartDeadWorkers() throws -> Int {
        var restarted = 0
        for (slot, worker) in workers.enumerated() {
            guard let ending = worker.process.poll() else { continue }
            workerEndings.append(ending)
            try startWorker(id: worker.id, slot: slot)
            restarted += 1
        }
        return restarted
    }

    func killCoordinatorAndRestart() throws {
        if let coordinator {
            kill(coordinator.pid, SIGKILL)
            _ = reap(coordinator)
        }
        try startCoordinator()
    }

    /// `pg_ctl restart -m fast`: every connection is dropped.
    func restartPostgres() async throws {
        try await server.restart()
    }

    /// Source ids of the job's failed items and the ledger's reason for each.
    func failedItems(job: Int64) async throws -> [String: String] {
        // `vtp failures`' own read: failure rows named from the shard manifests.
        var failures: [String: String] = [:]
        var after: Int64 = -1
        while true {
            let page = try await ledger.failures(job: job, limit: 1000, afterOrdinal: after)
            guard let last = page.last else { return failures }
            for failure in page { failures[failure.sourceID] = failure.error }
            after = last.ordinal
        }
    }

    /// Kills every other backend of the ledger database (the coordinator's, workers' have none).
    @discardableResult
    func terminateBackends() async throws -> Int {
        let killed = try await ledger.sql("""
            SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE pid <> pg_backend_pid() AND datname = current_database() AND backend_type = 'client backend'
            """)
        return killed.count
    }

    /// The slot of a worker currently holding a lease, if any.
    func slotHoldingALease() async throws -> Int? {
        let owners = Set(try await ledger.sql("SELECT lease_owner FROM shards WHERE state = 'leased'").compactMap { $0 })
        return workers.firstIndex { owners.contains($0.id) }
    }

    /// Kills whatever still runs, stops PostgreSQL and removes everything (logs are kept on failure
    /// by the caller reading them first).
    func tearDown() {
        for process in everything {
            kill(process.pid, SIGKILL)
            _ = reap(process)
        }
        try? server.stopBlocking()
        dir.remove()
    }

    func log(_ name: String) -> String { (try? String(contentsOfFile: dir.file(name + ".err"), encoding: .utf8)) ?? "" }

    /// The tail of every log, for failure messages.
    var logs: String {
        ["coordinator", "workers"].map { name in "\(name): " + String(log(name).suffix(4000)) }.joined(separator: "\n")
    }

    /// Logs of restarted processes go to one file per role (appended, not truncated).
    private func appendLog(_ name: String) -> String {
        let path = dir.file(name + ".err")
        if !FileManager.default.fileExists(atPath: path) { FileManager.default.createFile(atPath: path, contents: nil) }
        return path
    }

    private func reap(_ process: SpawnedProcess) -> SpawnedProcess.Ending? {
        for _ in 0..<50 {
            if let ending = process.poll() { return ending }
            usleep(20_000)
        }
        return nil
    }

    // MARK: Jobs

    /// Makes the input tree (fixture photos as ImageFolder classes) and returns its source ids.
    func makeInput() throws -> Set<String> {
        try RunCommandTests.makeInput(dir.file("in"), copies: scale.copies)
    }

    /// `vtp submit latents` of the input into `output`; returns the job id.
    func submit(outputPath: String? = nil, extra: [String] = []) throws -> Int64 {
        let submitted = try VTPExecutable.run(["submit", "latents", "--config", config, "--model", Fixtures.path("vtp-tiny"),
                                               "--input", dir.file("in"), "--output", outputPath ?? dir.file("out"),
                                               "--shard-size", String(scale.shardSize), "--image-size", String(scale.imageSize),
                                               "--json"] + extra)
        guard submitted.status == 0,
              let document = try JSONSerialization.jsonObject(with: Data(submitted.stdout.utf8)) as? [String: Any],
              let id = (document["job_id"] as? NSNumber)?.int64Value else {
            throw ChaosError("submit failed (\(submitted.status)): \(submitted.stderr)")
        }
        return id
    }

    /// Waits until the job is finished in the ledger AND its manifest exists, running `fault` every
    /// `scale.faultInterval` seconds meanwhile (ledger errors while PostgreSQL restarts are retried).
    /// Returns the seconds it took and the faults injected, or throws when the deadline passes.
    func waitForFinish(job: Int64, outputPath: String? = nil,
                       fault: ((Int) async throws -> Void)? = nil) async throws -> (seconds: Double, faults: Int) {
        let start = ContinuousClock.now
        var nextFault = start + .milliseconds(Int64(scale.faultInterval * 1000))
        var faults = 0
        let manifest = (outputPath ?? dir.file("out")) + "/manifest.json"
        while true {
            let elapsed = ContinuousClock.now - start
            if elapsed > .seconds(scale.deadlineSeconds) {
                let state = (try? await ledger.job(job)).map { "\($0.state) \($0.itemsDone)+\($0.itemsFailed)/\($0.itemCount)" } ?? "?"
                throw ChaosError("job \(job) stalled at \(state) after \(faults) faults\n\(logs)")
            }
            if let record = try? await ledger.job(job), record.state.isFinished,
               FileManager.default.fileExists(atPath: manifest) {
                return (seconds(elapsed), faults)
            }
            if let fault, ContinuousClock.now >= nextFault {
                try await fault(faults)
                faults += 1
                nextFault = ContinuousClock.now + .milliseconds(Int64(scale.faultInterval * 1000))
            }
            try await Task.sleep(for: .milliseconds(100))
        }
    }
}

struct ChaosError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

func seconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
}

/// Runs a system tool to completion and returns its status and output. It is spawned with
/// `posix_spawn` and reaped by pid (not Foundation's `Process`, which waits for a descriptor that a
/// server the tool starts, e.g. `pg_ctl start`, would inherit and keep open).
func runTool(_ path: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
    let log = NSTemporaryDirectory() + "vtp-tool-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).log"
    defer { unlink(log) }
    let process = try SpawnedProcess.start(path, arguments, stdout: log, stderr: log + ".err")
    defer { unlink(log + ".err") }
    var ending: SpawnedProcess.Ending?
    while ending == nil {
        ending = process.poll()
        if ending == nil { usleep(10_000) }
    }
    let output = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "") + ((try? String(contentsOfFile: log + ".err", encoding: .utf8)) ?? "")
    switch ending! {
    case let .exited(status): return (status, output)
    case let .signalled(signal): return (128 + signal, output)
    }
}

/// A process's address space, read and capped from outside (what a container memory limit does to
/// the worker, set without restarting it).
enum ProcessMemory {
    /// The peak virtual size (`VmPeak` of `/proc/PID/status`), nil when the process is gone.
    static func virtualBytes(pid: pid_t) -> UInt64? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmPeak:") }),
              let kilobytes = UInt64(line.split(separator: " ").dropFirst().first ?? "") else { return nil }
        return kilobytes * 1024
    }

    /// Sets the process's RLIMIT_AS (soft and hard) to `bytes` with util-linux `prlimit` (glibc
    /// declares prlimit(2) only under _GNU_SOURCE): allocations beyond it fail.
    static func limitAddressSpace(pid: pid_t, bytes: UInt64) throws {
        let result = try runTool("/usr/bin/prlimit", ["--pid", String(pid), "--as=\(bytes)"])
        guard result.status == 0 else { throw ChaosError("prlimit --pid \(pid) --as=\(bytes): \(result.output)") }
    }
}
