import Foundation
import VTPVocabulary

/// Reads a JSONL or CSV manifest: one row per image with `path` and optional `label`, `caption`
/// and `id`. Relative paths resolve against the manifest's directory; the source id is `id` when
/// given, else the path as written. Every other column (a JSONL row's other keys, a CSV row's
/// other non-empty cells, as strings) becomes the item's metadata. Rows keep file order.
///
/// A label is an integer (a JSON number, or text that reads as a decimal integer such as `"3"`,
/// in either format) or a class name (any other text). With a ``ClassList`` names map to their
/// index in it and integers must index it; without one, names are numbered in the order
/// ImageFolder numbers its class folders (sorted by code point), and a manifest mixing names
/// with integers is refused, since the two numberings would collide.
public enum ManifestReader {
    /// Lists a manifest, choosing the format by extension (`.jsonl`/`.ndjson` or `.csv`).
    public static func list(manifest path: String, classes: ClassList? = nil) throws -> DatasetListing {
        let lower = path.lowercased()
        if lower.hasSuffix(".jsonl") || lower.hasSuffix(".ndjson") { return try listJSONL(manifest: path, classes: classes) }
        if lower.hasSuffix(".csv") { return try listCSV(manifest: path, classes: classes) }
        throw DatasetError.unknownFormat(path: path)
    }

    /// Lists a JSON Lines manifest; blank lines are skipped.
    public static func listJSONL(manifest path: String, classes: ClassList? = nil) throws -> DatasetListing {
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
        return try builder.finish(classes: classes)
    }

    /// Lists an RFC 4180 CSV manifest whose first row names the columns.
    public static func listCSV(manifest path: String, classes: ClassList? = nil) throws -> DatasetListing {
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
            var label: RawLabel?
            if let raw = try cell("label")?.trimmingCharacters(in: .whitespaces), !raw.isEmpty { label = RawLabel(text: raw) }
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
        return try builder.finish(classes: classes)
    }

    /// A label as the manifest writes it, before names become indices.
    enum RawLabel: Equatable {
        case index(Int)
        case name(String)

        /// Text that reads as a decimal integer is an index, so `"3"` means the same in JSONL as
        /// in CSV (where a cell cannot say which it is) and numeric labels never sort as text.
        init(text: String) {
            if let n = Int(text) { self = .index(n) } else { self = .name(text) }
        }

        var isIndex: Bool {
            if case .index = self { return true }
            return false
        }

        var quoted: String {
            switch self {
            case let .index(n): String(n)
            case let .name(s): "'\(s)'"
            }
        }
    }

    /// One manifest row before path resolution.
    struct Row {
        /// The columns with a meaning of their own; all others are metadata.
        static let columns: Set<String> = ["path", "label", "caption", "id"]

        var path: String
        var label: RawLabel?
        var caption: String?
        var id: String?
        /// The other columns as a JSON object text.
        var metadata: String?

        init(path: String, label: RawLabel?, caption: String?, id: String?) {
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
            switch json["label"] {
            case nil, is NSNull: break
            case let s as String:
                let text = s.trimmingCharacters(in: .whitespaces)
                guard !text.isEmpty else { throw fail("'label' is an empty string (leave it out or null for no label)") }
                label = RawLabel(text: text)
            case let n as NSNumber where !Self.isBoolean(n) && n.stringValue == String(n.intValue):
                label = .index(n.intValue)
            case let other?:
                throw fail("'label' must be an integer or a class name (a string), found \(other)")
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

    /// Accumulates rows into items, resolving paths and rejecting duplicate ids; labels are
    /// resolved at the end, when every name the manifest uses is known.
    struct Builder {
        let manifestPath: String
        let baseDirectory: String
        var listing = DatasetListing(items: [])
        var firstLine: [String: Int] = [:]
        /// Each labelled item's label as written, with its line.
        var labels: [(item: Int, label: RawLabel, line: Int)] = []

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
            if let label = row.label { labels.append((listing.items.count, label, line)) }
            listing.items.append(JobItem(ordinal: listing.items.count, sourceId: id, location: .file(path: resolved),
                                             caption: row.caption, metadata: row.metadata))
        }

        /// The listing with integer labels, and the class list they index (empty when the
        /// manifest's labels are integers and no list was given).
        func finish(classes: ClassList?) throws(DatasetError) -> DatasetListing {
            var result = listing
            if let classes {
                let indices = classes.indicesByName
                for entry in labels {
                    switch entry.label {
                    case let .index(n):
                        guard classes.names.indices.contains(n) else {
                            throw .badManifestRow(path: manifestPath, line: entry.line,
                                detail: "label \(n) is not an index of the \(classes.names.count) classes in \(classes.source) (0...\(classes.names.count - 1))")
                        }
                        result.items[entry.item].label = n
                    case let .name(name):
                        guard let found = indices[Array(name.utf8)] else {
                            throw .badManifestRow(path: manifestPath, line: entry.line,
                                detail: "label '\(name)' is not one of the \(classes.names.count) classes in \(classes.source)")
                        }
                        guard found.count == 1 else {
                            throw .badManifestRow(path: manifestPath, line: entry.line,
                                detail: "label '\(name)' is ambiguous: \(classes.source) lists it \(found.count) times (as labels \(found.map(String.init).joined(separator: ", ")))")
                        }
                        result.items[entry.item].label = found[0]
                    }
                }
                result.classes = classes.names
                return result
            }
            guard let first = labels.first else { return result }
            // One kind of label throughout: integers stay as written, names are numbered like
            // ImageFolder's class folders.
            if let other = labels.first(where: { ($0.label.isIndex) != first.label.isIndex }) {
                throw .badManifestRow(path: manifestPath, line: other.line,
                    detail: "label \(other.label.quoted) is \(other.label.isIndex ? "an integer" : "a class name"), but line \(first.line)'s label \(first.label.quoted) is \(first.label.isIndex ? "an integer" : "a class name"); labels must be all integers or all class names, unless --classes FILE lists the classes (names then map to their index in it and integers index it)")
            }
            guard !first.label.isIndex else {
                for entry in labels { if case let .index(n) = entry.label { result.items[entry.item].label = n } }
                return result
            }
            // Keyed by UTF-8 bytes: Swift's String equality would merge canonically equivalent
            // spellings (composed and decomposed accents) that Python, and so ImageFolder, keeps apart.
            var spelled: [[UInt8]: String] = [:]
            for entry in labels { if case let .name(name) = entry.label { spelled[Array(name.utf8)] = name } }
            let sorted = CodePointOrder.sorted(Array(spelled.values))
            let index = Dictionary(uniqueKeysWithValues: sorted.enumerated().map { (Array($1.utf8), $0) })
            for entry in labels { if case let .name(name) = entry.label { result.items[entry.item].label = index[Array(name.utf8)] } }
            result.classes = sorted
            return result
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
