import Foundation

/// Human-readable text for the monitoring commands, built from the same views as `--json`.
public enum ConsoleRenderer {
    /// `vtp jobs`.
    public static func jobsTable(_ jobs: [JobSummary]) -> String {
        guard !jobs.isEmpty else { return "no jobs\n" }
        var table = TextTable(headers: ["ID", "TYPE", "STATE", "PRI", "ITEMS", "DONE", "FAILED", "CREATED"],
                              alignments: [.right, .left, .left, .right, .right, .right, .right, .left])
        for job in jobs {
            table.append([String(job.id), job.type, job.state, String(job.priority), HumanFormat.count(job.items.total),
                          HumanFormat.count(job.items.done), HumanFormat.count(job.items.failed), job.createdAt])
        }
        return table.render()
    }

    /// `vtp status`: one line per job with a progress bar, rate, ETA and failures, then the workers.
    public static func status(_ status: ClusterStatus, barWidth: Int = 20, style: ProgressBar.Style = .unicode) -> String {
        var out = ""
        if status.jobs.isEmpty {
            out += "no active jobs\n"
        } else {
            var table = TextTable(headers: ["ID", "TYPE", "STATE", "PROGRESS", "", "ITEMS", "RATE", "ETA", "FAILED"],
                                  alignments: [.right, .left, .left, .left, .right, .right, .right, .right, .right])
            for entry in status.jobs {
                let job = entry.job
                table.append([String(job.id), job.type, job.state,
                              ProgressBar.render(fraction: entry.progress, width: barWidth, style: style),
                              HumanFormat.percent(entry.progress),
                              "\(HumanFormat.count(job.items.done + job.items.failed))/\(HumanFormat.count(job.items.total))",
                              HumanFormat.rate(entry.itemsPerSecond), HumanFormat.duration(entry.etaSeconds),
                              HumanFormat.count(job.items.failed)])
            }
            out += table.render()
        }
        let w = status.workers
        out += "\nworkers: \(w["total"] ?? 0) (\(w["busy"] ?? 0) busy, \(w["idle"] ?? 0) idle, "
            + "\(w["draining"] ?? 0) draining, \(w["offline"] ?? 0) offline)"
            + "  cluster: \(HumanFormat.rate(status.itemsPerSecond)) over the last minute\n"
        return out
    }

    /// `vtp job show`.
    public static func jobDetail(_ status: JobStatus, barWidth: Int = 30, style: ProgressBar.Style = .unicode) -> String {
        let job = status.job
        var lines = [
            "job \(job.id): \(job.type) (\(job.state))",
            "  progress   \(ProgressBar.render(fraction: status.progress, width: barWidth, style: style)) \(HumanFormat.percent(status.progress))",
            "  items      \(HumanFormat.count(job.items.done)) done, \(HumanFormat.count(job.items.failed)) failed, "
                + "\(HumanFormat.count(job.items.pending ?? 0)) pending of \(HumanFormat.count(job.items.total))",
            "  shards     " + (status.shardStates.isEmpty ? "none"
                : status.shardStates.keys.sorted().map { "\($0) \(status.shardStates[$0]!)" }.joined(separator: ", "))
                + " (of \(job.shards.total))",
            "  rate       \(HumanFormat.rate(status.itemsPerSecond)) over the last minute, ETA \(HumanFormat.duration(status.etaSeconds))",
            "  model      \(job.model ?? "-")",
            "  input      \(job.input)",
            "  output     \(job.output)",
            "  priority   \(job.priority), up to \(job.maxAttempts) attempts per shard",
            "  rejected   \(job.rejectedCompletions) late or duplicate completions",
            "  created    \(job.createdAt)",
            "  started    \(job.startedAt ?? "-")",
            "  finished   \(job.finishedAt ?? "-")",
        ]
        if let error = job.error { lines.insert("  error      \(error)", at: 1) }
        if let parameters = status.parameters { lines.append("  parameters \(parameters)") }
        return lines.joined(separator: "\n") + "\n"
    }

