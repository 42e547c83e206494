import Foundation
import VTPVocabulary

/// Lists image files the way torchvision's `ImageFolder` does, or a plain folder of unlabeled images.
public enum ImageFolderReader {
    /// Lists `root/<class>/**/<image>`: classes are the subdirectories of `root` (symlinks followed)
    /// sorted in Python code-point order and labelled 0..C-1; within each class every directory is
    /// walked in sorted order and files with an `IMG_EXTENSIONS` suffix are taken in sorted order.
    ///
    /// Like torchvision, a class with no image throws unless `allowEmptyClasses` is set.
    /// Source ids are paths relative to `root`.
    public static func listClasses(root: String, allowEmptyClasses: Bool = false) throws -> DatasetListing {
        try scanClasses(root: root, allowEmptyClasses: allowEmptyClasses) { _ in }.collect()
    }

    /// Lists every image below `root` (walked in the same sorted order) with no label.
    public static func listImages(root: String) throws -> DatasetListing {
        try scanImages(root: root) { _ in }.collect()
    }

    /// ``listClasses(root:allowEmptyClasses:)`` without holding the items: one walk counts and
    /// checks the tree, and the scan's ``StreamedScan/items()`` walks it again.
    public static func scanClasses(root: String, allowEmptyClasses: Bool = false,
                                   eachSourceId: (String) -> Void) throws -> StreamedScan {
        let rootPath = normalized(root)
        return try StreamedScan.scan(path: rootPath, open: {
            try FolderCursor(root: rootPath, labelled: true, allowEmptyClasses: allowEmptyClasses)
        }, eachSourceId: eachSourceId)
    }

    /// ``listImages(root:)`` without holding the items (see ``scanClasses(root:allowEmptyClasses:eachSourceId:)``).
    public static func scanImages(root: String, eachSourceId: (String) -> Void) throws -> StreamedScan {
        let rootPath = normalized(root)
        return try StreamedScan.scan(path: rootPath, open: {
            try FolderCursor(root: rootPath, labelled: false, allowEmptyClasses: true)
        }, eachSourceId: eachSourceId)
    }

    /// Walks the class folders one after another (or the root alone when unlabelled), each in
    /// ``DirectoryWalk`` order, yielding the image files.
    private struct FolderCursor: ListingCursor {
        let root: String
        let classes: [String]
        private let labelled: Bool
        private let allowEmptyClasses: Bool
        private var classIndex = 0
        private var walk: DirectoryWalk?
        private var level: DirectoryWalk.Level?
        private var fileIndex = 0
        private var foundInClass = false
        private var emptyClasses: [String] = []

        init(root: String, labelled: Bool, allowEmptyClasses: Bool) throws {
            try ImageFolderReader.requireDirectory(root)
            self.root = root
            self.labelled = labelled
            self.allowEmptyClasses = allowEmptyClasses
            if labelled {
                classes = CodePointOrder.sorted(try DirectoryWalk.entries(of: root).dirs)
                guard !classes.isEmpty else { throw DatasetError.noClasses(path: root) }
            } else {
                classes = []
                walk = DirectoryWalk(root)
            }
        }

        mutating func next() throws -> ListingEntry? {
            while true {
                if let current = level, fileIndex < current.files.count {
                    let name = current.files[fileIndex]
                    fileIndex += 1
                    guard ImageExtensions.matches(name) else { continue }
                    foundInClass = true
                    let path = current.path + "/" + name
                    let relative = String(decoding: path.utf8.dropFirst(root.utf8.count + 1), as: UTF8.self)
                    return .item(JobItem(ordinal: 0, sourceId: relative, location: .file(path: path),
                                         label: labelled ? classIndex : nil))
                }
                level = nil
                fileIndex = 0
                if walk != nil, let next = try walk!.next() {
                    level = next
                    continue
                }
                // The current class (if any) is walked: move to the next one.
                if labelled {
                    if walk != nil {
                        if !foundInClass { emptyClasses.append(classes[classIndex]) }
                        classIndex += 1
                    }
                    if classIndex < classes.count {
                        walk = DirectoryWalk(root + "/" + classes[classIndex])
                        foundInClass = false
                        continue
                    }
                    walk = nil
                    if !emptyClasses.isEmpty && !allowEmptyClasses {
                        throw DatasetError.emptyClasses(path: root, classes: emptyClasses)
                    }
                }
                walk = nil
                return nil
            }
        }
    }

    private static func normalized(_ path: String) -> String {
        var p = path
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        return p
    }

    fileprivate static func requireDirectory(_ path: String) throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw DatasetError.cannotRead(path: path, reason: "no such file or directory")
        }
        guard isDir.boolValue else { throw DatasetError.notADirectory(path: path) }
    }
}
