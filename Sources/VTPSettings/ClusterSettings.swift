import Foundation

/// Everything a coordinator, a worker and the monitoring commands read from the configuration
/// file (`config/vtp.toml` documents every key). Each value has a default, so an empty file or
/// no file at all is a valid configuration for one machine.
public struct ClusterSettings: Sendable, Equatable {
    /// `[database]`
    public struct Database: Sendable, Equatable {
        /// PostgreSQL URL; empty means the private server of a `vtp run` (see `stateDirectory`).
        public var url: String = ""
        /// The state directory (ledger, sockets, worker logs) of `vtp run` when `--state-dir` is
        /// absent, and the run the monitoring commands read when they are given no database and
        /// no `--output`. Empty: each run keeps its state in `<output>/.vtp-state`.
        public var stateDirectory: String = ""
    }

    /// `[coordinator]`
    public struct Coordinator: Sendable, Equatable {
        /// ZeroMQ endpoint the coordinator binds and workers connect to.
        public var endpoint: String = "tcp://127.0.0.1:5555"
        public var heartbeatIntervalMilliseconds: Int = 1000
        /// Missed heartbeats before a worker (or the coordinator) is declared gone.
        public var heartbeatLiveness: Int = 3
        /// How long a claimed shard stays leased without a heartbeat.
        public var leaseSeconds: Int = 300
        /// Attempts before a shard is marked failed.
        public var maxAttempts: Int = 3
        /// Most shards one worker holds at once, whatever prefetch it announces: a fair share of the
        /// queue per worker, so one peer (misconfigured or hostile) cannot lease the whole job.
        public var maxPrefetchPerWorker: Int = 4
        /// Prometheus metrics port; 0 disables the endpoint.
        public var metricsPort: Int = 9464
        /// Address the metrics endpoint listens on.
        public var metricsAddress: String = "127.0.0.1"
    }

    /// `[security]`: CURVE keys (Z85 files written by `vtp keys generate`). All empty = no encryption,
    /// and the coordinator then binds only loopback or ipc endpoints.
    public struct Security: Sendable, Equatable {
        public var coordinatorSecretKeyFile: String = ""
        public var coordinatorPublicKeyFile: String = ""
        /// Worker public keys admitted by the coordinator: one Z85 key per line.
        public var authorizedWorkerKeysFile: String = ""
        public var workerSecretKeyFile: String = ""
        public var workerPublicKeyFile: String = ""
        /// Whether any key is configured (then all the keys of a side must be).
        public var enabled: Bool {
            ![coordinatorSecretKeyFile, coordinatorPublicKeyFile, authorizedWorkerKeysFile,
              workerSecretKeyFile, workerPublicKeyFile].allSatisfy(\.isEmpty)
        }
    }

    /// `[worker]`
    public struct Worker: Sendable, Equatable {
        /// Cores one worker's model uses; 0 = all.
        public var threads: Int = 0
        /// Images per model call.
        public var batchSize: Int = 8
        /// Compute precision (`fp32` or `bf16`) of jobs submitted with this configuration when
        /// `--precision` is not given; a job keeps the one it was submitted with on every worker.
        public var precision: String = "fp32"
        /// Pillow release (`12` or `13`) whose resampling jobs submitted with this configuration
        /// reproduce when `--pillow` is not given; a job keeps the one it was submitted with on
        /// every worker. 13 is what a fresh `pip install pillow` gives.
        public var pillow: String = "13"
        /// Shards a worker holds at once (the credit it announces).
        public var prefetch: Int = 2
        /// Threads decoding and preprocessing images ahead of inference.
        public var decodeThreads: Int = 1
        /// Images decoded ahead of the model (bounded queue between the stages).
        public var queueDepth: Int = 32
        /// Largest image, in pixels, a worker decodes (a guard against decompression bombs).
        public var maxImagePixels: Int = 100_000_000
        /// Most memory, in bytes, one item's decode and preprocessing may take (encoded file,
        /// decode buffers, every resize intermediate, the model-input tensors), checked from the
        /// image header before allocating; larger items fail. Each decode thread has its own.
        public var maxDecodeBytes: Int = 1 << 30
        /// Seconds one item's read, decode and preprocess may take before it fails (its thread is
        /// abandoned and the shard goes on); 0 for no limit.
        public var itemTimeoutSeconds: Double = 300
        /// Prometheus metrics port of a `vtp worker`; 0 (the default) disables the endpoint, since
        /// several workers often share a machine and each needs a port of its own.
        public var metricsPort: Int = 0
        /// Address a worker's metrics endpoint listens on.
        public var metricsAddress: String = "127.0.0.1"
    }

