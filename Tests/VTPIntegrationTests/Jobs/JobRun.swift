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

/// One item as the ledger recorded it at the end of a run: what the workers reported for it over
/// the wire (or, for shard -1, a sample the listing skipped).
struct LedgerItem: Equatable, Sendable {
    var ordinal: Int
    var shardIndex: Int
    var sourceId: String
    /// The encoded ``ItemLocation`` the worker read.
    var location: String
    /// `done` or `failed` (`pending` would mean the job never finished).
    var state: String
    var outputLocation: String?
    var error: String?
}

/// What a job run the way `vtp run` runs it left behind, read back from the ledger and the
/// output directory.
struct JobRun {
    var report: LocalRun.Report
    /// `manifest.json` as the coordinator's finalizer wrote it.
    var manifest: RunManifest
    /// Every item of the job in ordinal order, listing failures included.
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
            let rows = try await Ledger(database: url).sql("""
                SELECT json_build_array(ordinal, shard_index, source_id, path, state, output_location, error)::text
                FROM items WHERE job_id = $1 ORDER BY ordinal
                """, [String(report.jobID)])
            return JobRun(report: report, manifest: try RunManifest.read(output + "/" + JobFinalizer.manifestFileName),
                          items: try rows.map(Self.item), progress: progress.withLock { $0 })
        }
    }

    private static func item(_ row: String?) throws -> LedgerItem {
        let fields = try #require(try JSONSerialization.jsonObject(with: Data((row ?? "").utf8)) as? [Any])
        return LedgerItem(ordinal: (fields[0] as? NSNumber)?.intValue ?? -1, shardIndex: (fields[1] as? NSNumber)?.intValue ?? -2,
                          sourceId: fields[2] as? String ?? "", location: fields[3] as? String ?? "",
                          state: fields[4] as? String ?? "", outputLocation: fields[5] as? String, error: fields[6] as? String)
    }
}
