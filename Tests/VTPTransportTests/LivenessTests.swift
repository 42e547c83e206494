import Testing
import VTPVocabulary
import VTPRandom
@testable import VTPTransport

private func at(_ milliseconds: Int64) -> MonotonicInstant { MonotonicInstant(nanoseconds: milliseconds * 1_000_000) }

@Suite struct WorkerLivenessTests {
    /// The standard configuration is exactly what these tests assume: 1 s heartbeats, dead after 3 missed.
    let config = WorkerLiveness<String>.Configuration.standard

    @Test func newWorkerIsHeartbeatedAndDeclaredDeadAfterThreeSilentIntervals() throws {
        var liveness = WorkerLiveness<String>(configuration: config)
        let firstTime = liveness.heard(from: "w1", at: at(0))
        let secondTime = liveness.heard(from: "w1", at: at(0))
        #expect(firstTime && !secondTime)
        #expect(liveness.tick(at: at(0)) == [.sendHeartbeat("w1")])
        #expect(liveness.tick(at: at(999)).isEmpty)
        #expect(liveness.tick(at: at(1000)) == [.sendHeartbeat("w1")])
        #expect(liveness.tick(at: at(2000)) == [.sendHeartbeat("w1")])
        #expect(liveness.tick(at: at(2999)).isEmpty)
        #expect(liveness.isAlive("w1"))
        #expect(liveness.tick(at: at(3000)) == [.declareDead("w1")])
        #expect(!liveness.isAlive("w1"))
        #expect(liveness.tick(at: at(9000)).isEmpty)
        #expect(liveness.nextDeadline == nil)
    }

    @Test func anyMessageKeepsAWorkerAlive() throws {
        var liveness = WorkerLiveness<String>(configuration: config)
        liveness.heard(from: "w1", at: at(0))
        for t in stride(from: Int64(500), through: 10_000, by: 500) {
            liveness.heard(from: "w1", at: at(t))
            #expect(!liveness.tick(at: at(t)).contains(.declareDead("w1")))
        }
        #expect(liveness.isAlive("w1"))
        #expect(liveness.tick(at: at(12_999)).allSatisfy { $0 != .declareDead("w1") })
        #expect(liveness.tick(at: at(13_000)) == [.declareDead("w1")])
    }

    @Test func outgoingTrafficReplacesHeartbeats() throws {
        var liveness = WorkerLiveness<String>(configuration: config)
        liveness.heard(from: "w1", at: at(0))
        liveness.sent(to: "w1", at: at(0))
        #expect(liveness.tick(at: at(500)).isEmpty)
        liveness.sent(to: "w1", at: at(800))
        #expect(liveness.tick(at: at(1500)).isEmpty)
        #expect(liveness.tick(at: at(1800)) == [.sendHeartbeat("w1")])
    }

    @Test func workersAreIndependentAndOrdered() throws {
        var liveness = WorkerLiveness<String>(configuration: config)
        liveness.heard(from: "a", at: at(0))
        liveness.heard(from: "b", at: at(1000))
        #expect(liveness.tick(at: at(1000)) == [.sendHeartbeat("a"), .sendHeartbeat("b")])
        #expect(liveness.nextDeadline == at(2000))
        liveness.heard(from: "b", at: at(2500))
        #expect(liveness.tick(at: at(3000)) == [.declareDead("a"), .sendHeartbeat("b")])
        #expect(liveness.workers == ["b"])
        liveness.forget("b")
        #expect(liveness.workers.isEmpty)
        // A worker that comes back after being declared dead is new again.
        let returning = liveness.heard(from: "a", at: at(4000))
        #expect(returning)
    }

    @Test func deadlineMatchesTheNextActionExactly() throws {
        var liveness = try WorkerLiveness<Int>(configuration: .init(heartbeatInterval: .milliseconds(100), missedHeartbeatsBeforeDead: 3))
        liveness.heard(from: 1, at: at(0))
        var now = at(0)
        var actions: [WorkerLiveness<Int>.Action] = liveness.tick(at: now)
        while let deadline = liveness.nextDeadline {
            #expect(liveness.tick(at: MonotonicInstant(nanoseconds: deadline.nanoseconds - 1)).isEmpty)
            now = deadline
            actions += liveness.tick(at: now)
        }
        #expect(actions == [.sendHeartbeat(1), .sendHeartbeat(1), .sendHeartbeat(1), .declareDead(1)])
        #expect(now == at(300))
    }
}

