import CoreMetrics
import VTPJobs
import VTPMetrics
import VTPVocabulary
import VTPWorker

/// Feeds a worker's observations (shards resolved, busy, memory) and its executor's shard
/// outcomes (model loads, batch sizes) into the Prometheus metrics of `VTPMetrics`.
struct WorkerMetricsBridge: WorkerObserver {
    let metrics: WorkerMetrics

    func observe(_ observation: WorkerObservation) {
        switch observation {
        case let .shardCompleted(jobType, results):
            metrics.shardsCompleted(jobType: jobType).increment()
            let failed = results.filter { $0.status != .ok }.count
            metrics.itemsProcessed(jobType: jobType).increment(by: results.count - failed)
            metrics.itemsFailed(jobType: jobType).increment(by: failed)
            // The same per-item timings the coordinator receives in the result.
            var recorders: [WorkerMetrics.Stage: Recorder] = [:]
            for result in results {
                for timing in result.timings {
                    guard let stage = WorkerMetrics.Stage(rawValue: timing.stage) else { continue }
                    let recorder = recorders[stage] ?? metrics.stageDuration(stage, jobType: jobType)
                    recorders[stage] = recorder
                    recorder.record(timing.seconds)
                }
            }
        case let .shardFailed(jobType):
            metrics.shardsFailed(jobType: jobType).increment()
        case let .shardHandedBack(jobType):
            metrics.shardsHandedBack(jobType: jobType).increment()
        case let .busy(busy):
            metrics.busy.record(busy ? 1 : 0)
        case let .residentMemory(bytes):
            metrics.residentMemory.record(Int64(clamping: bytes))
        }
    }

    /// For ``JobShardHandler/onOutcome``: what only the executor knows.
    func observe(_ task: ShardTask, _ outcome: ShardOutcome) {
        if let seconds = outcome.modelLoadSeconds { metrics.modelLoad.record(seconds) }
        let batches = metrics.batchSize(jobType: task.jobType.rawValue)
        for size in outcome.batchSizes { batches.record(size) }
    }
}
