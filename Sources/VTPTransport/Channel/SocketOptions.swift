import CZeroMQ

/// ZMTP-level heartbeats (`ZMQ_HEARTBEAT_*`): libzmq pings the connection itself, so a peer that vanished
/// without closing TCP (power loss, cable pull) is detected and the pipe torn down. They complement,
/// not replace, the application heartbeats driven by the liveness state machines.
public struct TransportHeartbeat: Sendable, Equatable {
    public var interval: Duration
    public var timeout: Duration
    /// How long the remote end waits without traffic before closing (`ZMQ_HEARTBEAT_TTL`).
    public var timeToLive: Duration

    public init(interval: Duration = .seconds(1), timeout: Duration = .seconds(5), timeToLive: Duration = .seconds(10)) {
        self.interval = interval
        self.timeout = timeout
        self.timeToLive = timeToLive
    }
}

/// Options every endpoint socket gets.
struct CommonSocketOptions: Sendable {
    var lingerMilliseconds: Int32
    var maxMessageBytes: Int
    var highWaterMark: Int32
    var heartbeat: TransportHeartbeat?

    func apply(to socket: ZMQSocket, endpoint: EndpointAddress) throws(ZMQError) {
        try socket.setOption(ZMQ_LINGER, lingerMilliseconds, name: "ZMQ_LINGER")
        try socket.setOption(ZMQ_MAXMSGSIZE, int64: Int64(maxMessageBytes), name: "ZMQ_MAXMSGSIZE")
        try socket.setOption(ZMQ_SNDHWM, highWaterMark, name: "ZMQ_SNDHWM")
        try socket.setOption(ZMQ_RCVHWM, highWaterMark, name: "ZMQ_RCVHWM")
        if endpoint.needsIPv6 { try socket.setOption(ZMQ_IPV6, 1, name: "ZMQ_IPV6") }
        if let heartbeat {
            try socket.setOption(ZMQ_HEARTBEAT_IVL, Int32(clamping: heartbeat.interval.pollMilliseconds), name: "ZMQ_HEARTBEAT_IVL")
            try socket.setOption(ZMQ_HEARTBEAT_TIMEOUT, Int32(clamping: heartbeat.timeout.pollMilliseconds), name: "ZMQ_HEARTBEAT_TIMEOUT")
            // libzmq keeps the TTL in whole deciseconds; below 100 ms it would round down to "no TTL".
            try socket.setOption(ZMQ_HEARTBEAT_TTL, Int32(clamping: max(100, heartbeat.timeToLive.pollMilliseconds)), name: "ZMQ_HEARTBEAT_TTL")
        }
    }
}
