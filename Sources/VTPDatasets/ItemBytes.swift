import Foundation
import VTPVocabulary

extension ItemLocation {
    /// The encoded image bytes: the whole file, or one positioned read of the tar member.
    /// A file or member larger than `maxBytes` is refused before anything is read, and a path
    /// that is not a regular file (a FIFO, socket, device or directory) before it is opened.
    ///
    /// Blocking file I/O: call it from a worker's own thread, not the cooperative pool.
    public func readBytes(maxBytes: Int = .max) throws -> [UInt8] {
        switch self {
        case let .file(path):
            let file = try ReadOnlyFile(path: path)
            guard file.size <= Int64(maxBytes) else { throw DatasetError.tooLarge(path: path, size: file.size, limit: maxBytes) }
            return try file.read(at: 0, count: Int(file.size))
        case let .tarMember(tarPath, offset, size):
            return try TarArchive.readMember(tarPath: tarPath, offset: offset, size: size, maxBytes: maxBytes)
        }
    }
}
