import Foundation

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
        // A symlink cycle would make os.walk recurse forever; remembering (device, inode) pairs
        // stops at the first repeat instead.
        var visited = Set<[UInt64]>()
        var pending = [top]
        while let dir = pending.popLast() {
            var st = stat()
            guard stat(dir, &st) == 0 else { throw DatasetError.cannotRead(path: dir, reason: String(cString: strerror(errno))) }
            guard visited.insert([UInt64(st.st_dev), UInt64(st.st_ino)]).inserted else { continue }
            let (dirs, files) = try entries(of: dir)
            levels.append(Level(path: dir, files: CodePointOrder.sorted(files)))
            for d in dirs { pending.append(dir + "/" + d) }
        }
        return levels.sorted { CodePointOrder.less($0.path, $1.path) }
    }

    /// Names of the directories (following symlinks) and of everything else in `dir`.
    static func entries(of dir: String) throws -> (dirs: [String], files: [String]) {
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: dir) } catch {
            throw DatasetError.cannotRead(path: dir, reason: error.localizedDescription)
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
