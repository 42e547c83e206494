import Foundation
import VTPVocabulary

/// A file written in pieces under a temporary name and renamed into place only after `fsync`, so a
/// reader (or a glob such as `*.safetensors`) never sees a partial file.
///
/// The temporary name starts with a dot and ends in `.tmp-<pid>-<random>`, so it never matches
/// the final file's extension (``TemporaryName`` recognises it). Dropping the object before it is
/// published removes the temporary file.
final class AtomicOutputFile {
    let path: String
    let temporaryPath: String
    private var fd: Int32
    private var published = false

    init(path: String) throws {
        self.path = path
        temporaryPath = TemporaryName.beside(path)
        fd = open(temporaryPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw StorageError.writeFailed(path: path, reason: "create \(temporaryPath): \(Self.lastError(temporaryPath))") }
    }

    deinit {
        if fd >= 0 { close(fd) }
        if !published { unlink(temporaryPath) }
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

    /// Flushes the contents to disk and closes the temporary file; it is not yet visible.
    func finish() throws {
        guard fd >= 0 else { return }
        guard fsync(fd) == 0 else { throw StorageError.writeFailed(path: path, reason: "fsync: \(Self.lastError())") }
        let closed = close(fd)
        fd = -1
        guard closed == 0 else { throw StorageError.writeFailed(path: path, reason: "close: \(Self.lastError())") }
    }

    /// Renames the finished file into place (the directory entry is not synced: see ``syncDirectory(of:)``).
    func publish() throws {
        try finish()
        guard rename(temporaryPath, path) == 0 else { throw StorageError.writeFailed(path: path, reason: "rename: \(Self.lastError())") }
        published = true
    }

    /// Flushes, renames into place and syncs the directory entry.
    func commit() throws {
        try publish()
        Self.syncDirectory(of: path)
    }

    /// Makes renames in the directory holding `path` durable.
    static func syncDirectory(of path: String) {
        let dir = (path as NSString).deletingLastPathComponent
        let dfd = open(dir.isEmpty ? "." : dir, O_RDONLY | O_CLOEXEC)
        if dfd >= 0 { fsync(dfd); close(dfd) }
    }

    /// The current `errno` in words (``FileErrorText``); with `path`, ENOTDIR names the file in the way.
    static func lastError(_ path: String? = nil) -> String {
        let code = errno
        return FileErrorText.reason(errno: code, path: path)
    }
}

/// Names of the temporary files output writers use: `.<final name>.tmp-<pid>-<random>` beside the
/// final file. A crash (SIGKILL, power loss) can leave one behind; the job finalizer removes them.
public enum TemporaryName {
    /// A fresh temporary name in the directory of `path`.
    static func beside(_ path: String) -> String {
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent().path
        return dir + "/." + url.lastPathComponent + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    }

    /// Whether `name` (a file name, no directory) is such a temporary.
    public static func matches(_ name: String) -> Bool {
        guard name.hasPrefix("."), let range = name.range(of: ".tmp-", options: .backwards) else { return false }
        let suffix = name[range.upperBound...].split(separator: "-", omittingEmptySubsequences: false)
        return range.lowerBound > name.index(after: name.startIndex) && suffix.count == 2
            && suffix.allSatisfy { !$0.isEmpty && $0.allSatisfy(\.isNumber) }
    }
}

/// Whole-file atomic writes with errors that name the file.
enum AtomicWrite {
    static func write(_ data: Data, to path: String) throws {
        let file = try AtomicOutputFile(path: path)
        try file.write(data)
        try file.commit()
    }

    /// `data` written and synced under a temporary name beside `path`, not yet published.
    static func stage(_ data: Data, to path: String) throws -> AtomicOutputFile {
        let file = try AtomicOutputFile(path: path)
        try file.write(data)
        try file.finish()
        return file
    }
}