@Suite struct CoordinatorLivenessTests {
    @Test func standardConfigurationAndValidation() throws {
        let standard = CoordinatorLiveness.Configuration.standard
        #expect(standard.heartbeatInterval == .seconds(1) && standard.missedHeartbeatsBeforeLost == 3)
        #expect(standard.initialBackoff == .seconds(1) && standard.maxBackoff == .seconds(32))
        #expect(throws: LivenessConfigurationError(field: "maxBackoff", reason: "must be at least initialBackoff")) {
            try CoordinatorLiveness.Configuration(heartbeatInterval: .seconds(1), initialBackoff: .seconds(2), maxBackoff: .seconds(1))
        }
        #expect(throws: LivenessConfigurationError(field: "jitterFraction", reason: "must be within 0...1")) {
            try CoordinatorLiveness.Configuration(heartbeatInterval: .seconds(1), initialBackoff: .seconds(1), maxBackoff: .seconds(1), jitterFraction: 1.5)
        }
        #expect(throws: LivenessConfigurationError(field: "heartbeatInterval", reason: "must be positive")) {
            try WorkerLiveness<Int>.Configuration(heartbeatInterval: .zero)
        }
        #expect(throws: LivenessConfigurationError(field: "missedHeartbeatsBeforeDead", reason: "must be at least 1")) {
            try WorkerLiveness<Int>.Configuration(heartbeatInterval: .seconds(1), missedHeartbeatsBeforeDead: 0)
        }
    }

    func noJitter(initial: Int64 = 1000, max: Int64 = 32_000) throws -> CoordinatorLiveness.Configuration {
        try .init(heartbeatInterval: .milliseconds(1000), missedHeartbeatsBeforeLost: 3,
              initialBackoff: .milliseconds(initial), maxBackoff: .milliseconds(max), jitterFraction: 0)
    }

    @Test func heartbeatsWhileConnectedAndLosesAfterThreeSilentIntervals() throws {
        var liveness = CoordinatorLiveness(configuration: try noJitter(), now: at(0), seed: 1)
        #expect(liveness.tick(at: at(999)).isEmpty)
        #expect(liveness.tick(at: at(1000)) == [.sendHeartbeat])
        #expect(liveness.tick(at: at(1500)).isEmpty)
        #expect(liveness.tick(at: at(2000)) == [.sendHeartbeat])
        #expect(liveness.tick(at: at(3000)) == [.coordinatorLost(reconnectAfter: .milliseconds(1000))])
        #expect(liveness.state == .waiting(reconnectAt: at(4000)))
        #expect(liveness.tick(at: at(3999)).isEmpty)
        #expect(liveness.tick(at: at(4000)) == [.reconnect])
        #expect(liveness.state == .connected(lastHeard: at(4000), lastSent: at(4000)))
    }

    @Test func hearingTheCoordinatorPostponesLoss() throws {
        var liveness = CoordinatorLiveness(configuration: try noJitter(), now: at(0), seed: 1)
        liveness.received(at: at(2500))
        #expect(liveness.tick(at: at(3000)) == [.sendHeartbeat])
        #expect(liveness.tick(at: at(5499)).allSatisfy { $0 == .sendHeartbeat })
        #expect(liveness.tick(at: at(5500)) == [.coordinatorLost(reconnectAfter: .milliseconds(1000))])
    }

    @Test func backoffDoublesUpToTheCapAndResetsWhenHeard() throws {
        var liveness = CoordinatorLiveness(configuration: try noJitter(initial: 1000, max: 5000), now: at(0), seed: 1)
        var now: Int64 = 0
        var delays: [Duration] = []
        for _ in 0..<5 {
            now += 3000
            guard case .coordinatorLost(let delay) = liveness.tick(at: at(now)).first else {
                Issue.record("expected the coordinator to be declared lost at \(now) ms")
                return
            }
            delays.append(delay)
            now += delay.nanoseconds / 1_000_000
            #expect(liveness.tick(at: at(now)) == [.reconnect])
        }
        #expect(delays == [1000, 2000, 4000, 5000, 5000].map { Duration.milliseconds($0) })
        #expect(liveness.consecutiveFailures == 5)
        liveness.received(at: at(now + 10))
        #expect(liveness.consecutiveFailures == 0)
        #expect(liveness.tick(at: at(now + 3010)) == [.coordinatorLost(reconnectAfter: .milliseconds(1000))])
    }

    @Test func jitterStaysWithinItsShareAndUnderTheCapAndIsReproducible() throws {
        let config = try CoordinatorLiveness.Configuration(heartbeatInterval: .milliseconds(100), missedHeartbeatsBeforeLost: 3,
                                                       initialBackoff: .milliseconds(100), maxBackoff: .milliseconds(1600), jitterFraction: 0.5)
        func delays(seed: UInt64) -> [Duration] {
            var liveness = CoordinatorLiveness(configuration: config, now: at(0), seed: seed)
            var now: Int64 = 0
            var out: [Duration] = []
            for _ in 0..<12 {
                now += 300
                guard case .coordinatorLost(let delay)? = liveness.tick(at: at(now)).first else { return out }
                out.append(delay)
                now += delay.nanoseconds / 1_000_000 + 1
                _ = liveness.tick(at: at(now))
            }
            return out
        }
        let first = delays(seed: 42)
        #expect(first.count == 12)
        #expect(first == delays(seed: 42))
        #expect(first != delays(seed: 43))
        for (failure, delay) in first.enumerated() {
            let nominal = Duration.milliseconds(min(1600, 100 << failure))
            #expect(delay <= nominal && delay >= nominal / 2, "failure \(failure): \(delay) outside [\(nominal / 2), \(nominal)]")
        }
        #expect(first.allSatisfy { $0 <= .milliseconds(1600) })
    }

    @Test func sendingPostponesTheHeartbeat() throws {
        var liveness = CoordinatorLiveness(configuration: try noJitter(), now: at(0), seed: 1)
        liveness.sent(at: at(900))
        #expect(liveness.tick(at: at(1000)).isEmpty)
        #expect(liveness.nextDeadline == at(1900))
        #expect(liveness.tick(at: at(1900)) == [.sendHeartbeat])
    }

    /// The socket stays open through the backoff and libzmq reconnects it underneath; a coordinator
    /// heard on it is reachable, and replacing that socket would drop what is in flight on it.
    @Test func hearingTheCoordinatorWhileWaitingCancelsTheReconnect() throws {
        var liveness = CoordinatorLiveness(configuration: try noJitter(), now: at(0), seed: 1)
        #expect(liveness.tick(at: at(3000)) == [.coordinatorLost(reconnectAfter: .milliseconds(1000))])
        liveness.received(at: at(3100))
        // Connected again, with a full silence allowance and a heartbeat due at once (none went out while waiting).
        #expect(liveness.state == .connected(lastHeard: at(3100), lastSent: at(2100)))
        #expect(liveness.consecutiveFailures == 0)
        #expect(liveness.tick(at: at(3100)) == [.sendHeartbeat])
        #expect(liveness.tick(at: at(4000)).isEmpty)
        #expect(liveness.tick(at: at(6099)).allSatisfy { $0 == .sendHeartbeat })
        // Lost again: the backoff starts over from the initial delay.
        #expect(liveness.tick(at: at(6100)) == [.coordinatorLost(reconnectAfter: .milliseconds(1000))])
    }
}

