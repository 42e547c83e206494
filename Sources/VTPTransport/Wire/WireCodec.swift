/// Limits both encoder and decoder enforce, so anything that encodes also decodes and a hostile peer
/// cannot make the decoder allocate more than the frame it sent.
public enum WireLimits {
    /// Largest single frame accepted by the sockets (`ZMQ_MAXMSGSIZE`).
    public static let maxFrameBytes = 16 << 20
    /// Identifiers, host names, job types, stage names.
    public static let shortText = 1024
    /// Paths, URLs, output locations.
    public static let pathText = 16 << 10
    /// Captions, labels, error texts.
    public static let longText = 256 << 10
    /// The job parameters JSON document.
    public static let parametersJSON = 4 << 20
    /// Items in one shard.
    public static let itemsPerShard = 1 << 16
    /// Job types a worker can announce.
    public static let jobTypes = 256
    /// Timing entries per item result.
    public static let stagesPerItem = 64
    /// Shards one worker may list as held in a heartbeat (far above any prefetch).
    public static let heldShards = 4096
}

/// Why a frame is not a valid message. Decoding never traps: every problem ends up here, naming the
/// field concerned, so the receiver can log and drop the frame.
public enum WireDecodeError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The frame does not start with the `VTP` magic.
    case badMagic
    /// The version byte is not one this build speaks.
    case unsupportedVersion(UInt8)
    /// The type byte names no known message.
    case unknownMessageType(UInt8)
    /// The frame ended inside `field`.
    case truncated(field: String, needed: Int, available: Int)
    /// A length or count prefix of `field` exceeds its limit.
    case tooLong(field: String, length: Int, limit: Int)
    /// `field` is not valid UTF-8.
    case invalidUTF8(field: String)
    /// `field` has a value outside its domain.
    case invalidValue(field: String, reason: String)
    /// Bytes remain after the last field.
    case trailingBytes(Int)
    /// The multipart message had an unexpected number of frames.
    case unexpectedFrameCount(expected: Int, got: Int)
    /// A valid message that must not travel in this direction (e.g. an assignment sent by a worker).
    case wrongDirection(WireMessageType)

    public var description: String {
        switch self {
        case .badMagic: "frame does not start with the VTP magic"
        case .unsupportedVersion(let v): "unsupported protocol version \(v), expected \(WireMessage.protocolVersion)"
        case .unknownMessageType(let t): "unknown message type 0x\(String(t, radix: 16))"
        case .truncated(let field, let needed, let available):
            "truncated at \(field): needed \(needed) bytes, \(available) left"
        case .tooLong(let field, let length, let limit): "\(field) has length \(length), limit is \(limit)"
        case .invalidUTF8(let field): "\(field) is not valid UTF-8"
        case .invalidValue(let field, let reason): "\(field): \(reason)"
        case .trailingBytes(let n): "\(n) unexpected bytes after the last field"
        case .unexpectedFrameCount(let expected, let got): "expected \(expected) frames, got \(got)"
        case .wrongDirection(let type): "\(type) is not allowed in this direction"
        }
    }
}

/// Why a message cannot be encoded (a field exceeds what the decoder would accept).
public enum WireEncodeError: Error, Equatable, Sendable, CustomStringConvertible {
    case tooLong(field: String, length: Int, limit: Int)
    case invalidValue(field: String, reason: String)

    public var description: String {
        switch self {
        case .tooLong(let field, let length, let limit): "cannot encode \(field): length \(length) exceeds \(limit)"
        case .invalidValue(let field, let reason): "cannot encode \(field): \(reason)"
        }
    }
}

/// Appends explicit little-endian fields to a byte buffer.
struct WireWriter {
    private(set) var bytes: [UInt8] = []

    init(capacity: Int = 64) { bytes.reserveCapacity(capacity) }

    mutating func u8(_ value: UInt8) { bytes.append(value) }
    mutating func u32(_ value: UInt32) { appendLittleEndian(value) }
    mutating func u64(_ value: UInt64) { appendLittleEndian(value) }
    mutating func i64(_ value: Int64) { appendLittleEndian(UInt64(bitPattern: value)) }
    mutating func f64(_ value: Double) { appendLittleEndian(value.bitPattern) }
    mutating func raw(_ value: [UInt8]) { bytes += value }
    mutating func bool(_ value: Bool) { bytes.append(value ? 1 : 0) }