    /// `[storage]`
    public struct Storage: Sendable, Equatable {
        /// Relative output directories of jobs resolve under this root.
        public var root: String = "."
    }

    /// `[limits]`
    public struct Limits: Sendable, Equatable {
        /// Items per shard when a job is split.
        public var shardSize: Int = 256
        /// Largest ZeroMQ message accepted, in bytes.
        public var maxMessageBytes: Int = 64 << 20
        /// Largest job, in items, the coordinator accepts.
        public var maxJobItems: Int = 100_000_000
    }

    /// `[logging]`: how `vtp coordinator`, `vtp worker` and `vtp run` log (`--log-format` and
    /// `--log-level` win over these).
    public struct Logging: Sendable, Equatable {
        /// `text` (for people), `logfmt` or `json` (one object per line, for collectors).
        public var format: String = "text"
        /// Least severe level written: `trace`, `debug`, `info`, `notice`, `warning`, `error`, `critical`.
        public var level: String = "info"
        /// The names `format` accepts.
        public static let formats = ["text", "logfmt", "json"]
        /// The names `level` accepts, in increasing severity.
        public static let levels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
    }

    public var database = Database()
    public var coordinator = Coordinator()
    public var security = Security()
    public var worker = Worker()
    public var storage = Storage()
    public var limits = Limits()
    public var logging = Logging()

    public init() {}

    /// A configuration problem, naming the file, line and key.
    public struct Problem: Error, CustomStringConvertible, Equatable, Sendable {
        public let message: String
        public var description: String { message }
    }

    /// Reads `path` over the defaults; unknown keys and wrong types are errors naming the line.
    /// `VTP_DATABASE_URL` in `environment` overrides `database.url`.
    public static func load(path: String?, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> ClusterSettings {
        var settings = ClusterSettings()
        if let path {
            let text: String
            do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
                throw Problem(message: "\(path): cannot read the configuration file: \(error.localizedDescription)")
            }
            let values = try TOMLParser.parse(text, file: path)
            try settings.apply(values, file: path)
        }
        if let url = environment["VTP_DATABASE_URL"], !url.isEmpty { settings.database.url = url }
        try settings.validate(source: path ?? "configuration")
        return settings
    }

