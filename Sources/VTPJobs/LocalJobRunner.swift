import Foundation
import VTPConcurrency
import VTPVocabulary
import VTPDatasets
import VTPStorage

/// Everything a local run produced.
public struct LocalJobResult: Sendable {
    /// The finalized manifest.
    public var manifest: RunManifest
    /// Per-shard outcomes in shard order.
    public var shards: [ShardOutcome]
    /// The listing the run used.
    public var listing: DatasetListing
    /// Seconds from listing to finalization.
    public var wallSeconds: Double
}

/// Progress of a local run: items done (written or failed) out of the total.
public struct LocalJobProgress: Sendable, Equatable {
    public var itemsDone: Int
    public var itemsTotal: Int

    public init(itemsDone: Int, itemsTotal: Int) {
        self.itemsDone = itemsDone
        self.itemsTotal = itemsTotal
    }
}

/// Runs a whole job in-process: list the input, cut it into shards, execute each shard in order
/// with one ``ShardExecutor`` and finalize. Used by tests and as a single-machine fallback; it
/// prints nothing (progress goes to the callback).
public enum LocalJobRunner {
    /// Runs `parameters` over `input` into `output` with the model at `model`, in shards of
    /// `shardSize` items. All blocking work happens on a dedicated thread.
    public static func run(input: String, output: String, model: String, parameters: JobParameters, shardSize: Int,
                           jobId: Int64 = 0, executor: ShardExecutor = ShardExecutor(),
                           progress: (@Sendable (LocalJobProgress) -> Void)? = nil) async throws -> LocalJobResult {
        try await BlockingWork.run(name: "vtp-local-run") {
            try runBlocking(input: input, output: output, model: model, parameters: parameters, shardSize: shardSize,
                            jobId: jobId, executor: executor, progress: progress)
        }
    }

    /// ``run(input:output:model:parameters:shardSize:jobId:executor:progress:)`` on the calling thread.
    public static func runBlocking(input: String, output: String, model: String, parameters: JobParameters, shardSize: Int,
                                   jobId: Int64 = 0, executor: ShardExecutor = ShardExecutor(),
                                   progress: (@Sendable (LocalJobProgress) -> Void)? = nil) throws -> LocalJobResult {
        let start = ContinuousClock.now
        let listing = try DatasetSource.enumerate(input: input)
        let plan: ShardPlan
        do { plan = try ShardPlan(itemCount: listing.items.count, shardSize: shardSize) } catch {
            throw JobError.invalidParameter(field: "shard_size", detail: "\(error)")
        }
        let json = parameters.json()
        var outcomes: [ShardOutcome] = []
        let total = listing.items.count
        for (index, range) in plan.ranges.enumerated() {
            let task = ShardTask(jobId: jobId, shardIndex: index, jobType: parameters.jobType, parametersJSON: json,
                                 modelDirectory: model, outputDirectory: output, items: Array(listing.items[range]))
            let base = range.lowerBound
            outcomes.append(try executor.execute(task) { done in progress?(LocalJobProgress(itemsDone: base + done, itemsTotal: total)) })
        }
        let manifest = try JobFinalizer.finalize(
            jobType: parameters.jobType, parametersJSON: json, outputDirectory: output, modelDirectory: model,
            shardCount: plan.shardCount,
            listingFailures: listing.skipped.map { RunManifest.Failure(sourceId: $0.sourceId, reason: $0.reason) })
        return LocalJobResult(manifest: manifest, shards: outcomes, listing: listing,
                              wallSeconds: (ContinuousClock.now - start).seconds)
    }
}
