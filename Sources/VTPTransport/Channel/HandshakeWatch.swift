import CZeroMQ
import Logging
import Synchronization

/// The coordinator refused a worker's handshake: with CURVE, its ZAP handler did not list the
/// worker's public key. libzmq then drops the connection silently, so without this the worker
/// only ever sees a silent coordinator.
public struct HandshakeRejection: Sendable, Equatable, CustomStringConvertible {
    /// The coordinator endpoint that refused.
    public var endpoint: String
    /// The ZAP status code it sent (400: not authorized; 300: temporary; 500: internal error).
    public var status: UInt32
    /// This worker's public key (Z85), when it uses CURVE.
    public var publicKey: String?

    public var description: String {
        let key = publicKey.map { "CURVE key \($0)" } ?? "credentials"
        let why = status == 400 ? "is not among its authorized worker keys" : "was refused (ZAP status \(status))"
        return "the coordinator at \(endpoint) rejected this worker's \(key): it \(why)"
    }
}

/// Turns a DEALER's monitor events into log lines a person can act on, once per distinct problem
/// (libzmq retries the connection every few seconds and would otherwise repeat them), and keeps
/// the last refusal for ``DealerEndpoint/handshakeRejection``.
final class HandshakeWatch: Sendable {
    private struct State: Sendable {
        var rejection: HandshakeRejection?
        /// The last problem logged, so retries of the same failure stay quiet.
        var reported: ZMQSocketEvent?
    }

    private let state = Mutex(State())
    private let publicKey: String?
    private let logger: Logger

    init(publicKey: String?, logger: Logger) {
        self.publicKey = publicKey
        self.logger = logger
    }

    var rejection: HandshakeRejection? { state.withLock { $0.rejection } }

    func observe(_ event: ZMQSocketEvent) {
        switch event {
        case let .handshakeSucceeded(endpoint):
            let hadProblem = state.withLock { state -> Bool in
                defer { state = State() }
                return state.reported != nil
            }
            if hadProblem { logger.notice("handshake with the coordinator at \(endpoint) succeeded") }
        case let .handshakeFailedAuthentication(endpoint, status):
            let rejection = HandshakeRejection(endpoint: endpoint, status: status, publicKey: publicKey)
            guard firstReport(of: event, rejection: rejection) else { return }
            logger.error("\(rejection); add this worker's public key to the file named by the coordinator's security.authorized_worker_keys_file and restart the coordinator",
                         metadata: ["endpoint": "\(endpoint)", "zap_status": "\(status)"])
        case let .handshakeFailedProtocol(endpoint, code):
            guard firstReport(of: event, rejection: nil) else { return }
            logger.error("handshake with the coordinator at \(endpoint) failed: \(Self.protocolProblem(code))",
                         metadata: ["endpoint": "\(endpoint)"])
        case let .handshakeFailedNoDetail(endpoint, code):
            guard firstReport(of: event, rejection: nil) else { return }
            logger.warning("handshake with the coordinator at \(endpoint) failed (errno \(code)); retrying",
                           metadata: ["endpoint": "\(endpoint)"])
        case .other:
            break
        }
    }

    private func firstReport(of event: ZMQSocketEvent, rejection: HandshakeRejection?) -> Bool {
        state.withLock { state in
            if let rejection { state.rejection = rejection }
            guard state.reported != event else { return false }
            state.reported = event
            return true
        }
    }

    static func protocolProblem(_ code: UInt32) -> String {
        switch Int32(bitPattern: code) {
        case ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
            return "the two sides use different security (CURVE on one side only): give the worker the coordinator's public key, or remove CURVE from both"
        case ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC, ZMQ_PROTOCOL_ERROR_ZMTP_KEY_EXCHANGE:
            return "the CURVE key exchange failed: check that the worker has the coordinator's current public key"
        default:
            return "ZMTP protocol error 0x\(String(code, radix: 16))"
        }
    }
}
