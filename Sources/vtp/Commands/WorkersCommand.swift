import ArgumentParser
import Foundation
import VTPConcurrency
import VTPJobs
import VTPVocabulary
import VTPConsole
import VTPQueue

/// `vtp workers`: every registered worker.
struct WorkersCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "workers",
        abstract: "List workers: host, state, current shard, heartbeat age, images/s and memory.",
        discussion: """
            JSON (--json): {"workers": [{"id", "host", "state", "current_job", "current_shard", \
            "heartbeat_age_seconds", "images_per_second", "memory_bytes", "items_done", "items_failed", \
            "registered_at", "last_heartbeat"}]}
            """)

    @OptionGroup var cluster: ClusterOptions

    func run() async throws {
        let workers = try await cluster.withLedger { ledger in
            try await cluster.ledgerCall(ledger) { ledger in
                let now = try await ledger.databaseTime()
                return try await ledger.listWorkers().map { WorkerSummary($0, now: now) }
            }
        }
        try cluster.emit(WorkerList(workers: workers)) { ConsoleRenderer.workersTable(workers) }
    }
}
