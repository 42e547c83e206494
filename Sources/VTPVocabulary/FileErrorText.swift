import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The one place where a failed file-system call becomes words a user can act on.
///
/// Foundation on Linux reports many failures as a bare `NSCocoaErrorDomain` code (512 for "could
/// not write", 642 for a read-only volume) whose printed form is `Code=512 "(null)"`; the errno
/// underneath and the path are only in its user info. Every module that turns a Foundation or
/// POSIX error into a user-facing message goes through here, so the wording is uniform and
/// never a raw error domain.
public enum FileErrorText {
    /// Whether `error` is a Foundation file error or a POSIX error (the kinds this type describes).
    public static func isFileSystemError(_ error: any Error) -> Bool {
        if error is CocoaError || error is POSIXError { return true }
        let domain = (error as NSError).domain
        return domain == NSCocoaErrorDomain || domain == NSPOSIXErrorDomain
    }

    /// `PATH: cannot write: read-only file system` (path and operation where the error carries
    /// them); anything that is not a file-system error is described as it describes itself.
    public static func describe(_ error: any Error) -> String {
        guard isFileSystemError(error) else { return String(describing: error) }
        let details = Details(error)
        var text = details.path.map { "\($0): " } ?? ""
        if let operation = details.operation { text += "cannot \(operation): " }
        return text + words(details)
    }

    /// Why the call failed, without the operation, for messages that already say what was being
    /// done to which path (`JobError.writeFailed(path:reason:)`). When the error concerns a
    /// different path than `path` (a file inside it, an ancestor in the way), that path is named.
    public static func reason(_ error: any Error, at path: String? = nil) -> String {
        guard isFileSystemError(error) else { return String(describing: error) }
        let details = Details(error)
        let why = words(details)
        if let other = details.path, other != path { return "\(other): \(why)" }
        return why
    }

    /// Words for an errno value. With `path`, `ENOTDIR` names the existing file that stands where
    /// a directory is needed, the usual cause (an output path that is a file).
    public static func reason(errno code: Int32, path: String? = nil) -> String {
        switch code {
        case ENOTDIR:
            if let path, let file = fileInTheWay(of: path) {
                return file == path ? "is a file, not a directory" : "\(file) is a file, not a directory"
            }
            return "a component of the path is not a directory"
        case EROFS: return "read-only file system"
        case EACCES, EPERM: return "permission denied"
        case ENOENT: return "no such file or directory"
        case EEXIST: return "already exists"
        case EISDIR: return "is a directory, expected a file"
        case ENOSPC: return "no space left on device"
        case EDQUOT: return "disk quota exceeded"
        case ENAMETOOLONG: return "file name too long"
        case ELOOP: return "too many levels of symbolic links"
        case EMFILE, ENFILE: return "too many open files"
        case EIO: return "input/output error (a failing disk or network file system)"
        case ENOTEMPTY: return "directory not empty"
        case EXDEV: return "cannot move across file systems"
        case ETXTBSY: return "file is busy"
        default: return String(cString: strerror(code)).lowercased()
        }
    }

    /// The deepest existing ancestor of `path` (or `path` itself) that is not a directory.
    static func fileInTheWay(of path: String) -> String? {
        var candidate = (path as NSString).standardizingPath
        while !candidate.isEmpty && candidate != "/" {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: candidate, isDirectory: &isDirectory) {
                return isDirectory.boolValue ? nil : candidate
            }
            candidate = (candidate as NSString).deletingLastPathComponent
        }
        return nil
    }

    /// What Foundation's user info says about the failure.
    private struct Details {
        var path: String?
        var errno: Int32?
        var cocoaCode: Int?
        /// "read" or "write", from the Cocoa code's range.
        var operation: String?

        init(_ error: any Error) {
            let ns = error as NSError
            if let posix = error as? POSIXError {
                errno = posix.code.rawValue
            } else if ns.domain == NSPOSIXErrorDomain {
                errno = Int32(truncatingIfNeeded: ns.code)
            } else {
                cocoaCode = ns.code
                if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
                    errno = Int32(truncatingIfNeeded: underlying.code)
                }
                switch ns.code {
                case 256..<512: operation = "read"
                case 512..<1024: operation = "write"
                default: break
                }
            }
            path = ns.userInfo[NSFilePathErrorKey] as? String ?? (ns.userInfo[NSURLErrorKey] as? URL)?.path
        }
    }

    private static func words(_ details: Details) -> String {
        if let code = details.errno { return reason(errno: code, path: details.path) }
        switch details.cocoaCode.flatMap({ CocoaError.Code(rawValue: $0) }) {
        case .fileNoSuchFile?, .fileReadNoSuchFile?: return "no such file or directory"
        case .fileReadNoPermission?, .fileWriteNoPermission?: return "permission denied"
        case .fileWriteFileExists?: return "already exists"
        case .fileWriteOutOfSpace?: return "no space left on device"
        case .fileWriteVolumeReadOnly?: return "read-only file system"
        case .fileWriteInvalidFileName?, .fileReadInvalidFileName?: return "invalid file name"
        case .fileReadCorruptFile?: return "the file is corrupt"
        case .fileReadTooLarge?: return "the file is too large"
        case .fileReadInapplicableStringEncoding?, .fileWriteInapplicableStringEncoding?: return "the text is not in the expected encoding"
        case .fileLocking?: return "the file is locked"
        default:
            if let path = details.path, let file = fileInTheWay(of: path), file != path {
                return "\(file) is a file, not a directory"
            }
            return "unknown file-system error (Cocoa code \(details.cocoaCode.map(String.init) ?? "none"))"
        }
    }
}
