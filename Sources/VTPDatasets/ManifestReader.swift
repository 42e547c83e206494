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
    /// The two manifest formats, told apart by extension.
    enum Format { case jsonl, csv }

    /// Lists a manifest into memory, choosing the format by extension (`.jsonl`/`.ndjson` or
    /// `.csv`): ``scan(manifest:classes:eachSourceId:)`` and its items collected.
    public static func list(manifest path: String, classes: ClassList? = nil) throws -> DatasetListing {
        let scan = try scan(manifest: path, classes: classes)
        return DatasetListing(items: try scan.collectItems(), classes: scan.classes)
    }

    /// Reads the whole manifest once without keeping its rows: every row is checked (the errors
    /// ``list(manifest:classes:)`` gives), ids must be unique, labels must be of one kind or in
    /// `classes`, and the class names are collected. `eachSourceId` sees every item's id in order.
    /// The result lists the items again, from the file, as often as asked (``StreamedScan/items()``).
    ///
    /// Memory is a block of the file, the class names, and a bounded duplicate-id check: the rows'
    /// 64-bit id hashes are sorted in runs of `duplicateCheckRun` (8M, 64 MB), spilled to a
    /// scratch file under `$TMPDIR` when there is more than one run, and merged
    /// (``RepeatedValueFinder``). A repeated hash is confirmed against the ids themselves in a
    /// further pass, so a collision never refuses a good manifest. A duplicate id is therefore
    /// reported after the rest of the file was checked.
    public static func scan(manifest path: String, classes: ClassList? = nil,
                            eachSourceId: (String) -> Void = { _ in }) throws -> StreamedScan {
        try scan(manifest: path, classes: classes, duplicateCheckRun: RepeatedValueFinder.defaultRunCapacity, eachSourceId: eachSourceId)
    }

    static func scan(manifest path: String, classes: ClassList?, duplicateCheckRun: Int,
                     eachSourceId: (String) -> Void) throws -> StreamedScan {
        let format = try format(of: path)
        var rows = try ManifestRowReader(path: path, format: format)
        var hashes = RepeatedValueFinder(runCapacity: duplicateCheckRun)
        var checksum = EntryChecksum()
        var count = 0, captioned = 0
        var labels = LabelCollector(manifestPath: path, classes: classes)
        while let (row, line) = try rows.next() {
            try validate(row, line: line, manifestPath: path)
            let id = row.id ?? row.path
            let hash = idHash(id)
            try hashes.add(hash)
            checksum.add(idHash: hash, listed: true)
            if let label = row.label { try labels.add(label, line: line) }
            if row.caption?.contains(where: { !$0.isWhitespace }) == true { captioned += 1 }
            eachSourceId(id)
            count += 1
        }
        let repeated = try hashes.finish()
        if !repeated.isEmpty { try confirmDuplicates(amongHashes: repeated, manifest: path, format: format) }
        let (names, resolution) = labels.finish()
        return StreamedScan(path: path, itemCount: count, skipped: [], classes: names, captionedItems: captioned,
                            checksum: checksum.value) {
            try ManifestCursor(path: path, format: format, classes: names, labels: resolution)
        }
    }

    static func format(of path: String) throws -> Format {
        let lower = path.lowercased()
        if lower.hasSuffix(".jsonl") || lower.hasSuffix(".ndjson") { return .jsonl }
        if lower.hasSuffix(".csv") { return .csv }
        throw DatasetError.unknownFormat(path: path)
    }

    /// What every row must satisfy, checked on every pass.
    static func validate(_ row: Row, line: Int, manifestPath: String) throws(DatasetError) {
        guard !row.path.isEmpty else { throw .badManifestRow(path: manifestPath, line: line, detail: "'path' is empty") }
        if row.id == "" { throw .badManifestRow(path: manifestPath, line: line, detail: "'id' is empty") }
        // The ledger's text columns cannot hold NUL (its COPY drops them), so such a path would name
        // another file there and the location could not travel to a worker.
        guard !row.path.utf8.contains(0) else {
            throw .badManifestRow(path: manifestPath, line: line, detail: "'path' contains a NUL byte")
        }
        if let id = row.id, id.utf8.contains(0) {
            throw .badManifestRow(path: manifestPath, line: line, detail: "'id' contains a NUL byte")
        }
    }

    /// The ids whose hashes repeated, looked up exactly: the first that really repeats is reported
    /// at its second row; hash collisions between different ids pass.
    private static func confirmDuplicates(amongHashes candidates: Set<UInt64>, manifest path: String, format: Format) throws {
        var rows = try ManifestRowReader(path: path, format: format)
        var firstLine: [String: Int] = [:]
        while let (row, line) = try rows.next() {
            let id = row.id ?? row.path
            guard candidates.contains(idHash(id)) else { continue }
            if let first = firstLine[id] { throw DatasetError.duplicateId(path: path, id: id, firstLine: first, line: line) }
            firstLine[id] = line
        }
    }

    /// The id's ``SourceIdHash``, the hash the listing digest also sums.
    static func idHash(_ id: String) -> UInt64 { SourceIdHash.of(id) }

    /// Checks labels as rows arrive and decides at the end how they become indices: with a
    /// ``ClassList`` names map to their index in it and integers must index it; without one, one
    /// kind throughout, names numbered like ImageFolder's class folders.
    struct LabelCollector {
        let manifestPath: String
        let classes: ClassList?
        private let indices: [[UInt8]: [Int]]
        private var first: (label: RawLabel, line: Int)?
        /// Keyed by UTF-8 bytes: Swift's String equality would merge canonically equivalent
        /// spellings (composed and decomposed accents) that Python, and so ImageFolder, keeps apart.
        private var spelled: [[UInt8]: String] = [:]

        init(manifestPath: String, classes: ClassList?) {
            self.manifestPath = manifestPath
            self.classes = classes
            indices = classes?.indicesByName ?? [:]
        }

        mutating func add(_ label: RawLabel, line: Int) throws(DatasetError) {
            if let classes {
                switch label {
                case let .index(n):
                    guard classes.names.indices.contains(n) else {
                        throw .badManifestRow(path: manifestPath, line: line,
                            detail: "label \(n) is not an index of the \(classes.names.count) classes in \(classes.source) (0...\(classes.names.count - 1))")
                    }
                case let .name(name):
                    guard let found = indices[Array(name.utf8)] else {
                        throw .badManifestRow(path: manifestPath, line: line,
                            detail: "label '\(name)' is not one of the \(classes.names.count) classes in \(classes.source)")
                    }
                    guard found.count == 1 else {
                        throw .badManifestRow(path: manifestPath, line: line,
                            detail: "label '\(name)' is ambiguous: \(classes.source) lists it \(found.count) times (as labels \(found.map(String.init).joined(separator: ", ")))")
                    }
                }
                return
            }
            guard let first else {
                self.first = (label, line)
                if case let .name(name) = label { spelled[Array(name.utf8)] = name }
                return
            }
            if label.isIndex != first.label.isIndex {
                throw .badManifestRow(path: manifestPath, line: line,
                    detail: "label \(label.quoted) is \(label.isIndex ? "an integer" : "a class name"), but line \(first.line)'s label \(first.label.quoted) is \(first.label.isIndex ? "an integer" : "a class name"); labels must be all integers or all class names, unless --classes FILE lists the classes (names then map to their index in it and integers index it)")
            }
            if case let .name(name) = label { spelled[Array(name.utf8)] = name }
        }

        /// The class names labels index (empty when they are integers and no list was given), and
        /// how a label as written becomes its index.
        func finish() -> ([String], LabelResolution) {
            if let classes { return (classes.names, LabelResolution(byName: indices.mapValues { $0[0] })) }
            let sorted = CodePointOrder.sorted(Array(spelled.values))
            return (sorted, LabelResolution(byName: Dictionary(uniqueKeysWithValues: sorted.enumerated().map { (Array($1.utf8), $0) })))
        }
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

    /// One JSON Lines row; `slice` is the line without its line break.
    static func jsonRow(_ slice: ArraySlice<UInt8>, path: String, line lineNumber: Int) throws -> Row {
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
        return row
    }

    static func text(_ bytes: [UInt8], path: String, line: Int, column: String) throws -> String {
        guard let s = String(validating: bytes, as: UTF8.self) else {
            throw DatasetError.badManifestRow(path: path, line: line, detail: "column '\(column)' is not valid UTF-8")
        }
        return s
    }
}

