import Foundation
import Testing
import VTPVocabulary
@testable import VTPDatasets

/// Folders and WebDataset shards are listed without holding their items
/// (``StreamedScan``): a first walk counts and checks, later walks read the input again and must
/// find what the first found.
@Suite struct StreamedListingTests {
    /// Every directory below `root` in the order `sorted(os.walk(root))` gives: all paths, sorted.
    private static func sortedWalk(_ root: String) throws -> [String] {
        var paths = [root]
        let enumerator = try #require(FileManager.default.enumerator(atPath: root))
        for case let relative as String in enumerator {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: root + "/" + relative, isDirectory: &isDir), isDir.boolValue {
                paths.append(root + "/" + relative)
            }
        }
        return CodePointOrder.sorted(paths)
    }

    @Test func theFrontierWalkVisitsDirectoriesInSortedPathOrder() throws {
        let t = try TempDir()
        // Names around '/' (0x2F) in byte order: '-' and '.' sort before it, '0' and 'a' after, so
        // a directory's subtree interleaves with its siblings' names in the sorted order.
        let names = ["a", "a-b", "a.c", "a0", "b", "-x", "zz"]
        for first in names {
            for second in names.prefix(4) {
                for third in ["a", "a-"] { try t.dir("\(first)/\(second)/\(third)") }
            }
        }
        try t.file("a/a-b/f2.jpg", "x")
        try t.file("a/a-b/f10.jpg", "x")
        let walked = try DirectoryWalk.walk(t.path)
        #expect(walked.map(\.path) == (try Self.sortedWalk(t.path)))
        #expect(walked.count == 1 + 7 + 7 * 4 + 7 * 4 * 2)
        #expect(walked.first { $0.path == t.path + "/a/a-b" }?.files == ["f10.jpg", "f2.jpg"])
    }

    @Test func anImageFolderScanCountsWhatItsItemsReadAgain() throws {
        let t = try TempDir()
        for c in 0..<5 {
            for i in 0..<(c == 2 ? 0 : 30) { try t.file("class\(c)/sub\(i % 3)/img\(i).jpg", "x") }
        }
        try t.file("class2/only.png", "x")
        var ids: [String] = []
        let scan = try ImageFolderReader.scanClasses(root: t.path) { ids.append($0) }
        let listing = try ImageFolderReader.listClasses(root: t.path)
        #expect(scan.itemCount == 121 && scan.classes == (0..<5).map { "class\($0)" })
        #expect(ids == listing.items.map(\.sourceId))
        #expect(try scan.collectItems() == listing.items)
        // A second pass works as often as it is asked for.
        #expect(try scan.collectItems() == listing.items)
    }

    @Test func aFolderThatChangesBetweenThePassesEndsTheItemsWithAnError() throws {
        let t = try TempDir()
        for i in 0..<10 { try t.file("cat/\(i).jpg", "x") }
        try t.file("dog/0.jpg", "x")
        let scan = try ImageFolderReader.scanClasses(root: t.path) { _ in }

        try t.file("cat/5b.jpg", "x")  // one more image
        #expect(throws: DatasetError.self) { try scan.collectItems() }
        try FileManager.default.removeItem(atPath: t.path + "/cat/5b.jpg")
        #expect(try scan.collectItems().count == 11)

        try FileManager.default.moveItem(atPath: t.path + "/cat/3.jpg", toPath: t.path + "/cat/3x.jpg")  // renamed
        let renamed = scan.items()
        #expect(Array(renamed).count <= 11)
        #expect(throws: DatasetError.self) { try renamed.check() }
        try FileManager.default.moveItem(atPath: t.path + "/cat/3x.jpg", toPath: t.path + "/cat/3.jpg")

        try t.file("emu/0.jpg", "x")  // a new class
        let classes = scan.items()
        #expect(Array(classes).isEmpty)
        guard case let .changedWhileListed(path, detail)? = (Result { try classes.check() }.failure as? DatasetError) else {
            Issue.record("no change reported"); return
        }
        #expect(path == t.path && detail.contains("cat, dog, emu"))
    }

    @Test func aPlainFolderScanListsEveryImageBelowIt() throws {
        let t = try TempDir()
        try t.file("b.png", "x")
        try t.file("a/z.jpg", "x")
        try t.file("a-b/y.jpg", "x")
        try t.file("a/c/w.jpg", "x")
        try t.file("notes.txt", "x")
        let scan = try ImageFolderReader.scanImages(root: t.path) { _ in }
        // Directories in sorted path order: "a" < "a-b" < "a/c" ('-' sorts before '/').
        #expect(try scan.collectItems().map(\.sourceId) == ["b.png", "a/z.jpg", "a-b/y.jpg", "a/c/w.jpg"])
        #expect(try scan.collectItems().allSatisfy { $0.label == nil })
    }

    @Test func webDatasetShardsAreReadOneAtATimeAndChecked() throws {
        let t = try TempDir()
        for shard in 0..<3 {
            for k in 0..<4 {
                try t.file("src\(shard)/s\(k).jpg", "img\(shard)\(k)")
                try t.file("src\(shard)/s\(k).txt", "caption \(shard) \(k)")
            }
            try t.file("src\(shard)/t.txt", "no image")
            try t.dir("wds")
            try runTar(["--format=gnu", "-cf", t.path + "/wds/\(shard).tar"] + (0..<4).flatMap { ["s\($0).jpg", "s\($0).txt"] } + ["t.txt"], in: t.path + "/src\(shard)")
        }
        var ids: [String] = []
        let scan = try WebDatasetReader.scan(directory: t.path + "/wds") { ids.append($0) }
        #expect(scan.itemCount == 12 && scan.captionedItems == 12)
        #expect(scan.skipped.map(\.sourceId) == ["0.tar/t", "1.tar/t", "2.tar/t"])
        #expect(ids == (0..<3).flatMap { s in (0..<4).map { "\(s).tar/s\($0)" } + ["\(s).tar/t"] })
        let items = try scan.collectItems()
        #expect(items == (try WebDatasetReader.list(directory: t.path + "/wds")).items)
        #expect(items.map(\.ordinal) == Array(0..<12))
        #expect(items[5].caption == "caption 1 1")

        // A shard rewritten without one sample: the pass ends with an error naming the input.
        try runTar(["--format=gnu", "-cf", t.path + "/wds/1.tar", "s0.jpg", "s1.jpg", "t.txt"], in: t.path + "/src1")
        let changed = scan.items()
        _ = Array(changed)
        #expect(throws: DatasetError.self) { try changed.check() }

        // Ids are "<tar name>/<key>": two shards of one name are refused before anything is read.
        try FileManager.default.createDirectory(atPath: t.path + "/other", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: t.path + "/wds/0.tar", toPath: t.path + "/other/0.tar")
        #expect(throws: DatasetError.self) {
            try WebDatasetReader.scan(shards: [t.path + "/wds/0.tar", t.path + "/other/0.tar"], path: t.path) { _ in }
        }
    }
}

private extension Result where Failure == any Error {
    var failure: (any Error)? {
        if case let .failure(error) = self { return error }
        return nil
    }
}
