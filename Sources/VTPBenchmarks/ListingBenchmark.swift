import Foundation
import Logging
import VTPConcurrency
import VTPCoordinator
import VTPDatasets
import VTPQueue
import VTPVocabulary

/// Lists a large JSONL manifest or ImageFolder tree the way `vtp run` and `vtp submit` do
/// (``JobRequest/list(maxItems:)``, then its items read again as they are enqueued) and measures
/// time and this process's peak resident memory, which is what bounds the size of an input.
/// `vtp bench listing`.
public enum ListingBenchmark {
    /// What one run measured.
    public struct Report: Sendable {
        /// Items listed (manifest lines, or image files of a folder).
        public var lines: Int
        /// What was listed: `manifest`, `image-folder` or `synthetic`.
        public var inputKind: String
        /// The manifest's size; 0 for a folder.
        public var manifestBytes: Int64
        /// Seconds spent writing the synthetic manifest (0 when it existed).
        public var generateSeconds: Double
        /// The checking pass: ids, labels, captions, the fingerprint.
        public var scanSeconds: Double
        /// The second pass over the items, alone (without `--enqueue`) or into the ledger.
        public var itemsSeconds: Double
        /// Whether the second pass went into a private PostgreSQL ledger and shard manifests.
        public var enqueued: Bool
        /// PostgreSQL's job tables and the shard manifest files per item, when enqueued.
        public var ledgerBytesPerItem: Double?
        public var shardManifestBytesPerItem: Double?
        /// Peak resident memory of this process, before listing and at the end.
        public var residentBeforeBytes: Int
        public var maxResidentBytes: Int

        public var jsonObject: [String: Any] {
            var object: [String: Any] = [
                "lines": lines, "input_kind": inputKind, "manifest_bytes": manifestBytes, "generate_seconds": generateSeconds, "scan_seconds": scanSeconds,
                "items_seconds": itemsSeconds, "enqueued": enqueued, "max_rss_bytes": maxResidentBytes,
                "max_rss_before_bytes": residentBeforeBytes,
                "lines_per_second": Double(lines) / max(1e-9, scanSeconds + itemsSeconds),
            ]
            if let ledgerBytesPerItem { object["ledger_bytes_per_item"] = ledgerBytesPerItem }
            if let shardManifestBytesPerItem { object["shard_manifest_bytes_per_item"] = shardManifestBytesPerItem }
            return object
        }

        public var table: String {
            func mib(_ bytes: Int) -> String { String(format: "%.1f MiB", Double(bytes) / 1_048_576) }
            var lines = [
                (inputKind == "image-folder" ? "\(self.lines) image files in a folder tree" : "\(self.lines) manifest lines, \(mib(Int(manifestBytes)))")
                    + (generateSeconds > 0 ? String(format: ", written in %.1f s", generateSeconds) : ""),
                String(format: "checking pass %.1f s (%.0f lines/s)", scanSeconds, Double(self.lines) / max(1e-9, scanSeconds)),
                String(format: "%@ %.1f s (%.0f items/s)", enqueued ? "enqueue (second pass)" : "second pass", itemsSeconds,
                       Double(self.lines) / max(1e-9, itemsSeconds)),
                "peak resident \(mib(maxResidentBytes)) (\(mib(residentBeforeBytes)) before listing)",
            ]
            if let ledgerBytesPerItem, let shardManifestBytesPerItem {
                lines.append(String(format: "ledger %.2f bytes per item in PostgreSQL, %.1f in shard manifests",
                                    ledgerBytesPerItem, shardManifestBytesPerItem))
            }
            return lines.joined(separator: "\n")
        }
    }

