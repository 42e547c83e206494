import CZeroMQ
import Foundation
import Logging
import Synchronization

/// The I/O machinery shared by `RouterEndpoint` and `DealerEndpoint`: one owned thread that polls the
/// socket and a wake-up pipe, runs queued commands and hands received messages to `deliver`.
///
/// `@unchecked Sendable`: callers only touch `shared` (a `Mutex`) and `wakeup` (a pipe, safe from
/// any thread). `socket` is set before the thread starts and afterwards read and replaced only by that
/// thread, as libzmq requires.
///
/// Every submitted command is completed: by the thread, or with `.shutDown` once the thread has ended
/// for whatever reason. A replacement that cannot create its socket leaves the endpoint without one
/// but running: sends fail with `.wouldBlock` and the next `replaceSocket` tries again.
final class EndpointCore: @unchecked Sendable {
    typealias Completion = @Sendable (Result<Void, TransportError>) -> Void

    enum Command: Sendable {
        case send(frames: [[UInt8]], peer: PeerIdentity?, completion: Completion)
        case replaceSocket(completion: Completion)
        case stop
    }

    private struct Shared: Sendable {
        var queue: [Command] = []
        var stopping = false
        var finished = false
        var shutdownWaiters: [CheckedContinuation<Void, Never>] = []
    }

    private let wakeup: WakeupPipe
    private let shared = Mutex(Shared())
    private var socket: ZMQSocket?
    private let makeSocket: @Sendable () throws -> ZMQSocket
    private let deliver: @Sendable (ReceivedMessage) -> Void
    private let onFinish: @Sendable () -> Void
    /// Hears the events of the socket's monitor, when `makeSocket` started one.
    private let observe: (@Sendable (ZMQSocketEvent) -> Void)?
    private let logger: Logger

    /// Most messages received per wake-up before commands get a turn again.
    private static let receiveBatch = 256

    init(socket: ZMQSocket, makeSocket: @escaping @Sendable () throws -> ZMQSocket,
         deliver: @escaping @Sendable (ReceivedMessage) -> Void, onFinish: @escaping @Sendable () -> Void,
         observe: (@Sendable (ZMQSocketEvent) -> Void)? = nil, logger: Logger) throws(TransportError) {
        do { wakeup = try WakeupPipe() } catch { throw .zmq(error) }
        self.socket = socket
        self.makeSocket = makeSocket
        self.deliver = deliver
        self.onFinish = onFinish
        self.observe = observe
        self.logger = logger
    }

    func start(name: String) {
        let thread = Thread { [self] in run() }
        thread.name = name
        thread.start()
    }

    /// Queues a command; fails it at once with `.shutDown` if the endpoint is stopping.
    func submit(_ command: Command) {
        let accepted = shared.withLock { state -> Bool in
            guard !state.stopping else { return false }
            state.queue.append(command)
            return true
        }
        if accepted {
            wakeup.signal()
        } else {
            Self.fail(command)
        }
    }

    /// Runs `command` on the I/O thread and waits for its result without blocking a cooperative thread.
    func perform(_ make: (@escaping Completion) -> Command) async -> Result<Void, TransportError> {
        await withCheckedContinuation { continuation in
            submit(make { continuation.resume(returning: $0) })
        }
    }

    /// Asks the thread to stop (idempotent) without waiting.
    func requestStop() {
        let first = shared.withLock { state -> Bool in
            defer { state.stopping = true }
            if !state.stopping { state.queue.append(.stop) }
            return !state.stopping
        }
        if first { wakeup.signal() }
    }

    /// Stops the thread and waits until the socket is closed.
    func stop() async {
        requestStop()
        await withCheckedContinuation { continuation in
            let finished = shared.withLock { state -> Bool in
                if !state.finished { state.shutdownWaiters.append(continuation) }
                return state.finished
            }
            if finished { continuation.resume() }
        }
    }

    private static func fail(_ command: Command) {
        switch command {
        case .send(_, _, let completion), .replaceSocket(let completion): completion(.failure(.shutDown))
        case .stop: break
        }
    }

    // MARK: I/O thread

