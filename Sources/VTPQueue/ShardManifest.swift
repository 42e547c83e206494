import Foundation
import VTPVocabulary

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A shard manifest could not be written or read; names the file and, for a broken one, the
/// line and field and what was expected there.
public enum ShardManifestError: Error, CustomStringConvertible, Sendable, Equatable {
    case missing(path: String)
    case unreadable(path: String, reason: String)
    case broken(path: String, line: Int, field: String, expected: String)
    case writeFailed(path: String, reason: String)

    public var description: String {
        switch self {
        case let .missing(path): "shard manifest \(path) does not exist"
        case let .unreadable(path, reason): "shard manifest \(path) cannot be read: \(reason)"
        case let .broken(path, line, field, expected): "shard manifest \(path), line \(line), field \(field): expected \(expected)"
        case let .writeFailed(path, reason): "shard manifest \(path) cannot be written: \(reason)"
        }
    }
}

/// The items of one shard, stored as a file beside the job's outputs instead of as ledger rows,
/// so the ledger grows with shards rather than items (a billion items would be ~200 GB of rows).
///
/// Format version 1, UTF-8 text, one record a line:
///
///     vtp-shard-items 1 job=<id> shard=<index> first=<ordinal> count=<n>
///     <ordinal>\t<source id>\t<location>\t<label>\t<caption>\t<metadata>     (n lines)
///     end crc32=<8 hex digits>
///
/// Fields use PostgreSQL's COPY text escaping (`\\`, `\t`, `\n`, `\r`; `\N` is NULL), the
/// ordinals run `first..<first+n` in order, and the CRC-32 covers every byte before the `end`
/// line, so a torn, truncated or edited file is refused rather than half read.
public enum ShardManifest {
    /// The format version written in the header; readers refuse others.
    public static let formatVersion = 1
    static let magic = "vtp-shard-items"

    /// `<output>/.vtp/shards/<job>`: the folder of one job's shard manifests. They live in the
    /// output's storage, which the coordinator (it finalizes there) and the enqueuer can both reach.
    public static func directory(outputLocation: String, job: Int64) -> String {
        let root = outputLocation.hasSuffix("/") ? String(outputLocation.dropLast()) : outputLocation
        return "\(root)/.vtp/shards/\(job)"
    }

    /// The manifest file of shard `shard` of `job`.
    public static func path(outputLocation: String, job: Int64, shard: Int) -> String {
        directory(outputLocation: outputLocation, job: job) + "/\(shard).items"
    }

    /// The file's bytes for `items` (ordinals must run from `first` without gaps).
    static func encode(job: Int64, shard: Int, first: Int64, items: some Collection<JobItem>) -> [UInt8] {
        var encoder = CopyTextEncoder(reservingCapacity: 128 * items.count + 128)
        var header = "\(magic) \(formatVersion) job=\(job) shard=\(shard) first=\(first) count=\(items.count)\n"
        var bytes: [UInt8] = []
        header.withUTF8 { bytes.append(contentsOf: $0) }
        for item in items {
            encoder.appendField(Int64(item.ordinal))
            encoder.appendField(item.sourceId)
            encoder.appendField(item.location.encoded)
            encoder.appendField(item.label.map(String.init))
            encoder.appendField(item.caption)
            encoder.appendField(item.metadata)
            encoder.endRow()
        }
        bytes.append(contentsOf: encoder.bytes)
        let crc = CRC32.checksum(bytes)
        bytes.append(contentsOf: "end crc32=\(hex8(crc))\n".utf8)
        return bytes
    }

