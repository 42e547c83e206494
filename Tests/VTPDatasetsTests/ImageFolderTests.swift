import Foundation
import Testing
import VTPVocabulary
@testable import VTPDatasets

@Suite struct ImageFolderTests {
    @Test func classesSortInCodePointOrderAndFilesFollowTorchvisionWalk() throws {
        let t = try TempDir()
        // Python sorts by code point: "B" < "a" < "b" < "e\u{301}" (NFD) < "\u{e9}" (NFC).
        // Swift's String < would call the two accented names equal, so this pins the byte order.
        for cls in ["b", "B", "a", "\u{e9}", "e\u{301}"] { try t.file("\(cls)/img.png", "x") }
        // Inside a class, os.walk roots are sorted as full paths: "a/sub" < "a/sub-b" < "a/sub/deeper"
        // because '-' (0x2D) sorts before '/' (0x2F).
        try t.file("a/sub/deeper/d.jpg", "x")
        try t.file("a/sub-b/c.jpeg", "x")
        try t.file("a/sub/s.PNG", "x")
        // Files: "Z" < "a10" < "a2"; extensions match case-insensitively; others are ignored.
        try t.file("a/a2.JPG", "x")
        try t.file("a/a10.webp", "x")
        try t.file("a/Z.Tiff", "x")
        try t.file("a/notes.txt", "x")
        try t.file("a/anim.gif", "x")
        try t.file("loose-file.jpg", "x")  // not a class: ImageFolder only takes directories

        let listing = try ImageFolderReader.listClasses(root: t.path + "/")
        #expect(listing.classes == ["B", "a", "b", "e\u{301}", "\u{e9}"])
        let expected: [(String, Int)] = [
            ("B/img.png", 0),
            ("a/Z.Tiff", 1), ("a/a10.webp", 1), ("a/a2.JPG", 1), ("a/img.png", 1),
            ("a/sub/s.PNG", 1), ("a/sub-b/c.jpeg", 1), ("a/sub/deeper/d.jpg", 1),
            ("b/img.png", 2), ("e\u{301}/img.png", 3), ("\u{e9}/img.png", 4),
        ]
        #expect(listing.items.map(\.sourceId).map { Array($0.utf8) } == expected.map { Array($0.0.utf8) })
        #expect(listing.items.map(\.label) == expected.map(\.1))
        #expect(listing.items.map(\.ordinal) == Array(0..<expected.count))
        #expect(listing.items[0].location == .file(path: t.path + "/B/img.png"))
        #expect(try listing.items[0].location.readBytes() == Array("x".utf8))
    }

    @Test func symlinkedClassDirectoriesAreFollowedAndCyclesStop() throws {
        let t = try TempDir()
        try t.file("real/one.jpg", "x")
        try FileManager.default.createSymbolicLink(atPath: t.path + "/linked", withDestinationPath: t.path + "/real")
        try FileManager.default.createSymbolicLink(atPath: t.path + "/real/loop", withDestinationPath: t.path + "/real")
        try t.file("other/two.png", "x")
        try FileManager.default.createSymbolicLink(atPath: t.path + "/real/l1", withDestinationPath: t.path + "/other")
        try FileManager.default.createSymbolicLink(atPath: t.path + "/real/l2", withDestinationPath: t.path + "/other")
        let listing = try ImageFolderReader.listClasses(root: t.path)
        #expect(listing.classes == ["linked", "other", "real"])
        // Two links to one directory are both walked (as os.walk does); the loop back to "real" is not.
        #expect(listing.items.map(\.sourceId) == ["linked/one.jpg", "linked/l1/two.png", "linked/l2/two.png", "other/two.png",
                                                  "real/one.jpg", "real/l1/two.png", "real/l2/two.png"])
    }

    @Test func emptyClassesAndMissingClassesAreErrors() throws {
        let t = try TempDir()
        try t.file("cat/a.jpg", "x")
        try t.file("dog/readme.md", "x")
        #expect(throws: DatasetError.emptyClasses(path: t.path, classes: ["dog"])) {
            try ImageFolderReader.listClasses(root: t.path)
        }
        let allowed = try ImageFolderReader.listClasses(root: t.path, allowEmptyClasses: true)
        #expect(allowed.classes == ["cat", "dog"])
        #expect(allowed.items.map(\.label) == [0])

        let flat = try TempDir()
        try flat.file("a.jpg", "x")
        #expect(throws: DatasetError.noClasses(path: flat.path)) { try ImageFolderReader.listClasses(root: flat.path) }
        #expect(throws: DatasetError.notADirectory(path: flat.path + "/a.jpg")) {
            try ImageFolderReader.listClasses(root: flat.path + "/a.jpg")
        }
    }

    @Test func plainFolderListsImagesWithoutLabels() throws {
        let t = try TempDir()
        try t.file("b.png", "x")
        try t.file("a.jpg", "x")
        try t.file("nested/c.bmp", "x")
        try t.file("skip.json", "x")
        let listing = try ImageFolderReader.listImages(root: t.path)
        #expect(listing.items.map(\.sourceId) == ["a.jpg", "b.png", "nested/c.bmp"])
        #expect(listing.items.allSatisfy { $0.label == nil })
        #expect(listing.classes.isEmpty)
    }

    @Test func extensionListMatchesTorchvision() {
        for name in ["x.jpg", "x.JPEG", "x.png", "x.ppm", "x.bmp", "x.pgm", "x.tif", "x.TIFF", "x.webp"] {
            #expect(ImageExtensions.matches(name), "\(name)")
        }
        for name in ["x.gif", "x.jpg.txt", "jpg", "x.heic"] { #expect(!ImageExtensions.matches(name), "\(name)") }
    }
}
