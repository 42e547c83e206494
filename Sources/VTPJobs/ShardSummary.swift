import Foundation
import VTPVocabulary
import VTPStorage

/// The small per-shard sidecar a finalizer merges: `summary_rank00_shard{SSS}.json`.
///
/// It deliberately does not end in `.safetensors` (LightningDiT globs those). It is written last,
/// after the tensor shard and its id sidecar, so its presence means the shard is complete.
public struct ShardSummary: Codable, Sendable, Equatable {
    /// A failed item.
    public struct Failure: Codable, Sendable, Equatable {
        public var ordinal: Int
        public var sourceId: String
        public var reason: String

        enum CodingKeys: String, CodingKey { case ordinal, sourceId = "source_id", reason }
    }

    /// Bumped when the layout changes.
    public var version: Int = 1
    public var jobType: JobType
    public var jobId: Int64
    public var shardIndex: Int
    /// Items in the shard.
    public var inputs: Int
    /// The tensor shard, or nil when no item succeeded.
    public var written: WrittenShard?
    public var failures: [Failure]
    /// Latent statistics over this shard's `latents` (latents jobs).
    public var stats: LatentStatsAccumulator?

    enum CodingKeys: String, CodingKey {
        case version, jobType = "job_type", jobId = "job_id", shardIndex = "shard_index", inputs, written, failures, stats
    }

    /// File name of shard `index`'s summary.
    public static func fileName(shard index: Int) -> String {
        "summary_rank00_shard\(ShardNaming.pad(index, 3)).json"
    }

    /// Writes the summary as one compact JSON line, atomically and synced (the storage layer's
    /// temporary-file + fsync + rename), so a crash never leaves a truncated summary behind.
    func write(to path: String) throws(JobError) {
        do { try JSONLWriter.write([self], to: path) } catch {
            throw .writeFailed(path: path, reason: FileErrorText.reason(error, at: path))
        }
    }

    /// Reads a summary back.
    public static func read(_ path: String) throws(JobError) -> ShardSummary {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .badShardSummary(path: path, detail: "missing (the shard has not finished)")
        }
        do { return try JSONDecoder().decode(ShardSummary.self, from: data) } catch {
            throw .badShardSummary(path: path, detail: "not a shard summary: \(error)")
        }
    }
}

/// The rows of a shard's JSON Lines output (CLIP scores, a reconstruction's metrics, a linear
/// probe's head results), for its finalizer; errors name the file and the line.
func readJSONLRows<Row: Decodable>(_ path: String, as type: Row.Type, file: String, row: String) throws(JobError) -> [Row] {
    guard let data = FileManager.default.contents(atPath: path) else {
        throw .badShardSummary(path: path, detail: "\(file) missing")
    }
    var rows: [Row] = []
    for (n, line) in data.split(separator: UInt8(ascii: "\n")).enumerated() where !line.isEmpty {
        do { rows.append(try JSONDecoder().decode(Row.self, from: Data(line))) } catch {
            throw .badShardSummary(path: path, detail: "line \(n + 1) is not a \(row): \(error)")
        }
    }
    return rows
}