/// How a label as the manifest writes it becomes an index: integers stand for themselves, names
/// are looked up by their UTF-8 bytes.
struct LabelResolution: Sendable {
    let byName: [[UInt8]: Int]

    func index(_ label: ManifestReader.RawLabel) -> Int? {
        switch label {
        case let .index(n): n
        case let .name(name): byName[Array(name.utf8)]
        }
    }
}

/// A checked manifest's rows read again as items, one block of the file at a time; a label the
/// checking pass did not see means the file changed in between.
struct ManifestCursor: ListingCursor {
    let classes: [String]
    private let path: String
    private let labels: LabelResolution
    private var rows: ManifestRowReader
    private let baseDirectory: String

    init(path: String, format: ManifestReader.Format, classes: [String], labels: LabelResolution) throws {
        self.path = path
        self.classes = classes
        self.labels = labels
        rows = try ManifestRowReader(path: path, format: format)
        let directory = (path as NSString).deletingLastPathComponent
        baseDirectory = directory.isEmpty ? "." : directory
    }

    mutating func next() throws -> ListingEntry? {
        guard let (row, line) = try rows.next() else { return nil }
        try ManifestReader.validate(row, line: line, manifestPath: path)
        var label: Int?
        if let written = row.label {
            guard let index = labels.index(written) else {
                throw DatasetError.changedWhileListed(path: path, detail: "line \(line) has label \(written.quoted), which it did not have when checked")
            }
            label = index
        }
        let resolved = row.path.hasPrefix("/") ? row.path : baseDirectory + "/" + row.path
        return .item(JobItem(ordinal: 0, sourceId: row.id ?? row.path, location: .file(path: resolved), label: label,
                             caption: row.caption, metadata: row.metadata))
    }
}

