import Foundation
import Testing
import VTPQueue
import VTPTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// A `vtp worker` whose CURVE key the `vtp coordinator` does not list: libzmq drops it silently,
/// so the worker must say, from the handshake-failed-auth event, that its key was rejected.
struct RefusedWorkerKeyTests {
    @Test(.timeLimit(.minutes(2)))
    func workerWithAnUnlistedKeySaysItsKeyWasRejected() async throws {
        let cluster = try await LocalCluster("e2e-refused-key")
        defer { cluster.tearDown() }
        let dir = cluster.dir
        for name in ["coordinator", "member", "stranger"] {
            let made = try VTPExecutable.run(["keys", "generate", "--output", dir.file(name)])
            #expect(made.status == 0, "\(made.stderr)")
        }
        try String(contentsOfFile: dir.file("member.pub"), encoding: .utf8).write(toFile: dir.file("admitted.txt"), atomically: true,
                                                                                   encoding: .utf8)
        let stranger = try String(contentsOfFile: dir.file("stranger.pub"), encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let endpoint = "tcp://127.0.0.1:\(Int.random(in: 20_000...60_000))"
        func config(_ name: String, worker: String?) throws -> String {
            let path = dir.file(name + ".toml")
            try """
                [database]
                url = "\(cluster.server.connectionURL)"
                [coordinator]
                endpoint = "\(endpoint)"
                heartbeat_interval_ms = 200
                metrics_port = 0
                [security]
                coordinator_public_key_file = "\(dir.file("coordinator.pub"))"
                \(worker == nil ? "coordinator_secret_key_file = \"\(dir.file("coordinator.key"))\"" : "")
                \(worker == nil ? "authorized_worker_keys_file = \"\(dir.file("admitted.txt"))\"" : "")
                \(worker.map { "worker_secret_key_file = \"\(dir.file($0 + ".key"))\"\nworker_public_key_file = \"\(dir.file($0 + ".pub"))\"" } ?? "")
                [worker]
                threads = 1
                """.write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
        let coordinator = try SpawnedProcess.start(VTPExecutable.path, ["coordinator", "--config", try config("coordinator", worker: nil)],
                                                   stdout: dir.file("coordinator.out"), stderr: dir.file("coordinator.err"))
        let worker = try SpawnedProcess.start(VTPExecutable.path, ["worker", "--config", try config("stranger", worker: "stranger"),
                                                                   "--worker-id", "stranger"],
                                              stdout: dir.file("worker.out"), stderr: dir.file("worker.err"))
        defer {
            for process in [worker, coordinator] {
                kill(process.pid, SIGKILL)
                _ = process.poll()
            }
        }
        let workerLog = { cluster.log("worker.out") + cluster.log("worker.err") }
        let rejection = "the coordinator at \(endpoint) rejected this worker's CURVE key \(stranger)"
        #expect(try await RunCommandTests.waitUntil(20) { workerLog().contains(rejection) },
                "worker: \(workerLog())\ncoordinator: \(cluster.log("coordinator.err"))")
        #expect(workerLog().contains("authorized_worker_keys_file"))

        // libzmq keeps retrying; the refusal is said once, and the liveness reconnects carry the reason.
        try await Task.sleep(for: .seconds(3))
        let log = workerLog()
        #expect(log.components(separatedBy: "authorized worker keys; add this worker's public key").count - 1 == 1, "\(log)")
        let silentLines = log.split(separator: "\n").filter { $0.contains("coordinator silent") }
        #expect(silentLines.allSatisfy { $0.contains(rejection) }, "\(log)")
        #expect(try await Ledger(database: cluster.server.databaseURL).listWorkers().isEmpty)
        // The coordinator's side of it: a worker_refused event naming the key.
        let refusals = cluster.log("coordinator.err").split(separator: "\n").filter { $0.contains("event=worker_refused") }
        #expect(!refusals.isEmpty && refusals.allSatisfy { $0.contains("worker refused") && $0.contains(stranger) },
                "coordinator: \(cluster.log("coordinator.err"))")
    }
}
