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
        let rootPath = normalized(root)
        try requireDirectory(rootPath)
        let classes = CodePointOrder.sorted(try DirectoryWalk.entries(of: rootPath).dirs)
        guard !classes.isEmpty else { throw DatasetError.noClasses(path: rootPath) }
        var items: [JobItem] = []
        var empty: [String] = []
        for (label, name) in classes.enumerated() {
            let before = items.count
            try appendImages(under: rootPath + "/" + name, root: rootPath, label: label, into: &items)
            if items.count == before { empty.append(name) }
        }
        if !empty.isEmpty && !allowEmptyClasses {
            throw DatasetError.emptyClasses(path: rootPath, classes: empty)
        }
        return DatasetListing(items: items, classes: classes)
    }

    /// Lists every image below `root` (walked in the same sorted order) with no label.
    public static func listImages(root: String) throws -> DatasetListing {
        let rootPath = normalized(root)
        try requireDirectory(rootPath)
        var items: [JobItem] = []
        try appendImages(under: rootPath, root: rootPath, label: nil, into: &items)
        return DatasetListing(items: items)
    }

    private static func appendImages(under dir: String, root: String, label: Int?, into items: inout [JobItem]) throws {
        for level in try DirectoryWalk.walk(dir) {
            for name in level.files where ImageExtensions.matches(name) {
                let path = level.path + "/" + name
                let relative = String(path.dropFirst(root.count + 1))
                items.append(JobItem(ordinal: items.count, sourceId: relative, location: .file(path: path), label: label))
            }
        }
    }

    private static func normalized(_ path: String) -> String {
        var p = path
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        return p
    }

    private static func requireDirectory(_ path: String) throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw DatasetError.cannotRead(path: path, reason: "no such file or directory")
        }
        guard isDir.boolValue else { throw DatasetError.notADirectory(path: path) }
    }
}
