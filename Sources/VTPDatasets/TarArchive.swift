import VTPVocabulary
/// One entry of a tar archive after GNU long-name and pax overrides are applied.
public struct TarMember: Sendable, Hashable {
    /// What kind of entry it is.
    public enum Kind: Sendable, Hashable { case regular, directory, other }

    /// Full member path.
    public var name: String
    /// Regular file, directory, or anything else (links, devices...).
    public var kind: Kind
    /// Byte offset of the member's data in the tar file.
    public var dataOffset: Int64
    /// Data size in bytes.
    public var size: Int64
}

/// Reads the member table of a tar file (POSIX ustar, GNU incl. 'L'/'K' long names, pax 'x'
/// headers, V7) without reading member data, and reads any member's bytes by offset.
///
/// Hand-written: no Swift package among those available reads tar (compress-nio only inflates and
/// deflates streams), and WebDataset shards need exactly this shape of reader: one pass over the
/// headers yielding each member's data offset and size, so an item is a (tar path, offset, size)
/// that any worker reads directly with `pread`, never an extracted file.
public final class TarArchive: Sendable {
    /// The archive path, named in every error.
    public let path: String
    /// Entries in archive order (long-name and pax pseudo-entries are folded into the entry they describe).
    public let members: [TarMember]
    private let file: ReadOnlyFile

    /// Opens `path` and scans all headers.
    public init(path: String) throws {
        self.path = path
        file = try ReadOnlyFile(path: path)
        members = try Self.scan(file)
    }

    /// The bytes of `member`.
    public func read(_ member: TarMember) throws -> [UInt8] {
        try file.read(at: member.dataOffset, count: Int(member.size))
    }

    /// Reads `size` bytes at `offset` of a tar file: what a worker given a `.tarMember` location does,
    /// one positioned read with no scan of the archive.
    /// A member larger than `maxBytes` is refused without reading it.
    public static func readMember(tarPath: String, offset: Int64, size: Int64, maxBytes: Int = .max) throws -> [UInt8] {
        let file = try ReadOnlyFile(path: tarPath)
        // Compared by subtraction: offset + size could overflow for a forged location.
        guard offset >= 0, size >= 0, offset <= file.size, size <= file.size - offset else {
            throw DatasetError.badTar(path: tarPath, offset: offset,
                detail: "member of \(size) bytes at offset \(offset) lies outside the \(file.size)-byte file")
        }
        guard size <= Int64(maxBytes) else {
            throw DatasetError.tooLarge(path: "\(tarPath) (member at byte \(offset))", size: size, limit: maxBytes)
        }
        return try file.read(at: offset, count: Int(size))
    }

    private static func scan(_ file: ReadOnlyFile) throws -> [TarMember] {
        let block = Int64(TarHeader.blockSize)
        var members: [TarMember] = []
        var offset: Int64 = 0
        var longName: String?
        var pax: [String: String] = [:]
        func fail(_ at: Int64, _ detail: String) -> DatasetError { .badTar(path: file.path, offset: at, detail: detail) }
        while true {
            if offset == file.size { break }  // No end marker: tolerated, as GNU tar does with a warning.
            guard offset + block <= file.size else { throw fail(offset, "truncated header block") }
            let raw = try file.read(at: offset, count: Int(block))
            if TarHeader.isZeroBlock(raw[...]) { break }
            let header: TarHeader
            do { header = try TarHeader(block: raw[...]) } catch let e as TarHeader.Invalid { throw fail(offset, e.detail) }
            let dataOffset = offset + block
            var size = header.size
            let padded = { (n: Int64) in (n + block - 1) / block * block }
            switch header.typeflag {
            case UInt8(ascii: "L"), UInt8(ascii: "K"), UInt8(ascii: "x"), UInt8(ascii: "g"):
                guard size <= 16 << 20 else { throw fail(offset, "extended header of \(size) bytes is implausibly large") }
                guard size <= file.size - dataOffset else { throw fail(offset, "extended header data runs past the end of the file") }
                let data = try file.read(at: dataOffset, count: Int(size))
                switch header.typeflag {
                case UInt8(ascii: "L"): longName = TarHeader.string(data[...])
                case UInt8(ascii: "x"):
                    do { pax.merge(try PaxRecords.parse(data)) { _, new in new } } catch let e as TarHeader.Invalid {
                        throw fail(offset, e.detail)
                    }
                default: break  // 'K' long link names and 'g' global records do not affect member names or sizes here.
                }
                offset = dataOffset + padded(size)
                continue
            default:
                break
            }
            var name = longName ?? header.name
            if let p = pax["path"] { name = p }
            if let s = pax["size"] {
                guard let v = Int64(s), v >= 0 else { throw fail(offset, "pax size '\(s)' is not a number") }
                size = v
            }
            longName = nil
            pax = [:]
            let kind: TarMember.Kind
            switch header.typeflag {
            case UInt8(ascii: "0"), 0, UInt8(ascii: "7"): kind = name.hasSuffix("/") ? .directory : .regular
            case UInt8(ascii: "5"): kind = .directory
            default: kind = .other
            }
            // Links, devices and FIFOs carry no data even if a size is set.
            let dataSize: Int64 = switch header.typeflag {
            case UInt8(ascii: "1"), UInt8(ascii: "2"), UInt8(ascii: "3"), UInt8(ascii: "4"), UInt8(ascii: "5"), UInt8(ascii: "6"): 0
            default: size
            }
            // A base-256 or pax size can be near Int64.max: compare without adding to it.
            guard dataSize <= file.size - dataOffset else {
                throw fail(offset, "member '\(name)' of \(dataSize) bytes runs past the end of the file")
            }
            members.append(TarMember(name: name, kind: kind, dataOffset: dataOffset, size: dataSize))
            offset = dataOffset + padded(dataSize)
        }
        return members
    }
}