    private mutating func apply(_ values: [String: (value: TOMLValue, line: Int)], file: String) throws {
        for (key, entry) in values.sorted(by: { $0.value.line < $1.value.line }) {
            func problem(_ what: String) -> Problem { Problem(message: "\(file):\(entry.line): \(key): \(what)") }
            func string() throws -> String {
                guard case let .string(s) = entry.value else { throw problem("expected a string, found \(entry.value.typeName)") }
                return s
            }
            func int() throws -> Int {
                guard case let .integer(n) = entry.value else { throw problem("expected an integer, found \(entry.value.typeName)") }
                return n
            }
            func number() throws -> Double {
                switch entry.value {
                case let .integer(n): return Double(n)
                case let .float(x): return x
                default: throw problem("expected a number, found \(entry.value.typeName)")
                }
            }
            switch key {
            case "database.url": database.url = try string()
            case "database.state_dir": database.stateDirectory = try string()
            case "coordinator.endpoint": coordinator.endpoint = try string()
            case "coordinator.heartbeat_interval_ms": coordinator.heartbeatIntervalMilliseconds = try int()
            case "coordinator.heartbeat_liveness": coordinator.heartbeatLiveness = try int()
            case "coordinator.lease_seconds": coordinator.leaseSeconds = try int()
            case "coordinator.max_attempts": coordinator.maxAttempts = try int()
            case "coordinator.max_prefetch_per_worker": coordinator.maxPrefetchPerWorker = try int()
            case "coordinator.metrics_port": coordinator.metricsPort = try int()
            case "coordinator.metrics_address": coordinator.metricsAddress = try string()
            case "security.coordinator_secret_key_file": security.coordinatorSecretKeyFile = try string()
            case "security.coordinator_public_key_file": security.coordinatorPublicKeyFile = try string()
            case "security.authorized_worker_keys_file": security.authorizedWorkerKeysFile = try string()
            case "security.worker_secret_key_file": security.workerSecretKeyFile = try string()
            case "security.worker_public_key_file": security.workerPublicKeyFile = try string()
            case "worker.threads": worker.threads = try int()
            case "worker.batch_size": worker.batchSize = try int()
            case "worker.precision": worker.precision = try string()
            case "worker.pillow":
                // Both `pillow = 13` and `pillow = "13"` read naturally.
                switch entry.value {
                case let .integer(n): worker.pillow = String(n)
                case let .string(s): worker.pillow = s
                default: throw problem("expected 12 or 13, found \(entry.value.typeName)")
                }
            case "worker.prefetch": worker.prefetch = try int()
            case "worker.decode_threads": worker.decodeThreads = try int()
            case "worker.queue_depth": worker.queueDepth = try int()
            case "worker.max_image_pixels": worker.maxImagePixels = try int()
            case "worker.max_decode_bytes": worker.maxDecodeBytes = try int()
            case "worker.item_timeout_seconds": worker.itemTimeoutSeconds = try number()
            case "worker.metrics_port": worker.metricsPort = try int()
            case "worker.metrics_address": worker.metricsAddress = try string()
            case "storage.root": storage.root = try string()
            case "limits.shard_size": limits.shardSize = try int()
            case "limits.max_message_bytes": limits.maxMessageBytes = try int()
            case "limits.max_job_items": limits.maxJobItems = try int()
            case "logging.format": logging.format = try string()
            case "logging.level": logging.level = try string()
            default: throw problem("unknown key (see config/vtp.toml for the keys vtp reads)")
            }
        }
    }

