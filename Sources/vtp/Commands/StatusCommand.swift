import ArgumentParser
import Foundation
import VTPConcurrency
import VTPJobs
import VTPVocabulary
import VTPConsole
import VTPQueue

/// Gathers what `vtp status` and `vtp top` show.
struct ClusterSnapshot {
    var status: ClusterStatus
    var workers: [WorkerSummary]

    /// Unfinished jobs (or the newest `limit` jobs of any state with `all`), their progress and the workers.
    static func read(_ ledger: Ledger, cluster: ClusterOptions, all: Bool, limit: Int) async throws -> ClusterSnapshot {
        try await cluster.ledgerCall(ledger) { ledger in
            let now = try await ledger.databaseTime()
            let jobs = try await ledger.listJobs(limit: all ? limit : max(limit, 1000))
                .filter { all || !$0.state.isFinished }
                .prefix(limit)
            var statuses: [JobStatus] = []
            for job in jobs.reversed() {  // oldest first, as a queue reads
                statuses.append(JobStatus(try await ledger.progress(job: job.id)))
            }
            let workers = try await ledger.listWorkers().map { WorkerSummary($0, now: now) }
            let rate = try await ledger.clusterItemsPerSecond(windowSeconds: 60)
            return ClusterSnapshot(status: ClusterStatus(now: now, jobs: statuses, workers: workers, itemsPerSecond: rate),
                                   workers: workers)
        }
    }
}

/// `vtp status`: active jobs with progress, rate, ETA and failures; worker counts.
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show active jobs: progress, items/s over the last minute, ETA and failures.",
        discussion: """
            JSON (--json): {"generated_at", "items_per_second", "workers": {"total", "idle", "busy", "draining", \
            "offline"}, "jobs": [{"job": {…as in `vtp jobs`}, "progress", "items_per_second", "eta_seconds", \
            "shard_states"}]}
            """)

    @OptionGroup var cluster: ClusterOptions

    @Flag(name: .long, help: "Include finished jobs.")
    var all = false

    @Option(name: .long, parsing: .unconditional, help: "Most jobs to show.")
    var limit = 50

    func validate() throws {
        guard limit >= 1 else { throw ValidationError("--limit must be at least 1") }
    }

    func run() async throws {
        let snapshot = try await cluster.withLedger { ledger in
            try await ClusterSnapshot.read(ledger, cluster: cluster, all: all, limit: limit)
        }
        try cluster.emit(snapshot.status) { ConsoleRenderer.status(snapshot.status) }
    }
}

/// `vtp top`: `status` and `workers`, redrawn until Ctrl-C.
struct TopCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "top",
        abstract: "Live view of jobs and workers, refreshed until Ctrl-C.")

    @OptionGroup var cluster: ClusterOptions

    @Option(name: .long, parsing: .unconditional, help: "Seconds between refreshes.")
    var interval: Double = 2

    @Option(name: .long, parsing: .unconditional, help: "Stop after this many refreshes (default: until Ctrl-C).")
    var iterations: Int?

    @Flag(name: .long, help: "Include finished jobs.")
    var all = false

    func validate() throws {
        guard interval >= 0.1, interval.isFinite else { throw ValidationError("--interval must be at least 0.1 seconds") }
        if let iterations, iterations < 1 { throw ValidationError("--iterations must be at least 1") }
        if cluster.json { throw ValidationError("vtp top is interactive; use `vtp status --json` for scripts") }
    }

    func run() async throws {
        // Checks the ledger is reachable before the screen switches.
        try await cluster.withLedger { _ in }
        let terminal = LiveTerminal()
        terminal.enter()
        defer { terminal.leave() }
        var frame = 0
        while iterations.map({ frame < $0 }) ?? true {
            // Opened per frame: a stopped run's private server is up only for the read, so a
            // `vtp run` started meanwhile never waits long for it.
            let snapshot = try await cluster.withLedger { ledger in
                try await ClusterSnapshot.read(ledger, cluster: cluster, all: all, limit: 50)
            }
            terminal.draw(ConsoleRenderer.topScreen(status: snapshot.status, workers: snapshot.workers))
            frame += 1
            if let iterations, frame >= iterations { break }
            try await Task.sleep(for: .seconds(interval))
        }
    }
}

/// The alternate screen, restored however `vtp top` ends: normal return, error or SIGINT/SIGTERM.
final class LiveTerminal {
    private let signalSources: [any DispatchSourceSignal]

    init() {
        var sources: [any DispatchSourceSignal] = []
        for number in [SIGINT, SIGTERM] {
            // Take the signal from its default action (immediate death with the screen switched).
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                LiveTerminal.write(TerminalControl.leave)
                exit(0)
            }
            source.resume()
            sources.append(source)
        }
        signalSources = sources
    }

    func enter() { Self.write(TerminalControl.enter) }
    func leave() { Self.write(TerminalControl.leave) }
    /// One write per frame, so the terminal never shows half a frame; clipped to the window.
    func draw(_ screen: String) {
        let size = Self.windowSize()
        Self.write(TerminalControl.redraw + TerminalControl.fit(screen, columns: size?.columns, rows: size?.rows))
    }

    /// The terminal's size, or nil when stdout is not a terminal.
    static func windowSize() -> (columns: Int, rows: Int)? {
        var size = winsize()
        guard ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 else { return nil }
        return (Int(size.ws_col), Int(size.ws_row))
    }

    static func write(_ text: String) {
        FileHandle.standardOutput.write(Data(text.utf8))
    }

    deinit {
        for source in signalSources { source.cancel() }
    }
}
