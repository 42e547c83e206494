import Foundation
import Testing
import VTPLocalRun
import VTPQueue
import VTPTestSupport
import VTPVocabulary
#if canImport(Glibc)
import Glibc
#endif

/// Where a `vtp run` keeps its state and private ledger, and the monitoring commands reading it
/// (`--output DIR`): the built binary, real PostgreSQL servers, real worker processes.
@Suite(.serialized)
struct RunStateTests {
    /// Runs `vtp` through `/bin/sh` with `umask` and extra environment variables.
    static func run(_ arguments: [String], umask mask: String = "022", environment: [String: String] = [:])
        throws -> (status: Int32, stdout: String, stderr: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", "umask \(mask) && exec \"$0\" \"$@\"", VTPExecutable.path] + arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errData, as: UTF8.self))
    }

    static func mode(_ path: String) -> (mode: UInt32, uid: uid_t) {
        var info = stat()
        guard stat(path, &info) == 0 else { return (0, 0) }
        return (UInt32(info.st_mode & 0o7777), info.st_uid)
    }

    /// The jobs of `vtp status --json` (or `vtp jobs --json`) as (id, state) pairs.
    static func jobs(_ json: String, nested: Bool = true) throws -> [(id: Int64, state: String)] {
        let document = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
        let entries = try #require(document?["jobs"] as? [[String: Any]], "no jobs array in \(json)")
        return entries.compactMap { entry in
            let job = nested ? entry["job"] as? [String: Any] : entry
            guard let id = (job?["id"] as? NSNumber)?.int64Value, let state = job?["state"] as? String else { return nil }
            return (id, state)
        }
    }

    static func serverIsRunning(_ serverDirectory: URL) -> Bool {
        FileManager.default.fileExists(atPath: serverDirectory.appendingPathComponent("data/postmaster.pid").path)
    }

    @Test(.timeLimit(.minutes(3)))
    func runUnderAPrivateDirectoryWithUmask077CompletesAndLeavesItsPermissionsAlone() throws {
        let dir = try TemporaryDirectory("e2e-private")
        let home = dir.file("home")
        let output = home + "/out"
        defer { RunCommandTests.stopLeftoverServer(output); dir.remove() }
        let expected = try RunCommandTests.makeInput(dir.file("in"), copies: 1)
        // A home the `postgres` user cannot enter, like /root; the server root does not exist yet.
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
        #expect(chmod(home, 0o700) == 0)
        let serverRoot = dir.file("srv/vtp/postgres")
        let environment = [PrivateServerLocation.rootEnvironmentKey: serverRoot]
        let arguments = RunCommandTests.runArguments(input: dir.file("in"), output: output, shardSize: 5)

        let first = try Self.run(arguments, umask: "077", environment: environment)
        #expect(first.status == 0, "stdout: \(first.stdout)\nstderr: \(first.stderr)")
        #expect(first.stdout.contains("job 1 completed: 13 items, 13 written, 0 failed"))
        #expect(try RunCommandTests.writtenIDs(output).sorted() == expected.sorted())
        // Nothing of the user's was loosened: the home and the umask-077 output stay private.
        #expect(Self.mode(home).mode == 0o700)
        #expect(Self.mode(output).mode == 0o700)
        #expect(Self.mode(output + "/.vtp-state").mode == 0o700)

        let server = try #require(RunCommandTests.serverDirectory(output))
        #expect(PrivateServerLocation.hasDataDirectory(server))
        #expect(!Self.serverIsRunning(server), "the private PostgreSQL was not stopped")
        if geteuid() == 0 {
            // Root: the ledger lives under the server root, found through the pointer file.
            #expect(server.deletingLastPathComponent().path == serverRoot)
            let pointer = try String(contentsOfFile: output + "/.vtp-state/" + PrivateServerLocation.pointerFileName, encoding: .utf8)
            #expect(pointer.split(separator: "\n").contains { $0 == server.path })
            for path in [dir.file("srv"), dir.file("srv/vtp"), serverRoot] {
                let made = Self.mode(path)
                #expect(made.mode == 0o755 && made.uid == 0, "\(path) should be root's and world-searchable despite umask 077")
            }
            let user = try #require(getpwnam("postgres"))
            let own = Self.mode(server.path)
            #expect(own.mode == 0o700 && own.uid == user.pointee.pw_uid)
            #expect(!FileManager.default.fileExists(atPath: output + "/.vtp-state/postgres"))
        } else {
            #expect(server.path == output + "/.vtp-state/postgres")
        }

        // The same command finds the same ledger again, and so does `vtp status --output`.
        let again = try Self.run(arguments, umask: "077", environment: environment)
        #expect(again.status == 0, "stdout: \(again.stdout)\nstderr: \(again.stderr)")
        #expect(again.stderr.contains("job 1 already finished"))
        let status = try Self.run(["status", "--output", output, "--all", "--json"], umask: "077", environment: environment)
        #expect(status.status == 0, "\(status.stderr)")
        #expect(try Self.jobs(status.stdout).map(\.state) == ["completed"])
        #expect(!Self.serverIsRunning(server), "vtp status left the private PostgreSQL running")
    }

    @Test(.timeLimit(.minutes(2)))
    func aLedgerThatCannotBeCreatedFailsWithOneMessageAndAHint() throws {
        let dir = try TemporaryDirectory("e2e-initdb")
        defer { dir.remove() }
        _ = try RunCommandTests.makeInput(dir.file("in"), copies: 1)
        let output = dir.file("out")
        let state = output + "/.vtp-state"
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        // A server directory whose data directory holds something else: initdb refuses it.
        let server: String
        if geteuid() == 0 {
            server = dir.file("srv/out-broken")
            try FileManager.default.createDirectory(atPath: server + "/data", withIntermediateDirectories: true)
            try "\(server)\n".write(toFile: state + "/" + PrivateServerLocation.pointerFileName, atomically: true, encoding: .utf8)
        } else {
            server = state + "/postgres"
            try FileManager.default.createDirectory(atPath: server + "/data", withIntermediateDirectories: true)
        }
        try "not a database".write(toFile: server + "/data/notes.txt", atomically: true, encoding: .utf8)
        let failed = try VTPExecutable.run(RunCommandTests.runArguments(input: dir.file("in"), output: output, shardSize: 13))
        #expect(failed.status != 0)
        let text = failed.stdout + failed.stderr
        #expect(text.contains("cannot create the private PostgreSQL in \(server)/data: initdb said: "), "\(text)")
        #expect(text.contains("exists but is not empty"), "initdb's reason is kept: \(text)")
        #expect(text.contains("\nhint: \(server)/data holds files but no database"), "\(text)")
        #expect(text.components(separatedBy: "initdb said").count == 2, "printed more than once: \(text)")
        #expect(!text.contains("The files belonging to this database system"), "initdb's chatter is dropped: \(text)")

        guard geteuid() == 0 else { return }
        // As root, a server root the `postgres` user cannot enter is refused before initdb runs.
        let closed = dir.file("closed")
        try FileManager.default.createDirectory(atPath: closed, withIntermediateDirectories: true)
        #expect(chmod(closed, 0o700) == 0)
        let refused = try Self.run(RunCommandTests.runArguments(input: dir.file("in"), output: dir.file("out2"), shardSize: 13),
                                   environment: [PrivateServerLocation.rootEnvironmentKey: closed + "/postgres"])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("\(closed): mode 700: the user 'postgres' that runs the private PostgreSQL cannot enter it; set VTP_POSTGRES_ROOT"),
                "\(refused.stderr)")
        #expect(Self.mode(closed).mode == 0o700, "the directory was loosened")
    }

    @Test(.timeLimit(.minutes(6)))
    func statusSeesTheRunWhileItRunsAfterSIGINTAndAfterItFinishes() async throws {
        let dir = try TemporaryDirectory("e2e-status")
        let output = dir.file("out")
        defer { RunCommandTests.stopLeftoverServer(output); dir.remove() }
        let expected = try RunCommandTests.makeInput(dir.file("in"), copies: 60)  // 780 items in 390 shards
        let arguments = RunCommandTests.runArguments(input: dir.file("in"), output: output, shardSize: 2, imageSize: 256)
        let run = try RunCommandTests.spawn(arguments, logs: dir.file("first"))
        #expect(try await RunCommandTests.waitUntil(120) { RunCommandTests.summaries(output).count >= 4 })

        // Live: the running private server is read as it is.
        let live = try VTPExecutable.run(["status", "--output", output, "--json"])
        #expect(live.status == 0, "\(live.stderr)")
        #expect(try Self.jobs(live.stdout).map(\.id) == [1])
        #expect(try Self.jobs(live.stdout).first?.state == "running")
        let server = try #require(RunCommandTests.serverDirectory(output))
        #expect(Self.serverIsRunning(server))
        // A second run of the same output is refused while the first lives.
        let second = try VTPExecutable.run(arguments)
        #expect(second.status != 0)
        #expect(second.stderr.contains("another vtp run (pid \(run.pid)) is using the state directory \(output)/.vtp-state"),
                "\(second.stderr)")
        #expect(run.poll() == nil, "the run died while being looked at")

        kill(run.pid, SIGINT)
        let ending = try await run.wait(seconds: 180)
        let stderr = (try? String(contentsOfFile: dir.file("first.err"), encoding: .utf8)) ?? ""
        #expect(ending == .exited(130), "stderr: \(stderr)")
        #expect(!Self.serverIsRunning(server))
        #expect(RunCommandTests.summaries(output).count < 390, "the job finished before the interrupt")

        // Interrupted: the stopped ledger is started for each command, and stopped again.
        let interrupted = try VTPExecutable.run(["status", "--output", output, "--json"])
        #expect(interrupted.status == 0, "\(interrupted.stderr)")
        let listed = try Self.jobs(interrupted.stdout)
        #expect(listed.map(\.id) == [1])
        #expect(listed.first.map { $0.state != "completed" } == true)
        #expect(!Self.serverIsRunning(server), "vtp status left the private PostgreSQL running")
        let jobs = try VTPExecutable.run(["jobs", "--output", output, "--json"])
        #expect(jobs.status == 0, "\(jobs.stderr)")
        #expect(try Self.jobs(jobs.stdout, nested: false).map(\.id) == [1])
        let show = try VTPExecutable.run(["job", "show", "1", "--state-dir", output + "/.vtp-state", "--json"])
        #expect(show.status == 0, "\(show.stderr)")
        #expect(show.stdout.contains("\"output\" : \"\(output)\""))

        // Resumed to the end: finished, every image once, and still readable.
        let resumed = try VTPExecutable.run(arguments)
        #expect(resumed.status == 0, "stdout: \(resumed.stdout)\nstderr: \(resumed.stderr)")
        #expect(resumed.stderr.contains("resuming job 1:"))
        let written = try RunCommandTests.writtenIDs(output)
        #expect(written.count == expected.count && Set(written) == expected)
        let finished = try VTPExecutable.run(["status", "--output", output, "--all", "--json"])
        #expect(try Self.jobs(finished.stdout).map(\.state) == ["completed"], "\(finished.stdout)\n\(finished.stderr)")
        let active = try VTPExecutable.run(["status", "--output", output, "--json"])
        #expect(try Self.jobs(active.stdout).isEmpty, "a finished job is not active")
        let failures = try VTPExecutable.run(["failures", "1", "--output", output, "--json"])
        #expect(failures.status == 0 && failures.stdout.contains("\"failures\" : ["), "\(failures.stderr)")
        #expect(!Self.serverIsRunning(server))
    }

    @Test(.timeLimit(.minutes(3)))
    func aStoppedRunsLedgerIsStartedReadOnlyUnlessTheCommandWrites() async throws {
        let dir = try TemporaryDirectory("e2e-readonly")
        let output = dir.file("out")
        defer { RunCommandTests.stopLeftoverServer(output); dir.remove() }
        _ = try RunCommandTests.makeInput(dir.file("in"), copies: 1)
        let done = try VTPExecutable.run(RunCommandTests.runArguments(input: dir.file("in"), output: output, shardSize: 13))
        #expect(done.status == 0, "\(done.stderr)")
        let state = output + "/.vtp-state"
        let server = try #require(RunCommandTests.serverDirectory(output))
        let report = WorkerReport(id: "probe", host: "test", capabilitiesJSON: "{}", state: .idle, currentShard: nil,
                                  itemsDone: 0, itemsFailed: 0, imagesPerSecond: 0, memoryBytes: 0)

        let reader = try await RunLedgerAccess.open(stateDirectory: state, writable: false)
        #expect(!reader.runIsLive)
        #expect(Self.serverIsRunning(server))
        let readLedger = Ledger(database: reader.databaseURL)
        #expect(try await readLedger.listJobs().map(\.id) == [1])
        await #expect(throws: PostgresError.self) { try await readLedger.upsertWorker(report) }
        await reader.close()
        #expect(!Self.serverIsRunning(server))

        let writer = try await RunLedgerAccess.open(stateDirectory: state, writable: true)
        try await Ledger(database: writer.databaseURL).upsertWorker(report)
        #expect(try await Ledger(database: writer.databaseURL).listWorkers().map(\.report.id).contains("probe"))
        await writer.close()
        #expect(!Self.serverIsRunning(server))

        // No ledger: a clear error naming the directory.
        let none = try VTPExecutable.run(["status", "--output", dir.file("in")])
        #expect(none.status != 0)
        #expect(none.stderr.contains(dir.file("in") + "/.vtp-state: no such directory"), "\(none.stderr)")
    }

    @Test(.timeLimit(.minutes(3)))
    func databaseStateDirIsWhereRunsKeepTheirLedgerAndWhereStatusLooks() throws {
        let dir = try TemporaryDirectory("e2e-statedir")
        let shared = dir.file("shared-state")
        defer {
            if let server = try? PrivateServerLocation.existing(stateDirectory: URL(fileURLWithPath: shared)),
               !server.path.hasPrefix(shared + "/") {
                try? FileManager.default.removeItem(at: server)
            }
            dir.remove()
        }
        _ = try RunCommandTests.makeInput(dir.file("in"), copies: 1)
        let config = dir.file("vtp.toml")
        try "[database]\nstate_dir = \"\(shared)\"\n".write(toFile: config, atomically: true, encoding: .utf8)
        for (index, name) in ["a", "b"].enumerated() {
            let result = try VTPExecutable.run(RunCommandTests.runArguments(input: dir.file("in"), output: dir.file(name), shardSize: 13,
                                                                            extra: ["--config", config]))
            #expect(result.status == 0, "stdout: \(result.stdout)\nstderr: \(result.stderr)")
            #expect(result.stdout.contains("job \(index + 1) completed: 13 items"), "one ledger holds both jobs: \(result.stdout)")
            #expect(!FileManager.default.fileExists(atPath: dir.file(name + "/.vtp-state")))
        }
        #expect(try PrivateServerLocation.existing(stateDirectory: URL(fileURLWithPath: shared)) != nil)
        let status = try VTPExecutable.run(["status", "--config", config, "--all", "--json"])
        #expect(status.status == 0, "\(status.stderr)")
        #expect(try Self.jobs(status.stdout).map(\.id) == [1, 2])
        let byFlag = try VTPExecutable.run(["jobs", "--state-dir", shared, "--json"])
        #expect(try Self.jobs(byFlag.stdout, nested: false).map(\.id) == [2, 1], "\(byFlag.stderr)")
    }

    @Test(.timeLimit(.minutes(5)))
    func anOutputWrittenByAnEarlierVersionResumesInPlace() async throws {
        let dir = try TemporaryDirectory("e2e-legacy")
        let output = dir.file("out")
        defer { RunCommandTests.stopLeftoverServer(output); dir.remove() }
        let expected = try RunCommandTests.makeInput(dir.file("in"), copies: 30)  // 390 items
        let arguments = RunCommandTests.runArguments(input: dir.file("in"), output: output, shardSize: 2, imageSize: 256)
        let run = try RunCommandTests.spawn(arguments, logs: dir.file("first"))
        #expect(try await RunCommandTests.waitUntil(120) { RunCommandTests.summaries(output).count >= 4 })
        kill(-run.pid, SIGKILL)  // the whole process group: the run dies without stopping anything
        #expect(try await run.wait(seconds: 10) == .signalled(SIGKILL))
        let before = RunCommandTests.summaries(output).count
        #expect(before < 195, "the job was nearly over before the kill")

        // Rewrite the state directory into the layout earlier versions left: the server directory
        // in `.vtp-state/postgres` (its socket there too), no pointer file.
        let state = output + "/.vtp-state"
        let legacy = URL(fileURLWithPath: state + "/postgres")
        let current = try #require(RunCommandTests.serverDirectory(output))
        if current.path != legacy.path {
            let server = try EmbeddedPostgres(serverDirectory: current)
            try server.startBlocking()  // adopts the server the killed run left running
            try server.stopBlocking()
            try FileManager.default.moveItem(at: current, to: legacy)
            try FileManager.default.removeItem(atPath: state + "/" + PrivateServerLocation.pointerFileName)
            let conf = legacy.appendingPathComponent("data/postgresql.conf")
            let handle = try FileHandle(forWritingTo: conf)
            try handle.seekToEnd()
            let socket = EmbeddedPostgres.socketDirectory(serverDirectory: legacy, port: EmbeddedPostgres.Configuration().port)
            try handle.write(contentsOf: Data("\nunix_socket_directories = '\(socket.path)'\n".utf8))
            try handle.close()
            // Earlier versions made the state directory searchable for the `postgres` user.
            #expect(chmod(state, 0o711) == 0)
        } else {
            try? EmbeddedPostgres(serverDirectory: legacy).stopBlocking()
        }

        let resumed = try VTPExecutable.run(arguments)
        #expect(resumed.status == 0, "stdout: \(resumed.stdout)\nstderr: \(resumed.stderr)")
        #expect(resumed.stderr.contains("resuming job 1:"))
        #expect(resumed.stdout.contains("job 1 completed: 390 items, 390 written, 0 failed"))
        let written = try RunCommandTests.writtenIDs(output)
        #expect(written.count == 390 && Set(written) == expected)
        // It stayed in place: no pointer file, and the ledger is still the one in `.vtp-state/postgres`.
        #expect(!FileManager.default.fileExists(atPath: state + "/" + PrivateServerLocation.pointerFileName))
        #expect(RunCommandTests.serverDirectory(output)?.path == legacy.path)
        #expect(!Self.serverIsRunning(legacy))
        let status = try VTPExecutable.run(["status", "--output", output, "--all", "--json"])
        #expect(try Self.jobs(status.stdout).map(\.state) == ["completed"], "\(status.stderr)")
    }
}
