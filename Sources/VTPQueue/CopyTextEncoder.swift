/// Builds rows in PostgreSQL's COPY text format: tab-separated, `\N` for NULL, and backslash
/// escapes for the bytes that would otherwise end a field or a row.
struct CopyTextEncoder {
    private(set) var bytes: [UInt8] = []
    private var fieldsInRow = 0

    init(reservingCapacity capacity: Int = 0) { bytes.reserveCapacity(capacity) }

    mutating func appendField(_ value: String?) {
        if fieldsInRow > 0 { bytes.append(UInt8(ascii: "\t")) }
        fieldsInRow += 1
        guard var value else {
            bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "N")])
            return
        }
        value.withUTF8 { utf8 in
            for byte in utf8 {
                switch byte {
                case UInt8(ascii: "\\"): bytes.append(UInt8(ascii: "\\")); bytes.append(UInt8(ascii: "\\"))
                case UInt8(ascii: "\t"): bytes.append(UInt8(ascii: "\\")); bytes.append(UInt8(ascii: "t"))
                case UInt8(ascii: "\n"): bytes.append(UInt8(ascii: "\\")); bytes.append(UInt8(ascii: "n"))
                case UInt8(ascii: "\r"): bytes.append(UInt8(ascii: "\\")); bytes.append(UInt8(ascii: "r"))
                case 0: continue  // PostgreSQL text cannot hold NUL; dropping it beats failing the whole COPY.
                default: bytes.append(byte)
                }
            }
        }
    }

    mutating func appendField(_ value: Int64) {
        if fieldsInRow > 0 { bytes.append(UInt8(ascii: "\t")) }
        fieldsInRow += 1
        bytes.append(contentsOf: String(value).utf8)
    }

    mutating func endRow() {
        bytes.append(UInt8(ascii: "\n"))
        fieldsInRow = 0
    }

    /// Drops the encoded bytes, keeping the allocation for the next chunk.
    mutating func reset() {
        bytes.removeAll(keepingCapacity: true)
        fieldsInRow = 0
    }
}
