import Foundation
import VTPVocabulary

extension ItemLocation {
    /// The encoded image bytes: the whole file, or one positioned read of the tar member.
    ///
    /// Blocking file I/O: call it from a worker's own thread, not the cooperative pool.
    public func readBytes() throws -> [UInt8] {
        switch self {
        case let .file(path):
            let file = try ReadOnlyFile(path: path)
            return try file.read(at: 0, count: Int(file.size))
        case let .tarMember(tarPath, offset, size):
            return try TarArchive.readMember(tarPath: tarPath, offset: offset, size: size)
        }
    }
}
