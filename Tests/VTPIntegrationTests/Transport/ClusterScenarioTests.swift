import CZeroMQ
import Foundation
import Testing
import VTPTestSupport
import VTPTransportTestSupport
import VTPVocabulary
@testable import VTPTransport

extension TransportSocketTests {
    @Suite struct CurveTests {
        @Test func listedWorkerKeyIsAdmittedAndUnknownKeysAreRefused() async throws {
            let context = try ZMQContext()
            let server = try CurveKeyPair.generate()
            let trusted = try CurveKeyPair.generate()
            let stranger = try CurveKeyPair.generate()
            // With CURVE a non-loopback bind is allowed.
            let router = try RouterEndpoint(context: context, configuration: RouterConfiguration(
                bindEndpoints: ["tcp://0.0.0.0:*"],
                curve: CurveServerSecurity(serverKeys: server, authorizedClients: [trusted.publicKey])))
            let port = router.boundEndpoints[0].split(separator: ":").last!
            let endpoint = "tcp://127.0.0.1:\(port)"
            let atRouter = Collector(router.inbound)

            let good = try DealerEndpoint(context: context, configuration: DealerConfiguration(
                endpoint: endpoint, identity: PeerIdentity("trusted"),
                curve: CurveClientSecurity(clientKeys: trusted, serverPublicKey: server.publicKey)))
            let atGood = Collector(good.inbound)
            try await good.send(registerMessage("trusted"))
            #expect(await atRouter.wait(count: 1).first?.decoded == registerMessage("trusted"))
            try await router.send(SampleMessages.assign, to: PeerIdentity("trusted"))
            #expect(try await atGood.wait(count: 1).first?.get() == SampleMessages.assign)

            let bad = try DealerEndpoint(context: context, configuration: DealerConfiguration(
                endpoint: endpoint, identity: PeerIdentity("stranger"),
                curve: CurveClientSecurity(clientKeys: stranger, serverPublicKey: server.publicKey)))
            // libzmq drops the session of a client that fails the handshake, so this send may be refused
            // (`wouldBlock`) if the denial already happened; either way nothing may reach the router.
            try? await bad.send(registerMessage("stranger"))
            // A client without CURVE fails the handshake before ZAP is even asked.
            let plain = try DealerEndpoint(context: context, configuration: DealerConfiguration(endpoint: endpoint, identity: PeerIdentity("plain")))
            try? await plain.send(registerMessage("plain"))

            let denied = await waitFor(timeout: .seconds(5)) { (router.authenticationStatistics?.denied ?? 0) >= 1 }
            #expect(denied)
            let statistics = try #require(router.authenticationStatistics)
            #expect(statistics.lastDeniedKey == stranger.publicKey.z85)
            #expect(statistics.accepted == 1)
            // Give any (wrongly) admitted message time to arrive, then check none did.
            try await Task.sleep(for: .milliseconds(500))
            #expect(atRouter.snapshot.map(\.peer) == [PeerIdentity("trusted")])

            // After a configuration reload the stranger's key is admitted on its next connection.
            router.setAuthorizedClients([trusted.publicKey, stranger.publicKey])
            try await bad.reconnect()
            try await bad.send(registerMessage("stranger"))
            let admitted = await atRouter.wait { $0.contains { $0.peer == PeerIdentity("stranger") } }
            #expect(admitted.last?.decoded == registerMessage("stranger"))
            #expect(router.authenticationStatistics?.accepted == 2)

            await bad.shutdown()
            await plain.shutdown()
            await good.shutdown()
            await router.shutdown()
        }

        /// libzmq's handshake-failed-auth event reaches the refused dealer, which keeps the reason
        /// (endpoint, ZAP status, its key) until a later handshake succeeds.
        @Test func aRefusedDealerKnowsItsKeyWasRejected() async throws {
            let context = try ZMQContext()
            let server = try CurveKeyPair.generate(), trusted = try CurveKeyPair.generate(), stranger = try CurveKeyPair.generate()
            let router = try RouterEndpoint(context: context, configuration: RouterConfiguration(
                bindEndpoints: ["tcp://127.0.0.1:*"],
                curve: CurveServerSecurity(serverKeys: server, authorizedClients: [trusted.publicKey])))
            let endpoint = router.boundEndpoints[0]
            let atRouter = Collector(router.inbound)
            func dealer(_ id: String, _ keys: CurveKeyPair) throws -> DealerEndpoint {
                try DealerEndpoint(context: context, configuration: DealerConfiguration(
                    endpoint: endpoint, identity: PeerIdentity(id),
                    curve: CurveClientSecurity(clientKeys: keys, serverPublicKey: server.publicKey)))
            }
            let bad = try dealer("stranger", stranger)
            let good = try dealer("trusted", trusted)
            try await good.send(registerMessage("trusted"))
            #expect(await atRouter.wait(count: 1).first?.peer == PeerIdentity("trusted"))

            let refused = await waitFor(timeout: .seconds(5)) { bad.handshakeRejection != nil }
            #expect(refused)
            #expect(bad.handshakeRejection == HandshakeRejection(endpoint: endpoint, status: 400, publicKey: stranger.publicKey.z85))
            #expect(bad.handshakeRejection?.description
                    == "the coordinator at \(endpoint) rejected this worker's CURVE key \(stranger.publicKey.z85): it is not among its authorized worker keys")
            #expect(good.handshakeRejection == nil)

