import Foundation
import Subprocess
import Synchronization
import SystemPackage
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The one way vtp starts other programs (the PostgreSQL tools, worker processes), over
/// swift-subprocess. Subprocess waits for each child on its pidfd, so several children running at
/// once cannot miss one another's exits (Foundation's `Process` could, on Linux), and nothing here
/// installs a SIGCHLD handler of its own.
///
/// Children never read the terminal: standard input is /dev/null. Standard output and error both
/// go to one log file, never to a pipe, because a program such as `pg_ctl` leaves a daemon behind
/// that would hold a pipe open for its whole life.
public enum ChildProcess {
    /// Runs `argv` (the program's absolute path first) in `directory`, with exactly `environment`,
    /// its output written over `outputPath`, and returns its exit status once it has ended:
    /// the exit code, or 128 + the signal that killed it, as a shell reports it.
    /// - Throws: ``ChildProcessError`` when the program cannot be started or the log file opened.
    public static func run(_ argv: [String], environment: [String: String], directory: String,
                           outputPath: String) async throws -> Int32 {
        let command = try Command(argv, environment: environment, directory: directory)
        let (output, error) = try logDescriptors(outputPath, append: false, command: command.name)
        do {
            let result = try await Subprocess.run(command.executable, arguments: command.arguments,
                                                  environment: command.environment, workingDirectory: command.directory,
                                                  input: .none,
                                                  output: .fileDescriptor(output, closeAfterSpawningProcess: true),
                                                  error: .fileDescriptor(error, closeAfterSpawningProcess: true))
            return ExitStatus.shellCode(result.terminationStatus)
        } catch {
            throw ChildProcessError.cannotStart(command: command.name, reason: "\(error)")
        }
    }

    /// ``run(_:environment:directory:outputPath:)`` for synchronous callers (`deinit`, `defer`,
    /// atexit handlers, a `BlockingExecutor`'s thread). The calling thread runs the task that waits
    /// for the child itself, so the concurrency pool is needed only for a moment (Subprocess's
    /// cleanup runs in one unstructured task). Call it from threads of your own: called from the
    /// pool while every other pool thread is blocked too, that moment would never come.
    public static func runBlocking(_ argv: [String], environment: [String: String], directory: String,
                                   outputPath: String) throws -> Int32 {
        let executor = CallingThreadExecutor()
        let outcome = Mutex<Result<Int32, any Error>?>(nil)
        Task(executorPreference: executor) {
            let result: Result<Int32, any Error>
            do { result = .success(try await run(argv, environment: environment, directory: directory, outputPath: outputPath)) }
            catch { result = .failure(error) }
            outcome.withLock { $0 = result }
            executor.finish()
        }
        executor.runUntilFinished()
        return try outcome.withLock { $0! }.get()
    }

    /// The standard output of a short command found on PATH by `/usr/bin/env`, or nil if it fails.
    public static func outputBlocking(of argv: [String]) -> String? {
        let path = NSTemporaryDirectory() + "vtp-child-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: path) }
        guard let status = try? runBlocking(argv, environment: ProcessInfo.processInfo.environment,
                                            directory: FileManager.default.currentDirectoryPath, outputPath: path),
              status == 0 else { return nil }
        return try? String(contentsOfFile: path, encoding: .utf8)
    }

    /// Two descriptors on one log file (Subprocess closes each after the spawn), for standard
    /// output and standard error.
    static func logDescriptors(_ path: String, append: Bool, command: String) throws -> (FileDescriptor, FileDescriptor) {
        do {
            let options: FileDescriptor.OpenOptions = append ? [.create, .append, .closeOnExec] : [.create, .truncate, .closeOnExec]
            let output = try FileDescriptor.open(FilePath(path), .writeOnly, options: options, permissions: [.ownerReadWrite, .groupRead, .otherRead])
            do {
                return (output, try output.duplicate())
            } catch {
                try? output.close()
                throw error
            }
        } catch {
            throw ChildProcessError.cannotStart(command: command, reason: "cannot open its log file \(path): \(error)")
        }
    }
}

/// A long-running child (a worker process) that lives beyond the call that started it: Subprocess's
/// execution handle must not escape its closure, so a task of its own holds the child for its whole
/// life and publishes what others need: the pid to signal, and the exit status once it has ended.
public final class SupervisedChild: Sendable {
    private enum Phase {
        case starting
        case running(pid: pid_t)
        case exited(status: Int32)
    }

    private struct State {
        var phase = Phase.starting
        var exitWaiters: [CheckedContinuation<Int32, Never>] = []
    }

    private let state = Mutex(State())

    private init() {}

