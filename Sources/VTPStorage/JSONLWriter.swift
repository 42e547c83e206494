import Foundation
import VTPVocabulary

/// Writes JSON Lines files atomically: one compact, key-sorted JSON object per line.
public enum JSONLWriter {
    /// Encodes each row on its own line and writes the file atomically.
    public static func write<Row: Encodable>(_ rows: [Row], to path: String) throws {
        try AtomicWrite.write(encode(rows, path: path), to: path)
    }

    /// The file's bytes; `path` names it in errors.
    static func encode<Row: Encodable>(_ rows: [Row], path: String) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var data = Data()
        for (i, row) in rows.enumerated() {
            do { data.append(try encoder.encode(row)) } catch {
                throw StorageError.badInput(path: path, detail: "row \(i) cannot be encoded as JSON: \(error)")
            }
            data.append(0x0A)
        }
        return data
    }
}

/// One line of an id sidecar: row `row` of the shard came from `sourceId`, followed by every
/// metadata field of the sample (its own columns win a name clash).
public struct SourceIdRow: Codable, Sendable, Equatable {
    public var row: Int
    public var sourceId: String
    public var label: Int64?
    /// The sample's metadata fields, written flat beside the fixed columns.
    public var metadata: [String: JSONValue]

    public init(row: Int, sourceId: String, label: Int64? = nil, metadata: [String: JSONValue] = [:]) {
        self.row = row
        self.sourceId = sourceId
        self.label = label
        self.metadata = metadata
    }

    static let reserved: Set<String> = ["row", "source_id", "label"]

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: DynamicCodingKey.self)
        row = try c.decode(Int.self, forKey: DynamicCodingKey("row"))
        sourceId = try c.decode(String.self, forKey: DynamicCodingKey("source_id"))
        label = try c.decodeIfPresent(Int64.self, forKey: DynamicCodingKey("label"))
        metadata = try c.decodeMetadata(except: Self.reserved)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: DynamicCodingKey.self)
        try c.encode(row, forKey: DynamicCodingKey("row"))
        try c.encode(sourceId, forKey: DynamicCodingKey("source_id"))
        try c.encodeIfPresent(label, forKey: DynamicCodingKey("label"))
        try c.encodeMetadata(metadata, except: Self.reserved)
    }
}

/// Reads an id sidecar back (for verification and resume).
public enum SourceIdSidecar {
    /// Rows of the JSONL sidecar at `path`, checked to be numbered 0..<n in order.
    public static func read(_ path: String) throws -> [SourceIdRow] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw StorageError.readFailed(path: path, reason: "cannot open file")
        }
        let decoder = JSONDecoder()
        var rows: [SourceIdRow] = []
        for (i, line) in data.split(separator: 0x0A).enumerated() {
            guard let row = try? decoder.decode(SourceIdRow.self, from: Data(line)) else {
                throw StorageError.badFormat(path: path, detail: "line \(i + 1) is not a sidecar row")
            }
            guard row.row == i else { throw StorageError.badFormat(path: path, detail: "line \(i + 1) has row \(row.row), expected \(i)") }
            rows.append(row)
        }
        return rows
    }
}
