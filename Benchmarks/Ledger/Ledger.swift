import Benchmark
import Foundation
import Logging
import Synchronization
import VTPBenchmarkSupport
import VTPBenchmarks
import VTPQueue

// The ledger's coordination overhead: claims and completions of one-item shards that carry no
// work, against a throwaway PostgreSQL the suite starts itself (fsync off, in a temporary
// directory, as `vtp bench ledger` does), with 1 and 4 concurrent claiming connections.
// Baseline, measured in the same run on the same server: one bare query round trip (the schema
// version read every ledger connection starts with), so the ratio is what one claim or
// completion costs in round trips' worth of time, per connection.

/// The suite's PostgreSQL, started by a benchmark's setup and stopped by its teardown.
final class Server: Sendable {
    static let shared = Server()
    private let running = Mutex<EmbeddedPostgres?>(nil)

    func start() async throws {
        let server = try EmbeddedPostgres.temporary()
        try await server.start()
        // Quiet: the migrations' info lines would land between the suite's results.
        var quiet = Logger(label: "vtp.bench.db")
        quiet.logLevel = .warning
        _ = try await Migrator.migrate(database: server.databaseURL, logger: quiet)
        running.withLock { $0 = server }
    }

    var connectionURL: String {
        guard let server = running.withLock({ $0 }) else { fatalError("Ledger suite: the server was not started") }
        return server.connectionURL
    }

    func stop() async throws {
        let server = running.withLock { value -> EmbeddedPostgres? in
            defer { value = nil }
            return value
        }
        try await server?.stop()
    }
}

enum LedgerMetrics {
    static let operationsPerSecond = BenchmarkMetric.custom("claims+completions/s", polarity: .prefersLarger, useScalingFactor: false)
}

let benchmarks: @Sendable () -> Void = {
    let shards = 500
    let comparisons = SameRunBaselines()
    for claimers in [1, 4] {
        let name = "claim + complete \(shards) shards, \(claimers) claimer(s)"
        Benchmark(name, configuration: .init(metrics: [.wallClock, .throughput, LedgerMetrics.operationsPerSecond],
                                             warmupIterations: 1, maxDuration: .seconds(10), maxIterations: 10)) { benchmark in
            let url = Server.shared.connectionURL
            let comparison = try await comparisons.comparison(name) {
                let ledger = Ledger(database: try DatabaseURL(url))
                return try await SameRunBaseline("one claim or completion (\(claimers) connection(s))",
                                                 against: "one bare query round trip", runs: 200) {
                    try await ledger.verifySchema()
                }
            }
            benchmark.startMeasurement()
            let report = try await LedgerBenchmark.run(database: url, shards: shards, claimers: claimers)
            benchmark.stopMeasurement()
            // Each connection claims and completes one after the other, so one operation takes
            // the drain time over the operations each connection did.
            comparison.record(seconds: report.seconds / (Double(2 * shards) / Double(claimers)))
            benchmark.measurement(LedgerMetrics.operationsPerSecond, Int(report.operationsPerSecond))
        } setup: {
            try await Server.shared.start()
        } teardown: {
            comparisons.printReport(name)
            try await Server.shared.stop()
        }
    }
}
