import Foundation
import SystemPackage
import VTPVocabulary

/// An open file descriptor for positioned reads, closed in `deinit`.
///
/// `@unchecked Sendable`: the descriptor is only used with `pread`, which carries its own offset
/// and so is safe to call from several threads at once; it is closed only when the object dies.
public final class ReadOnlyFile: @unchecked Sendable {
    /// The path, named in every error.
    public let path: String
    /// File size in bytes when opened.
    public let size: Int64
    private let descriptor: FileDescriptor

    /// Opens the regular file `path` read-only.
    ///
    /// Anything else is refused with ``DatasetError/notRegularFile(path:kind:)`` before a read can
    /// block: `stat` first (opening a socket fails, opening a FIFO for reading waits for a writer
    /// forever), then a non-blocking `open` and `fstat` of what was actually opened, in case the
    /// path was replaced in between.
    public init(path: String) throws {
        self.path = path
        var st = stat()
        guard stat(path, &st) == 0 else { throw DatasetError.cannotRead(path: path, reason: String(cString: strerror(errno))) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw DatasetError.notRegularFile(path: path, kind: Self.kind(st.st_mode)) }
        let descriptor: FileDescriptor
        do { descriptor = try FileDescriptor.open(FilePath(path), .readOnly, options: [.nonBlocking, .closeOnExec]) } catch {
            throw DatasetError.cannotRead(path: path, reason: Self.reason(error))
        }
        // swift-system has no fstat.
        guard fstat(descriptor.rawValue, &st) == 0 else {
            let reason = String(cString: strerror(errno))
            try? descriptor.close()
            throw DatasetError.cannotRead(path: path, reason: reason)
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            try? descriptor.close()
            throw DatasetError.notRegularFile(path: path, kind: Self.kind(st.st_mode))
        }
        self.descriptor = descriptor
        self.size = Int64(st.st_size)
    }

    /// What `stat` says a non-regular file is, for errors.
    static func kind(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFIFO: "FIFO"
        case S_IFSOCK: "socket"
        case S_IFCHR: "character device"
        case S_IFBLK: "block device"
        case S_IFDIR: "directory"
        default: "file type \(String(mode & S_IFMT, radix: 8))"
        }
    }

    deinit { try? descriptor.close() }

    /// A swift-system error as `strerror` words it (other errors as they describe themselves).
    static func reason(_ error: any Error) -> String {
        if let code = error as? Errno { return String(cString: strerror(code.rawValue)) }
        return "\(error)"
    }

    /// Reads exactly `count` bytes at `offset`, or throws if the file is shorter.
    public func read(at offset: Int64, count: Int) throws -> [UInt8] {
        guard offset >= 0, count >= 0 else {
            throw DatasetError.cannotRead(path: path, reason: "bad range offset \(offset) size \(count)")
        }
        var out = [UInt8](repeating: 0, count: count)
        var done = 0
        try out.withUnsafeMutableBytes { buf in
            while done < count {
                let n: Int
                do {
                    // Positioned reads carry their own offset, so threads may share the descriptor.
                    n = try descriptor.read(fromAbsoluteOffset: offset + Int64(done),
                                            into: UnsafeMutableRawBufferPointer(rebasing: buf[done...]), retryOnInterrupt: true)
                } catch {
                    throw DatasetError.cannotRead(path: path, reason: Self.reason(error))
                }
                if n == 0 {
                    throw DatasetError.cannotRead(path: path,
                        reason: "wanted \(count) bytes at offset \(offset) but the file ends at \(offset + Int64(done))")
                }
                done += n
            }
        }
        return out
    }
}
