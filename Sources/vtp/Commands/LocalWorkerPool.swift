import Foundation
import VTPConcurrency
import VTPJobs
import VTPVocabulary
import VTPQueue
#if canImport(Glibc)
import Glibc
#endif

/// The worker processes of `vtp run`: the same binary started as `vtp worker`, each logging to
/// `worker-<i>.log` in the state directory. A worker that exits while the job runs is replaced
/// (up to a limit, so a worker that cannot start does not loop forever).
final class LocalWorkerPool {
    private let arguments: [String]
    private let count: Int
    private let threads: Int
    private let jobID: Int64
    private let logDirectory: String
    private var processes: [Process?]
    private var replacements = 0

    init(arguments: [String], count: Int, threads: Int, jobID: Int64, logDirectory: String) {
        self.arguments = arguments
        self.count = count
        self.threads = threads
        self.jobID = jobID
        self.logDirectory = logDirectory
        processes = Array(repeating: nil, count: count)
    }

    func start() throws {
        for slot in 0..<count { try launch(slot) }
    }

    /// Restarts workers that exited; fails once more than `3 × count` replacements were needed.
    func replaceExited() throws {
        for slot in 0..<count {
            guard let process = processes[slot], !process.isRunning else { continue }
            replacements += 1
            guard replacements <= 3 * count else {
                throw WorkerPoolError(message: "worker processes keep exiting (last status \(process.terminationStatus)); see \(logDirectory)/worker-*.log")
            }
            printError("worker \(slot) exited with status \(process.terminationStatus); starting a new one")
            try launch(slot)
        }
    }

    /// SIGTERM to every worker (each finishes or hands back its shard), then SIGKILL after 20 s.
    func stop() async {
        let running = processes.compactMap { $0 }.filter(\.isRunning)
        for process in running { kill(process.processIdentifier, SIGTERM) }
        let deadline = ContinuousClock.now + .seconds(20)
        while running.contains(where: \.isRunning), ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(100))
        }
        for process in running where process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    private func launch(_ slot: Int) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.executablePath())
        process.arguments = arguments + ["--worker-id", "run\(jobID)-\(getpid())-\(slot)-\(replacements)"]
        var environment = ProcessInfo.processInfo.environment
        environment["OPENBLAS_NUM_THREADS"] = String(threads)
        process.environment = environment
        let logPath = logDirectory + "/worker-\(slot).log"
        if !FileManager.default.fileExists(atPath: logPath) { _ = FileManager.default.createFile(atPath: logPath, contents: nil) }
        if let log = FileHandle(forWritingAtPath: logPath) {
            log.seekToEndOfFile()
            process.standardOutput = log
            process.standardError = log
        }
        process.standardInput = FileHandle.nullDevice
        try process.run()
        processes[slot] = process
    }

    /// This very binary (so workers always match the coordinator's protocol and schema version).
    static func executablePath() -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let length = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        if length > 0 { return String(decoding: buffer[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self) }
        return CommandLine.arguments[0]
    }
}

struct WorkerPoolError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

/// The progress display of `vtp run` on stderr: one redrawn bar on a terminal, plain lines
/// (when the count changed, at most every 5 s, and at the end) otherwise.
struct ProgressRenderer {
    let interactive: Bool
    private var lastCount: Int64 = -1
    private var lastPrinted = ContinuousClock.now - .seconds(60)

    init(interactive: Bool) { self.interactive = interactive }

    mutating func show(_ progress: JobProgress) {
        let job = progress.job
        let done = job.itemsDone + job.itemsFailed
        let total = max(job.itemCount, 1)
        let rate = String(format: "%.1f items/s", progress.itemsPerSecond)
        let eta = progress.etaSeconds.map { "ETA " + Self.clock($0) } ?? "ETA --"
        let failed = job.itemsFailed > 0 ? ", \(job.itemsFailed) failed" : ""
        if interactive {
            let width = 30
            let filled = Int(Double(width) * Double(done) / Double(total))
            let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
            let line = "\r[\(bar)] \(done)/\(job.itemCount) items\(failed)  \(rate)  \(eta)  "
            FileHandle.standardError.write(Data(line.utf8))
        } else {
            let line = "progress: \(done)/\(job.itemCount) items\(failed), \(rate), \(eta)"
            guard done != lastCount, ContinuousClock.now - lastPrinted >= .seconds(5) || done == job.itemCount else { return }
            lastCount = done
            lastPrinted = .now
            printError(line)
        }
    }

    func finish() {
        if interactive { FileHandle.standardError.write(Data("\n".utf8)) }
    }

    static func clock(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) : String(format: "%d:%02d", s / 60, s % 60)
    }
}
