import Foundation
import VTPVocabulary
#if canImport(Glibc)
import Glibc
#endif

/// Up-front checks of a directory the command will write into, so a wrong `--output` fails with
/// the option, the path and what is wrong before any server or worker starts.
enum OutputDirectory {
    /// Fails when `path` exists but is not a directory (it is created later when missing).
    static func checkNotAFile(_ path: String, option: String) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue else { return }
        throw CLIError("\(option) \(path): is a file, not a directory (the output must be a directory; it is created when missing)")
    }

    /// Creates `path` (and its parents) when missing and checks this process may write into it.
    static func prepareWritable(_ path: String, option: String) throws {
        try checkNotAFile(path, option: option)
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw CLIError("\(option) \(path): \(Self.problem(creating: error, at: path))")
        }
        // access(2) answers EROFS for a read-only mount even for root, who passes permission checks.
        if access(path, W_OK | X_OK) != 0 {
            let code = errno
            throw CLIError("\(option) \(path): the output directory is not writable (\(FileErrorText.reason(errno: code, path: path)))")
        }
    }

    private static func problem(creating error: any Error, at path: String) -> String {
        let reason = FileErrorText.reason(error, at: path)
        let ns = error as NSError
        let underlying = (ns.userInfo[NSUnderlyingErrorKey] as? NSError)?.code
        let denied = [Int(EROFS), Int(EACCES), Int(EPERM)].contains(underlying ?? -1)
            || ns.code == CocoaError.fileWriteVolumeReadOnly.rawValue || ns.code == CocoaError.fileWriteNoPermission.rawValue
        return denied ? "the output directory is not writable (\(reason))" : "cannot create the output directory: \(reason)"
    }
}
