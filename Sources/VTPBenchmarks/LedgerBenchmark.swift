import Foundation
import Logging
import VTPQueue
import VTPVocabulary

/// Measures the ledger's coordination overhead: claims and completions per second of shards
/// that carry no work (one item each, completed immediately).
public enum LedgerBenchmark {
    /// What one run measured.
    public struct Report: Sendable, Equatable, CustomStringConvertible {
        public var shards: Int
        public var claimers: Int
        /// Seconds spent enqueueing the benchmark job.
        public var enqueueSeconds: Double
        /// Seconds from the first claim to the last completion.
        public var seconds: Double
        /// Claims plus completions per second.
        public var operationsPerSecond: Double
        /// Shards fully processed (claimed and completed) per second.
        public var shardsPerSecond: Double

        public var description: String {
            String(format: "%d shards, %d claimers: %.0f claims+completions/s (%.0f shards/s) in %.2f s; enqueue %.2f s",
                   shards, claimers, operationsPerSecond, shardsPerSecond, seconds, enqueueSeconds)
        }
    }

    /// Enqueues a job of `shards` one-item shards in `database` (which must be migrated), drains it
    /// with `claimers` concurrent connections, deletes the job and reports the rate.
    public static func run(database: String, shards: Int, claimers: Int = 4,
                           logger: Logger = Logger(label: "vtp.bench.ledger")) async throws -> Report {
        guard shards > 0 else { throw LedgerError.invalidArgument(field: "shards", expected: "at least 1") }
        guard claimers > 0 else { throw LedgerError.invalidArgument(field: "claimers", expected: "at least 1") }
        let url = try DatabaseURL(database)
        let admin = Ledger(database: url, logger: logger)
        try await admin.verifySchema()
        let items = (0..<shards).map { JobItem(ordinal: $0, sourceId: "bench-\($0)", location: .file(path: "/dev/null")) }
        let enqueueStart = ContinuousClock.now
        // Shard manifests go beside the outputs: a scratch folder, removed with the job.
        let output = NSTemporaryDirectory() + "vtp-bench-ledger-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: output) }
        let job = try await admin.enqueue(
            JobSpec(type: "ledger-benchmark", inputLocation: "none", outputLocation: output, shardSize: 1), items: items)
        let enqueueSeconds = (ContinuousClock.now - enqueueStart).benchmarkSeconds
        let start = ContinuousClock.now
        let completed = try await withThrowingTaskGroup(of: Int.self) { group in
            for claimer in 0..<claimers {
                group.addTask {
                    let ledger = Ledger(database: url, logger: logger)
                    var done = 0
                    while let shard = try await ledger.claimNextShard(owner: "bench-\(claimer)", job: job) {
                        let results = shard.items.map { ItemResult.success($0.ordinal, output: nil) }
                        if try await ledger.completeShard(shard.shard, token: shard.leaseToken, results: results) == .applied {
                            done += 1
                        }
                    }
                    return done
                }
            }
            return try await group.reduce(0, +)
        }
        let seconds = (ContinuousClock.now - start).benchmarkSeconds
        try await admin.deleteJob(job)
        guard completed == shards else {
            throw LedgerError.invalidArgument(field: "benchmark", expected: "\(shards) completions, got \(completed)")
        }
        return Report(shards: shards, claimers: claimers, enqueueSeconds: enqueueSeconds, seconds: seconds,
                      operationsPerSecond: Double(2 * shards) / seconds, shardsPerSecond: Double(shards) / seconds)
    }
}

extension Duration {
    /// The duration in seconds as a Double.
    var benchmarkSeconds: Double {
        let parts = components
        return Double(parts.seconds) + Double(parts.attoseconds) * 1e-18
    }
}