/// Reads a manifest's rows one at a time from fixed-size blocks of the file, so memory is a block
/// and the longest row whatever the file's size.
struct ManifestRowReader {
    private static let blockSize = 1 << 20
    /// A line this long is not a manifest row; the cap keeps a file without line breaks from being
    /// read whole into memory.
    static let maxRowBytes = 16 << 20

    private let path: String
    private let format: ManifestReader.Format
    private let file: ReadOnlyFile
    private var offset: Int64 = 0
    private var buffer: [UInt8] = []
    private var start = 0
    private var lineNumber = 0
    private var atEnd = false
    private var yieldedLastLine = false
    // CSV: the parser and the records of the last block it was fed.
    private var parser = CSVParser()
    private var records: [CSVParser.Record] = []
    private var recordIndex = 0
    private var columns = CSVColumns()

    init(path: String, format: ManifestReader.Format) throws {
        self.path = path
        self.format = format
        file = try ReadOnlyFile(path: path)
        if format == .csv { try readCSVHeader() }
    }

    /// The next row and the line it starts on, nil at the end of the file.
    mutating func next() throws -> (row: ManifestReader.Row, line: Int)? {
        switch format {
        case .jsonl: return try nextJSONL()
        case .csv: return try nextCSV()
        }
    }

    /// The next block of the file (the first without a UTF-8 byte order mark), nil at the size it had when opened.
    private mutating func readBlock() throws -> [UInt8]? {
        guard offset < file.size else { return nil }
        let first = offset == 0
        var block = try file.read(at: offset, count: Int(min(Int64(Self.blockSize), file.size - offset)))
        offset += Int64(block.count)
        if first, block.starts(with: [0xEF, 0xBB, 0xBF]) { block.removeFirst(3) }
        return block
    }

    /// The next line without its line break, as `split(separator: LF, omittingEmptySubsequences:
    /// false)` cuts the whole file: what follows the last line break is a last line, empty when the
    /// file ends with one.
    private mutating func nextLine() throws -> ArraySlice<UInt8>? {
        while true {
            if let lf = buffer[start...].firstIndex(of: 0x0A) {
                defer { start = lf + 1 }
                lineNumber += 1
                return buffer[start..<lf]
            }
            if atEnd {
                guard !yieldedLastLine else { return nil }
                yieldedLastLine = true
                lineNumber += 1
                return buffer[start...]
            }
            guard buffer.count - start <= Self.maxRowBytes else {
                throw DatasetError.badManifestRow(path: path, line: lineNumber + 1, detail: "line is longer than \(Self.maxRowBytes) bytes")
            }
            buffer.removeFirst(start)
            start = 0
            if let block = try readBlock() { buffer.append(contentsOf: block) } else { atEnd = true }
        }
    }

