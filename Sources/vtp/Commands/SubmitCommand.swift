import ArgumentParser
import Foundation
import VTPConcurrency
import VTPJobs
import VTPVocabulary
import VTPDatasets
import VTPSettings
import VTPCoordinator
import VTPQueue
import VTPRuntimeSupport

/// `vtp submit JOBTYPE ...`: enqueue a job into a running cluster's ledger and print its id.
struct SubmitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "submit",
        abstract: "Enqueue a job into an existing cluster (its PostgreSQL ledger) and print the job id.")

    @OptionGroup var job: JobOptions

    @Option(name: .long, help: "Configuration file (see config/vtp.toml).")
    var config: String?

    @Option(name: .long, help: "PostgreSQL URL (default: database.url of the configuration, or VTP_DATABASE_URL).")
    var database: String?

    @Flag(name: .long, help: "Print {\"job_id\": N, ...} instead of plain text.")
    var json = false

    func run() async throws {
        let settings = try ClusterSetup.settings(config)
        guard let url = try ClusterSetup.database(database, settings) else {
            throw ValidationError("no database: pass --database, set database.url in --config, or set VTP_DATABASE_URL")
        }
        let request = try job.request(settings: settings)
        let ledger = Ledger(database: url)
        try await ledger.verifySchema()
        let maxItems = settings.limits.maxJobItems
        let listing = try await BlockingWork.run(name: "vtp-list") { try request.list(maxItems: maxItems) }
        let id = try await ledger.enqueue(request.spec(labelClasses: listing.classes), listing: listing)
        let shards = (listing.itemCount + request.shardSize - 1) / request.shardSize
        if json {
            let object: [String: Any] = ["job_id": id, "items": listing.itemCount, "shards": shards,
                                         "skipped": listing.skipped.count, "output": request.output]
            print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self))
        } else {
            print("job \(id): \(listing.itemCount) items in \(shards) shards -> \(request.output)")
            for sample in listing.skipped { print("skipped \(sample.sourceId): \(sample.reason)") }
        }
    }
}