    /// Writes the manifest of one shard atomically: a temporary file in the same folder, synced,
    /// then renamed over the final name, so a reader sees the old file, the new one or none,
    /// never a part (a crash mid-enqueue leaves at worst a stray `.tmp-*` file).
    public static func write(job: Int64, shard: Int, first: Int64, items: some Collection<JobItem>,
                             outputLocation: String) throws(ShardManifestError) {
        let directory = directory(outputLocation: outputLocation, job: job)
        let path = directory + "/\(shard).items"
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw .writeFailed(path: path, reason: "cannot create \(directory): \(error.localizedDescription)")
        }
        let bytes = encode(job: job, shard: shard, first: first, items: items)
        let temporary = path + ".tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .writeFailed(path: path, reason: String(cString: strerror(errno))) }
        var written = 0
        let failure: String? = bytes.withUnsafeBytes { buffer -> String? in
            while written < buffer.count {
                let n = Glibc.write(fd, buffer.baseAddress! + written, buffer.count - written)
                if n < 0 {
                    if errno == EINTR { continue }
                    return String(cString: strerror(errno))
                }
                written += n
            }
            return fsync(fd) == 0 ? nil : String(cString: strerror(errno))
        }
        close(fd)
        if let failure {
            unlink(temporary)
            throw .writeFailed(path: path, reason: failure)
        }
        guard rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw .writeFailed(path: path, reason: reason)
        }
    }

    /// Reads the manifest of shard `shard` of `job`, which must hold ordinals `first...last`.
    /// - Throws: ``ShardManifestError`` naming the file, and for a broken one the line and field.
    public static func read(job: Int64, shard: Int, first: Int64, last: Int64,
                            outputLocation: String) throws(ShardManifestError) -> [JobItem] {
        let path = path(outputLocation: outputLocation, job: job, shard: shard)
        let data = try readFile(path)
        return try decode(data, path: path, job: job, shard: shard, first: first, last: last)
    }

    static func readFile(_ path: String) throws(ShardManifestError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT { throw .missing(path: path) }
            throw .unreadable(path: path, reason: String(cString: strerror(errno)))
        }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress!, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw .unreadable(path: path, reason: String(cString: strerror(errno)))
            }
            if n == 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        return bytes
    }

    /// Parses a manifest's bytes; `first...last` are the ordinals the ledger says the shard holds.
    static func decode(_ data: [UInt8], path: String, job: Int64, shard: Int, first: Int64,
                       last: Int64) throws(ShardManifestError) -> [JobItem] {
        func broken(_ line: Int, _ field: String, _ expected: String) -> ShardManifestError {
            .broken(path: path, line: line, field: field, expected: expected)
        }
        // Lines (each ends with \n; escaping keeps \n out of fields).
        var lines: [Range<Int>] = []
        var start = 0
        for i in data.indices where data[i] == 0x0A {
            lines.append(start..<i)
            start = i + 1
        }
        guard start == data.count, let headerRange = lines.first else {
            throw broken(lines.count + 1, "end", "a final 'end crc32=...' line (the file is truncated)")
        }
        let header = String(decoding: data[headerRange], as: UTF8.self).split(separator: " ")
        guard header.count == 6, header[0] == magic else { throw broken(1, "header", "'\(magic) <version> job=... shard=... first=... count=...'") }
        guard header[1] == "\(formatVersion)" else { throw broken(1, "version", "format version \(formatVersion), found \(header[1])") }
        func headerValue(_ index: Int, _ key: String) throws(ShardManifestError) -> Int64 {
            let part = header[index]
            guard part.hasPrefix(key + "="), let value = Int64(part.dropFirst(key.count + 1)) else {
                throw broken(1, key, "\(key)=<integer>")
            }
            return value
        }
        let count = last - first + 1
        guard try headerValue(2, "job") == job else { throw broken(1, "job", "job \(job) (the file belongs to another job)") }
        guard try headerValue(3, "shard") == Int64(shard) else { throw broken(1, "shard", "shard \(shard) (the file belongs to another shard)") }
        guard try headerValue(4, "first") == first else { throw broken(1, "first", "first ordinal \(first), as the ledger records") }
        guard try headerValue(5, "count") == count else { throw broken(1, "count", "\(count) items, as the ledger records") }
        guard lines.count == Int(count) + 2 else {
            throw broken(lines.count, "items", "\(count) item lines between header and end line, found \(lines.count - 2)")
        }
        let endLine = String(decoding: data[lines[lines.count - 1]], as: UTF8.self)
        guard endLine.hasPrefix("end crc32="), let stored = UInt32(endLine.dropFirst("end crc32=".count), radix: 16) else {
            throw broken(lines.count, "end", "'end crc32=<8 hex digits>'")
        }
        let actual = CRC32.checksum(data[0..<lines[lines.count - 1].lowerBound])
        guard stored == actual else {
            throw broken(lines.count, "crc32", "\(hex8(actual)) (the checksum of the file's contents), found \(hex8(stored)): the file is corrupted")
        }
        var items: [JobItem] = []
        items.reserveCapacity(Int(count))
        for (k, range) in lines[1..<(lines.count - 1)].enumerated() {
            let lineNumber = k + 2
            let fields = try splitFields(data[range], line: lineNumber, path: path)
            guard fields.count == 6 else { throw broken(lineNumber, "fields", "6 tab-separated fields, found \(fields.count)") }
            let expectedOrdinal = first + Int64(k)
            guard let ordinalText = fields[0], Int64(ordinalText) == expectedOrdinal else {
                throw broken(lineNumber, "ordinal", "\(expectedOrdinal)")
            }
            guard let sourceId = fields[1] else { throw broken(lineNumber, "source_id", "a source id, not NULL") }
            guard let locationText = fields[2] else { throw broken(lineNumber, "path", "an item location, not NULL") }
            let location: ItemLocation
            do { location = try ItemLocation(encoded: locationText) } catch {
                throw broken(lineNumber, "path", "an item location (\(error.detail))")
            }
            var label: Int?
            if let text = fields[3] {
                guard let value = Int(text) else { throw broken(lineNumber, "label", "an integer or \\N") }
                label = value
            }
            items.append(JobItem(ordinal: Int(expectedOrdinal), sourceId: sourceId, location: location, label: label,
                                 caption: fields[4], metadata: fields[5]))
        }
        return items
    }

    /// Splits one line into COPY-text fields, undoing the escapes (`\N` alone is NULL).
    static func splitFields(_ line: ArraySlice<UInt8>, line number: Int, path: String) throws(ShardManifestError) -> [String?] {
        var fields: [String?] = []
        var current: [UInt8] = []
        var isNull = false
        var i = line.startIndex
        while i < line.endIndex {
            let byte = line[i]
            if byte == 0x09 {
                fields.append(isNull ? nil : String(decoding: current, as: UTF8.self))
                current.removeAll(keepingCapacity: true)
                isNull = false
            } else if byte == 0x5C {
                i += 1
                guard i < line.endIndex else {
                    throw .broken(path: path, line: number, field: "field \(fields.count + 1)", expected: "an escape after '\\'")
                }
                switch line[i] {
                case 0x5C: current.append(0x5C)
                case UInt8(ascii: "t"): current.append(0x09)
                case UInt8(ascii: "n"): current.append(0x0A)
                case UInt8(ascii: "r"): current.append(0x0D)
                case UInt8(ascii: "N") where current.isEmpty: isNull = true
                default:
                    throw .broken(path: path, line: number, field: "field \(fields.count + 1)", expected: "one of \\\\ \\t \\n \\r \\N")
                }
            } else {
                current.append(byte)
            }
            i += 1
        }
        fields.append(isNull ? nil : String(decoding: current, as: UTF8.self))
        return fields
    }

    static func hex8(_ value: UInt32) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 8 - digits.count) + digits
    }

    /// Removes every manifest of `job` (a job deleted, or the leftovers of an enqueue that died
    /// before its job became visible). Missing folders are fine.
    public static func removeAll(job: Int64, outputLocation: String) {
        try? FileManager.default.removeItem(atPath: directory(outputLocation: outputLocation, job: job))
    }
}