    private mutating func nextJSONL() throws -> (row: ManifestReader.Row, line: Int)? {
        while let line = try nextLine() {
            var slice = line
            if slice.last == 0x0D { slice = slice.dropLast() }
            if slice.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }
            return (try ManifestReader.jsonRow(slice, path: path, line: lineNumber), lineNumber)
        }
        return nil
    }

    private mutating func nextRecord() throws -> CSVParser.Record? {
        while recordIndex == records.count {
            if atEnd { return nil }
            records = []
            recordIndex = 0
            do {
                if let block = try readBlock() {
                    for byte in block { try parser.feed(byte) }
                    guard parser.pendingBytes <= Self.maxRowBytes else {
                        throw DatasetError.badManifestRow(path: path, line: parser.recordLine, detail: "record is longer than \(Self.maxRowBytes) bytes")
                    }
                } else {
                    atEnd = true
                    try parser.finish()
                }
            } catch let error as CSVParser.SyntaxError {
                throw DatasetError.badManifestRow(path: path, line: error.line, detail: error.detail)
            }
            records = parser.takeRecords()
        }
        defer { recordIndex += 1 }
        return records[recordIndex]
    }

    private mutating func readCSVHeader() throws {
        guard let header = try nextRecord() else { throw DatasetError.badManifestHeader(path: path, detail: "file is empty") }
        columns = try CSVColumns(header: header, path: path)
    }

    private mutating func nextCSV() throws -> (row: ManifestReader.Row, line: Int)? {
        guard let record = try nextRecord() else { return nil }
        return (try columns.row(record, path: path), record.line)
    }
}

/// A CSV manifest's columns, from its header.
struct CSVColumns {
    private var names: [String] = []
    private var column: [String: Int] = [:]
    private var pathColumn = 0

    init() {}

    init(header: CSVParser.Record, path: String) throws {
        names = try header.fields.map { try ManifestReader.text($0, path: path, line: header.line, column: "header") }
        for (i, name) in names.enumerated() {
            let key = name.trimmingCharacters(in: .whitespaces)
            guard column[key] == nil else { throw DatasetError.badManifestHeader(path: path, detail: "column '\(key)' appears twice") }
            column[key] = i
        }
        guard let pathColumn = column["path"] else {
            throw DatasetError.badManifestHeader(path: path, detail: "no 'path' column (found \(names.joined(separator: ", ")))")
        }
        self.pathColumn = pathColumn
    }

    func row(_ record: CSVParser.Record, path: String) throws -> ManifestReader.Row {
        guard record.fields.count == names.count else {
            throw DatasetError.badManifestRow(path: path, line: record.line,
                detail: "\(record.fields.count) fields, header has \(names.count)")
        }
        func cell(_ name: String) throws -> String? {
            guard let i = column[name] else { return nil }
            return try ManifestReader.text(record.fields[i], path: path, line: record.line, column: name)
        }
        var label: ManifestReader.RawLabel?
        if let raw = try cell("label")?.trimmingCharacters(in: .whitespaces), !raw.isEmpty { label = ManifestReader.RawLabel(text: raw) }
        // CSV cannot tell an empty cell from a missing value, so empty id and caption mean "none".
        let idCell = try cell("id"), captionCell = try cell("caption")
        var row = ManifestReader.Row(path: try ManifestReader.text(record.fields[pathColumn], path: path, line: record.line, column: "path"),
                                     label: label, caption: (captionCell?.isEmpty ?? true) ? nil : captionCell,
                                     id: (idCell?.isEmpty ?? true) ? nil : idCell)
        var extra: [String: JSONValue] = [:]
        for (name, _) in column where !ManifestReader.Row.columns.contains(name) {
            if let value = try cell(name), !value.isEmpty { extra[name] = .string(value) }
        }
        if !extra.isEmpty { row.metadata = JSONValue.object(extra).jsonText }
        return row
    }
}
