import Foundation
import Synchronization
import Testing
import VTPTestSupport
import VTPVocabulary
@testable import VTPTransport

/// The socket suites check heartbeat timing over real sockets, so they run one at a time even
/// when this target is run in parallel by hand.
@Suite(.serialized) enum TransportSocketTests {}

/// Collects everything an endpoint's inbound stream yields, so tests can wait for messages with a deadline.
final class Collector<Element: Sendable>: Sendable {
    private let items = Mutex<[Element]>([])

    init(_ stream: AsyncStream<Element>) {
        // Lives as long as the stream: the endpoint finishes it when it shuts down.
        Task { [self] in
            for await element in stream { items.withLock { $0.append(element) } }
        }
    }

    var snapshot: [Element] { items.withLock { $0 } }

    /// Waits until `predicate` holds for the collected elements or `timeout` passes; returns the elements.
    @discardableResult
    func wait(timeout: Duration = .seconds(5), until predicate: ([Element]) -> Bool) async -> [Element] {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let current = snapshot
            if predicate(current) { return current }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return snapshot
    }

    func wait(count: Int, timeout: Duration = .seconds(5)) async -> [Element] {
        await wait(timeout: timeout) { $0.count >= count }
    }
}

extension RouterInbound {
    var decoded: WireMessage? { try? message.get() }
    var decodeError: WireDecodeError? {
        if case .failure(let error) = message { return error }
        return nil
    }
}

/// Endpoint strings for the transports under test: an ephemeral loopback tcp port or a fresh ipc path.
enum TestTransport: String, CaseIterable, Sendable {
    case tcp, ipc

    func endpoint(in directory: TemporaryDirectory) -> String {
        switch self {
        case .tcp: "tcp://127.0.0.1:*"
        case .ipc: "ipc://\(directory.path)/coordinator.sock"
        }
    }
}


let workerCapabilities = WorkerCapabilities(jobTypes: ["encode"], threads: 4, prefetch: 2, memoryBytes: 8 << 30)

/// A registration of worker `id`; equal for equal arguments (one fixed session), so tests can compare what arrived.
func registerMessage(_ id: String, session: UInt64 = 1) -> WireMessage {
    .register(RegisterMessage(workerID: id, host: "localhost", capabilities: workerCapabilities, session: session))
}
