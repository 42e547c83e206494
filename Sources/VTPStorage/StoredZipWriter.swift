import Foundation
import VTPVocabulary

/// Builds an uncompressed ("stored") ZIP archive whose every entry's data starts on a 64-byte
/// boundary, as PyTorch's archive writer lays it out (padding goes in an extra field with id "FB"),
/// so `torch.load(mmap=True)` can map tensor data in place.
///
/// Hand-written, not ZIPFoundation (0.9.20, the ZIP package available): its `addEntry` writes a
/// local header whose only extra field is its own ZIP64 record, with no way to add padding, so
/// entry data starts wherever the header ends and `torch.load(mmap=True)` could not map it; it also
/// writes through a `FILE*` archive rather than the atomic, fsync'd output files vtp publishes.
struct StoredZipWriter {
    static let alignment = 64
    private var body = Data()
    private var central = Data()
    private var entryCount = 0

    /// Appends an entry.
    mutating func add(name: String, data: Data) {
        let nameBytes = Data(name.utf8)
        let offset = body.count
        let crc = CRC32.checksum(data)
        // Local header is 30 bytes + name + the "FB" extra field (4-byte header + padding).
        let unpadded = offset + 30 + nameBytes.count + 4
        let padding = (Self.alignment - unpadded % Self.alignment) % Self.alignment
        var local = Data()
        local.le32(0x0403_4B50)
        local.le16(20)           // version needed: 2.0
        local.le16(0)            // flags
        local.le16(0)            // method: stored
        local.le16(0); local.le16(0)  // time, date: fixed so output is reproducible
        local.le32(crc)
        local.le32(UInt32(data.count)); local.le32(UInt32(data.count))
        local.le16(UInt16(nameBytes.count))
        local.le16(UInt16(4 + padding))
        local.append(nameBytes)
        local.append(contentsOf: [0x46, 0x42])  // "FB"
        local.le16(UInt16(padding))
        local.append(Data(repeating: 0x5A, count: padding))
        body.append(local)
        body.append(data)

        central.le32(0x0201_4B50)
        central.le16(20); central.le16(20)
        central.le16(0); central.le16(0)
        central.le16(0); central.le16(0)
        central.le32(crc)
        central.le32(UInt32(data.count)); central.le32(UInt32(data.count))
        central.le16(UInt16(nameBytes.count))
        central.le16(0)  // extra
        central.le16(0)  // comment
        central.le16(0)  // disk
        central.le16(0)  // internal attributes
        central.le32(0)  // external attributes
        central.le32(UInt32(offset))
        central.append(nameBytes)
        entryCount += 1
    }

    /// The finished archive. Stats files are tiny, so 32-bit ZIP fields always suffice.
    func finished() -> Data {
        var out = body
        let centralOffset = out.count
        out.append(central)
        out.le32(0x0605_4B50)
        out.le16(0); out.le16(0)
        out.le16(UInt16(entryCount)); out.le16(UInt16(entryCount))
        out.le32(UInt32(central.count))
        out.le32(UInt32(centralOffset))
        out.le16(0)
        return out
    }
}

extension Data {
    mutating func le16(_ v: UInt16) { Swift.withUnsafeBytes(of: v.littleEndian) { append(contentsOf: $0) } }
    mutating func le32(_ v: UInt32) { Swift.withUnsafeBytes(of: v.littleEndian) { append(contentsOf: $0) } }
}