    private func run() {
        loop()
        socket = nil
        let (leftovers, waiters) = shared.withLock { state in
            // Also when the loop ended on its own (a failed poll): nobody would run later commands.
            state.stopping = true
            state.finished = true
            defer {
                state.queue = []
                state.shutdownWaiters = []
            }
            return (state.queue, state.shutdownWaiters)
        }
        leftovers.forEach(Self.fail)
        onFinish()
        waiters.forEach { $0.resume() }
    }

    private func loop() {
        while true {
            let readable: (socket: Bool, monitor: Bool)
            do { readable = try waitForActivity() } catch {
                logger.error("poll failed; closing endpoint", metadata: ["error": "\(error)"])
                return
            }
            let commands = shared.withLock { state in
                defer { state.queue = [] }
                return state.queue
            }
            var replaced = false
            for (index, command) in commands.enumerated() {
                if case .stop = command {
                    commands[(index + 1)...].forEach(Self.fail)
                    return
                }
                if case .replaceSocket = command { replaced = true }
                execute(command)
            }
            if readable.socket || !commands.isEmpty { receiveAvailable() }
            // After a replacement the readiness was the old monitor's; the new one is polled next round.
            if readable.monitor, !replaced, let monitor = socket?.monitor { observeEvents(monitor) }
        }
    }

    /// Blocks until the socket, its monitor (when observed) or the wake-up pipe is readable, and
    /// empties the pipe. Without a socket only the pipe is polled, so commands still run. Holds no
    /// reference to the socket afterwards: a `replaceSocket` must be able to close it.
    private func waitForActivity() throws(ZMQError) -> (socket: Bool, monitor: Bool) {
        var sockets: [ZMQSocket] = []
        if let socket {
            sockets.append(socket)
            if observe != nil, let monitor = socket.monitor { sockets.append(monitor.socket) }
        }
        let readiness = try ZMQPoll.readable(sockets: sockets, fileDescriptors: [wakeup.readDescriptor], timeoutMilliseconds: -1)
        if readiness.fileDescriptors[0] { wakeup.drain() }
        return (readiness.sockets.first ?? false, readiness.sockets.count > 1 && readiness.sockets[1])
    }

    private func observeEvents(_ monitor: ZMQSocketMonitor) {
        do {
            while let event = try monitor.nextEvent() { observe?(event) }
        } catch {
            // Without its monitor the socket still works; a failing one would make every poll return at once.
            logger.warning("socket monitor failed; connection events are no longer reported", metadata: ["error": "\(error)"])
            socket?.stopMonitor()
        }
    }

    private func execute(_ command: Command) {
        switch command {
        case .send(let frames, let peer, let completion):
            // No socket: the last replacement failed; the caller's liveness asks for another.
            guard let socket else { return completion(.failure(.wouldBlock)) }
            do {
                let queued = try socket.send(frames, dontWait: true)
                completion(queued ? .success(()) : .failure(.wouldBlock))
            } catch {
                if error.hostUnreachable, let peer {
                    completion(.failure(.unknownPeer(peer)))
                } else {
                    completion(.failure(.zmq(error)))
                }
            }
        case .replaceSocket(let completion):
            // Drop what the old socket still queues (stale heartbeats must not reach a restarted
            // coordinator before the new `register`), and close it first so its routing id is free:
            // this is its last reference (`waitForActivity` keeps none), so `zmq_close` runs here.
            try? socket?.setOption(ZMQ_LINGER, 0, name: "ZMQ_LINGER")
            socket = nil
            do {
                socket = try makeSocket()
                completion(.success(()))
            } catch let error as ZMQError {
                completion(.failure(.zmq(error)))
            } catch let error as TransportError {
                completion(.failure(error))
            } catch {
                completion(.failure(.zmq(ZMQError(operation: "socket setup", code: EINVAL))))
            }
        case .stop:
            break
        }
    }

    private func receiveAvailable() {
        guard let socket else { return }
        for _ in 0..<Self.receiveBatch {
            do {
                guard let message = try socket.receive(dontWait: true) else { return }
                deliver(message)
            } catch {
                logger.error("receive failed", metadata: ["error": "\(error)"])
                return
            }
        }
    }
}
