import Foundation
import VTPVocabulary

/// Reads a JSONL or CSV manifest: one row per image with `path` and optional `label` (integer),
/// `caption` and `id`. Relative paths resolve against the manifest's directory; the source id is
/// `id` when given, else the path as written. Every other column (a JSONL row's other keys, a
/// CSV row's other non-empty cells, as strings) becomes the item's metadata. Rows keep file order.
public enum ManifestReader {
    /// Lists a manifest, choosing the format by extension (`.jsonl`/`.ndjson` or `.csv`).
    public static func list(manifest path: String) throws -> DatasetListing {
        let lower = path.lowercased()
        if lower.hasSuffix(".jsonl") || lower.hasSuffix(".ndjson") { return try listJSONL(manifest: path) }
        if lower.hasSuffix(".csv") { return try listCSV(manifest: path) }
        throw DatasetError.unknownFormat(path: path)
    }

    /// Lists a JSON Lines manifest; blank lines are skipped.
    public static func listJSONL(manifest path: String) throws -> DatasetListing {
        let data = try readAll(path)
        var builder = Builder(manifestPath: path)
        var lineNumber = 0
        for lineBytes in data.split(separator: 0x0A, omittingEmptySubsequences: false) {
            lineNumber += 1
            var slice = lineBytes[...]
            if lineNumber == 1 { slice = stripBOM(slice) }
            if slice.last == 0x0D { slice = slice.dropLast() }
            if slice.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }
            let object: Any
            do { object = try JSONSerialization.jsonObject(with: Data(slice)) } catch {
                throw DatasetError.badManifestRow(path: path, line: lineNumber, detail: "not valid JSON")
            }
            guard let dict = object as? [String: Any] else {
                throw DatasetError.badManifestRow(path: path, line: lineNumber, detail: "expected a JSON object")
            }
            var row = try Row(json: dict, path: path, line: lineNumber)
            let extra = dict.filter { !Row.columns.contains($0.key) }
            if !extra.isEmpty {
                // Re-parse the line as JSONValue so numbers and nesting survive exactly.
                guard case let .object(fields)? = try? JSONValue(json: String(decoding: slice, as: UTF8.self)) else {
                    throw DatasetError.badManifestRow(path: path, line: lineNumber, detail: "not valid JSON")
                }
                row.metadata = JSONValue.object(fields.filter { !Row.columns.contains($0.key) }).jsonText
            }
            try builder.add(row, line: lineNumber)
        }
        return builder.listing
    }

    /// Lists an RFC 4180 CSV manifest whose first row names the columns.
    public static func listCSV(manifest path: String) throws -> DatasetListing {
        let data = try readAll(path)
        let records: [CSVParser.Record]
        do { records = try CSVParser.parse(stripBOM(data[...])) } catch let e as CSVParser.SyntaxError {
            throw DatasetError.badManifestRow(path: path, line: e.line, detail: e.detail)
        }
        guard let header = records.first else { throw DatasetError.badManifestHeader(path: path, detail: "file is empty") }
        let names = try header.fields.map { try text($0, path: path, line: header.line, column: "header") }
        var column: [String: Int] = [:]
        for (i, name) in names.enumerated() {
            let key = name.trimmingCharacters(in: .whitespaces)
            guard column[key] == nil else { throw DatasetError.badManifestHeader(path: path, detail: "column '\(key)' appears twice") }
            column[key] = i
        }
        guard let pathColumn = column["path"] else {
            throw DatasetError.badManifestHeader(path: path, detail: "no 'path' column (found \(names.joined(separator: ", ")))")
        }
        var builder = Builder(manifestPath: path)
        for record in records.dropFirst() {
            guard record.fields.count == names.count else {
                throw DatasetError.badManifestRow(path: path, line: record.line,
                    detail: "\(record.fields.count) fields, header has \(names.count)")
            }
            func cell(_ name: String) throws -> String? {
                guard let i = column[name] else { return nil }
                return try text(record.fields[i], path: path, line: record.line, column: name)
            }
            var label: Int?
            if let raw = try cell("label")?.trimmingCharacters(in: .whitespaces), !raw.isEmpty {
                guard let value = Int(raw) else {
                    throw DatasetError.badManifestRow(path: path, line: record.line, detail: "label '\(raw)' is not an integer")
                }
                label = value
            }
            // CSV cannot tell an empty cell from a missing value, so empty id and caption mean "none".
            let idCell = try cell("id"), captionCell = try cell("caption")
            var row = Row(path: try text(record.fields[pathColumn], path: path, line: record.line, column: "path"),
                          label: label, caption: (captionCell?.isEmpty ?? true) ? nil : captionCell,
                          id: (idCell?.isEmpty ?? true) ? nil : idCell)
            var extra: [String: JSONValue] = [:]
            for (name, _) in column where !Row.columns.contains(name) {
                if let value = try cell(name), !value.isEmpty { extra[name] = .string(value) }
            }
            if !extra.isEmpty { row.metadata = JSONValue.object(extra).jsonText }
            try builder.add(row, line: record.line)
        }
        return builder.listing
    }

    /// One manifest row before path resolution.
    struct Row {
        /// The columns with a meaning of their own; all others are metadata.
        static let columns: Set<String> = ["path", "label", "caption", "id"]

        var path: String
        var label: Int?
        var caption: String?
        var id: String?
        /// The other columns as a JSON object text.
        var metadata: String?

        init(path: String, label: Int?, caption: String?, id: String?) {
            self.path = path
            self.label = label
            self.caption = caption
            self.id = id
        }

        init(json: [String: Any], path file: String, line: Int) throws {
            func fail(_ detail: String) -> DatasetError { .badManifestRow(path: file, line: line, detail: detail) }
            guard let p = json["path"] as? String else { throw fail("'path' is missing or not a string") }
            path = p
            label = nil
            if let raw = json["label"], !(raw is NSNull) {
                guard let n = raw as? NSNumber, !Self.isBoolean(n), n.stringValue == String(n.intValue) else {
                    throw fail("'label' must be an integer, found \(raw)")
                }
                label = n.intValue
            }
            switch json["caption"] {
            case nil, is NSNull: caption = nil
            case let s as String: caption = s
            default: throw fail("'caption' must be a string")
            }
            switch json["id"] {
            case nil, is NSNull: id = nil
            case let s as String: id = s
            case let n as NSNumber where !Self.isBoolean(n) && n.stringValue == String(n.intValue):
                id = String(n.intValue)
            default: throw fail("'id' must be a string or an integer")
            }
        }

        private static func isBoolean(_ n: NSNumber) -> Bool {
            // Foundation bridges JSON true/false to NSNumber too; its objCType is 'c' (char/BOOL).
            String(cString: n.objCType) == "c" || String(cString: n.objCType) == "B"
        }
    }

    /// Accumulates rows into items, resolving paths and rejecting duplicate ids.
    struct Builder {
        let manifestPath: String
        let baseDirectory: String
        var listing = DatasetListing(items: [])
        var firstLine: [String: Int] = [:]

        init(manifestPath: String) {
            self.manifestPath = manifestPath
            let dir = (manifestPath as NSString).deletingLastPathComponent
            baseDirectory = dir.isEmpty ? "." : dir
        }

        mutating func add(_ row: Row, line: Int) throws {
            guard !row.path.isEmpty else {
                throw DatasetError.badManifestRow(path: manifestPath, line: line, detail: "'path' is empty")
            }
            if row.id == "" { throw DatasetError.badManifestRow(path: manifestPath, line: line, detail: "'id' is empty") }
            // The ledger's text columns cannot hold NUL (its COPY drops them), so such a path would name
            // another file there and the location could not travel to a worker.
            guard !row.path.utf8.contains(0) else {
                throw DatasetError.badManifestRow(path: manifestPath, line: line, detail: "'path' contains a NUL byte")
            }
            if let id = row.id, id.utf8.contains(0) {
                throw DatasetError.badManifestRow(path: manifestPath, line: line, detail: "'id' contains a NUL byte")
            }
            let id = row.id ?? row.path
            if let first = firstLine[id] {
                throw DatasetError.duplicateId(path: manifestPath, id: id, firstLine: first, line: line)
            }
            firstLine[id] = line
            let resolved = row.path.hasPrefix("/") ? row.path : baseDirectory + "/" + row.path
            listing.items.append(JobItem(ordinal: listing.items.count, sourceId: id, location: .file(path: resolved),
                                             label: row.label, caption: row.caption, metadata: row.metadata))
        }
    }

    /// Through ``ReadOnlyFile``, so a FIFO given as the manifest is refused rather than waited on.
    private static func readAll(_ path: String) throws -> [UInt8] {
        let file = try ReadOnlyFile(path: path)
        return try file.read(at: 0, count: Int(file.size))
    }

    private static func stripBOM(_ bytes: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        bytes.starts(with: [0xEF, 0xBB, 0xBF]) ? bytes.dropFirst(3) : bytes
    }

    private static func text(_ bytes: [UInt8], path: String, line: Int, column: String) throws -> String {
        guard let s = String(validating: bytes, as: UTF8.self) else {
            throw DatasetError.badManifestRow(path: path, line: line, detail: "column '\(column)' is not valid UTF-8")
        }
        return s
    }
}