            // Once the key is listed, the next handshake succeeds and the rejection is over.
            router.setAuthorizedClients([trusted.publicKey, stranger.publicKey])
            try await bad.reconnect()
            let accepted = await waitFor(timeout: .seconds(5)) { bad.handshakeRejection == nil }
            #expect(accepted)
            try await bad.send(registerMessage("stranger"))
            #expect(await atRouter.wait { $0.contains { $0.peer == PeerIdentity("stranger") } }.count == 2)

            await bad.shutdown()
            await good.shutdown()
            await router.shutdown()
        }

        @Test func aMonitorReportsHandshakesOfItsSocket() throws {
            // The event frames as libzmq lays them out: event number and value in host order, then the endpoint.
            var header = [UInt8](repeating: 0, count: 6)
            header.withUnsafeMutableBytes { raw in
                raw.storeBytes(of: UInt16(ZMQ_EVENT_HANDSHAKE_FAILED_AUTH), toByteOffset: 0, as: UInt16.self)
                raw.storeBytes(of: UInt32(400), toByteOffset: 2, as: UInt32.self)
            }
            #expect(ZMQSocketEvent(frames: [header, Array("tcp://h:1".utf8)])
                    == .handshakeFailedAuthentication(endpoint: "tcp://h:1", status: 400))
            #expect(ZMQSocketEvent(frames: [header]) == nil)
        }

        @Test func oneZAPHandlerPerContext() async throws {
            let context = try ZMQContext()
            let zap = try ZAPHandler(context: context, authorizedClients: [])
            #expect(throws: TransportError.self) { _ = try ZAPHandler(context: context, authorizedClients: []) }
            await zap.stop()
            // Once stopped, the address is free again.
            let again = try ZAPHandler(context: context, authorizedClients: [])
            await again.stop()
        }
    }
}

