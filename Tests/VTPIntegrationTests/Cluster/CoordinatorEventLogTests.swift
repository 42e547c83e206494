import CZeroMQ
import Foundation
import Logging
import Synchronization
import Testing
import VTPVocabulary
import VTPCoordinator
import VTPJobs
import VTPMetrics
import VTPQueue
import VTPTestSupport
import VTPTransport

/// The coordinator's event lines on the paths that are hard to reach with whole processes: a
/// lease that expires, results under stale lease tokens, a worker of another protocol version.
/// A real coordinator, ledger and sockets, logging through the shipped JSON handler.
@Suite(.serialized)
struct CoordinatorEventLogTests {
    /// The JSON lines a logger wrote, parsed.
    final class JSONLines: Sendable {
        private let stored = Mutex<[String]>([])
        var output: LogOutput { LogOutput { [self] line in stored.withLock { $0.append(line) } } }
        var objects: [[String: String]] {
            stored.withLock { $0 }.compactMap { line in
                (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
            }.map { $0.compactMapValues { $0 as? String } }
        }
        var count: Int { stored.withLock { $0.count } }
        func events(_ name: String) -> [[String: String]] { objects.filter { $0["event"] == name } }
    }

    @Test(.timeLimit(.minutes(2)))
    func expiredLeasesStaleResultsAndAnotherProtocolVersionAreEventsWithTheirIds() async throws {
        let dir = try TemporaryDirectory("cluster-events")
        defer { dir.remove() }
        try await withDatabase { url in
            let context = try ZMQContext()
            let endpoint = "ipc://" + dir.file("c.ipc")
            let lease = 1.5
            let policy = LeasePolicy(leaseSeconds: lease, backoffBaseSeconds: 0, backoffCapSeconds: 0)
            let ledger = Ledger(database: url, leasePolicy: policy)
            let jobID = try await ledger.enqueue(
                JobSpec(type: "latents", parametersJSON: "{}", model: "/m", inputLocation: "/in", outputLocation: dir.file("out"), shardSize: 2),
                items: [JobItem(ordinal: 0, sourceId: "a", location: .file(path: "/in/a.jpg")),
                        JobItem(ordinal: 1, sourceId: "b", location: .file(path: "/in/b.jpg"))])
            let lines = JSONLines()
            let output = lines.output
            let logger = Logger(label: "vtp.coordinator") { StructuredLogHandler(label: $0, format: .json, level: .info, output: output) }
            let coordinator = try Coordinator(ledger: Ledger(database: url, leasePolicy: policy), notifier: nil, finalizer: ManifestFinalizer(),
                                              options: Coordinator.Options(bindEndpoints: [endpoint], core: fastCore(leaseSeconds: lease)),
                                              context: context, logger: logger)
            let serving = Task { await coordinator.run() }
            let job = String(jobID)

            // A worker of another protocol version: refused, once however often it tries.
            let old = try ZMQSocket(context: context, type: .dealer)
            try old.setOption(ZMQ_ROUTING_ID, bytes: Array("old-build".utf8), name: "ZMQ_ROUTING_ID")
            try old.connect(endpoint)
            var frame = try WireMessage.register(registration("old-build")).encoded()
            frame[WireMessage.magic.count] = WireMessage.protocolVersion &+ 1
            for _ in 0..<3 { _ = try old.send([frame]) }
            #expect(try await eventually(5) { !lines.events("worker_refused").isEmpty })

            // "holder" keeps heartbeating but never lists its shard: the lease expires.
            var holder = try FakeWorker(context: context, endpoint: endpoint, id: "holder")
            try await holder.dealer.send(.register(registration("holder")))
            try await holder.dealer.send(.credit(1))
            guard case let .assignShard(first) = try await holder.next() else {
                Issue.record("expected an assignment")
                return
            }
            let heartbeats = holder.heartbeating { [] }
            defer { heartbeats.cancel() }
            #expect(try await eventually(8) { !lines.events("lease_expired").isEmpty }, "\(lines.objects)")
            // Its result, under the expired token, is refused.
            try await holder.dealer.send(.shardDone(ShardDoneMessage(shardID: first.shardID, leaseToken: first.leaseToken,
                                                                     results: [ItemResult(ordinal: 0, status: .ok, outputLocation: "x#0"),
                                                                               ItemResult(ordinal: 1, status: .ok, outputLocation: "x#1")])))
            #expect(try await eventually(5) { !lines.events("lease_rejected").isEmpty })
            heartbeats.cancel()
            try await holder.dealer.send(.disconnect(reason: "test over"))

            // "rescuer" gets the shard again; its result counts, a repeat of it is refused.
            var rescuer = try FakeWorker(context: context, endpoint: endpoint, id: "rescuer")
            try await rescuer.dealer.send(.register(registration("rescuer")))
            try await rescuer.dealer.send(.credit(1))
            var retry: AssignShardMessage?
            while retry == nil {
                if case let .assignShard(assignment) = try await rescuer.next() { retry = assignment }
            }
            let done = ShardDoneMessage(shardID: retry!.shardID, leaseToken: retry!.leaseToken,
                                        results: [ItemResult(ordinal: 0, status: .ok, outputLocation: "y#0"),
                                                  ItemResult(ordinal: 1, status: .failed, error: "corrupt")])
            try await rescuer.dealer.send(.shardDone(done))
            #expect(try await eventually(5) { !lines.events("shard_done").isEmpty })
            try await rescuer.dealer.send(.shardDone(done))
            #expect(try await eventually(5) { lines.events("lease_rejected").count == 2 })

            coordinator.requestShutdown()
            await serving.value
            await holder.dealer.shutdown()
            await rescuer.dealer.shutdown()
            withExtendedLifetime(old) {}

            // Every line is a JSON object with the keys every line has.
            #expect(lines.objects.count == lines.count)
            #expect(lines.objects.allSatisfy { line in ["ts", "level", "logger", "msg"].allSatisfy { line[$0] != nil } })

            let refused = lines.events("worker_refused")
            #expect(refused.count == 1 && refused[0]["worker"] == "old-build" && refused[0]["msg"] == "worker refused", "\(refused)")
            #expect(refused.first?["reason"]?.contains("unsupported protocol version") == true)

            let granted = lines.events("lease_granted")
            #expect(granted.map { $0["worker"] } == ["holder", "rescuer"], "\(granted)")
            #expect(granted.allSatisfy { $0["job"] == job && $0["shard"] == "0" && $0["items"] == "2" })

            let expired = lines.events("lease_expired")
            #expect(expired.count == 1 && expired[0]["worker"] == "holder" && expired[0]["job"] == job && expired[0]["shard"] == "0"
                    && expired[0]["outcome"] == "requeued" && expired[0]["level"] == "warning", "\(expired)")

            let rejected = lines.events("lease_rejected")
            #expect(rejected.map { $0["worker"] } == ["holder", "rescuer"], "\(rejected)")
            #expect(rejected.map { $0["reason"] } == ["lease_lost", "duplicate"])
            #expect(rejected.allSatisfy { $0["job"] == job && $0["shard"] == "0" && $0["refused"] == "shard_done" })

            let shardDone = lines.events("shard_done")
            #expect(shardDone.count == 1 && shardDone[0]["worker"] == "rescuer" && shardDone[0]["job"] == job
                    && shardDone[0]["items_ok"] == "1" && shardDone[0]["items_failed"] == "1", "\(shardDone)")

            #expect(lines.events("worker_joined").map { $0["worker"] } == ["holder", "rescuer"])
            // The holder said goodbye; the rescuer was still there when the coordinator stopped.
            #expect(lines.events("worker_left").map { $0["worker"] } == ["holder", "rescuer"])
        }
    }
}
