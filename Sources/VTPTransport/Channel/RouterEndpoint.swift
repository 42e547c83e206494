import CZeroMQ
import Logging

/// CURVE settings of the coordinator side.
public struct CurveServerSecurity: Sendable, Equatable {
    /// The coordinator's own key pair; workers need its public key.
    public var serverKeys: CurveKeyPair
    /// Worker public keys allowed to connect; every other key is refused by the ZAP handler.
    public var authorizedClients: Set<CurveKey>

    public init(serverKeys: CurveKeyPair, authorizedClients: Set<CurveKey>) {
        self.serverKeys = serverKeys
        self.authorizedClients = authorizedClients
    }
}

/// How the coordinator's ROUTER endpoint binds and behaves.
public struct RouterConfiguration: Sendable {
    /// Endpoints to bind. Without `curve`, only loopback tcp, ipc and inproc are accepted.
    public var bindEndpoints: [String]
    public var curve: CurveServerSecurity?
    public var lingerMilliseconds: Int32 = ZMQSocket.defaultLingerMilliseconds
    /// Inbound frames above this size make libzmq drop the connection.
    public var maxMessageBytes: Int = WireLimits.maxFrameBytes
    public var highWaterMark: Int32 = 1000
    public var transportHeartbeat: TransportHeartbeat? = TransportHeartbeat()

    public init(bindEndpoints: [String], curve: CurveServerSecurity? = nil) {
        self.bindEndpoints = bindEndpoints
        self.curve = curve
    }
}

/// One inbound message at the coordinator: who sent it and what it decoded to. Decode failures are
/// delivered too (for logging) and never end the stream.
public struct RouterInbound: Sendable {
    public let peer: PeerIdentity
    public let message: Result<WireMessage, WireDecodeError>
}

/// The coordinator's socket: a ROUTER that workers' DEALERs connect to.
///
/// It owns an I/O thread; `send` hands the frame to that thread and resumes when libzmq has queued it
/// (or refused it: an unknown peer raises `TransportError.unknownPeer`). Inbound messages arrive on
/// `inbound`. Call `shutdown()` to close the socket; the stream then finishes.
public final class RouterEndpoint: Sendable {
    /// Received messages, in arrival order. The stream buffers without bound (each frame is bounded by
    /// `maxMessageBytes` and workers send only what credit allows), so consume it promptly.
    public let inbound: AsyncStream<RouterInbound>
    /// The endpoints actually bound (ephemeral `*` ports resolved).
    public let boundEndpoints: [String]
    private let core: EndpointCore
    private let zap: ZAPHandler?

    /// Validates the configuration, starts the ZAP handler when CURVE is configured, binds, and starts
    /// the I/O thread. Only one CURVE router may exist per context (ZAP is per context).
    public init(context: ZMQContext, configuration: RouterConfiguration,
                logger: Logger = Logger(label: "vtp.transport.router")) throws(TransportError) {
        var endpoints: [EndpointAddress] = []
        for text in configuration.bindEndpoints {
            // Judged by the address that will be bound, so a name cannot smuggle a network address past the check.
            let endpoint = try EndpointAddress(text).resolvedForBinding()
            if configuration.curve == nil && !endpoint.isLocalOnly { throw .insecureBind(text) }
            endpoints.append(endpoint)
        }
        guard !endpoints.isEmpty else { throw .invalidEndpoint("", reason: "no endpoint to bind") }

        var zap: ZAPHandler?
        if let curve = configuration.curve {
            zap = try ZAPHandler(context: context, authorizedClients: curve.authorizedClients, logger: logger)
        }
        let socket: ZMQSocket
        var bound: [String] = []
        do {
            socket = try ZMQSocket(context: context, type: .router)
            let common = CommonSocketOptions(lingerMilliseconds: configuration.lingerMilliseconds,
                                             maxMessageBytes: configuration.maxMessageBytes,
                                             highWaterMark: configuration.highWaterMark,
                                             heartbeat: configuration.transportHeartbeat)
            try socket.setOption(ZMQ_ROUTER_MANDATORY, 1, name: "ZMQ_ROUTER_MANDATORY")
            // A worker reconnecting under its old identity replaces the stale connection.
            try socket.setOption(ZMQ_ROUTER_HANDOVER, 1, name: "ZMQ_ROUTER_HANDOVER")
            if let curve = configuration.curve {
                try socket.setOption(ZMQ_CURVE_SERVER, 1, name: "ZMQ_CURVE_SERVER")
                try socket.setOption(ZMQ_CURVE_SECRETKEY, bytes: Array(curve.serverKeys.secretKey.z85.utf8), name: "ZMQ_CURVE_SECRETKEY")
                try socket.setOption(ZMQ_ZAP_DOMAIN, bytes: Array("vtp".utf8), name: "ZMQ_ZAP_DOMAIN")
            }
            for endpoint in endpoints {
                try common.apply(to: socket, endpoint: endpoint)
                try socket.bind(endpoint.description)
                bound.append(try socket.lastEndpoint)
            }
        } catch {
            throw .zmq(error)
        }
        boundEndpoints = bound
        self.zap = zap

        let (stream, continuation) = AsyncStream.makeStream(of: RouterInbound.self)
        inbound = stream
        core = try EndpointCore(
            socket: socket,
            makeSocket: { throw ZMQError(operation: "ROUTER socket replacement", code: ENOTSUP) },
            deliver: { received in
                continuation.yield(Self.decode(received))
            },
            onFinish: { continuation.finish() },
            logger: logger)
        core.start(name: "vtp-router-io")
    }

    deinit { core.requestStop() }

    /// Sends `message` to the worker with routing identity `peer`.
    public func send(_ message: WireMessage, to peer: PeerIdentity) async throws(TransportError) {
        guard message.type.direction.allows(.coordinatorToWorker) else {
            throw .encode(.invalidValue(field: "type", reason: "\(message.type) cannot be sent from the coordinator side"))
        }
        let body: [UInt8]
        do { body = try message.encoded() } catch { throw .encode(error) }
        try await core.perform { .send(frames: [peer.bytes, body], peer: peer, completion: $0) }.get()
    }

    /// Replaces the worker keys admitted from now on (e.g. after a configuration reload). No effect
    /// without CURVE.
    public func setAuthorizedClients(_ keys: Set<CurveKey>) { zap?.setAuthorizedClients(keys) }

    /// What the ZAP handler decided so far; `nil` without CURVE.
    public var authenticationStatistics: ZAPHandler.Statistics? { zap?.statistics }

    /// Closes the socket (bounded by linger), finishes `inbound` and stops the ZAP handler.
    public func shutdown() async {
        await core.stop()
        await zap?.stop()
    }

    private static func decode(_ received: ReceivedMessage) -> RouterInbound {
        let frames = received.frames
        let peer = PeerIdentity(bytes: frames.first ?? [])
        guard frames.count == 2, received.truncatedFrames == 0 else {
            return RouterInbound(peer: peer, message: .failure(.unexpectedFrameCount(expected: 2, got: frames.count + received.truncatedFrames)))
        }
        do {
            return RouterInbound(peer: peer, message: .success(try WireMessage.decode(frames[1], travelling: .workerToCoordinator)))
        } catch {
            return RouterInbound(peer: peer, message: .failure(error))
        }
    }
}