    /// Starts `executable` with `arguments` and exactly `environment`, appending its output to
    /// `logPath`, and returns once it runs.
    /// - Throws: ``ChildProcessError`` when it cannot be started.
    public static func launch(executable: String, arguments: [String], environment: [String: String],
                              logPath: String) async throws -> SupervisedChild {
        let command = try Command([executable] + arguments, environment: environment, directory: nil)
        let (output, error) = try ChildProcess.logDescriptors(logPath, append: true, command: command.name)
        let child = SupervisedChild()
        try await withCheckedThrowingContinuation { (started: CheckedContinuation<Void, any Error>) in
            Task.detached {
                do {
                    let result = try await Subprocess.run(
                        command.executable, arguments: command.arguments, environment: command.environment,
                        input: .none, output: .fileDescriptor(output, closeAfterSpawningProcess: true),
                        error: .fileDescriptor(error, closeAfterSpawningProcess: true)
                    ) { execution in
                        child.state.withLock { $0.phase = .running(pid: execution.processIdentifier.value) }
                        started.resume()
                        // Returning lets Subprocess wait for the exit while the child keeps running.
                    }
                    child.finish(ExitStatus.shellCode(result.terminationStatus))
                } catch {
                    // Subprocess throws only when the spawn fails, before the body ran.
                    child.finish(-1)
                    started.resume(throwing: ChildProcessError.cannotStart(command: command.name, reason: "\(error)"))
                }
            }
        }
        return child
    }

    /// The child's pid; nil once it has exited (the kernel may give the number to another process).
    public var processIdentifier: pid_t? {
        state.withLock { if case let .running(pid) = $0.phase { pid } else { nil } }
    }

    /// True until the child has exited and been reaped.
    public var isRunning: Bool { processIdentifier != nil }

    /// The exit code, or 128 + the signal that ended it; nil while it runs.
    public var exitStatus: Int32? {
        state.withLock { if case let .exited(status) = $0.phase { status } else { nil } }
    }

    /// Sends `signal` if the child still runs; a child that has exited is left alone.
    public func send(_ signal: Int32) {
        // The pid stays ours until Subprocess reaps it, just before `finish` marks it exited; the
        // window between the two is microseconds, against a pid space that wraps after millions.
        state.withLock { if case let .running(pid) = $0.phase { _ = kill(pid, signal) } }
    }

    /// Waits for the child to end and returns its ``exitStatus``.
    public func waitForExit() async -> Int32 {
        await withCheckedContinuation { waiter in
            let status: Int32? = state.withLock { state in
                if case let .exited(status) = state.phase { return status }
                state.exitWaiters.append(waiter)
                return nil
            }
            if let status { waiter.resume(returning: status) }
        }
    }

    private func finish(_ status: Int32) {
        let waiters = state.withLock { state in
            state.phase = .exited(status: status)
            defer { state.exitWaiters = [] }
            return state.exitWaiters
        }
        for waiter in waiters { waiter.resume(returning: status) }
    }
}

/// A child process could not be started.
public enum ChildProcessError: Error, CustomStringConvertible, Equatable {
    /// The program or its log file could not be opened, or the spawn failed.
    case cannotStart(command: String, reason: String)
    /// The command line is empty or its program is not an absolute path.
    case invalidCommand(String)

    public var description: String {
        switch self {
        case let .cannotStart(command, reason): "cannot start \(command): \(reason)"
        case let .invalidCommand(detail): "invalid command: \(detail)"
        }
    }
}

/// A command line turned into Subprocess's terms once.
private struct Command: Sendable {
    let name: String
    let executable: Executable
    let arguments: Arguments
    let environment: Environment
    let directory: FilePath?

    init(_ argv: [String], environment variables: [String: String], directory: String?) throws {
        guard let program = argv.first, program.hasPrefix("/") else {
            throw ChildProcessError.invalidCommand("the program must be an absolute path, got \(argv.first.map { "'\($0)'" } ?? "nothing")")
        }
        name = program
        executable = .path(FilePath(program))
        arguments = Arguments(Array(argv.dropFirst()))
        var keyed: [Environment.Key: String] = [:]
        for (key, value) in variables {
            if let key = Environment.Key(rawValue: key) { keyed[key] = value }
        }
        environment = .custom(keyed)
        self.directory = directory.map { FilePath($0) }
    }
}

/// A task executor whose jobs run on the thread that calls ``runUntilFinished()``: the thread
/// that would otherwise sit blocked lends itself to the task it waits for. Subprocess runs its
/// waiting in task groups, whose child tasks keep this preference.
private final class CallingThreadExecutor: TaskExecutor, @unchecked Sendable {
    // `jobs` and `finished` are only touched with `condition` locked (Mutex has no wait/signal).
    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []
    private var finished = false

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    func finish() {
        condition.lock()
        finished = true
        condition.signal()
        condition.unlock()
    }

    func runUntilFinished() {
        while true {
            condition.lock()
            while jobs.isEmpty && !finished { condition.wait() }
            let batch = jobs
            jobs = []
            let done = finished
            condition.unlock()
            for job in batch { job.runSynchronously(on: asUnownedTaskExecutor()) }
            if done && batch.isEmpty { return }
        }
    }
}

/// Exit statuses as a shell reports them.
enum ExitStatus {
    static func shellCode(_ status: TerminationStatus) -> Int32 {
        switch status {
        case let .exited(code): code
        case let .signaled(signal): 128 + signal
        }
    }
}
