import Foundation
import Testing
import VTPBenchmarks
import VTPQueue
import VTPTestSupport

/// `vtp bench scale`'s road end to end: a `vtp coordinator` process, the shared test PostgreSQL
/// and simulated workers on real DEALER sockets. Timings are printed, never asserted.
@Suite("Simulated cluster benchmark")
struct ScaleBenchTests {
    @Test func twentyWorkersCompleteEveryItemExactlyOnce() async throws {
        try await SharedPostgres.withDatabase { url, connection in
            let options = ScaleBenchmark.Options(workers: 20, items: 2000, itemMilliseconds: 1, shardSize: 50,
                                                 coordinatorExecutable: VTPExecutable.path, timeoutSeconds: 120,
                                                 database: connection)
            let report = try await ScaleBenchmark.run(options)
            print("scale bench:\n\(report.table)")

            // Every item done once: in the ledger, and as the simulated workers saw it.
            let job = try await Ledger(database: url).job(report.jobID)
            #expect(job.state == .completed)
            #expect(job.itemsDone == 2000 && job.itemsFailed == 0 && job.shardsDone == 40 && job.rejectedCompletions == 0)
            #expect(report.ledgerItemsDone == 2000 && report.ledgerRejectedCompletions == 0)
            #expect(report.itemsReported == 2000)
            #expect(report.itemsExecutedTwice == 0 && report.itemsNeverExecuted == 0)
            #expect(report.reconnects == 0)

            // The JSON has every key the issue names, with values in range.
            let object = report.jsonObject
            let data = try JSONSerialization.data(withJSONObject: object)
            let decoded = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
            for key in ["dispatch_items_per_second", "claim_latency_p50_ms", "claim_latency_p99_ms", "worker_busy_fraction",
                        "ledger_bytes_per_item", "coordinator_max_rss_bytes", "enqueue_seconds"] {
                #expect(decoded[key] is NSNumber, "missing or non-numeric \(key)")
            }
            func number(_ key: String) -> Double { (decoded[key] as? NSNumber)?.doubleValue ?? .nan }
            #expect(number("dispatch_items_per_second") > 0)
            #expect(number("claim_latency_p50_ms") >= 0 && number("claim_latency_p50_ms") <= number("claim_latency_p99_ms"))
            #expect(number("worker_busy_fraction") > 0 && number("worker_busy_fraction") <= 1)
            #expect(number("overall_busy_fraction") > 0 && number("overall_busy_fraction") <= 1)
            // Each item has at least a row of its own in the ledger.
            #expect(number("ledger_bytes_per_item") > 8)
            // A Swift process holding sockets and a connection takes more than a few MiB.
            #expect(number("coordinator_max_rss_bytes") > 4_000_000)
            #expect(number("enqueue_seconds") > 0)
            #expect(number("makespan_seconds") >= number("ideal_seconds"))
        }
    }

    @Test func refusesNonsenseOptionsNamingTheFlag() async throws {
        let options = ScaleBenchmark.Options(workers: 0, items: 10, itemMilliseconds: 1, coordinatorExecutable: VTPExecutable.path)
        await #expect { try await ScaleBenchmark.run(options) } throws: { error in
            "\(error)".contains("--workers") && "\(error)".contains("at least 1")
        }
    }
}
