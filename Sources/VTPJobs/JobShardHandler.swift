import Foundation
import VTPConcurrency
import VTPStorage
import VTPVocabulary

/// The product's ``ShardHandling``: executes shards with ``ShardExecutor`` (read → decode →
/// preprocess on its own threads, overlapping batched inference on a dedicated thread, atomic
/// fsync'd writes). The worker is given one, so it links none of this itself.
public struct JobShardHandler: ShardHandling {
    public let executor: ShardExecutor
    /// Told each executed shard's outcome (model load time, batch sizes), for metrics.
    public let onOutcome: (@Sendable (ShardTask, ShardOutcome) -> Void)?

    public init(executor: ShardExecutor = ShardExecutor(), onOutcome: (@Sendable (ShardTask, ShardOutcome) -> Void)? = nil) {
        self.executor = executor
        self.onOutcome = onOutcome
    }

    public func run(_ task: ShardTask, progress: @escaping @Sendable (Int) -> Void) async throws -> [ItemResult] {
        let outcome = try await executor.run(task) { done in progress(done) }
        onOutcome?(task, outcome)
        // Inference and writing are timed per shard; each written item carries its share.
        let written = Double(max(1, outcome.succeeded))
        return outcome.items.map { item in
            var result = item
            if item.status == .ok {
                result.timings += [StageTiming(stage: "infer", seconds: outcome.timings.infer / written),
                                   StageTiming(stage: "write", seconds: outcome.timings.write / written)]
            }
            return result
        }
    }
}

/// The product's ``JobFinalizing``: ``JobFinalizer`` (manifest, latent stats, FAISS index, CLIP
/// score summaries) on a thread of its own.
public struct ManifestFinalizer: JobFinalizing {
    public init() {}

    public func isFinalized(outputDirectory: String) -> Bool {
        FileManager.default.fileExists(atPath: outputDirectory + "/" + JobFinalizer.manifestFileName)
    }

    public func finalize(_ request: FinalizeRequest) async throws -> JobCounts {
        let type = try JobType(name: request.jobType)
        return try await BlockingWork.run(name: "vtp-finalize") {
            try JobFinalizer.finalize(jobType: type, parametersJSON: request.parametersJSON,
                                      outputDirectory: request.outputDirectory, modelDirectory: request.modelDirectory,
                                      shardCount: request.shardCount, listingFailures: request.listingFailures,
                                      failedShards: request.failedShards).counts
        }
    }
}
