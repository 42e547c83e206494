import Foundation
import Testing
import VTPVocabulary
@testable import VTPDatasets

@Suite struct WebDatasetTests {
    @Test func img2datasetLayoutGroupsSamplesWithCaptionsAndUrls() throws {
        let t = try TempDir()
        var order: [String] = []
        var jpgs: [String: [UInt8]] = [:]
        for i in 0..<3 {
            let key = String(format: "%09d", i)
            let jpg = (0..<(200 + i * 300)).map { UInt8(($0 * 7 + i) & 0xFF) }
            jpgs[key] = jpg
            try t.file("src/\(key).jpg", jpg)
            try t.file("src/\(key).txt", "caption \(i), \"quoted\"")
            try t.file("src/\(key).json", "{\"key\": \"\(key)\", \"url\": \"https://example.com/\(i).jpg\", \"caption\": \"json caption \(i)\", \"status\": \"success\"}")
            order += ["\(key).jpg", "\(key).txt", "\(key).json"]
        }
        try t.dir("shards")
        try runTar(["--format=gnu", "-cf", t.path + "/shards/00000.tar"] + order, in: t.path + "/src")
        // A second shard, whose name sorts after the first, with a sample missing its image.
        try t.file("src2/000010000.jpg", "img")
        try t.file("src2/000010001.txt", "orphan caption")
        try runTar(["--format=ustar", "-cf", t.path + "/shards/00001.tar", "000010000.jpg", "000010001.txt"], in: t.path + "/src2")
        try t.file("shards/readme.md", "not a shard")

        let listing = try WebDatasetReader.list(directory: t.path + "/shards")
        #expect(listing.items.map(\.sourceId) == ["00000.tar/000000000", "00000.tar/000000001", "00000.tar/000000002", "00001.tar/000010000"])
        #expect(listing.items.map(\.ordinal) == [0, 1, 2, 3])
        #expect(listing.items[1].caption == "caption 1, \"quoted\"")
        #expect(listing.items[1].metadataFields["url"] == .string("https://example.com/1.jpg"))
        #expect(listing.items[3].caption == nil)
        #expect(listing.skipped == [SkippedSample(sourceId: "00001.tar/000010001",
                                                  reason: "no image member (.jpg .jpeg .png .webp); has txt")])
        for item in listing.items.prefix(3) {
            guard case let .tarMember(tarPath, offset, size) = item.location else { Issue.record("not a tar member"); continue }
            #expect(tarPath == t.path + "/shards/00000.tar")
            let key = String(item.sourceId.split(separator: "/").last!)
            #expect(try TarArchive.readMember(tarPath: tarPath, offset: offset, size: size) == jpgs[key])
            #expect(try item.location.readBytes() == jpgs[key])
        }
    }

    @Test func labelsNestedKeysAndImagePreference() throws {
        let t = try TempDir()
        try t.file("src/d/s1.png", "png1")
        try t.file("src/d/s1.cls", " 7\n")
        try t.file("src/d/s1.JPG", "jpg1")   // extension is lower-cased: this is the preferred .jpg
        try t.file("src/d/s2.seg.png", "png2")  // key stops at the first dot: "d/s2", ext "seg.png" is no image
        try t.file("src/d/s2.webp", "webp2")
        try t.file("src/d/s2.json", "{\"caption\": \"from json\"}")
        try t.file("src/d/s3.jpg", "jpg3")
        try t.file("src/d/s3.cls", "seven")
        try t.file("src/__meta__", "ignored")
        try t.file("src/noext", "ignored")
        try runTar(["--format=pax", "-cf", t.path + "/a.tar", "__meta__", "noext", "d/s1.png", "d/s1.cls", "d/s1.JPG",
                    "d/s2.seg.png", "d/s2.webp", "d/s2.json", "d/s3.jpg", "d/s3.cls"], in: t.path + "/src")
        let listing = try WebDatasetReader.list(shards: [t.path + "/a.tar"])
        #expect(listing.items.map(\.sourceId) == ["a.tar/d/s1", "a.tar/d/s2"])
        #expect(listing.items.map(\.label) == [7, nil])
        #expect(listing.items[1].caption == "from json")
        guard case let .tarMember(path, offset, size) = listing.items[0].location else { Issue.record("no tar location"); return }
        #expect(try TarArchive.readMember(tarPath: path, offset: offset, size: size) == Array("jpg1".utf8))
        guard case let .tarMember(_, o2, s2) = listing.items[1].location else { Issue.record("no tar location"); return }
        #expect(try TarArchive.readMember(tarPath: path, offset: o2, size: s2) == Array("webp2".utf8))
        #expect(listing.skipped == [SkippedSample(sourceId: "a.tar/d/s3", reason: ".cls member 'seven' is not an integer")])
    }

    @Test func repeatedKeysAreErrors() throws {
        let t = try TempDir()
        try t.file("src/a.jpg", "1")
        try t.file("src/b.jpg", "2")
        try t.file("src/a.txt", "3")
        try runTar(["--format=gnu", "-cf", t.path + "/x.tar", "a.jpg", "b.jpg", "a.txt"], in: t.path + "/src")
        #expect(throws: DatasetError.self) { try WebDatasetReader.list(shards: [t.path + "/x.tar"]) }
        // Without --hard-dereference GNU tar stores the second copy as a hard link, not a file.
        try runTar(["--format=gnu", "--hard-dereference", "-cf", t.path + "/y.tar", "a.jpg", "a.jpg"], in: t.path + "/src")
        #expect(throws: DatasetError.badSample(path: t.path + "/y.tar", member: "a.jpg", detail: "sample 'a' has two '.jpg' members")) {
            try WebDatasetReader.list(shards: [t.path + "/y.tar"])
        }
    }

    @Test func keySplittingFollowsWebdataset() {
        #expect(WebDatasetReader.keyAndExtension("dir.v2/abc.def.jpg")! == ("dir.v2/abc", "def.jpg"))
        #expect(WebDatasetReader.keyAndExtension("x.JPEG")! == ("x", "jpeg"))
        #expect(WebDatasetReader.keyAndExtension("dir/.hidden") == nil)
        #expect(WebDatasetReader.keyAndExtension("noext") == nil)
    }
}

