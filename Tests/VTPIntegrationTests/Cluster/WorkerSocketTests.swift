import Foundation
import Testing
import VTPVocabulary
import VTPJobs
import VTPRuntimeSupport
import VTPTestSupport
import VTPTransport
import VTPWorker

/// A real `Worker` (DEALER, real `ShardExecutor`, tiny fixture model) against a ROUTER the test
/// drives by hand, playing the coordinator.
struct WorkerSocketTests {
    /// Waits for the next decoded message from the worker, skipping heartbeats.
    func next(_ iterator: inout AsyncStream<RouterInbound>.Iterator, skipping: Set<WireMessageType> = [.heartbeat]) async throws
        -> (PeerIdentity, WireMessage) {
        while let inbound = await iterator.next() {
            let message = try inbound.message.get()
            if !skipping.contains(message.type) { return (inbound.peer, message) }
        }
        throw CancellationError()
    }

    @Test(.timeLimit(.minutes(2)))
    func workerRegistersExecutesAShardWithPerItemFailuresAndDrainsOnShutdown() async throws {
        let dir = try TemporaryDirectory("worker-socket")
        defer { dir.remove() }
        try FileManager.default.createDirectory(atPath: dir.file("in"), withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: Fixtures.path("images/chelsea.jpg"), toPath: dir.file("in/cat.jpg"))
        try Data("not an image".utf8).write(to: URL(fileURLWithPath: dir.file("in/bad.jpg")))

        let context = try ZMQContext()
        let endpoint = "ipc://" + dir.file("c.ipc")
        let router = try RouterEndpoint(context: context, configuration: RouterConfiguration(bindEndpoints: [endpoint]))
        let registration = RegisterMessage(workerID: "w-test", host: "localhost",
                                           capabilities: WorkerCapabilities(jobTypes: ["latents"], threads: 1, prefetch: 2, memoryBytes: 1))
        let worker = try Worker(options: Worker.Options(endpoint: endpoint, registration: registration),
                                handler: JobShardHandler(), context: context)
        let serving = Task { await worker.run() }
        var inbound = router.inbound.makeAsyncIterator()

        let (peer, first) = try await next(&inbound)
        #expect(first == .register(registration))
        #expect(peer == PeerIdentity("w-test"))
        #expect(try await next(&inbound).1 == .credit(2))

        let token = LeaseToken.random()
        let shardID = ShardDispatchID(jobID: 9, index: 4).wire!
        let parameters = JobParameters.latents(LatentsParameters(imageSize: 64, batchSize: 2)).json()
        let assignment = AssignShardMessage(
            jobID: 9, shardID: shardID, leaseToken: token, jobType: "latents", parametersJSON: parameters,
            modelPath: Fixtures.path("vtp-tiny"), outputDirectory: dir.file("out"),
            items: [JobItem(ordinal: 40, sourceId: "cat.jpg", location: .file(path: dir.file("in/cat.jpg")), label: 3),
                    JobItem(ordinal: 41, sourceId: "bad.jpg", location: .file(path: dir.file("in/bad.jpg")), label: 3)])
        try await router.send(.assignShard(assignment), to: peer)

        var sawProgress = false
        var done: ShardDoneMessage?
        while done == nil {
            switch try await next(&inbound).1 {
            case .progress(let id, _): sawProgress = id == shardID
            case .shardDone(let message): done = message
            case let other: Issue.record("unexpected \(other)")
            }
        }
        #expect(sawProgress)
        let result = try #require(done)
        #expect(result.shardID == shardID && result.leaseToken == token)
        #expect(result.results.map(\.ordinal) == [40, 41])
        #expect(result.results[0].status == .ok)
        #expect(result.results[0].outputLocation == "latents_rank00_shard004.safetensors#0")
        #expect(result.results[1].status == .failed)
        #expect(result.results[1].error?.contains("bad.jpg") == true)
        #expect(FileManager.default.fileExists(atPath: dir.file("out/latents_rank00_shard004.safetensors")))
        #expect(try await next(&inbound).1 == .credit(1))

        worker.requestShutdown()
        #expect(try await next(&inbound).1 == .drain(reason: "worker shutting down"))
        #expect(try await next(&inbound).1 == .disconnect(reason: "worker stopped"))
        await serving.value
        await router.shutdown()
    }

    @Test(.timeLimit(.minutes(1)))
    func shardWithAnUnknownJobTypeFailsAsAWhole() async throws {
        let dir = try TemporaryDirectory("worker-socket-fail")
        defer { dir.remove() }
        let context = try ZMQContext()
        let endpoint = "ipc://" + dir.file("c.ipc")
        let router = try RouterEndpoint(context: context, configuration: RouterConfiguration(bindEndpoints: [endpoint]))
        let registration = RegisterMessage(workerID: "w-fail", host: "localhost",
                                           capabilities: WorkerCapabilities(jobTypes: ["latents"], threads: 1, prefetch: 1, memoryBytes: 1))
        let worker = try Worker(options: Worker.Options(endpoint: endpoint, registration: registration),
                                handler: JobShardHandler(), context: context)
        let serving = Task { await worker.run() }
        var inbound = router.inbound.makeAsyncIterator()
        let (peer, _) = try await next(&inbound)
        _ = try await next(&inbound)
        let token = LeaseToken.random()
        try await router.send(.assignShard(AssignShardMessage(jobID: 1, shardID: 0, leaseToken: token, jobType: "paint",
                                                             parametersJSON: "{}", modelPath: "/nowhere", outputDirectory: dir.file("out"),
                                                             items: [])), to: peer)
        guard case let .shardFailed(failure) = try await next(&inbound).1 else {
            Issue.record("expected shardFailed")
            return
        }
        #expect(failure.leaseToken == token)
        #expect(failure.error.contains("paint"))
        worker.requestShutdown()
        await serving.value
        await router.shutdown()
    }
}
