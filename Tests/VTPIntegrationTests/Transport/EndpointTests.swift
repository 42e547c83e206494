import CZeroMQ
import Foundation
import Logging
import Synchronization
import Testing
import VTPTestSupport
import VTPTransportTestSupport
import VTPVocabulary
@testable import VTPTransport

@Suite struct EndpointTests {
    @Test(arguments: TestTransport.allCases)
    func everyMessageTypeRoundTripsOverRealSockets(_ transport: TestTransport) async throws {
        let directory = try TemporaryDirectory("transport")
        defer { directory.remove() }
        let context = try ZMQContext()
        let router = try RouterEndpoint(context: context, configuration: RouterConfiguration(bindEndpoints: [transport.endpoint(in: directory)]))
        let dealer = try DealerEndpoint(context: context, configuration: DealerConfiguration(
            endpoint: router.boundEndpoints[0], identity: PeerIdentity("worker-1")))
        let atRouter = Collector(router.inbound)
        let atDealer = Collector(dealer.inbound)

        for message in SampleMessages.workerToCoordinator { try await dealer.send(message) }
        let received = await atRouter.wait(count: SampleMessages.workerToCoordinator.count)
        #expect(received.map(\.decoded) == SampleMessages.workerToCoordinator)
        #expect(received.allSatisfy { $0.peer == PeerIdentity("worker-1") })

        for message in SampleMessages.coordinatorToWorker { try await router.send(message, to: PeerIdentity("worker-1")) }
        let replies = await atDealer.wait(count: SampleMessages.coordinatorToWorker.count)
        #expect(replies.map { try? $0.get() } == SampleMessages.coordinatorToWorker)

        await dealer.shutdown()
        await router.shutdown()
        // Both streams finish and sending afterwards fails cleanly.
        await #expect(throws: TransportError.shutDown) { try await dealer.send(.credit(1)) }
        await #expect(throws: TransportError.shutDown) { try await router.send(.drain(reason: ""), to: PeerIdentity("worker-1")) }
    }

    /// `tcp://localhost:PORT` used to fail to bind (errno 19, ENODEV): the name is resolved first,
    /// the loopback check applies to the address, and a worker connects by the name.
    @Test func aHostNameEndpointBindsAndCarriesAFullExchange() async throws {
        let context = try ZMQContext()
        let router = try RouterEndpoint(context: context, configuration: RouterConfiguration(bindEndpoints: ["tcp://localhost:*"]))
        let bound = router.boundEndpoints[0]
        #expect(bound.hasPrefix("tcp://127.0.0.1:"), "\(bound)")
        let port = try #require(bound.split(separator: ":").last.map(String.init))
        let dealer = try DealerEndpoint(context: context, configuration: DealerConfiguration(
            endpoint: "tcp://localhost:\(port)", identity: PeerIdentity("named")))
        let atRouter = Collector(router.inbound)
        let atDealer = Collector(dealer.inbound)
        try await dealer.send(registerMessage("named"))
        #expect(await atRouter.wait(count: 1).first?.decoded == registerMessage("named"))
        try await router.send(SampleMessages.assign, to: PeerIdentity("named"))
        #expect(await atDealer.wait(count: 1).first.flatMap { try? $0.get() } == SampleMessages.assign)
        await dealer.shutdown()
        await router.shutdown()
    }