@Suite struct ShardPlanTests {
    @Test func splitsDeterministically() throws {
        let plan = try ShardPlan(itemCount: 10, shardSize: 3)
        #expect(plan.shardCount == 4)
        #expect(plan.ranges == [0..<3, 3..<6, 6..<9, 9..<10])
        #expect(plan.shard(containing: 9) == 3)
        #expect(try ShardPlan(itemCount: 9, shardSize: 3).ranges == [0..<3, 3..<6, 6..<9])
        #expect(try ShardPlan(itemCount: 0, shardSize: 5).shardCount == 0)
        #expect(throws: ShardPlanError.badShardSize(0)) { try ShardPlan(itemCount: 3, shardSize: 0) }
    }

    @Test func listingAndPlanAreStableAcrossRuns() throws {
        let t = try TempDir()
        for i in (0..<25).reversed() { try t.file("c\(i % 3)/img\(i).jpg", "x") }
        let first = try ImageFolderReader.listClasses(root: t.path)
        let second = try ImageFolderReader.listClasses(root: t.path)
        #expect(first.items == second.items)
        let plan = try ShardPlan(itemCount: first.items.count, shardSize: 4)
        let shardsA = plan.ranges.map { first.items[$0].map(\.sourceId) }
        let shardsB = plan.ranges.map { second.items[$0].map(\.sourceId) }
        #expect(shardsA == shardsB)
        #expect(shardsA.flatMap { $0 } == first.items.map(\.sourceId))
        #expect(shardsA[0] == ["c0/img0.jpg", "c0/img12.jpg", "c0/img15.jpg", "c0/img18.jpg"])
    }
}
