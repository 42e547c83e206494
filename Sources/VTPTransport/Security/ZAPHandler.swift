import CZeroMQ
import Foundation
import Logging
import Synchronization

/// A ZeroMQ authentication (ZAP, RFC 27) handler admitting only listed CURVE client keys.
///
/// It binds `inproc://zeromq.zap.01` in its context and answers on its own thread. libzmq consults it
/// for every CURVE handshake on every socket of that context, so there can be only one per context;
/// it must be running before a CURVE server socket binds (without a handler, libzmq would admit any key).
public final class ZAPHandler: Sendable {
    /// What the handler decided so far.
    public struct Statistics: Sendable, Equatable {
        public var accepted = 0
        public var denied = 0
        /// The last key denied, in Z85 (or the mechanism name when a non-CURVE handshake was denied).
        public var lastDeniedKey: String?
    }

    public static let endpoint = "inproc://zeromq.zap.01"

    private let wakeup: WakeupPipe
    private let shared: ZAPShared

    /// Starts the handler on `context` admitting exactly `authorizedClients`.
    public init(context: ZMQContext, authorizedClients: Set<CurveKey>, logger: Logger = Logger(label: "vtp.transport.zap")) throws(TransportError) {
        let socket: ZMQSocket
        do {
            socket = try ZMQSocket(context: context, type: .rep)
            try socket.bind(Self.endpoint)
            wakeup = try WakeupPipe()
        } catch {
            throw .zmq(error)
        }
        let shared = ZAPShared(allowed: Set(authorizedClients.map(\.rawBytes)))
        self.shared = shared
        let handoff = SocketHandoff(socket)
        let thread = Thread { [wakeup, shared] in
            var socket = handoff.take()
            if let owned = socket {
                Self.serve(socket: owned, wakeup: wakeup, shared: shared, logger: logger)
                // Free the well-known address before anyone waiting in `stop()` resumes.
                try? owned.unbind(Self.endpoint)
            }
            socket = nil
            let waiters = shared.finished.withLock { state in
                state.done = true
                defer { state.waiters = [] }
                return state.waiters
            }
            waiters.forEach { $0.resume() }
        }
        thread.name = "vtp-zap"
        thread.start()
    }

    deinit {
        shared.state.withLock { $0.stop = true }
        wakeup.signal()
    }

    /// Replaces the allow-list; later handshakes use the new list, established connections stay.
    public func setAuthorizedClients(_ keys: Set<CurveKey>) {
        let raw = Set(keys.map(\.rawBytes))
        shared.state.withLock { $0.allowed = raw }
    }

    /// Decisions so far.
    public var statistics: Statistics { shared.state.withLock { $0.statistics } }

    /// Stops the thread and unbinds; returns once the socket is closed.
    public func stop() async {
        shared.state.withLock { $0.stop = true }
        wakeup.signal()
        await withCheckedContinuation { continuation in
            let done = shared.finished.withLock { state in
                if !state.done { state.waiters.append(continuation) }
                return state.done
            }
            if done { continuation.resume() }
        }
    }

    private static func serve(socket: ZMQSocket, wakeup: WakeupPipe,
                              shared: ZAPShared, logger: Logger) {
        while !shared.state.withLock({ $0.stop }) {
            do {
                let ready = try ZMQPoll.readable(sockets: [socket], fileDescriptors: [wakeup.readDescriptor], timeoutMilliseconds: -1)
                if ready.fileDescriptors[0] { wakeup.drain() }
                guard ready.sockets[0], let request = try socket.receive(dontWait: true) else { continue }
                let reply = answer(request.frames, shared: shared, logger: logger)
                try socket.send(reply)
            } catch {
                logger.error("ZAP handler failed; stopping", metadata: ["error": "\(error)"])
                return
            }
        }
    }

    /// Builds the ZAP reply: version, request id, status code, status text, user id, metadata.
    private static func answer(_ frames: [[UInt8]],
                               shared: ZAPShared, logger: Logger) -> [[UInt8]] {
        let version = Array("1.0".utf8)
        // Request: version, request id, domain, address, identity, mechanism, credentials...
        guard frames.count >= 6, frames[0] == version else {
            logger.warning("malformed ZAP request", metadata: ["frames": "\(frames.count)"])
            return [version, frames.count > 1 ? frames[1] : [], Array("500".utf8), Array("malformed request".utf8), [], []]
        }
        let requestID = frames[1]
        let address = String(decoding: frames[3], as: UTF8.self)
        let mechanism = String(decoding: frames[5], as: UTF8.self)
        let key = frames.count == 7 ? frames[6] : []
        let keyText = key.count == 32 ? z85Encode(key) : mechanism
        let admitted = shared.state.withLock { state in
            let admitted = mechanism == "CURVE" && key.count == 32 && state.allowed.contains(key)
            if admitted {
                state.statistics.accepted += 1
            } else {
                state.statistics.denied += 1
                state.statistics.lastDeniedKey = keyText
            }
            return admitted
        }
        if admitted {
            logger.debug("ZAP admitted client", metadata: ["key": "\(keyText.prefix(8))", "address": "\(address)"])
            return [version, requestID, Array("200".utf8), Array("OK".utf8), Array(keyText.utf8), []]
        }
        // A worker event (docs/monitoring.md): which worker is unknown, only its key and address.
        logger.warning("worker refused", metadata: ["event": "worker_refused", "reason": "CURVE key not authorized",
                                                    "key": "\(keyText)", "mechanism": "\(mechanism)", "address": "\(address)"])
        return [version, requestID, Array("400".utf8), Array("client key not authorized".utf8), [], []]
    }

    private static func z85Encode(_ key: [UInt8]) -> String {
        var text = [CChar](repeating: 0, count: 41)
        _ = zmq_z85_encode(&text, key, key.count)
        return String(decoding: text.prefix(40).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// What the ZAP thread shares with callers.
struct ZAPState: Sendable {
    var allowed: Set<[UInt8]>
    var stop = false
    var statistics = ZAPHandler.Statistics()
}

/// The ZAP thread's shared state and its stop handshake, held by both the handler and the thread
/// (so the handler's deinit can still stop a thread that outlives it).
final class ZAPShared: Sendable {
    let state: Mutex<ZAPState>
    /// Whether the thread has finished, and who waits for it in `stop()`.
    let finished = Mutex<(done: Bool, waiters: [CheckedContinuation<Void, Never>])>((done: false, waiters: []))

    init(allowed: Set<[UInt8]>) { state = Mutex(ZAPState(allowed: allowed)) }
}

/// Moves a freshly created socket to the thread that will own it.
///
/// `@unchecked Sendable`: libzmq allows migrating a socket between threads across a full memory barrier;
/// `Thread.start` and the mutex inside provide it, and `take()` hands the socket out exactly once, after
/// which the creating thread no longer holds it. (The socket type is not `Sendable`, so the mutex
/// alone cannot vouch for it.)
final class SocketHandoff: @unchecked Sendable {
    private nonisolated(unsafe) var socket: ZMQSocket?
    private let handing = Mutex(())

    init(_ socket: ZMQSocket) { self.socket = socket }

    func take() -> ZMQSocket? {
        handing.withLock { _ in
            defer { socket = nil }
            return socket
        }
    }
}
