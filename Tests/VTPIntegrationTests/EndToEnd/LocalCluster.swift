import Foundation
import VTPVocabulary
import VTPQueue
import VTPTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// A cluster as on real machines, in one temporary directory: a private PostgreSQL (migrated),
/// a configuration file pointing at it, and `vtp coordinator` and `vtp worker` processes.
final class LocalCluster {
    let dir: TemporaryDirectory
    let server: EmbeddedPostgres
    let config: String
    let metricsPort: Int
    private(set) var coordinator: SpawnedProcess?
    private(set) var worker: SpawnedProcess?

    /// Starts the database and writes the configuration; `metrics` picks a port for Prometheus.
    /// `endpoint` replaces the default ipc endpoint (e.g. a `tcp://localhost:PORT`).
    init(_ label: String, metrics: Bool = false, endpoint: String? = nil, heartbeatMilliseconds: Int = 200, leaseSeconds: Int = 5,
         prefetch: Int = 1) async throws {
        dir = try TemporaryDirectory(label)
        server = try EmbeddedPostgres.temporary()
        try await server.start()
        _ = try await Migrator.migrate(database: server.databaseURL)
        metricsPort = metrics ? Int.random(in: 20_000...60_000) : 0
        config = dir.file("vtp.toml")
        try """
            [database]
            url = "\(server.connectionURL)"
            [coordinator]
            endpoint = "\(endpoint ?? "ipc://" + dir.file("c.ipc"))"
            heartbeat_interval_ms = \(heartbeatMilliseconds)
            lease_seconds = \(leaseSeconds)
            metrics_port = \(metricsPort)
            [worker]
            prefetch = \(prefetch)
            threads = 1
            """.write(toFile: config, atomically: true, encoding: .utf8)
    }

    /// Spawns the coordinator and one worker with id `workerID`, both given `arguments` too, and
    /// the worker `workerArguments` as well.
    func startServices(workerID: String, arguments: [String] = [], workerArguments: [String] = []) throws {
        coordinator = try SpawnedProcess.start(VTPExecutable.path, ["coordinator", "--config", config] + arguments,
                                               stdout: dir.file("coordinator.out"), stderr: dir.file("coordinator.err"))
        try startWorker(workerID: workerID, arguments: arguments + workerArguments)
    }

    /// Spawns a worker process with id `workerID` (a restart when the previous one is gone). The
    /// first logs to `worker.err`, the N-th start to `worker-N.err`.
    func startWorker(workerID: String, arguments: [String] = []) throws {
        workerStarts += 1
        let suffix = workerStarts == 1 ? "" : "-\(workerStarts)"
        worker = try SpawnedProcess.start(VTPExecutable.path, ["worker", "--config", config, "--worker-id", workerID] + arguments,
                                          stdout: dir.file("worker\(suffix).out"), stderr: dir.file("worker\(suffix).err"))
    }
    private var workerStarts = 0

    /// The text a service wrote to its log file.
    /// Waits up to a minute for job `jobID` to be finished in the ledger with its manifest written
    /// in `output`; true if it was.
    func waitForFinish(job jobID: Int64, ledger: Ledger, output: String) async throws -> Bool {
        for _ in 0..<600 {
            if try await ledger.job(jobID).state.isFinished && FileManager.default.fileExists(atPath: output + "/manifest.json") {
                return true
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        return false
    }

    /// The coordinator's and the worker's logs, for a failed expectation's message.
    var logs: String { "coordinator: \(log("coordinator.err"))\nworker: \(log("worker.err"))" }

    func log(_ name: String) -> String { (try? String(contentsOfFile: dir.file(name), encoding: .utf8)) ?? "" }

    /// Kills whatever still runs and removes everything.
    func tearDown() {
        for process in [worker, coordinator].compactMap({ $0 }) {
            kill(process.pid, SIGKILL)
            _ = process.poll()
        }
        try? server.stopBlocking()
        dir.remove()
    }
}
