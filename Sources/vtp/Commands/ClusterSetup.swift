import ArgumentParser
import Foundation
import VTPConcurrency
import VTPJobs
import VTPVocabulary
import Logging
import VTPCoordinator
import VTPQueue
import VTPSettings
import VTPTransport

/// Turns the configuration file's values into the runtime's option structs, shared by
/// `vtp coordinator`, `vtp worker`, `vtp run` and `vtp submit`.
enum ClusterSetup {
    static func settings(_ path: String?) throws -> ClusterSettings {
        do { return try ClusterSettings.load(path: path) } catch { throw ValidationError("\(error)") }
    }

    static func heartbeatInterval(_ settings: ClusterSettings) -> Duration {
        .milliseconds(settings.coordinator.heartbeatIntervalMilliseconds)
    }

    static func coordinatorCore(_ settings: ClusterSettings, leaseSeconds: Int) throws -> CoordinatorCore.Configuration {
        let liveness = try WorkerLiveness<PeerIdentity>.Configuration(heartbeatInterval: heartbeatInterval(settings),
                                                                     missedHeartbeatsBeforeDead: settings.coordinator.heartbeatLiveness)
        let lease = Duration.seconds(leaseSeconds)
        return CoordinatorCore.Configuration(liveness: liveness, leaseRenewalInterval: lease / 4,
                                             releaseInterval: min(.seconds(5), lease / 2), shutdownGrace: lease,
                                             maxPrefetchPerWorker: UInt32(settings.coordinator.maxPrefetchPerWorker))
    }

    static func workerLiveness(_ settings: ClusterSettings) throws -> CoordinatorLiveness.Configuration {
        try CoordinatorLiveness.Configuration(heartbeatInterval: heartbeatInterval(settings),
                                              missedHeartbeatsBeforeLost: settings.coordinator.heartbeatLiveness,
                                              initialBackoff: .seconds(1), maxBackoff: .seconds(32))
    }

    static func leasePolicy(leaseSeconds: Int) -> LeasePolicy {
        LeasePolicy(leaseSeconds: Double(leaseSeconds), backoffBaseSeconds: min(5, Double(leaseSeconds) / 4), backoffCapSeconds: 300)
    }

    /// The coordinator's CURVE settings, or nil when no keys are configured.
    static func serverSecurity(_ settings: ClusterSettings) throws -> CurveServerSecurity? {
        let s = settings.security
        guard !s.coordinatorSecretKeyFile.isEmpty else { return nil }
        let keys = try CurveKeyPair(secretKey: CurveKey.load(path: ClusterSettings.expandTilde(s.coordinatorSecretKeyFile)))
        let listPath = ClusterSettings.expandTilde(s.authorizedWorkerKeysFile)
        let text: String
        do { text = try String(contentsOfFile: listPath, encoding: .utf8) } catch {
            throw ValidationError("\(listPath): cannot read the authorized worker keys: \(FileErrorText.reason(error, at: listPath))")
        }
        var authorized: Set<CurveKey> = []
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            do { authorized.insert(try CurveKey(z85: trimmed)) } catch {
                throw ValidationError("\(listPath):\(number + 1): \(error)")
            }
        }
        return CurveServerSecurity(serverKeys: keys, authorizedClients: authorized)
    }

    /// The worker's CURVE settings, or nil when no keys are configured.
    static func clientSecurity(_ settings: ClusterSettings) throws -> CurveClientSecurity? {
        let s = settings.security
        guard !s.workerSecretKeyFile.isEmpty else { return nil }
        let keys = try CurveKeyPair(secretKey: CurveKey.load(path: ClusterSettings.expandTilde(s.workerSecretKeyFile)))
        return CurveClientSecurity(clientKeys: keys,
                                   serverPublicKey: try CurveKey.load(path: ClusterSettings.expandTilde(s.coordinatorPublicKeyFile)))
    }

    /// A logger at `level` (writing through the handler `LoggingOptions.start` installed, on stderr).
    static func logger(_ label: String, level: Logger.Level) -> Logger {
        var logger = Logger(label: label)
        logger.logLevel = level
        return logger
    }

    /// `--database`, then the configuration / VTP_DATABASE_URL.
    static func database(_ option: String?, _ settings: ClusterSettings) throws -> DatabaseURL? {
        let text = option ?? settings.database.url
        return text.isEmpty ? nil : try DatabaseURL(text)
    }
}
