import Foundation
import Testing
import VTPVocabulary
import VTPSettings
import VTPTestSupport

@Suite struct ClusterSettingsTests {
    static let example = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("config/vtp.toml").path

    func write(_ text: String) throws -> (TemporaryDirectory, String) {
        let dir = try TemporaryDirectory("settings")
        let path = dir.file("vtp.toml")
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return (dir, path)
    }

    @Test func documentedExampleEqualsTheDefaults() throws {
        let loaded = try ClusterSettings.load(path: Self.example, environment: [:])
        #expect(loaded == ClusterSettings())
    }

    @Test func noFileMeansDefaultsAndEnvironmentOverridesTheDatabase() throws {
        let s = try ClusterSettings.load(path: nil, environment: ["VTP_DATABASE_URL": "postgresql://db/vtp"])
        #expect(s.database.url == "postgresql://db/vtp")
        #expect(s.worker.batchSize == 8)
    }

    @Test func valuesAreRead() throws {
        let (dir, path) = try write("""
        # comment
        [worker]
        batch_size = 16   # trailing comment
        prefetch = 4
        precision = "bf16"
        pillow = 12
        [coordinator]
        endpoint = 'ipc:///tmp/vtp.sock'
        lease_seconds = 1_200
        max_prefetch_per_worker = 8
        [storage]
        root = "/data/out"
        """)
        defer { dir.remove() }
        let s = try ClusterSettings.load(path: path, environment: [:])
        #expect(s.worker.batchSize == 16 && s.worker.prefetch == 4 && s.worker.precision == "bf16")
        #expect(s.worker.pillow == "12" && ClusterSettings().worker.pillow == "13")
        #expect(s.coordinator.endpoint == "ipc:///tmp/vtp.sock" && s.coordinator.leaseSeconds == 1200)
        #expect(s.coordinator.maxPrefetchPerWorker == 8 && ClusterSettings().coordinator.maxPrefetchPerWorker == 4)
        #expect(s.resolveOutput("latents/run1") == "/data/out/latents/run1")
        #expect(s.resolveOutput("/abs") == "/abs")
    }

    @Test(arguments: [
        ("[worker]\nbatch_size = \"8\"", "vtp.toml:2: worker.batch_size: expected an integer, found a string"),
        ("[worker]\nbatch = 8", "vtp.toml:2: worker.batch: unknown key"),
        ("[worker]\nbatch_size = 0", "worker.batch_size: must be between 1 and 4096, got 0"),
        ("[worker]\nprecision = \"fp16\"", "worker.precision: must be fp32 or bf16, got 'fp16'"),
        ("[worker]\npillow = 14", "worker.pillow: must be 12 or 13 (the Pillow release whose resampling jobs reproduce), got '14'"),
        ("[worker]\npillow = \"latest\"", "worker.pillow: must be 12 or 13"),
        ("[worker]\npillow = 13.0", "vtp.toml:2: worker.pillow: expected 12 or 13, found a number"),
        ("[coordinator]\nmax_prefetch_per_worker = 0", "coordinator.max_prefetch_per_worker: must be between 1 and 64, got 0"),
        ("[coordinator]\nmax_prefetch_per_worker = \"4\"", "vtp.toml:2: coordinator.max_prefetch_per_worker: expected an integer, found a string"),
        ("[coordinator]\nendpoint = \"tcp://0.0.0.0:5555\"", "is not a loopback address"),
        ("[coordinator]\nendpoint = \"http://x\"", "must start with tcp://"),
        ("[worker\nx = 1", "vtp.toml:1: expected ']'"),
        ("[worker]\nbatch_size = 8\nbatch_size = 9", "vtp.toml:3: 'worker.batch_size' is already defined on line 2"),
        ("[database]\nurl = \"unterminated", "vtp.toml:2: unterminated string"),
        ("[security]\nworker_secret_key_file = \"w.key\"", "security: a coordinator needs"),
        ("[worker]\nmax_decode_bytes = 1000", "worker.max_decode_bytes: must be at least 1048576 (1 MiB), got 1000"),
        ("[worker]\nmax_decode_bytes = 1.5", "vtp.toml:2: worker.max_decode_bytes: expected an integer, found a number"),
        ("[worker]\nitem_timeout_seconds = -1", "worker.item_timeout_seconds: must be between 0 (no limit) and 1e9 seconds, got -1.0"),
        ("[worker]\nitem_timeout_seconds = \"5\"", "vtp.toml:2: worker.item_timeout_seconds: expected a number, found a string"),
        ("[logging]\nformat = \"xml\"", "vtp.toml: logging.format: must be one of text, logfmt, json, got 'xml'"),
        ("[logging]\nlevel = \"loud\"", "vtp.toml: logging.level: must be one of trace, debug, info, notice, warning, error, critical, got 'loud'"),
        ("[logging]\nformat = 1", "vtp.toml:2: logging.format: expected a string, found an integer"),
        ("[logging]\ncolour = \"on\"", "vtp.toml:2: logging.colour: unknown key"),
        ("[worker]\nmetrics_port = \"9465\"", "vtp.toml:2: worker.metrics_port: expected an integer, found a string"),
        ("[worker]\nmetrics_port = 70000", "vtp.toml: worker.metrics_port: must be a port number (0 disables), got 70000"),
        ("[worker]\nmetrics_address = \"\"", "vtp.toml: worker.metrics_address: must not be empty"),
    ])
    func invalidFilesNameLineAndKey(_ text: String, _ expected: String) throws {
        let (dir, path) = try write(text)
        defer { dir.remove() }
        do {
            _ = try ClusterSettings.load(path: path, environment: [:])
            Issue.record("accepted: \(text)")
        } catch {
            #expect("\(error)".contains(expected), "\(error)")
        }
    }

