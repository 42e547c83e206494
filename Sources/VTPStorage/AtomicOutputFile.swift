import Foundation
import SystemPackage
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
    /// The open temporary file; nil once finished.
    private var descriptor: FileDescriptor?
    private var published = false

    init(path: String) throws {
        self.path = path
        temporaryPath = TemporaryName.beside(path)
        do {
            descriptor = try FileDescriptor.open(FilePath(temporaryPath), .writeOnly, options: [.create, .truncate, .closeOnExec],
                                                 permissions: [.ownerReadWrite, .groupRead, .otherRead])
        } catch {
            throw StorageError.writeFailed(path: path, reason: "create \(temporaryPath): \(Self.reason(error, temporaryPath))")
        }
    }

    deinit {
        try? descriptor?.close()
        if !published { unlink(temporaryPath) }
    }

    /// Appends raw bytes (swift-system retries interrupted and short writes).
    func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard let descriptor else { throw StorageError.writeFailed(path: path, reason: "write after the file was finished") }
        do { _ = try descriptor.writeAll(bytes) } catch {
            throw StorageError.writeFailed(path: path, reason: Self.reason(error))
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
        guard let open = descriptor else { return }
        // swift-system has no fsync.
        guard fsync(open.rawValue) == 0 else { throw StorageError.writeFailed(path: path, reason: "fsync: \(Self.lastError())") }
        descriptor = nil
        do { try open.close() } catch { throw StorageError.writeFailed(path: path, reason: "close: \(Self.reason(error))") }
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

    /// A swift-system error in the same words.
    static func reason(_ error: any Error, _ path: String? = nil) -> String {
        if let code = error as? Errno { return FileErrorText.reason(errno: code.rawValue, path: path) }
        return "\(error)"
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
