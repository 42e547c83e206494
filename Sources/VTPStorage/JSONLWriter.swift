import Foundation

/// Writes JSON Lines files atomically: one compact, key-sorted JSON object per line.
public enum JSONLWriter {
    /// Encodes each row on its own line and writes the file atomically.
    public static func write<Row: Encodable>(_ rows: [Row], to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var data = Data()
        for (i, row) in rows.enumerated() {
            do { data.append(try encoder.encode(row)) } catch {
                throw StorageError.badInput(path: path, detail: "row \(i) cannot be encoded as JSON: \(error)")
            }
            data.append(0x0A)
        }
        try AtomicWrite.write(data, to: path)
    }
}

/// One line of an id sidecar: row `row` of the shard came from `sourceId`.
public struct SourceIdRow: Codable, Sendable, Equatable {
    public var row: Int
    public var sourceId: String
    public var label: Int64?

    public init(row: Int, sourceId: String, label: Int64? = nil) {
        self.row = row
        self.sourceId = sourceId
        self.label = label
    }

    enum CodingKeys: String, CodingKey {
        case row
        case sourceId = "source_id"
        case label
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
