import Foundation
import VTPVocabulary

/// `manifest.json` of an output directory: what produced it and what became of every input.
public struct RunManifest: Codable, Sendable, Equatable {
    /// One input that produced no output row (the vocabulary's type, so the coordinator can
    /// report failures without this module).
    public typealias Failure = FailedInput

    /// Row totals.
    public typealias Counts = JobCounts

    /// Output layout name, e.g. `lightningdit-latents`, `features`, `clip-embeddings`.
    public var format: String
    /// Model identity (checkpoint path or id, revision...).
    public var model: [String: String]
    /// Preprocessing settings (resize, crop, normalization...).
    public var preprocessing: [String: String]
    /// Stored element type.
    public var dtype: OutputDType
    /// Row totals.
    public var counts: Counts
    /// Output files in shard order.
    public var shards: [WrittenShard]
    /// Inputs that produced no row, with reasons.
    public var failures: [Failure]
    /// Class names by label (`classes[label]` names the class of rows labelled `label`): an
    /// ImageFolder tree's folders, the `--classes` list, or a manifest's class-name labels sorted
    /// as ImageFolder sorts folders. Absent when the input names no classes.
    public var classes: [String]?

    public init(format: String, model: [String: String], preprocessing: [String: String], dtype: OutputDType,
                counts: Counts, shards: [WrittenShard], failures: [Failure], classes: [String]? = nil) {
        self.format = format
        self.model = model
        self.preprocessing = preprocessing
        self.dtype = dtype
        self.counts = counts
        self.shards = shards
        self.failures = failures
        self.classes = classes
    }

    /// Writes `manifest.json` (pretty, sorted keys, so re-runs give identical bytes) atomically.
    public func write(to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        var data = try encoder.encode(self)
        data.append(0x0A)
        try AtomicWrite.write(data, to: path)
    }

    /// Reads a manifest back.
    public static func read(_ path: String) throws -> RunManifest {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw StorageError.readFailed(path: path, reason: "cannot open file")
        }
        do { return try JSONDecoder().decode(RunManifest.self, from: data) } catch {
            throw StorageError.badFormat(path: path, detail: "not a run manifest: \(error)")
        }
    }
}
