import VTPVocabulary
/// One parsed 512-byte tar header block (POSIX ustar, GNU or V7), before long-name and pax overrides.
struct TarHeader: Equatable {
    var name: String
    var size: Int64
    var typeflag: UInt8
    var linkName: String

    /// Why a header block could not be parsed.
    struct Invalid: Error, Equatable { var detail: String }

    static let blockSize = 512

    /// Whether a block is all zeros (end-of-archive marker).
    static func isZeroBlock(_ block: ArraySlice<UInt8>) -> Bool { block.allSatisfy { $0 == 0 } }

    /// Parses `block` (exactly 512 bytes), verifying the checksum.
    init(block: ArraySlice<UInt8>) throws {
        precondition(block.count == Self.blockSize)
        let b = Array(block)
        let stored = try Self.number(b[148..<156], field: "checksum")
        var unsignedSum: Int64 = 0, signedSum: Int64 = 0
        for (i, byte) in b.enumerated() {
            let v = (148..<156).contains(i) ? UInt8(0x20) : byte
            unsignedSum += Int64(v)
            signedSum += Int64(Int8(bitPattern: v))
        }
        // Some historic writers summed signed chars; accept either, as GNU tar does.
        guard stored == unsignedSum || stored == signedSum else {
            throw Invalid(detail: "header checksum \(stored) does not match computed \(unsignedSum)")
        }
        size = try Self.number(b[124..<136], field: "size")
        typeflag = b[156]
        linkName = Self.string(b[157..<257])
        let base = Self.string(b[0..<100])
        let magic = Array(b[257..<263])
        let isPosixUstar = magic == Array("ustar\0".utf8)
        // Only POSIX ustar uses bytes 345..<500 as a name prefix; GNU's "ustar  " stores times there.
        let prefix = isPosixUstar ? Self.string(b[345..<500]) : ""
        name = prefix.isEmpty ? base : prefix + "/" + base
    }

    /// A NUL-terminated field as text.
    static func string(_ bytes: ArraySlice<UInt8>) -> String {
        let end = bytes.firstIndex(of: 0) ?? bytes.endIndex
        return String(decoding: bytes[bytes.startIndex..<end], as: UTF8.self)
    }

    /// An octal field (spaces/NULs around it) or a GNU base-256 field (high bit of first byte set).
    static func number(_ bytes: ArraySlice<UInt8>, field: String) throws -> Int64 {
        guard let first = bytes.first else { return 0 }
        if first & 0x80 != 0 {
            guard first == 0x80 else { throw Invalid(detail: "negative or oversized base-256 \(field)") }
            var value: Int64 = 0
            for byte in bytes.dropFirst() {
                guard value <= (Int64.max >> 8) else { throw Invalid(detail: "\(field) overflows") }
                value = value << 8 | Int64(byte)
            }
            return value
        }
        var value: Int64 = 0
        var seenDigit = false
        var ended = false
        for byte in bytes {
            switch byte {
            case 0x30...0x37:
                guard !ended else { throw Invalid(detail: "\(field) field has digits after its terminator") }
                guard value <= (Int64.max >> 3) else { throw Invalid(detail: "\(field) overflows") }
                value = value << 3 | Int64(byte - 0x30)
                seenDigit = true
            case 0x20, 0x00:
                if seenDigit { ended = true }
            default:
                throw Invalid(detail: "\(field) field is not octal")
            }
        }
        return value
    }
}

/// Parses pax extended-header records: `"<len> <key>=<value>\n"` repeated.
enum PaxRecords {
    static func parse(_ data: [UInt8]) throws -> [String: String] {
        var out: [String: String] = [:]
        var i = 0
        while i < data.count {
            if data[i] == 0 { break }
            guard let space = data[i...].firstIndex(of: 0x20),
                  let length = Int(String(decoding: data[i..<space], as: UTF8.self)), length > 0,
                  length <= data.count - i, data[i + length - 1] == 0x0A else {
                throw TarHeader.Invalid(detail: "malformed pax record at byte \(i) of the extended header")
            }
            let record = data[(space + 1)..<(i + length - 1)]
            guard let eq = record.firstIndex(of: 0x3D) else {
                throw TarHeader.Invalid(detail: "pax record without '=' at byte \(i) of the extended header")
            }
            out[String(decoding: record[record.startIndex..<eq], as: UTF8.self)] =
                String(decoding: record[(eq + 1)...], as: UTF8.self)
            i += length
        }
        return out
    }
}
