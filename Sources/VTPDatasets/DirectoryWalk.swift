import Foundation
import VTPVocabulary

/// `sorted(os.walk(top, followlinks=True))` as torchvision's `make_dataset` uses it: every
/// directory below `top` (symlinks followed) with its non-directory entries, directories ordered by
/// full path in code-point order and files by name.
enum DirectoryWalk {
    /// One directory and the names of its non-directory entries, sorted.
    struct Level {
        var path: String
        var files: [String]
    }

    static func walk(_ top: String) throws -> [Level] {
        var levels: [Level] = []
        // os.walk(followlinks=True) would recurse forever through a symlink cycle; a directory that
        // is its own ancestor (same device and inode) is skipped instead. Only ancestors count, so
        // two links to one directory are both walked, as os.walk does.
        var pending: [(path: String, ancestors: Set<[UInt64]>)] = [(top, [])]
        while let (dir, ancestors) = pending.popLast() {
            var st = stat()
            guard stat(dir, &st) == 0 else { throw DatasetError.cannotRead(path: dir, reason: String(cString: strerror(errno))) }
            let identity = [UInt64(st.st_dev), UInt64(st.st_ino)]
            guard !ancestors.contains(identity) else { continue }
            let (dirs, files) = try entries(of: dir)
            levels.append(Level(path: dir, files: CodePointOrder.sorted(files)))
            let inner = ancestors.union([identity])
            for d in dirs { pending.append((dir + "/" + d, inner)) }
        }
        return levels.sorted { CodePointOrder.less($0.path, $1.path) }
    }

    /// Names of the directories (following symlinks) and of everything else in `dir`.
    static func entries(of dir: String) throws -> (dirs: [String], files: [String]) {
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: dir) } catch {
            throw DatasetError.cannotRead(path: dir, reason: FileErrorText.reason(error, at: dir))
        }
        var dirs: [String] = []
        var files: [String] = []
        for name in names {
            var st = stat()
            if stat(dir + "/" + name, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR {
                dirs.append(name)
            } else {
                files.append(name)
            }
        }
        return (dirs, files)
    }
}