    @Test func loggingFormatAndLevelAreRead() throws {
        #expect(ClusterSettings().logging.format == "text" && ClusterSettings().logging.level == "info")
        let (dir, path) = try write("[logging]\nformat = \"json\"\nlevel = \"debug\"\n")
        defer { dir.remove() }
        let s = try ClusterSettings.load(path: path, environment: [:])
        #expect(s.logging.format == "json" && s.logging.level == "debug")
    }

    @Test func itemLimitsAreRead() throws {
        #expect(ClusterSettings().worker.maxDecodeBytes == 1 << 30 && ClusterSettings().worker.itemTimeoutSeconds == 300)
        let (dir, path) = try write("[worker]\nmax_decode_bytes = 268_435_456\nitem_timeout_seconds = 0.5\n")
        defer { dir.remove() }
        let s = try ClusterSettings.load(path: path, environment: [:])
        #expect(s.worker.maxDecodeBytes == 256 << 20 && s.worker.itemTimeoutSeconds == 0.5)
        let (dir2, path2) = try write("[worker]\nitem_timeout_seconds = 0\n")
        defer { dir2.remove() }
        #expect(try ClusterSettings.load(path: path2, environment: [:]).worker.itemTimeoutSeconds == 0, "0 turns the limit off")
    }

    @Test func workerMetricsEndpointIsOffByDefaultAndRead() throws {
        #expect(ClusterSettings().worker.metricsPort == 0 && ClusterSettings().worker.metricsAddress == "127.0.0.1")
        let (dir, path) = try write("[worker]\nmetrics_port = 9465\nmetrics_address = \"0.0.0.0\"\n")
        defer { dir.remove() }
        let s = try ClusterSettings.load(path: path, environment: [:])
        #expect(s.worker.metricsPort == 9465 && s.worker.metricsAddress == "0.0.0.0")
        #expect(s.coordinator.metricsPort == 9464, "the coordinator's port is a key of its own")
    }

    @Test func missingFileIsAClearError() {
        #expect { try ClusterSettings.load(path: "/nonexistent/vtp.toml", environment: [:]) } throws: {
            "\($0)".contains("/nonexistent/vtp.toml: cannot read the configuration file")
        }
    }
}