    /// Checks every value's range, naming the key.
    public func validate(source: String = "configuration") throws {
        func check(_ ok: Bool, _ key: String, _ what: String) throws {
            if !ok { throw Problem(message: "\(source): \(key): \(what)") }
        }
        let e = coordinator.endpoint
        try check(e.hasPrefix("tcp://") || e.hasPrefix("ipc://") || e.hasPrefix("inproc://"), "coordinator.endpoint",
                  "'\(e)' must start with tcp://, ipc:// or inproc://")
        try check((10...600_000).contains(coordinator.heartbeatIntervalMilliseconds), "coordinator.heartbeat_interval_ms",
                  "must be between 10 and 600000, got \(coordinator.heartbeatIntervalMilliseconds)")
        try check((1...100).contains(coordinator.heartbeatLiveness), "coordinator.heartbeat_liveness",
                  "must be between 1 and 100, got \(coordinator.heartbeatLiveness)")
        try check(coordinator.leaseSeconds >= 1, "coordinator.lease_seconds", "must be at least 1, got \(coordinator.leaseSeconds)")
        try check((1...1000).contains(coordinator.maxAttempts), "coordinator.max_attempts",
                  "must be between 1 and 1000, got \(coordinator.maxAttempts)")
        try check((1...64).contains(coordinator.maxPrefetchPerWorker), "coordinator.max_prefetch_per_worker",
                  "must be between 1 and 64, got \(coordinator.maxPrefetchPerWorker)")
        try check((0...65535).contains(coordinator.metricsPort), "coordinator.metrics_port",
                  "must be a port number (0 disables), got \(coordinator.metricsPort)")
        try check(!coordinator.metricsAddress.isEmpty, "coordinator.metrics_address", "must not be empty")
        try check(["fp32", "bf16"].contains(worker.precision), "worker.precision", "must be fp32 or bf16, got '\(worker.precision)'")
        try check(["12", "13", "pillow12", "pillow13"].contains(worker.pillow.lowercased()), "worker.pillow",
                  "must be 12 or 13 (the Pillow release whose resampling jobs reproduce), got '\(worker.pillow)'")
        try check((0...1024).contains(worker.threads), "worker.threads", "must be between 0 (all cores) and 1024, got \(worker.threads)")
        try check((1...4096).contains(worker.batchSize), "worker.batch_size", "must be between 1 and 4096, got \(worker.batchSize)")
        try check((1...64).contains(worker.prefetch), "worker.prefetch", "must be between 1 and 64, got \(worker.prefetch)")
        try check((1...256).contains(worker.decodeThreads), "worker.decode_threads", "must be between 1 and 256, got \(worker.decodeThreads)")
        try check((1...100_000).contains(worker.queueDepth), "worker.queue_depth", "must be between 1 and 100000, got \(worker.queueDepth)")
        try check(worker.maxImagePixels >= 1, "worker.max_image_pixels", "must be positive, got \(worker.maxImagePixels)")
        try check(worker.maxDecodeBytes >= 1 << 20, "worker.max_decode_bytes",
                  "must be at least 1048576 (1 MiB), got \(worker.maxDecodeBytes)")
        try check(worker.itemTimeoutSeconds.isFinite && worker.itemTimeoutSeconds >= 0 && worker.itemTimeoutSeconds <= 1e9,
                  "worker.item_timeout_seconds", "must be between 0 (no limit) and 1e9 seconds, got \(worker.itemTimeoutSeconds)")
        try check((0...65535).contains(worker.metricsPort), "worker.metrics_port",
                  "must be a port number (0 disables), got \(worker.metricsPort)")
        try check(!worker.metricsAddress.isEmpty, "worker.metrics_address", "must not be empty")
        try check(!storage.root.isEmpty, "storage.root", "must not be empty")
        try check((1...1_000_000).contains(limits.shardSize), "limits.shard_size", "must be between 1 and 1000000, got \(limits.shardSize)")
        try check(limits.maxMessageBytes >= 1 << 16, "limits.max_message_bytes", "must be at least 65536, got \(limits.maxMessageBytes)")
        try check(limits.maxJobItems >= 1, "limits.max_job_items", "must be positive, got \(limits.maxJobItems)")
        try check(Logging.formats.contains(logging.format.lowercased()), "logging.format",
                  "must be one of \(Logging.formats.joined(separator: ", ")), got '\(logging.format)'")
        try check(Logging.levels.contains(logging.level.lowercased()), "logging.level",
                  "must be one of \(Logging.levels.joined(separator: ", ")), got '\(logging.level)'")
        let s = security
        if s.enabled {
            let coordinatorKeys = [s.coordinatorSecretKeyFile, s.coordinatorPublicKeyFile, s.authorizedWorkerKeysFile]
            let workerKeys = [s.workerSecretKeyFile, s.workerPublicKeyFile, s.coordinatorPublicKeyFile]
            try check(coordinatorKeys.allSatisfy { !$0.isEmpty } || workerKeys.allSatisfy { !$0.isEmpty }, "security",
                      "a coordinator needs coordinator_secret_key_file, coordinator_public_key_file and authorized_worker_keys_file; a worker needs worker_secret_key_file, worker_public_key_file and coordinator_public_key_file")
        } else if e.hasPrefix("tcp://") {
            let host = e.dropFirst(6).split(separator: ":").dropLast().joined(separator: ":")
            try check(["127.0.0.1", "localhost", "[::1]"].contains(host), "coordinator.endpoint",
                      "'\(e)' is not a loopback address; configure [security] CURVE keys to listen on a network")
        }
    }

    /// `path` with a leading `~` expanded and, when relative, resolved under `storage.root`.
    public func resolveOutput(_ path: String) -> String {
        let expanded = Self.expandTilde(path)
        if expanded.hasPrefix("/") { return expanded }
        return URL(fileURLWithPath: Self.expandTilde(storage.root)).appendingPathComponent(expanded).standardizedFileURL.path
    }

    /// Expands a leading `~/` to the home directory.
    public static func expandTilde(_ path: String) -> String {
        guard path == "~" || path.hasPrefix("~/") else { return path }
        return FileManager.default.homeDirectoryForCurrentUser.path + path.dropFirst()
    }
}
