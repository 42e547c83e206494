import Foundation
import VTPConcurrency
import VTPJobs
import VTPVocabulary
import Logging
import VTPCoordinator
import VTPMetrics
import CoreMetrics
import VTPQueue

/// Feeds the coordinator's observations into the Prometheus metrics of `VTPMetrics`, and polls the
/// ledger for what only it knows (queue depth, items per second).
struct CoordinatorMetricsBridge: CoordinatorObserver {
    let metrics: CoordinatorMetrics

    func observe(_ observation: CoordinatorObservation) {
        switch observation {
        case let .workers(count):
            metrics.workers.record(count)
        case let .shardsInFlight(count):
            metrics.shardsInFlight.record(count)
        case let .shardRecorded(outcome, ok, failed):
            switch outcome {
            case .applied:
                metrics.shardsCompleted.increment()
                metrics.itemsProcessed.increment(by: ok)
                metrics.itemsFailed.increment(by: failed)
            case .duplicate, .leaseLost, .unknownShard:
                metrics.lateCompletionsRejected.increment()
            case .requeued, .failed, .jobFailed:
                break
            }
        case let .workersCrashed(count):
            metrics.workersCrashed.increment(by: count)
        case let .isolatedAssignments(count):
            metrics.isolatedAssignments.increment(by: count)
        case let .jobsFailed(count):
            metrics.jobsFailed.increment(by: count)
        case let .leasesExpired(count):
            metrics.leaseExpiries.increment(by: count)
        case let .stage(name, seconds):
            if let stage = CoordinatorMetrics.Stage(rawValue: name) { metrics.stageDuration(stage).record(seconds) }
        }
    }

    /// Updates the queue-depth and throughput gauges from the ledger every `interval` until cancelled.
    func pollLedger(_ ledger: Ledger, every interval: Duration = .seconds(5), logger: Logger) async {
        while !Task.isCancelled {
            do {
                var pending = 0
                var rate = 0.0
                for job in try await ledger.listJobs(limit: 1000) where !job.state.isFinished {
                    let progress = try await ledger.progress(job: job.id)
                    pending += progress.shards[.pending] ?? 0
                    rate += progress.itemsPerSecond
                }
                metrics.queueDepth.record(pending)
                metrics.itemsPerSecond.record(rate)
            } catch {
                logger.warning("metrics: cannot read the ledger: \(error)")
            }
            try? await Task.sleep(for: interval)
        }
    }
}
