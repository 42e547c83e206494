import Foundation
import Testing
import VTPQueue
import VTPTestSupport
import VTPVocabulary
#if canImport(Glibc)
import Glibc
#endif

/// Four "hosts" on one machine: network namespaces joined by a bridge, PostgreSQL in one (TCP,
/// password auth), the coordinator in another (CURVE on, bound to its own address), two workers in
/// two more. One worker's link goes down for longer than its lease mid-job (a network partition);
/// the job still ends with every image written exactly once, bit-identical to a clean run.
@Suite(.serialized, .enabled(if: NetworkNamespaces.available, "needs root and `ip netns`"))
struct MultiHostTests {
    @Test(.timeLimit(.minutes(5)))
    func jobAcrossNamespacesSurvivesAPartitionedWorker() async throws {
        let scale = ChaosScale.current
        let reference = try await ChaosReference.shared.latents(scale: scale)
        let dir = try TemporaryDirectory("multihost")
        let net = try NetworkNamespaces(hosts: ["db", "coord", "w1", "w2"])
        // The server's directory must be reachable by the `postgres` user, unlike the 0700 test directory.
        var template = Array("/tmp/vtp-mhpg-XXXXXX".utf8CString)
        let pgDirectory = String(cString: try #require(mkdtemp(&template)))
        chmod(pgDirectory, 0o755)
        var processes: [SpawnedProcess] = []
        var database: NamespacedPostgres?
        defer {
            for process in processes { kill(process.pid, SIGKILL); _ = process.poll() }
            database?.stop()
            try? FileManager.default.removeItem(atPath: pgDirectory)
            net.remove()
            dir.remove()
        }
        database = try NamespacedPostgres(directory: pgDirectory, namespace: net.namespace("db"), address: net.address("db"))
        let url = try #require(database?.url)
        // Keys: the coordinator's pair, one pair per worker, the list of admitted worker keys.
        for name in ["coordinator", "w1", "w2"] {
            let made = try VTPExecutable.run(["keys", "generate", "--output", dir.file(name)])
            #expect(made.status == 0, "\(made.stderr)")
        }
        let admitted = try ["w1", "w2"].map { try String(contentsOfFile: dir.file($0 + ".pub"), encoding: .utf8) }.joined(separator: "\n")
        try admitted.write(toFile: dir.file("admitted.txt"), atomically: true, encoding: .utf8)
        let endpoint = "tcp://\(net.address("coord")):5555"
        func config(_ name: String, worker: String?) throws -> String {
            let path = dir.file(name + ".toml")
            try """
                [database]
                url = "\(url)"
                [coordinator]
                endpoint = "\(endpoint)"
                heartbeat_interval_ms = \(scale.heartbeatMilliseconds)
                lease_seconds = \(scale.leaseSeconds)
                metrics_port = 0
                [security]
                coordinator_public_key_file = "\(dir.file("coordinator.pub"))"
                \(worker == nil ? "coordinator_secret_key_file = \"\(dir.file("coordinator.key"))\"" : "")
                \(worker == nil ? "authorized_worker_keys_file = \"\(dir.file("admitted.txt"))\"" : "")
                \(worker.map { "worker_secret_key_file = \"\(dir.file($0 + ".key"))\"\nworker_public_key_file = \"\(dir.file($0 + ".pub"))\"" } ?? "")
                [worker]
                prefetch = 2
                threads = 1
                batch_size = 2
                """.write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
        let coordinatorConfig = try config("coordinator", worker: nil)
        let migrated = try net.run("coord", [VTPExecutable.path, "db", "migrate", "--config", coordinatorConfig])
        #expect(migrated.status == 0, "\(migrated.output)")
        processes.append(try net.spawn("coord", [VTPExecutable.path, "coordinator", "--config", coordinatorConfig], logs: dir.file("coordinator")))
        for worker in ["w1", "w2"] {
            processes.append(try net.spawn(worker, [VTPExecutable.path, "worker", "--config", try config(worker, worker: worker),
                                                    "--worker-id", "mh-" + worker], logs: dir.file(worker)))
        }
        let expected = try RunCommandTests.makeInput(dir.file("in"), copies: scale.copies)
        let submitted = try net.run("coord", [VTPExecutable.path, "submit", "latents", "--config", coordinatorConfig,
                                              "--model", Fixtures.path("vtp-tiny"), "--input", dir.file("in"), "--output", dir.file("out"),
                                              "--shard-size", String(scale.shardSize), "--image-size", String(scale.imageSize), "--json"])
        #expect(submitted.status == 0, "\(submitted.output)")
        let document = try JSONSerialization.jsonObject(with: Data(submitted.output.utf8)) as? [String: Any]
        let jobID = try #require((document?["job_id"] as? NSNumber)?.int64Value, "\(submitted.output)")
        let logs = { ["coordinator", "w1", "w2"].map { "\($0): " + String(((try? String(contentsOfFile: dir.file($0 + ".err"), encoding: .utf8)) ?? "").suffix(3000)) }.joined(separator: "\n") }

        // The test reaches the ledger from the root namespace through the db host's socket file.
        let ledger = Ledger(database: try DatabaseURL(database!.socketURL))
        let start = ContinuousClock.now
        var partitioned = false, heldAtPartition = 0
        while true {
            let job = try await ledger.job(jobID)
            if job.state.isFinished && FileManager.default.fileExists(atPath: dir.file("out/manifest.json")) { break }
            guard ContinuousClock.now - start < .seconds(scale.deadlineSeconds) else {
                Issue.record("job stalled at \(job.itemsDone)/\(job.itemCount)\n\(logs())")
                return
            }
            if !partitioned, job.itemsDone >= job.itemCount / 5 {
                heldAtPartition = Int(try await ledger.scalar("SELECT count(*) FROM shards WHERE state = 'leased' AND lease_owner = 'mh-w1'") ?? "0") ?? 0
                try net.link("w1", up: false)
                partitioned = true
                Task { [net] in
                    try await Task.sleep(for: .seconds(Double(scale.leaseSeconds) * 2))
                    try net.link("w1", up: true)
                }
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(partitioned, "the job ended before the partition")
        let job = try await ledger.job(jobID)
        _ = try ChaosChecker.check("multi-host-partition", output: dir.file("out"), expected: expected, reference: reference,
                                   job: job, seconds: seconds(ContinuousClock.now - start), faults: 1)
        // What the cut-off worker held was handed out again.
        let redone = Int(try await ledger.scalar("SELECT count(*) FROM shards WHERE attempts > 1") ?? "0") ?? 0
        if heldAtPartition > 0 { #expect(redone > 0, "w1 held \(heldAtPartition) leases when cut off; none was re-leased") }
        // Both workers took part: the partitioned one before and (reconnected) possibly after.
        let owners = Set(try await ledger.sql("SELECT DISTINCT lease_owner FROM shards WHERE state = 'done'").compactMap { $0 })
        #expect(owners.contains("mh-w2"), "\(owners)")
        // No plaintext on the wire: CURVE is required off loopback, and the workers got in with it.
        #expect(owners.isSubset(of: ["mh-w1", "mh-w2"]))
    }
}

/// Network namespaces `vtp<tag><host>` joined by a bridge, each with one veth link and an address
/// 10.231.<n>.<i>/24; removed (with the bridge) by `remove()`.
final class NetworkNamespaces: Sendable {
    let tag: String
    let hosts: [String]
    private let subnet: Int

    static let available: Bool = {
        guard geteuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip") else { return false }
        let name = "vtpprobe\(getpid())"
        guard (try? NetworkNamespaces.ip(["netns", "add", name]).status) == 0 else { return false }
        _ = try? NetworkNamespaces.ip(["netns", "del", name])
        return true
    }()

    init(hosts: [String]) throws {
        tag = String(UInt16.random(in: 0...0xfff), radix: 16)
        subnet = Int.random(in: 1...250)
        self.hosts = hosts
        try Self.check(["link", "add", bridge, "type", "bridge"])
        try Self.check(["link", "set", bridge, "up"])
        for (i, host) in hosts.enumerated() {
            let ns = namespace(host), outside = "vh\(tag)\(i)", inside = "vn\(tag)\(i)"
            try Self.check(["netns", "add", ns])
            try Self.check(["link", "add", outside, "type", "veth", "peer", "name", inside])
            try Self.check(["link", "set", inside, "netns", ns])
            try Self.check(["link", "set", outside, "master", bridge])
            try Self.check(["link", "set", outside, "up"])
            try Self.check(["-n", ns, "link", "set", "lo", "up"])
            try Self.check(["-n", ns, "addr", "add", address(host) + "/24", "dev", inside])
            try Self.check(["-n", ns, "link", "set", inside, "up"])
        }
    }

    var bridge: String { "vb\(tag)" }
    func namespace(_ host: String) -> String { "vtp\(tag)\(host)" }
    func address(_ host: String) -> String { "10.231.\(subnet).\((hosts.firstIndex(of: host) ?? 0) + 1)" }

    /// Takes a host's only link down (a partition) or up again.
    func link(_ host: String, up: Bool) throws {
        let i = hosts.firstIndex(of: host) ?? 0
        try Self.check(["-n", namespace(host), "link", "set", "vn\(tag)\(i)", up ? "up" : "down"])
    }

    /// Runs a command inside a host's namespace and waits for it.
    func run(_ host: String, _ command: [String]) throws -> (status: Int32, output: String) {
        try Self.ip(["netns", "exec", namespace(host)] + command)
    }

    /// Starts a long-running command inside a host's namespace, logging to `logs.out` / `logs.err`.
    func spawn(_ host: String, _ command: [String], logs: String) throws -> SpawnedProcess {
        try SpawnedProcess.start("/usr/sbin/ip", ["netns", "exec", namespace(host)] + command, stdout: logs + ".out", stderr: logs + ".err")
    }

    func remove() {
        for host in hosts { _ = try? Self.ip(["netns", "del", namespace(host)]) }
        _ = try? Self.ip(["link", "del", bridge])
    }

    private static func check(_ arguments: [String]) throws {
        let result = try ip(arguments)
        guard result.status == 0 else { throw ChaosError("ip \(arguments.joined(separator: " ")): \(result.output)") }
    }

    static func ip(_ arguments: [String]) throws -> (status: Int32, output: String) {
        try runTool("/usr/sbin/ip", arguments)
    }
}

/// A PostgreSQL server of its own inside a namespace, listening on TCP at the host's address with
/// password authentication, as a database host would (the product's embedded server is
/// socket-only by design). Its Unix socket, reachable from every namespace on this machine, lets
/// the test read the ledger.
struct NamespacedPostgres {
    let directory: String
    let namespace: String
    let url: String
    let socketURL: String
    private let bin: String

    init(directory: String, namespace: String, address: String) throws {
        self.directory = directory
        self.namespace = namespace
        let versions = try FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql").sorted { Int($0) ?? 0 < Int($1) ?? 0 }
        guard let version = versions.last else { throw ChaosError("no PostgreSQL under /usr/lib/postgresql") }
        bin = "/usr/lib/postgresql/\(version)/bin"
        let password = "chaos-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: directory + "/run", withIntermediateDirectories: true)
        try password.write(toFile: directory + "/pw", atomically: true, encoding: .utf8)
        guard chown(directory, Self.postgresUID, Self.postgresGID) == 0, chown(directory + "/run", Self.postgresUID, Self.postgresGID) == 0,
              chown(directory + "/pw", Self.postgresUID, Self.postgresGID) == 0 else { throw ChaosError("chown \(directory) to postgres failed") }
        try Self.asPostgres([bin + "/initdb", "-D", directory + "/data", "-U", "postgres", "--pwfile", directory + "/pw",
                             "--auth-local=trust", "--auth-host=scram-sha-256"])
        let hba = try String(contentsOfFile: directory + "/data/pg_hba.conf", encoding: .utf8)
        try (hba + "host all all \(address)/24 scram-sha-256\n").write(toFile: directory + "/data/pg_hba.conf", atomically: false, encoding: .utf8)
        let conf = "listen_addresses = '\(address)'\nunix_socket_directories = '\(directory)/run'\nfsync = off\n"
        let existing = try String(contentsOfFile: directory + "/data/postgresql.conf", encoding: .utf8)
        try (existing + conf).write(toFile: directory + "/data/postgresql.conf", atomically: false, encoding: .utf8)
        try Self.asPostgres(["/usr/sbin/ip", "netns", "exec", namespace, "runuser", "-u", "postgres", "--",
                             bin + "/pg_ctl", "start", "-w", "-D", directory + "/data", "-l", directory + "/server.log"], direct: true)
        url = "postgresql://postgres:\(password)@\(address):5432/postgres"
        socketURL = "postgresql://postgres@/postgres?host=\(directory)/run&port=5432"
    }

    func stop() {
        _ = try? Self.asPostgres([bin + "/pg_ctl", "stop", "-m", "immediate", "-D", directory + "/data"])
    }

    private static var postgresUID: uid_t { getpwnam("postgres").map { $0.pointee.pw_uid } ?? 0 }
    private static var postgresGID: gid_t { getpwnam("postgres").map { $0.pointee.pw_gid } ?? 0 }

    /// Runs a PostgreSQL tool as the `postgres` user (or `command` as given when `direct`).
    private static func asPostgres(_ command: [String], direct: Bool = false) throws {
        let result = try direct ? runTool(command[0], Array(command.dropFirst()))
            : runTool("/usr/sbin/runuser", ["-u", "postgres", "--"] + command)
        guard result.status == 0 else { throw ChaosError("\(command.joined(separator: " ")): \(result.output)") }
    }
}
