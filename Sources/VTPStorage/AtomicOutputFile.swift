import Foundation
import VTPVocabulary

/// A file written in pieces under a temporary name and renamed into place only after `fsync`, so a
/// reader (or a glob such as `*.safetensors`) never sees a partial file.
///
/// The temporary name starts with a dot and ends in `.tmp-<pid>-<random>`, so it never matches
/// the final file's extension. Dropping the object without `commit()` removes the temporary file.
final class AtomicOutputFile {
    let path: String
    private let temporaryPath: String
    private var fd: Int32
    private var committed = false

    init(path: String) throws {
        self.path = path
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent().path
        temporaryPath = dir + "/." + url.lastPathComponent + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        fd = open(temporaryPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw StorageError.writeFailed(path: path, reason: "create \(temporaryPath): \(Self.lastError())") }
    }

    deinit {
        if fd >= 0 { close(fd) }
        if !committed { unlink(temporaryPath) }
    }

    /// Appends raw bytes.
    func write(_ bytes: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < bytes.count {
            let n = Foundation.write(fd, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw StorageError.writeFailed(path: path, reason: Self.lastError())
            }
            done += n
        }
    }

    /// Appends `data`.
    func write(_ data: Data) throws {
        try data.withUnsafeBytes { try write($0) }
    }

    /// Appends `count` zero bytes.
    func writeZeros(_ count: Int) throws {
        guard count > 0 else { return }
        try write(Data(count: count))
    }

    /// Flushes to disk, renames into place and syncs the directory entry.
    func commit() throws {
        guard fsync(fd) == 0 else { throw StorageError.writeFailed(path: path, reason: "fsync: \(Self.lastError())") }
        guard close(fd) == 0 else { fd = -1; throw StorageError.writeFailed(path: path, reason: "close: \(Self.lastError())") }
        fd = -1
        guard rename(temporaryPath, path) == 0 else { throw StorageError.writeFailed(path: path, reason: "rename: \(Self.lastError())") }
        committed = true
        let dir = (path as NSString).deletingLastPathComponent
        let dfd = open(dir.isEmpty ? "." : dir, O_RDONLY | O_CLOEXEC)
        if dfd >= 0 { fsync(dfd); close(dfd) }
    }

    private static func lastError() -> String { String(cString: strerror(errno)) }
}

/// Whole-file atomic writes with errors that name the file.
enum AtomicWrite {
    static func write(_ data: Data, to path: String) throws {
        let file = try AtomicOutputFile(path: path)
        try file.write(data)
        try file.commit()
    }
}