extension TransportSocketTests {
    @Suite struct LivenessOverSocketsTests {
        /// A worker heartbeats, then goes silent with its socket still open; the coordinator's liveness
        /// machine, fed by real traffic, declares it dead three intervals after the last heartbeat.
        @Test func silentWorkerIsDeclaredDead() async throws {
            // Wide enough that a loaded 2-core CI machine (other suites spawn processes in parallel)
            // does not delay one heartbeat past three intervals.
            let interval = Duration.milliseconds(250)
            let context = try ZMQContext()
            let router = try RouterEndpoint(context: context, configuration: RouterConfiguration(bindEndpoints: ["tcp://127.0.0.1:*"]))
            let dealer = try DealerEndpoint(context: context, configuration: DealerConfiguration(
                endpoint: router.boundEndpoints[0], identity: PeerIdentity("silent")))
            let atDealer = Collector(dealer.inbound)

            let worker = Task {
                try await dealer.send(registerMessage("silent"))
                for sequence in 1...6 {
                    try await Task.sleep(for: interval)
                    try await dealer.send(.heartbeat(HeartbeatMessage(sequence: UInt64(sequence), imagesPerSecond: 10)))
                }
            }

            var liveness = try WorkerLiveness<PeerIdentity>(configuration: .init(heartbeatInterval: interval, missedHeartbeatsBeforeDead: 3))
            var lastHeard: MonotonicInstant?
            var declaredDeadAt: MonotonicInstant?
            var heartbeatsHeard = 0
            let atRouter = Collector(router.inbound)
            var consumed = 0
            let deadline = MonotonicInstant.now() + .seconds(10)
            // The coordinator loop: take new traffic, tick, act, sleep briefly.
            while declaredDeadAt == nil && MonotonicInstant.now() < deadline {
                let inbox = atRouter.snapshot
                for inbound in inbox[consumed...] {
                    let now = MonotonicInstant.now()
                    liveness.heard(from: inbound.peer, at: now)
                    lastHeard = now
                    if case .heartbeat? = inbound.decoded { heartbeatsHeard += 1 }
                }
                consumed = inbox.count
                let now = MonotonicInstant.now()
                for action in liveness.tick(at: now) {
                    switch action {
                    case .sendHeartbeat(let peer):
                        try await router.send(.heartbeat(HeartbeatMessage(sequence: 0)), to: peer)
                        liveness.sent(to: peer, at: now)
                    case .declareDead(let peer):
                        #expect(peer == PeerIdentity("silent"))
                        declaredDeadAt = now
                    }
                }
                try await Task.sleep(for: .milliseconds(5))
            }
            try await worker.value
            let dead = try #require(declaredDeadAt)
            let silence = dead - (try #require(lastHeard))
            #expect(heartbeatsHeard == 6)
            #expect(silence >= interval * 3)
            #expect(silence < interval * 3 + .milliseconds(750))
            #expect(!liveness.isAlive(PeerIdentity("silent")))
            // The worker saw the coordinator's heartbeats while it was alive.
            #expect(atDealer.snapshot.contains { (try? $0.get())?.type == .heartbeat })
            await dealer.shutdown()
            await router.shutdown()
        }

        /// The coordinator endpoint goes away and comes back on the same address; the worker's liveness
        /// machine notices the silence, backs off, reconnects with a fresh socket and registers again.
        @Test func workerReconnectsAfterCoordinatorRestart() async throws {
            let interval = Duration.milliseconds(40)
            let directory = try TemporaryDirectory("transport")
            defer { directory.remove() }
            let endpoint = "ipc://\(directory.path)/coordinator.sock"
            let context = try ZMQContext()
            var router = try RouterEndpoint(context: context, configuration: RouterConfiguration(bindEndpoints: [endpoint]))
            var atRouter = Collector(router.inbound)
            let dealer = try DealerEndpoint(context: context, configuration: DealerConfiguration(endpoint: endpoint, identity: PeerIdentity("phoenix")))
            let atDealer = Collector(dealer.inbound)

            try await dealer.send(registerMessage("phoenix"))
            #expect(await atRouter.wait(count: 1).first?.decoded == registerMessage("phoenix"))
            try await router.send(.heartbeat(HeartbeatMessage(sequence: 1)), to: PeerIdentity("phoenix"))
            #expect(await atDealer.wait(count: 1).count == 1)

            var liveness = try CoordinatorLiveness(
                configuration: .init(heartbeatInterval: interval, missedHeartbeatsBeforeLost: 3,
                                     initialBackoff: .milliseconds(60), maxBackoff: .milliseconds(200), jitterFraction: 0.3),
                now: .now(), seed: 11)
            await router.shutdown()
            var seen = atDealer.snapshot.count
            var lostAfter: Duration?
            var reconnects = 0
            var restarted = false
            let deadline = MonotonicInstant.now() + .seconds(10)
            // The worker loop: feed received traffic, tick, act.
            while MonotonicInstant.now() < deadline {
                let inbox = atDealer.snapshot
                if inbox.count > seen {
                    seen = inbox.count
                    liveness.received(at: .now())
                    if restarted && reconnects > 0 { break }
                }
                for action in liveness.tick(at: .now()) {
                    switch action {
                    case .sendHeartbeat:
                        try? await dealer.send(.heartbeat(HeartbeatMessage(sequence: 2)))
                    case .coordinatorLost(let delay):
                        // The first loss's back-off is asserted below; under load a reconnect can
                        // miss its window, and the next loss backs off longer (as it should).
                        if lostAfter == nil { lostAfter = delay }
                        if !restarted {
                            // The coordinator comes back while the worker is backing off.
                            router = try RouterEndpoint(context: context, configuration: RouterConfiguration(bindEndpoints: [endpoint]))
                            atRouter = Collector(router.inbound)
                            restarted = true
                            let peer = PeerIdentity("phoenix")
                            let newRouter = router
                            let collector = atRouter
                            // The restarted coordinator greets whoever registers.
                            Task {
                                await collector.wait { $0.contains { $0.decoded?.type == .register } }
                                try await newRouter.send(.heartbeat(HeartbeatMessage(sequence: 100)), to: peer)
                            }
                        }
                    case .reconnect:
                        reconnects += 1
                        try await dealer.reconnect()
                        try await dealer.send(registerMessage("phoenix"))
                        liveness.sent(at: .now())
                    }
                }
                try await Task.sleep(for: .milliseconds(5))
            }
            #expect(restarted)
            let delay = try #require(lostAfter)
            #expect(delay <= .milliseconds(60) && delay >= .milliseconds(42))
            #expect(reconnects >= 1)
            #expect(liveness.consecutiveFailures == 0)
            let registered = atRouter.snapshot.filter { $0.decoded == registerMessage("phoenix") }
            #expect(registered.first?.peer == PeerIdentity("phoenix"))
            #expect(try atDealer.snapshot.last?.get() == .heartbeat(HeartbeatMessage(sequence: 100)))
            await dealer.shutdown()
            await router.shutdown()
        }
    }
}

/// Polls `condition` every 5 ms until it holds or `timeout` passes.
func waitFor(timeout: Duration, _ condition: () -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(5))
    }
    return condition()
}