/// CRC-32 (IEEE 802.3, as zlib computes it).
enum CRC32 {
    static let table: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    static func checksum(_ bytes: some Sequence<UInt8>) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        table.withUnsafeBufferPointer { table in
            for byte in bytes { crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        }
        return crc ^ 0xFFFF_FFFF
    }
}

/// Cuts a stream of items into shards of `shardSize`, writing each shard's manifest as soon as it
/// is full, so an enqueue holds one shard of items at a time whatever the listing's size.
struct ShardManifestWriter {
    let job: Int64
    let outputLocation: String
    let shardSize: Int
    let firstShard: Int
    let firstOrdinal: Int64
    private var buffer: [JobItem] = []
    private(set) var shardsWritten = 0
    private(set) var itemsWritten: Int64 = 0

    init(job: Int64, outputLocation: String, shardSize: Int, firstShard: Int, firstOrdinal: Int64) {
        self.job = job
        self.outputLocation = outputLocation
        self.shardSize = shardSize
        self.firstShard = firstShard
        self.firstOrdinal = firstOrdinal
        buffer.reserveCapacity(shardSize)
    }

    /// Adds the next item; its ordinal is assigned here (the listing position after the last).
    mutating func add(_ item: JobItem) throws(ShardManifestError) {
        var item = item
        item.ordinal = Int(firstOrdinal + itemsWritten + Int64(buffer.count))
        buffer.append(item)
        if buffer.count == shardSize { try flush() }
    }

    /// Writes the last, possibly short, shard.
    mutating func finish() throws(ShardManifestError) {
        if !buffer.isEmpty { try flush() }
    }

    private mutating func flush() throws(ShardManifestError) {
        let first = firstOrdinal + itemsWritten
        try ShardManifest.write(job: job, shard: firstShard + shardsWritten, first: first, items: buffer,
                                outputLocation: outputLocation)
        itemsWritten += Int64(buffer.count)
        shardsWritten += 1
        buffer.removeAll(keepingCapacity: true)
    }
}