    /// `vtp workers`.
    public static func workersTable(_ workers: [WorkerSummary]) -> String {
        guard !workers.isEmpty else { return "no workers registered\n" }
        var table = TextTable(headers: ["WORKER", "HOST", "STATE", "SHARD", "HEARTBEAT", "IMAGES/S", "MEMORY", "DONE", "FAILED"],
                              alignments: [.left, .left, .left, .left, .right, .right, .right, .right, .right])
        for worker in workers {
            let shard = worker.currentJob.map { job in "\(job)/\(worker.currentShard.map(String.init) ?? "?")" } ?? "-"
            table.append([worker.id, worker.host, worker.state, shard, HumanFormat.duration(worker.heartbeatAgeSeconds) + " ago",
                          HumanFormat.rate(worker.imagesPerSecond).replacingOccurrences(of: "/s", with: ""),
                          HumanFormat.bytes(worker.memoryBytes), HumanFormat.count(worker.itemsDone),
                          HumanFormat.count(worker.itemsFailed)])
        }
        return table.render()
    }

    /// `vtp failures`: one row per failed item, errors cut to `errorWidth` characters, and the
    /// command for the next page.
    public static func failuresTable(_ page: FailurePage, errorWidth: Int = 80) -> String {
        guard !page.failures.isEmpty else { return "job \(page.job): no failed items\n" }
        var table = TextTable(headers: ["ITEM", "SOURCE", "PATH", "ERROR"], alignments: [.right, .left, .left, .left])
        for entry in page.failures {
            table.append([String(entry.ordinal), entry.sourceID, entry.path, truncate(oneLine(entry.error), to: errorWidth)])
        }
        var out = table.render()
        if let next = page.nextAfter {
            out += "more failures: vtp failures \(page.job) --after \(next)\n"
        }
        return out
    }

    /// The full `vtp top` screen: a clock line, the status and the workers.
    public static func topScreen(status: ClusterStatus, workers: [WorkerSummary], style: ProgressBar.Style = .unicode) -> String {
        "vtp top — \(status.generatedAt)  (Ctrl-C to quit)\n\n" + Self.status(status, style: style) + "\n"
            + workersTable(workers)
    }

    static func oneLine(_ text: String) -> String {
        text.replacingOccurrences(of: "\r", with: " ").replacingOccurrences(of: "\n", with: " ")
    }

    static func truncate(_ text: String, to width: Int) -> String {
        guard text.count > width, width > 1 else { return text }
        return String(text.prefix(width - 1)) + "…"
    }
}

/// ANSI sequences for the live view.
public enum TerminalControl {
    /// Switch to the alternate screen and hide the cursor.
    public static let enter = "\u{1B}[?1049h\u{1B}[?25l"
    /// Show the cursor and return to the normal screen.
    public static let leave = "\u{1B}[?25h\u{1B}[?1049l"
    /// Cursor home and clear the screen, before each redraw.
    public static let redraw = "\u{1B}[H\u{1B}[2J"

    /// Clips a screen to the terminal: lines longer than `columns` are cut (a wrapped line would
    /// scroll the frame), and lines past `rows` dropped. Nil dimensions leave that axis alone.
    public static func fit(_ screen: String, columns: Int?, rows: Int?) -> String {
        var lines = screen.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let endsWithNewline = lines.last == ""
        if endsWithNewline { lines.removeLast() }
        if let columns, columns > 0 {
            lines = lines.map { $0.count > columns ? String($0.prefix(columns)) : $0 }
        }
        if let rows, rows > 0, lines.count > rows {
            // Keep the cursor's line free so the terminal does not scroll.
            lines = Array(lines.prefix(max(1, rows - 1)))
        }
        return lines.joined(separator: "\n") + (endsWithNewline ? "\n" : "")
    }
}
