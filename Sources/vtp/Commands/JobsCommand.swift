import ArgumentParser
import Foundation
import VTPConcurrency
import VTPJobs
import VTPVocabulary
import VTPConsole
import VTPQueue

/// `vtp jobs`: all jobs, newest first.
struct JobsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "jobs",
        abstract: "List jobs, newest first.",
        discussion: """
            JSON (--json): {"jobs": [{"id", "type", "state", "priority", "model", "input", "output", "max_attempts", \
            "shards": {"total", "done", "failed"}, "items": {"total", "done", "failed", "pending"}, \
            "rejected_completions", "created_at", "started_at", "finished_at"}]}
            """)

    @OptionGroup var cluster: ClusterOptions

    @Option(name: .long, parsing: .unconditional, help: "Most jobs to list.")
    var limit = 100

    func validate() throws {
        guard limit >= 1 else { throw ValidationError("--limit must be at least 1") }
    }

    func run() async throws {
        let jobs = try await cluster.withLedger { ledger in
            try await cluster.ledgerCall(ledger) { try await $0.listJobs(limit: limit) }.map(JobSummary.init)
        }
        try cluster.emit(JobList(jobs: jobs)) { ConsoleRenderer.jobsTable(jobs) }
    }
}

/// `vtp job show|cancel|pause|resume|retry ID`.
struct JobCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "job",
        abstract: "Inspect or control one job.",
        subcommands: [Show.self, Cancel.self, Pause.self, Resume.self, Retry.self])

    /// `vtp job show ID`
    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show one job's progress, shards, rate, ETA and settings.",
            discussion: "JSON (--json): one entry of `vtp status --json`, plus \"parameters\" (the job's parameters as JSON text).")

        @OptionGroup var cluster: ClusterOptions
        @Argument(help: "Job id.") var id: Int64

        func run() async throws {
            let status = try await cluster.withLedger { ledger in
                JobStatus(try await cluster.ledgerCall(ledger) { try await $0.progress(job: id) }, includeParameters: true)
            }
            try cluster.emit(status) { ConsoleRenderer.jobDetail(status) }
        }
    }

    /// `vtp job cancel ID`
    struct Cancel: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Cancel a job: no more shards are handed out and outstanding leases are revoked.",
            discussion: JobCommand.controlJSON)
        @OptionGroup var cluster: ClusterOptions
        @Argument(help: "Job id.") var id: Int64
        func run() async throws { try await JobCommand.control(cluster, id, "cancel") { try await $0.cancel(job: id) } }
    }

    /// `vtp job pause ID`
    struct Pause: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Pause a job: pending shards are held back; leased shards may still finish.",
            discussion: JobCommand.controlJSON)
        @OptionGroup var cluster: ClusterOptions
        @Argument(help: "Job id.") var id: Int64
        func run() async throws { try await JobCommand.control(cluster, id, "pause") { try await $0.pause(job: id) } }
    }

    /// `vtp job resume ID`
    struct Resume: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Resume a paused job.", discussion: JobCommand.controlJSON)
        @OptionGroup var cluster: ClusterOptions
        @Argument(help: "Job id.") var id: Int64
        func run() async throws { try await JobCommand.control(cluster, id, "resume") { try await $0.resume(job: id) } }
    }

    /// `vtp job retry ID`
    struct Retry: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Re-run, with fresh attempts, every shard that failed or has failed items (all of its items: shard outputs are rewritten whole).",
            discussion: JobCommand.controlJSON)
        @OptionGroup var cluster: ClusterOptions
        @Argument(help: "Job id.") var id: Int64
        func run() async throws {
            let (reset, job) = try await cluster.withLedger(writable: true) { ledger in
                try await cluster.ledgerCall(ledger) { ledger in
                    let reset = try await ledger.retryFailed(job: id)
                    return (reset, try await ledger.job(id))
                }
            }
            let result = ControlResult(job: id, action: "retry", state: job.state.rawValue, itemsReset: reset)
            try cluster.emit(result) { "job \(id): \(reset) item(s) of failed shards requeued; state \(job.state.rawValue)\n" }
        }
    }

    static let controlJSON = #"JSON (--json): {"job", "action", "state" (after the action), "items_reset" (retry only, else null)}"#

    static func control(_ cluster: ClusterOptions, _ id: Int64, _ action: String,
                        _ body: (Ledger) async throws -> Void) async throws {
        let job = try await cluster.withLedger(writable: true) { ledger in
            try await cluster.ledgerCall(ledger) { ledger in
                try await body(ledger)
                return try await ledger.job(id)
            }
        }
        let result = ControlResult(job: id, action: action, state: job.state.rawValue)
        try cluster.emit(result) { "job \(id): \(action) done; state \(job.state.rawValue)\n" }
    }
}

/// `vtp failures ID`: failed items, a page at a time.
struct FailuresCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "failures",
        abstract: "List a job's failed items (item, source, error), a page at a time.",
        discussion: """
            JSON (--json): {"job", "failures": [{"ordinal", "source_id", "path", "error"}], "next_after"} where \
            next_after is the --after value of the next page, or null on the last page.
            """)

    @OptionGroup var cluster: ClusterOptions
    @Argument(help: "Job id.") var id: Int64

    @Option(name: .long, parsing: .unconditional, help: "Most failures per page.")
    var limit = 50

    @Option(name: .long, parsing: .unconditional, help: "Start after this item ordinal (from the previous page).")
    var after: Int64 = -1

    func validate() throws {
        guard limit >= 1 else { throw ValidationError("--limit must be at least 1") }
    }

    func run() async throws {
        let rows = try await cluster.withLedger { ledger in
            try await cluster.ledgerCall(ledger) { ledger in
                _ = try await ledger.job(id)  // an unknown id is an error, not an empty list
                // One extra row tells whether another page follows.
                return try await ledger.failures(job: id, limit: limit + 1, afterOrdinal: after)
            }
        }
        let page = Array(rows.prefix(limit))
        let result = FailurePage(job: id, failures: page, nextAfter: rows.count > limit ? page.last?.ordinal : nil)
        try cluster.emit(result) { ConsoleRenderer.failuresTable(result) }
    }
}