    @Test func sendingToAnUnknownPeerRaisesATypedError() async throws {
        let context = try ZMQContext()
        let router = try RouterEndpoint(context: context, configuration: RouterConfiguration(bindEndpoints: ["tcp://127.0.0.1:*"]))
        await #expect(throws: TransportError.unknownPeer(PeerIdentity("ghost"))) {
            try await router.send(.heartbeat(HeartbeatMessage(sequence: 1)), to: PeerIdentity("ghost"))
        }
        // The endpoint keeps working after the refusal.
        let dealer = try DealerEndpoint(context: context, configuration: DealerConfiguration(
            endpoint: router.boundEndpoints[0], identity: PeerIdentity("real")))
        let atRouter = Collector(router.inbound)
        try await dealer.send(registerMessage("real"))
        #expect(await atRouter.wait(count: 1).first?.decoded == registerMessage("real"))
        try await router.send(.heartbeat(HeartbeatMessage(sequence: 2)), to: PeerIdentity("real"))
        await dealer.shutdown()
        await router.shutdown()
    }

    @Test func wrongDirectionIsRefusedBeforeSending() async throws {
        let context = try ZMQContext()
        let router = try RouterEndpoint(context: context, configuration: RouterConfiguration(bindEndpoints: ["inproc://direction"]))
        await #expect(throws: TransportError.self) { try await router.send(.credit(1), to: PeerIdentity("w")) }
        let dealer = try DealerEndpoint(context: context, configuration: DealerConfiguration(endpoint: "inproc://direction", identity: PeerIdentity("w")))
        await #expect(throws: TransportError.self) { try await dealer.send(SampleMessages.assign) }
        await dealer.shutdown()
        await router.shutdown()
    }

    @Test func malformedFramesAreDroppedAndTheEndpointKeepsWorking() async throws {
        let context = try ZMQContext()
        let router = try RouterEndpoint(context: context, configuration: RouterConfiguration(bindEndpoints: ["tcp://127.0.0.1:*"]))
        let atRouter = Collector(router.inbound)
        let raw = try ZMQSocket(context: context, type: .dealer)
        try raw.setOption(ZMQ_ROUTING_ID, bytes: Array("raw".utf8), name: "ZMQ_ROUTING_ID")
        try raw.connect(router.boundEndpoints[0])

        try raw.send([[1, 2, 3]])
        try raw.send([Array("VTP".utf8) + [WireMessage.protocolVersion, 0x02, 1, 0]])                  // truncated credit
        try raw.send([try WireMessage.credit(1).encoded(), [0]])             // extra frame
        try raw.send([try SampleMessages.assign.encoded()])                  // wrong direction
        try raw.send([try WireMessage.credit(3).encoded()])                  // finally valid
        let received = await atRouter.wait(count: 5)
        #expect(received.count == 5)
        #expect(received.allSatisfy { $0.peer == PeerIdentity("raw") })
        #expect(received.map(\.decodeError) == [
            .badMagic,
            .truncated(field: "credit.n", needed: 4, available: 2),
            .unexpectedFrameCount(expected: 2, got: 3),
            .wrongDirection(.assignShard),
            nil,
        ])
        #expect(received.last?.decoded == .credit(3))

        // Garbage toward the worker side is reported the same way, and replies still flow.
        try await router.send(.drain(reason: "test"), to: PeerIdentity("raw"))
        var reply: ReceivedMessage?
        for _ in 0..<1000 where reply == nil {
            reply = try raw.receive(dontWait: true)
            if reply == nil { try await Task.sleep(for: .milliseconds(5)) }
        }
        #expect(try reply.map { try WireMessage.decode($0.frames[0]) } == .drain(reason: "test"))

        // A well-behaved worker is unaffected by the garbage.
        let dealer = try DealerEndpoint(context: context, configuration: DealerConfiguration(
            endpoint: router.boundEndpoints[0], identity: PeerIdentity("good")))
        try await dealer.send(registerMessage("good"))
        let all = await atRouter.wait { $0.contains { $0.peer == PeerIdentity("good") } }
        #expect(all.last?.decoded == registerMessage("good"))
        await dealer.shutdown()
        await router.shutdown()
    }

    @Test func unencryptedRouterRefusesNonLoopbackBinds() throws {
        let context = try ZMQContext()
        for endpoint in ["tcp://0.0.0.0:*", "tcp://*:*", "tcp://[::]:*"] {
            #expect(throws: TransportError.insecureBind(endpoint)) {
                _ = try RouterEndpoint(context: context, configuration: RouterConfiguration(bindEndpoints: [endpoint]))
            }
        }
        #expect(throws: TransportError.self) {
            _ = try RouterEndpoint(context: context, configuration: RouterConfiguration(bindEndpoints: ["tcp://127.0.0.1"]))
        }
    }

    @Test func ipv6LoopbackWorks() async throws {
        let context = try ZMQContext()
        let router: RouterEndpoint
        do {
            router = try RouterEndpoint(context: context, configuration: RouterConfiguration(bindEndpoints: ["tcp://[::1]:*"]))
        } catch {
            // Hosts without an IPv6 loopback cannot run this check; the error must then come from bind.
            guard case .zmq(let zmqError) = error, zmqError.operation.hasPrefix("zmq_bind") else { throw error }
            return
        }
        #expect(router.boundEndpoints[0].hasPrefix("tcp://[::1]:"))
        let dealer = try DealerEndpoint(context: context, configuration: DealerConfiguration(
            endpoint: router.boundEndpoints[0], identity: PeerIdentity("v6")))
        let atRouter = Collector(router.inbound)
        try await dealer.send(.credit(2))
        #expect(await atRouter.wait(count: 1).first?.decoded == .credit(2))
        await dealer.shutdown()
        await router.shutdown()
    }

    /// A replacement whose socket cannot be made (here `makeSocket` throws the EMFILE a process out
    /// of descriptors gets) leaves the endpoint without a socket but serving: sends fail at once,
    /// and the next replacement connects again. The I/O thread used to end instead, after which
    /// every send and reconnect waited forever (a worker's event loop hung in its first send).
    @Test func aFailedSocketReplacementLeavesTheEndpointServing() async throws {
        let context = try ZMQContext()
        let router = try RouterEndpoint(context: context, configuration: RouterConfiguration(bindEndpoints: ["tcp://127.0.0.1:*"]))
        let endpoint = router.boundEndpoints[0]
        let atRouter = Collector(router.inbound)
        let failNextSocket = Mutex(false)
        let makeDealer: @Sendable () throws -> ZMQSocket = {
            if failNextSocket.withLock({ $0 }) { throw ZMQError(operation: "zmq_socket(dealer)", code: EMFILE) }
            let socket = try ZMQSocket(context: context, type: .dealer)
            try socket.setOption(ZMQ_ROUTING_ID, bytes: Array("flaky".utf8), name: "ZMQ_ROUTING_ID")
            try socket.connect(endpoint)
            return socket
        }
        let delivered = Mutex<[ReceivedMessage]>([])
        let core = try EndpointCore(socket: try makeDealer(), makeSocket: makeDealer,
                                    deliver: { message in delivered.withLock { $0.append(message) } },
                                    onFinish: {}, logger: Logger(label: "vtp.test.endpoint-core"))
        core.start(name: "vtp-test-io")
        enum Outcome: Equatable, Sendable { case done, failed(TransportError), stillWaiting }
        /// How the command ended; `stillWaiting` when its completion did not come within 5 s.
        func result(of make: @escaping @Sendable (@escaping EndpointCore.Completion) -> EndpointCore.Command) async -> Outcome {
            let outcome = Mutex<Outcome>(.stillWaiting)
            Task {
                let ended: Outcome = switch await core.perform(make) {
                case .success: .done
                case let .failure(error): .failed(error)
                }
                outcome.withLock { $0 = ended }
            }
            _ = await waitFor(timeout: .seconds(5)) { outcome.withLock { $0 } != .stillWaiting }
            return outcome.withLock { $0 }
        }
        let register = try registerMessage("flaky").encoded()

        #expect(await result { .send(frames: [register], peer: nil, completion: $0) } == .done)
        #expect(await atRouter.wait(count: 1).first?.peer == PeerIdentity("flaky"))

        failNextSocket.withLock { $0 = true }
        #expect(await result { .replaceSocket(completion: $0) } == .failed(.zmq(ZMQError(operation: "zmq_socket(dealer)", code: EMFILE))))
        #expect(await result { .send(frames: [register], peer: nil, completion: $0) } == .failed(.wouldBlock))

        failNextSocket.withLock { $0 = false }
        #expect(await result { .replaceSocket(completion: $0) } == .done)
        #expect(await result { .send(frames: [register], peer: nil, completion: $0) } == .done)
        #expect(await atRouter.wait(count: 2).map(\.peer) == [PeerIdentity("flaky"), PeerIdentity("flaky")])
        // Messages still arrive on the new socket.
        try await router.send(.heartbeat(HeartbeatMessage(sequence: 7)), to: PeerIdentity("flaky"))
        #expect(await waitFor(timeout: .seconds(5)) { delivered.withLock { $0.count } == 1 })

        await core.stop()
        #expect(await result { .send(frames: [register], peer: nil, completion: $0) } == .failed(.shutDown))
        await router.shutdown()
    }

    @Test func invalidIdentitiesAreRejected() throws {
        let context = try ZMQContext()
        #expect(throws: TransportError.self) {
            _ = try DealerEndpoint(context: context, configuration: DealerConfiguration(endpoint: "inproc://x", identity: PeerIdentity(bytes: [0, 1])))
        }
        #expect(throws: TransportError.self) {
            _ = try DealerEndpoint(context: context, configuration: DealerConfiguration(endpoint: "inproc://x", identity: PeerIdentity("")))
        }
    }
}

