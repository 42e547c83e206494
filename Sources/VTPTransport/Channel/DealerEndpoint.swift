import CZeroMQ
import Dispatch
import Logging
import Synchronization

/// CURVE settings of the worker side.
public struct CurveClientSecurity: Sendable, Equatable {
    /// This worker's key pair; its public key must be listed at the coordinator.
    public var clientKeys: CurveKeyPair
    /// The coordinator's public key.
    public var serverPublicKey: CurveKey

    public init(clientKeys: CurveKeyPair, serverPublicKey: CurveKey) {
        self.clientKeys = clientKeys
        self.serverPublicKey = serverPublicKey
    }
}

/// How a worker's DEALER connects.
public struct DealerConfiguration: Sendable {
    public var endpoint: String
    /// The routing identity the coordinator sees (normally the worker id): 1...255 bytes, not starting with 0.
    public var identity: PeerIdentity
    public var curve: CurveClientSecurity?
    public var lingerMilliseconds: Int32 = ZMQSocket.defaultLingerMilliseconds
    public var maxMessageBytes: Int = WireLimits.maxFrameBytes
    public var highWaterMark: Int32 = 1000
    public var transportHeartbeat: TransportHeartbeat? = TransportHeartbeat()
    /// libzmq's own TCP reconnect pacing (`ZMQ_RECONNECT_IVL` / `_MAX`), below the application's
    /// `CoordinatorLiveness` backoff.
    public var reconnectIntervalMilliseconds: Int32 = 100
    public var reconnectIntervalMaxMilliseconds: Int32 = 5000

    public init(endpoint: String, identity: PeerIdentity, curve: CurveClientSecurity? = nil) {
        self.endpoint = endpoint
        self.identity = identity
        self.curve = curve
    }
}

/// One inbound message at a worker: the decoded message or why it could not be decoded.
public typealias DealerInbound = Result<WireMessage, WireDecodeError>

/// A worker's socket: a DEALER connected to the coordinator's ROUTER.
///
/// It owns an I/O thread. `reconnect()` replaces the socket with a fresh one (the Paranoid Pirate
/// recovery step, driven by `CoordinatorLiveness`); `inbound` continues across reconnects and finishes
/// after `shutdown()`.
public final class DealerEndpoint: Sendable {
    public let inbound: AsyncStream<DealerInbound>
    public let configuration: DealerConfiguration
    private let core: EndpointCore
    private let handshakes: HandshakeWatch

    public init(context: ZMQContext, configuration: DealerConfiguration,
                logger: Logger = Logger(label: "vtp.transport.dealer")) throws(TransportError) {
        let endpoint = try EndpointAddress(configuration.endpoint)
        try configuration.identity.validateAsRoutingID()
        self.configuration = configuration
        let handshakes = HandshakeWatch(publicKey: configuration.curve?.clientKeys.publicKey.z85, logger: logger)
        self.handshakes = handshakes
        let make: @Sendable () throws(ZMQError) -> ZMQSocket = {
            try Self.makeSocket(context: context, configuration: configuration, endpoint: endpoint, logger: logger)
        }
        let socket: ZMQSocket
        do { socket = try make() } catch { throw .zmq(error) }
        let (stream, continuation) = AsyncStream.makeStream(of: DealerInbound.self)
        inbound = stream
        core = try EndpointCore(
            socket: socket,
            makeSocket: { try make() },
            deliver: { continuation.yield(Self.decode($0)) },
            onFinish: { continuation.finish() },
            observe: { handshakes.observe($0) },
            logger: logger)
        core.start(name: "vtp-dealer-io")
    }

    deinit { core.requestStop() }

    /// Why the coordinator refused this worker's last handshake (its CURVE key not authorized),
    /// until a handshake succeeds; nil when it never refused. The refusal is also logged once.
    public var handshakeRejection: HandshakeRejection? { handshakes.rejection }

