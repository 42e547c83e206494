import Foundation
import VTPQueue

/// The progress display of `vtp run` on stderr: one redrawn bar on a terminal, plain lines
/// (when the count changed, at most every 5 s, and at the end) otherwise.
struct ProgressRenderer {
    let interactive: Bool
    private var lastCount: Int64 = -1
    private var lastPrinted = ContinuousClock.now - .seconds(60)

    init(interactive: Bool) { self.interactive = interactive }

    mutating func show(_ progress: JobProgress) {
        let job = progress.job
        // Items of running shards count as they are reported, so the bar moves per batch.
        let done = min(job.itemCount, job.itemsDone + job.itemsFailed + progress.itemsInProgress)
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