extension TransportSocketTests {
    @Suite struct EndpointLimitsTests {
        /// A frame above `ZMQ_MAXMSGSIZE` makes libzmq drop that connection; nothing is delivered and
        /// other peers are unaffected.
        @Test func oversizedFramesAreNeverDelivered() async throws {
            let context = try ZMQContext()
            var configuration = RouterConfiguration(bindEndpoints: ["tcp://127.0.0.1:*"])
            configuration.maxMessageBytes = 1024
            let router = try RouterEndpoint(context: context, configuration: configuration)
            let atRouter = Collector(router.inbound)
            let raw = try ZMQSocket(context: context, type: .dealer)
            try raw.setOption(ZMQ_ROUTING_ID, bytes: Array("big".utf8), name: "ZMQ_ROUTING_ID")
            try raw.connect(router.boundEndpoints[0])
            try raw.send([try WireMessage.drain(reason: String(repeating: "x", count: 4000)).encoded()])

            let dealer = try DealerEndpoint(context: context, configuration: DealerConfiguration(
                endpoint: router.boundEndpoints[0], identity: PeerIdentity("small")))
            try await dealer.send(.credit(1))
            let received = await atRouter.wait(count: 1)
            try await Task.sleep(for: .milliseconds(200))
            #expect(received.first?.peer == PeerIdentity("small"))
            #expect(atRouter.snapshot.map(\.peer) == [PeerIdentity("small")])
            await dealer.shutdown()
            await router.shutdown()
        }