    /// Writes a JSONL manifest of `lines` rows (`path`, `id`, a caption, one of 1,000 class names),
    /// streaming, about 110 bytes a row.
    public static func writeManifest(lines: Int, to path: String) throws {
        guard FileManager.default.createFile(atPath: path, contents: nil) else {
            throw CocoaError(.fileWriteNoPermission, userInfo: [NSFilePathErrorKey: path])
        }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        var buffer = [UInt8]()
        buffer.reserveCapacity(1 << 20)
        for line in 0..<lines {
            let row = "{\"path\": \"images/\(line % 1000)/\(line).jpg\", \"id\": \"sample-\(line)\", "
                + "\"caption\": \"a photo of item \(line)\", \"label\": \"class-\(line % 1000)\"}\n"
            buffer.append(contentsOf: row.utf8)
            if buffer.count >= 1 << 20 {
                try handle.write(contentsOf: buffer)
                buffer.removeAll(keepingCapacity: true)
            }
        }
        try handle.write(contentsOf: buffer)
    }

    /// The items of the synthetic manifest, generated instead of parsed: what enqueueing costs
    /// without the listing (`--synthetic`).
    static func syntheticItems(_ count: Int, directory: String) -> some Sequence<JobItem> {
        (0..<count).lazy.map { line in
            JobItem(ordinal: line, sourceId: "sample-\(line)", location: .file(path: "\(directory)/images/\(line % 1000)/\(line).jpg"),
                    label: line % 1000, caption: "a photo of item \(line)")
        }
    }

    /// Enqueues `lines` generated items (no manifest, no checking pass) into a private PostgreSQL:
    /// the ledger's side of a job that size.
    public static func runSynthetic(lines: Int, logger: Logger = Logger(label: "vtp.bench.listing")) async throws -> Report {
        let scratch = NSTemporaryDirectory() + "vtp-bench-listing-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let before = ModelBenchmark.maxResidentBytes
        let start = ContinuousClock.now
        let (ledgerBytes, manifestBytes) = try await withPrivateLedger(logger: logger) { ledger in
            let spec = JobSpec(type: "latents", inputLocation: "synthetic:\(lines)", outputLocation: scratch + "/out", shardSize: 1000)
            _ = try await ledger.enqueue(spec, listing: syntheticItems(lines, directory: scratch)) { ListingEnd() }
            return (try await jobBytes(ledger), directoryBytes(scratch + "/out"))
        }
        return Report(lines: lines, inputKind: "synthetic", manifestBytes: 0, generateSeconds: 0, scanSeconds: 0,
                      itemsSeconds: (ContinuousClock.now - start).benchmarkSeconds, enqueued: true,
                      ledgerBytesPerItem: Double(ledgerBytes) / Double(lines), shardManifestBytesPerItem: Double(manifestBytes) / Double(lines),
                      residentBeforeBytes: before, maxResidentBytes: ModelBenchmark.maxResidentBytes)
    }

    /// A private PostgreSQL in a temporary directory, migrated, for `body`.
    private static func withPrivateLedger<T: Sendable>(logger: Logger, _ body: (Ledger) async throws -> T) async throws -> T {
        let server = try EmbeddedPostgres.temporary(configuration: EmbeddedPostgres.Configuration(unsafeFastWrites: true), logger: logger)
        try await server.start()
        do {
            _ = try await Migrator.migrate(database: server.databaseURL, logger: logger)
            let result = try await body(Ledger(database: server.databaseURL, logger: logger))
            try await server.stop()
            return result
        } catch {
            try? await server.stop()
            throw error
        }
    }

    /// PostgreSQL's bytes for jobs: every ledger table but the worker rows and the migration log.
    private static func jobBytes(_ ledger: Ledger) async throws -> Int64 {
        try await ledger.relationBytes().filter { $0.key != "workers" && !$0.key.hasSuffix("schema_migrations") }.values.reduce(0, +)
    }

