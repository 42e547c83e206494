import Foundation
import Synchronization
import Testing
import VTPCoordinator
import VTPJobs
import VTPLocalRun
@testable import VTPQueue
import VTPStorage
import VTPTestSupport
import VTPVocabulary

/// One item as the run left it: what the ledger records of it (``RecordedItem``: its shard, its
/// outcome; `pending` would mean the job never finished) and, for a done item, the output row its
/// shard's summary gives it. The recorded fields read as the item's own (`item.state`).
@dynamicMemberLookup
struct LedgerItem: Equatable, Sendable {
    var recorded: RecordedItem
    var outputLocation: String?

    subscript<Value>(dynamicMember field: KeyPath<RecordedItem, Value>) -> Value { recorded[keyPath: field] }
}

/// What a job run the way `vtp run` runs it left behind, read back from the ledger and the
/// output directory.
struct JobRun {
    var report: LocalRun.Report
    /// `manifest.json` as the coordinator's finalizer wrote it.
    var manifest: RunManifest
    /// Every item of the job in ordinal order, listing failures included (``Ledger/recordedItems(job:)``).
    var items: [LedgerItem]
    /// The progress events of the run, in order.
    var progress: [JobProgress]

    /// Items the listing produced (the shards' items), in ordinal order.
    var listed: [LedgerItem] { items.filter { $0.shardIndex >= 0 } }

    /// Runs `parameters` over `input` into `output` through ``LocalRun``, the library behind
    /// `vtp run`: the ledger is a fresh database on the shared test PostgreSQL, the coordinator
    /// binds an ipc endpoint, and `workers` in-process workers (real `Worker`s over real ZeroMQ
    /// sockets) execute the shards with the product's `JobShardHandler`; the coordinator runs the
    /// product's `ManifestFinalizer`. Returns once the job is finalized.
    static func run(input: String, output: String, model: String, parameters: JobParameters, shardSize: Int,
                    workers: Int = 1, maxAttempts: Int32 = 3) async throws -> JobRun {
        let state = try TemporaryDirectory("run-state")
        defer { state.remove() }
        return try await SharedPostgres.withDatabase(migrate: false) { url, _ in
            let request = JobRequest(parameters: parameters, input: input, output: output, model: model, shardSize: shardSize,
                                     maxAttempts: maxAttempts)
            let local = LocalRun(request: request, finalizer: ManifestFinalizer(),
                                 workers: .inProcess(handler: JobShardHandler(), count: workers),
                                 stateDirectory: state.path, database: url,
                                 leasePolicy: LeasePolicy(leaseSeconds: 15, backoffBaseSeconds: 0, backoffCapSeconds: 0))
            let progress = Mutex<[JobProgress]>([])
            let report = try await local.run { event in
                if case let .progress(value) = event { progress.withLock { $0.append(value) } }
            }
            #expect(!report.interrupted)
            let finalize = try #require(report.finalize, "the run ended without finalizing its job")
            if case let .failed(reason) = finalize { Issue.record("finalizer failed: \(reason)") }
            let recorded = try await Ledger(database: url).recordedItems(job: report.jobID)
            return JobRun(report: report, manifest: try RunManifest.read(output + "/" + JobFinalizer.manifestFileName),
                          items: try Self.items(recorded, output: output), progress: progress.withLock { $0 })
        }
    }

    /// The recorded items with the output location each done item has: the ledger keeps none
    /// (migration 0007), so it comes from the shard's summary, as `<tensor file>#<row>` with rows
    /// in ordinal order over the shard's done items, as the worker wrote them.
    private static func items(_ recorded: [RecordedItem], output: String) throws -> [LedgerItem] {
        var summaries: [Int: ShardSummary] = [:]
        var rowsUsed: [Int: Int] = [:]
        return try recorded.map { item in
            var outputLocation: String?
            if item.state == "done" {
                if summaries[item.shardIndex] == nil {
                    summaries[item.shardIndex] = try ShardSummary.read(output + "/" + ShardSummary.fileName(shard: item.shardIndex))
                }
                let row = rowsUsed[item.shardIndex, default: 0]
                rowsUsed[item.shardIndex] = row + 1
                outputLocation = summaries[item.shardIndex]?.written.map { "\($0.fileName)#\(row)" }
            }
            return LedgerItem(recorded: item, outputLocation: outputLocation)
        }
    }
}