extension SerialTransportTests {
    @Suite struct CreditWindowTests {
        @Test func assignsOnlyWithCredit() throws {
            var window = CreditWindow(prefetch: 2)
            #expect(!window.canAssign)
            #expect(throws: CreditWindow.Refusal.noCredit) { try window.assign(1) }
            #expect(window.grant(2) == 2)
            try window.assign(1)
            #expect(throws: CreditWindow.Refusal.alreadyOutstanding(1)) { try window.assign(1) }
            try window.assign(2)
            #expect(throws: CreditWindow.Refusal.noCredit) { try window.assign(3) }
            #expect(window.outstanding == [1, 2])
        }

        @Test func grantsAreClampedToPrefetch() throws {
            var window = CreditWindow(prefetch: 3)
            #expect(window.grant(10) == 3)
            try window.assign(7)
            #expect(window.grant(1) == 0)
            let completed = window.complete(7)
            let again = window.complete(7)
            #expect(completed && !again)
            #expect(window.grant(5) == 1)
            #expect(window.credits == 3)
        }

        @Test func resetReturnsOutstandingShardsForRequeue() throws {
            var window = CreditWindow(prefetch: 4)
            window.grant(4)
            for shard: Int64 in [9, 3, 5] { try window.assign(shard) }
            #expect(window.reset() == [3, 5, 9])
            #expect(window.outstanding.isEmpty && window.credits == 0)
        }

        @Test func shrinkingPrefetchDropsExcessCredit() throws {
            var window = CreditWindow(prefetch: 4)
            window.grant(4)
            try window.assign(1)
            window.updatePrefetch(2)
            #expect(window.credits == 1)
            window.updatePrefetch(1)
            #expect(window.credits == 0)
            #expect(!window.canAssign)
        }

        /// Whatever a (possibly faulty) worker grants, the coordinator never holds more than `prefetch`.
        @Test func randomOperationsNeverExceedPrefetch() throws {
            var rng = SplitMix64(seed: 5)
            var window = CreditWindow(prefetch: 5)
            var next: Int64 = 0
            var maxOutstanding = 0
            for _ in 0..<50_000 {
                switch rng.next() % 4 {
                case 0: window.grant(UInt32(rng.next() % 8))
                case 1:
                    if window.canAssign { try? window.assign(next); next += 1 }
                case 2:
                    if let shard = window.outstanding.randomElement() { window.complete(shard) }
                default:
                    window.complete(Int64(rng.next() % 1000) + 1_000_000)
                }
                #expect(window.outstanding.count + Int(window.credits) <= 5)
                maxOutstanding = max(maxOutstanding, window.outstanding.count)
            }
            #expect(maxOutstanding == 5)
        }
    }
}
