import Foundation
import VTPVocabulary

/// `sorted(os.walk(top, followlinks=True))` as torchvision's `make_dataset` uses it: every
/// directory below `top` (symlinks followed) with its non-directory entries, directories ordered by
/// full path in code-point order and files by name.
///
/// The walk is lazy and holds only its frontier: the directories found and not yet visited, kept
/// in a heap by path. The smallest pending path is always the next in sorted order, because every
/// directory not yet found lies below a pending one and so sorts after it (its path extends the
/// pending one's). So a tree of any size is walked in the memory of its widest frontier and one
/// directory's names.
struct DirectoryWalk {
    /// One directory and the names of its non-directory entries, sorted.
    struct Level {
        var path: String
        var files: [String]
    }

    private struct Pending {
        var path: String
        /// (device, inode) of every directory above it, to skip symlink cycles.
        var ancestors: [DirectoryIdentity]
    }

    private struct DirectoryIdentity: Equatable {
        var device: UInt64
        var inode: UInt64
    }

    private var frontier = MinHeap<Pending> { CodePointOrder.less($0.path, $1.path) }

    init(_ top: String) {
        frontier.push(Pending(path: top, ancestors: []))
    }

    /// The next directory in sorted order; nil once the tree is walked.
    mutating func next() throws -> Level? {
        while let pending = frontier.pop() {
            var st = stat()
            guard stat(pending.path, &st) == 0 else {
                throw DatasetError.cannotRead(path: pending.path, reason: String(cString: strerror(errno)))
            }
            // os.walk(followlinks=True) would recurse forever through a symlink cycle; a directory
            // that is its own ancestor (same device and inode) is skipped instead. Only ancestors
            // count, so two links to one directory are both walked, as os.walk does.
            let identity = DirectoryIdentity(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
            guard !pending.ancestors.contains(identity) else { continue }
            let (dirs, files) = try Self.entries(of: pending.path)
            let inner = pending.ancestors + [identity]
            for d in dirs { frontier.push(Pending(path: pending.path + "/" + d, ancestors: inner)) }
            return Level(path: pending.path, files: CodePointOrder.sorted(files))
        }
        return nil
    }

    /// Every level below `top`, in memory (small trees and tests).
    static func walk(_ top: String) throws -> [Level] {
        var walk = DirectoryWalk(top)
        var levels: [Level] = []
        while let level = try walk.next() { levels.append(level) }
        return levels
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

/// A binary min-heap: `pop()` returns the smallest element by `less`.
struct MinHeap<Element> {
    private var elements: [Element] = []
    private let less: (Element, Element) -> Bool

    init(by less: @escaping (Element, Element) -> Bool) { self.less = less }

    var isEmpty: Bool { elements.isEmpty }

    mutating func push(_ element: Element) {
        elements.append(element)
        var child = elements.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard less(elements[child], elements[parent]) else { break }
            elements.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() -> Element? {
        guard !elements.isEmpty else { return nil }
        elements.swapAt(0, elements.count - 1)
        let top = elements.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1, right = left + 1
            var smallest = parent
            if left < elements.count, less(elements[left], elements[smallest]) { smallest = left }
            if right < elements.count, less(elements[right], elements[smallest]) { smallest = right }
            guard smallest != parent else { break }
            elements.swapAt(parent, smallest)
            parent = smallest
        }
        return top
    }
}
