import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import Testing
import VTPProcesses

@Suite struct ChildProcessTests {
    private func scratchFile(_ name: String) -> String {
        NSTemporaryDirectory() + "vtp-child-test-\(UUID().uuidString)-\(name)"
    }

    @Test func runReturnsTheExitCodeAndWritesBothStreamsToTheLog() async throws {
        let log = scratchFile("log")
        defer { try? FileManager.default.removeItem(atPath: log) }
        let status = try await ChildProcess.run(["/bin/sh", "-c", "echo out; echo err >&2; pwd; exit 3"],
                                                environment: ["PATH": "/usr/bin:/bin"], directory: "/tmp", outputPath: log)
        #expect(status == 3)
        let text = try String(contentsOfFile: log, encoding: .utf8)
        #expect(text == "out\nerr\n/tmp\n")
    }

    @Test func theEnvironmentIsExactlyTheOneGiven() async throws {
        let log = scratchFile("env")
        defer { try? FileManager.default.removeItem(atPath: log) }
        let status = try await ChildProcess.run(["/usr/bin/env"], environment: ["ONLY": "this"], directory: "/", outputPath: log)
        #expect(status == 0)
        #expect(try String(contentsOfFile: log, encoding: .utf8) == "ONLY=this\n")
    }

    @Test func aChildKilledByASignalReportsOneHundredTwentyEightPlusIt() async throws {
        let log = scratchFile("killed")
        defer { try? FileManager.default.removeItem(atPath: log) }
        let status = try await ChildProcess.run(["/bin/sh", "-c", "kill -9 $$"], environment: [:], directory: "/", outputPath: log)
        #expect(status == 128 + 9)
    }

    @Test func aProgramThatDoesNotExistIsAnErrorNamingIt() async throws {
        let log = scratchFile("missing")
        defer { try? FileManager.default.removeItem(atPath: log) }
        do {
            _ = try await ChildProcess.run(["/nonexistent/vtp-tool"], environment: [:], directory: "/", outputPath: log)
            Issue.record("expected an error")
        } catch let error as ChildProcessError {
            guard case let .cannotStart(command, _) = error else { Issue.record("\(error)"); return }
            #expect(command == "/nonexistent/vtp-tool")
        }
        #expect(throws: ChildProcessError.self) {
            _ = try ChildProcess.runBlocking(["sh", "-c", "true"], environment: [:], directory: "/", outputPath: log)
        }
        #expect(throws: ChildProcessError.self) {
            _ = try ChildProcess.runBlocking(["/bin/true"], environment: [:], directory: "/", outputPath: "/nonexistent/dir/log")
        }
    }

    /// Many synchronous callers at once (the PostgreSQL control threads of several servers), each
    /// on a thread of its own, each getting its own child's status.
    @Test func runBlockingFromManyThreadsAtOnceGivesEachItsOwnStatus() async throws {
        let callers = 12
        let statuses = Mutex<[Int32]>([])
        let done = DispatchGroup()
        for index in 0..<callers {
            done.enter()
            Thread.detachNewThread {
                let log = NSTemporaryDirectory() + "vtp-child-test-\(UUID().uuidString)"
                defer { try? FileManager.default.removeItem(atPath: log) }
                let status = try? ChildProcess.runBlocking(["/bin/sh", "-c", "sleep 0.2; exit \(index % 7)"], environment: [:],
                                                           directory: "/", outputPath: log)
                statuses.withLock { $0.append(status ?? -1) }
                done.leave()
            }
        }
        await withCheckedContinuation { finished in done.notify(queue: .global()) { finished.resume() } }
        #expect(statuses.withLock { $0 }.sorted() == (0..<callers).map { Int32($0 % 7) }.sorted())
    }

    @Test func supervisedChildrenRunTogetherAndEachReportsItsOwnExit() async throws {
        let log = scratchFile("many")
        defer { try? FileManager.default.removeItem(atPath: log) }
        var children: [SupervisedChild] = []
        for index in 0..<8 {
            children.append(try await SupervisedChild.launch(executable: "/bin/sh", arguments: ["-c", "sleep 0.\(index); exit \(10 + index)"],
                                                             environment: [:], logPath: log))
        }
        var statuses: [Int32] = []
        for child in children { statuses.append(await child.waitForExit()) }
        #expect(statuses == (0..<8).map { Int32(10 + $0) })
        for child in children {
            #expect(!child.isRunning)
            #expect(child.processIdentifier == nil)
        }
    }

    @Test func aSupervisedChildCanBeSignalledAndAppendsToItsLog() async throws {
        let log = scratchFile("signal")
        defer { try? FileManager.default.removeItem(atPath: log) }
        try "earlier\n".write(toFile: log, atomically: false, encoding: .utf8)
        let child = try await SupervisedChild.launch(executable: "/bin/sh", arguments: ["-c", "echo started; exec sleep 30"],
                                                     environment: [:], logPath: log)
        #expect(child.isRunning)
        #expect(child.exitStatus == nil)
        let pid = try #require(child.processIdentifier)
        #expect(kill(pid, 0) == 0)
        // Give the shell time to print before it is replaced by sleep and killed.
        let deadline = ContinuousClock.now + .seconds(5)
        while (try? String(contentsOfFile: log, encoding: .utf8))?.contains("started") != true, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        child.send(SIGTERM)
        #expect(await child.waitForExit() == 128 + SIGTERM)
        #expect(child.exitStatus == 128 + SIGTERM)
        child.send(SIGKILL)  // a child that has exited is left alone
        #expect(try String(contentsOfFile: log, encoding: .utf8) == "earlier\nstarted\n")
    }

    @Test func launchingAMissingProgramThrows() async {
        await #expect(throws: ChildProcessError.self) {
            _ = try await SupervisedChild.launch(executable: "/nonexistent/vtp", arguments: [], environment: [:],
                                                 logPath: NSTemporaryDirectory() + "vtp-child-test-missing")
        }
    }
}