    /// Queues `message` for the coordinator. Throws `.wouldBlock` when the outgoing queue is full, when
    /// libzmq dropped the session after a failed handshake (e.g. the coordinator refused this worker's
    /// key), or while the last `reconnect()` failed; `CoordinatorLiveness` then drives a `reconnect()`.
    public func send(_ message: WireMessage) async throws(TransportError) {
        guard message.type.direction.allows(.workerToCoordinator) else {
            throw .encode(.invalidValue(field: "type", reason: "\(message.type) cannot be sent from the worker side"))
        }
        let body: [UInt8]
        do { body = try message.encoded() } catch { throw .encode(error) }
        try await core.perform { .send(frames: [body], peer: nil, completion: $0) }.get()
    }

    /// ``send(_:)`` for a thread that cannot await (a crash reporter): blocks until the message is
    /// queued in libzmq or `timeout` seconds pass. Returns whether it was queued.
    public func sendBlocking(_ message: WireMessage, timeout: Double) -> Bool {
        guard message.type.direction.allows(.workerToCoordinator), let body = try? message.encoded() else { return false }
        let done = DispatchSemaphore(value: 0)
        let queued = Mutex(false)
        core.submit(.send(frames: [body], peer: nil, completion: { result in
            if case .success = result { queued.withLock { $0 = true } }
            done.signal()
        }))
        guard done.wait(timeout: .now() + timeout) == .success else { return false }
        return queued.withLock { $0 }
    }

    /// Closes the socket, dropping anything still queued, and connects a fresh one with the same
    /// identity. The caller sends `register` again afterwards. When the fresh socket cannot be made
    /// this throws and the endpoint stays without one (sends fail, `inbound` goes on) until a later
    /// `reconnect()` succeeds.
    public func reconnect() async throws(TransportError) {
        try await core.perform { .replaceSocket(completion: $0) }.get()
    }

    /// Closes the socket (bounded by linger) and finishes `inbound`.
    public func shutdown() async { await core.stop() }

    private static func makeSocket(context: ZMQContext, configuration: DealerConfiguration,
                                   endpoint: EndpointAddress, logger: Logger) throws(ZMQError) -> ZMQSocket {
        let socket = try ZMQSocket(context: context, type: .dealer)
        try CommonSocketOptions(lingerMilliseconds: configuration.lingerMilliseconds,
                                maxMessageBytes: configuration.maxMessageBytes,
                                highWaterMark: configuration.highWaterMark,
                                heartbeat: configuration.transportHeartbeat).apply(to: socket, endpoint: endpoint)
        try socket.setOption(ZMQ_ROUTING_ID, bytes: configuration.identity.bytes, name: "ZMQ_ROUTING_ID")
        try socket.setOption(ZMQ_RECONNECT_IVL, configuration.reconnectIntervalMilliseconds, name: "ZMQ_RECONNECT_IVL")
        try socket.setOption(ZMQ_RECONNECT_IVL_MAX, configuration.reconnectIntervalMaxMilliseconds, name: "ZMQ_RECONNECT_IVL_MAX")
        if let curve = configuration.curve {
            try socket.setOption(ZMQ_CURVE_SERVERKEY, bytes: Array(curve.serverPublicKey.z85.utf8), name: "ZMQ_CURVE_SERVERKEY")
            try socket.setOption(ZMQ_CURVE_PUBLICKEY, bytes: Array(curve.clientKeys.publicKey.z85.utf8), name: "ZMQ_CURVE_PUBLICKEY")
            try socket.setOption(ZMQ_CURVE_SECRETKEY, bytes: Array(curve.clientKeys.secretKey.z85.utf8), name: "ZMQ_CURVE_SECRETKEY")
        }
        // Before connecting, so the first handshake is seen too. The monitor only explains
        // failures; a socket without one still works.
        do { try socket.startMonitor(events: ZMQSocketEvent.handshakeEvents) } catch {
            logger.warning("cannot monitor the connection to \(configuration.endpoint); a refused key will show only as silence: \(error)")
        }
        try socket.connect(endpoint.description)
        return socket
    }

    private static func decode(_ received: ReceivedMessage) -> DealerInbound {
        guard received.frames.count == 1, received.truncatedFrames == 0 else {
            return .failure(.unexpectedFrameCount(expected: 1, got: received.frames.count + received.truncatedFrames))
        }
        do {
            return .success(try WireMessage.decode(received.frames[0], travelling: .coordinatorToWorker))
        } catch {
            return .failure(error)
        }
    }
}