    private mutating func appendLittleEndian<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes += $0 }
    }

    /// A u32 byte length followed by UTF-8.
    mutating func string(_ value: String, field: String, limit: Int) throws(WireEncodeError) {
        let utf8 = Array(value.utf8)
        guard utf8.count <= limit else { throw .tooLong(field: field, length: utf8.count, limit: limit) }
        u32(UInt32(utf8.count))
        bytes += utf8
    }

    /// A presence byte (0/1) then the string when present.
    mutating func optionalString(_ value: String?, field: String, limit: Int) throws(WireEncodeError) {
        bool(value != nil)
        if let value { try string(value, field: field, limit: limit) }
    }

    /// A u32 element count.
    mutating func count(_ value: Int, field: String, limit: Int) throws(WireEncodeError) {
        guard value <= limit else { throw .tooLong(field: field, length: value, limit: limit) }
        u32(UInt32(value))
    }
}

/// Reads explicit little-endian fields from a frame, checking every length against what remains.
struct WireReader {
    private let bytes: [UInt8]
    private var offset: Int

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
        self.offset = 0
    }

    var remaining: Int { bytes.count - offset }

    private mutating func take(_ count: Int, field: String) throws(WireDecodeError) -> ArraySlice<UInt8> {
        guard count <= remaining else { throw .truncated(field: field, needed: count, available: remaining) }
        defer { offset += count }
        return bytes[offset..<offset + count]
    }

    private mutating func littleEndian<T: FixedWidthInteger>(_: T.Type, field: String) throws(WireDecodeError) -> T {
        let slice = try take(MemoryLayout<T>.size, field: field)
        var value: T = 0
        for (shift, byte) in slice.enumerated() { value |= T(byte) << (8 * shift) }
        return value
    }

    mutating func u8(_ field: String) throws(WireDecodeError) -> UInt8 { try take(1, field: field).first! }
    mutating func u32(_ field: String) throws(WireDecodeError) -> UInt32 { try littleEndian(UInt32.self, field: field) }
    mutating func u64(_ field: String) throws(WireDecodeError) -> UInt64 { try littleEndian(UInt64.self, field: field) }
    mutating func i64(_ field: String) throws(WireDecodeError) -> Int64 {
        Int64(bitPattern: try littleEndian(UInt64.self, field: field))
    }
    mutating func raw(_ count: Int, field: String) throws(WireDecodeError) -> [UInt8] { Array(try take(count, field: field)) }

    mutating func bool(_ field: String) throws(WireDecodeError) -> Bool {
        switch try u8(field) {
        case 0: return false
        case 1: return true
        case let other: throw .invalidValue(field: field, reason: "boolean byte must be 0 or 1, got \(other)")
        }
    }

    /// A finite, non-negative double (rates, durations).
    mutating func nonNegativeF64(_ field: String) throws(WireDecodeError) -> Double {
        let value = Double(bitPattern: try u64(field))
        guard value.isFinite, value >= 0 else {
            throw .invalidValue(field: field, reason: "expected a finite non-negative number, got \(value)")
        }
        return value
    }

    mutating func string(_ field: String, limit: Int) throws(WireDecodeError) -> String {
        let length = Int(try u32("\(field).length"))
        guard length <= limit else { throw .tooLong(field: field, length: length, limit: limit) }
        let slice = try take(length, field: field)
        guard let text = String(validating: slice, as: UTF8.self) else { throw .invalidUTF8(field: field) }
        return text
    }

    mutating func nonEmptyString(_ field: String, limit: Int) throws(WireDecodeError) -> String {
        let text = try string(field, limit: limit)
        guard !text.isEmpty else { throw .invalidValue(field: field, reason: "must not be empty") }
        return text
    }

    mutating func optionalString(_ field: String, limit: Int) throws(WireDecodeError) -> String? {
        try bool("\(field).present") ? try string(field, limit: limit) : nil
    }

    /// A u32 element count, checked against `limit` and against the bytes left (each element needs at
    /// least `minimumElementBytes`), so a forged count can never trigger a large allocation.
    mutating func count(_ field: String, limit: Int, minimumElementBytes: Int) throws(WireDecodeError) -> Int {
        let value = Int(try u32("\(field).count"))
        guard value <= limit else { throw .tooLong(field: field, length: value, limit: limit) }
        let needed = value * minimumElementBytes
        guard needed <= remaining else { throw .truncated(field: field, needed: needed, available: remaining) }
        return value
    }

    func finish() throws(WireDecodeError) {
        guard remaining == 0 else { throw .trailingBytes(remaining) }
    }
}
