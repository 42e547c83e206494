import FuzzSupport
import VTPDatasets
import VTPVocabulary

/// The WebDataset listing the coordinator runs on every input shard (`WebDatasetReader.list(shards:)`:
/// the tar header scan with GNU long names and pax records, sample grouping, `.cls`/`.txt`/`.json`
/// members), then the worker's positioned read of every listed image (`ItemLocation.readBytes()`).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTar(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let path = ScratchFile.write(fuzzInput(data, size), name: "shard.tar")
    let fileSize = Int64(size)
    do {
        let archive = try TarArchive(path: path)
        for member in archive.members {
            require(member.dataOffset >= 512 && member.dataOffset % 512 == 0 && member.size >= 0
                    && member.size <= fileSize - member.dataOffset,
                    "member '\(member.name)' at \(member.dataOffset)+\(member.size) lies outside the \(fileSize)-byte file")
            let bytes = try archive.read(member)
            require(bytes.count == Int(member.size), "member '\(member.name)' read \(bytes.count) of \(member.size) bytes")
        }
    } catch {
        require("\(error)".hasPrefix(path + ": "), "tar error does not name the file: \(error)")
    }
    do {
        let listing = try WebDatasetReader.list(shards: [path])
        for (ordinal, item) in listing.items.enumerated() {
            require(item.ordinal == ordinal, "item \(ordinal) has ordinal \(item.ordinal)")
            // The location travels to the worker as text; it must come back the same.
            require((try? ItemLocation(encoded: item.location.encoded)) == item.location,
                    "location '\(item.location.encoded)' does not round-trip")
            guard case let .tarMember(tarPath, offset, length) = item.location, tarPath == path else {
                require(false, "item '\(item.sourceId)' is not a member of the shard: \(item.location.encoded)")
                return 0
            }
            let bytes = try item.location.readBytes()
            require(bytes.count == Int(length) && offset + length <= fileSize,
                    "item '\(item.sourceId)' read \(bytes.count) bytes for \(offset)+\(length)")
        }
    } catch {
        require("\(error)".hasPrefix(path + ": "), "listing error does not name the file: \(error)")
    }
    return 0
}