        /// Endpoints dropped without `shutdown()` still stop their threads and close their sockets: the
        /// context's `zmq_ctx_term` would block forever otherwise.
        @Test(.timeLimit(.minutes(1))) func endpointsReleasedWithoutShutdownCloseTheirSockets() async throws {
            for _ in 0..<20 {
                let context = try ZMQContext()
                var router: RouterEndpoint? = try RouterEndpoint(context: context, configuration: RouterConfiguration(bindEndpoints: ["inproc://drop"]))
                var dealer: DealerEndpoint? = try DealerEndpoint(context: context, configuration: DealerConfiguration(endpoint: "inproc://drop", identity: PeerIdentity("d")))
                try await dealer?.send(.credit(1))
                let stream = router!.inbound
                dealer = nil
                router = nil
                // The inbound stream finishes once the I/O thread has closed the socket.
                var count = 0
                for await _ in stream { count += 1 }
                #expect(count <= 1)
            }
        }

        /// Throughput of the whole path (encode, I/O thread hand-off, libzmq, decode, stream), for the report.
        @Test func sustainedThroughputOverIPC() async throws {
            let directory = try TemporaryDirectory("transport")
            defer { directory.remove() }
            let context = try ZMQContext()
            let router = try RouterEndpoint(context: context, configuration: RouterConfiguration(bindEndpoints: ["ipc://\(directory.path)/t.sock"]))
            var dealerConfiguration = DealerConfiguration(endpoint: router.boundEndpoints[0], identity: PeerIdentity("fast"))
            dealerConfiguration.highWaterMark = 100_000
            let dealer = try DealerEndpoint(context: context, configuration: dealerConfiguration)
            let atRouter = Collector(router.inbound)
            let count = 5_000
            let start = ContinuousClock.now
            for i in 0..<count { try await dealer.send(.progress(shardID: Int64(i), itemsDone: UInt32(i))) }
            let received = await atRouter.wait(count: count, timeout: .seconds(30))
            let elapsed = ContinuousClock.now - start
            #expect(received.count == count)
            #expect(received.enumerated().allSatisfy { $0.element.decoded == .progress(shardID: Int64($0.offset), itemsDone: UInt32($0.offset)) })
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            print("transport throughput: \(count) messages in \(seconds) s = \(Int(Double(count) / seconds)) msg/s (sequential awaited sends)")
            await dealer.shutdown()
            await router.shutdown()
        }
    }
}