    /// Writes an ImageFolder tree of `items` empty `.jpg` files in 1,000 class folders (ImageNet's
    /// shape; listing never opens the files).
    public static func writeImageFolder(items: Int, to root: String) throws {
        for c in 0..<min(1000, items) {
            try FileManager.default.createDirectory(atPath: root + "/" + className(c), withIntermediateDirectories: true)
        }
        for item in 0..<items {
            let fd = open(root + "/" + className(item % 1000) + "/\(item).jpg", O_CREAT | O_WRONLY | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: root]) }
            close(fd)
        }
    }

    private static func className(_ c: Int) -> String { "n" + String(repeating: "0", count: 3 - String(c).count) + String(c) }

    /// Lists `input` and, with `enqueue`, enqueues it into a private PostgreSQL started in a
    /// temporary directory. A missing input is written first with `lines` items: a JSONL manifest,
    /// or with `folder` an ImageFolder tree (``writeImageFolder(items:to:)``).
    public static func run(input: String, folder: Bool = false, lines: Int, enqueue: Bool,
                           logger: Logger = Logger(label: "vtp.bench.listing")) async throws -> Report {
        var generateSeconds = 0.0
        if !FileManager.default.fileExists(atPath: input) {
            let start = ContinuousClock.now
            if folder { try writeImageFolder(items: lines, to: input) } else { try writeManifest(lines: lines, to: input) }
            generateSeconds = (ContinuousClock.now - start).benchmarkSeconds
        }
        let manifestBytes = folder ? 0 : (try FileManager.default.attributesOfItem(atPath: input)[.size] as? NSNumber)?.int64Value ?? 0
        let scratch = NSTemporaryDirectory() + "vtp-bench-listing-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let request = JobRequest(parameters: .latents(LatentsParameters()), input: input, output: scratch + "/out",
                                 model: "/dev/null", shardSize: 1000)
        let before = ModelBenchmark.maxResidentBytes
        let scanStart = ContinuousClock.now
        let listing = try await BlockingWork.run(name: "vtp-bench-list") { try request.list() }
        let scanSeconds = (ContinuousClock.now - scanStart).benchmarkSeconds
        let itemsStart = ContinuousClock.now
        var ledgerBytesPerItem: Double?, shardManifestBytesPerItem: Double?
        if enqueue {
            let (ledgerBytes, manifestBytes) = try await withPrivateLedger(logger: logger) { ledger in
                _ = try await ledger.enqueue(request.spec(labelClasses: listing.classes), listing: listing)
                return (try await jobBytes(ledger), directoryBytes(scratch + "/out"))
            }
            ledgerBytesPerItem = Double(ledgerBytes) / Double(listing.itemCount)
            shardManifestBytesPerItem = Double(manifestBytes) / Double(listing.itemCount)
        } else {
            try await BlockingWork.run(name: "vtp-bench-list") {
                let items = listing.items()
                var count = 0
                for _ in items { count += 1 }
                try items.check()
                guard count == listing.itemCount else {
                    throw JobError.badInput(path: input, detail: "second pass read \(count) items, the first \(listing.itemCount)")
                }
            }
        }
        let itemsSeconds = (ContinuousClock.now - itemsStart).benchmarkSeconds
        return Report(lines: listing.itemCount, inputKind: folder ? "image-folder" : "manifest", manifestBytes: manifestBytes, generateSeconds: generateSeconds, scanSeconds: scanSeconds,
                      itemsSeconds: itemsSeconds, enqueued: enqueue, ledgerBytesPerItem: ledgerBytesPerItem,
                      shardManifestBytesPerItem: shardManifestBytesPerItem, residentBeforeBytes: before,
                      maxResidentBytes: ModelBenchmark.maxResidentBytes)
    }

    private static func directoryBytes(_ path: String) -> Int {
        guard let walker = FileManager.default.enumerator(atPath: path) else { return 0 }
        var total = 0
        while let name = walker.nextObject() as? String {
            let attributes = try? FileManager.default.attributesOfItem(atPath: path + "/" + name)
            if attributes?[.type] as? FileAttributeType == .typeRegular { total += (attributes?[.size] as? NSNumber)?.intValue ?? 0 }
        }
        return total
    }
}
