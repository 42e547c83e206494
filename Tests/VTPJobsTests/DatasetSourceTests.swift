import Foundation
import Testing
import VTPVocabulary
import VTPDatasets
import VTPJobs
import VTPTestSupport

@Suite struct DatasetSourceTests {
    @Test func detectsEveryLayout() throws {
        let t = try InputTree("jobs-detect")
        defer { t.dir.remove() }
        try t.copy("chelsea.jpg", to: "folder/classes/cat/1.jpg")
        try t.copy("dog.png", to: "folder/classes/dog/1.png")
        try t.copy("chelsea.jpg", to: "folder/plain/a.jpg")
        try t.copy("dog.png", to: "folder/plain/sub/b.png")
        try t.write(Array(#"{"path": "plain/a.jpg", "label": 3, "id": "x"}"#.utf8) + [0x0A], to: "folder/m.jsonl")
        try t.write(Array("path,label\nplain/a.jpg,1\nplain/sub/b.png,2\n".utf8), to: "folder/m.csv")
        try FileManager.default.createDirectory(atPath: t.dir.file("folder/wds"), withIntermediateDirectories: true)
        try runTar(["-cf", t.dir.file("folder/wds/0.tar"), "a.jpg"], in: t.dir.file("folder/plain"))
        try FileManager.default.createDirectory(atPath: t.dir.file("folder/empty"), withIntermediateDirectories: true)

        let cases: [(String, DatasetSource.Kind, [String], [Int?])] = [
            ("classes", .imageFolder, ["cat/1.jpg", "dog/1.png"], [0, 1]),
            ("plain", .plainFolder, ["a.jpg", "sub/b.png"], [nil, nil]),
            ("m.jsonl", .manifest, ["x"], [3]),
            ("m.csv", .manifest, ["plain/a.jpg", "plain/sub/b.png"], [1, 2]),
            ("wds/0.tar", .webDatasetTar, ["0.tar/a"], [nil]),
            ("wds", .webDatasetDirectory, ["0.tar/a"], [nil]),
        ]
        for (relative, kind, ids, labels) in cases {
            let path = t.dir.file("folder/" + relative)
            #expect(try DatasetSource.detect(input: path) == kind, "\(relative)")
            let listing = try DatasetSource.enumerate(input: path)
            #expect(listing.items.map(\.sourceId) == ids, "\(relative)")
            #expect(listing.items.map(\.label) == labels, "\(relative)")
            #expect(listing.items.map(\.ordinal) == Array(0..<ids.count))
            // Listing twice gives the same order (deterministic shards).
            #expect(try DatasetSource.enumerate(input: path).items == listing.items)
        }
        #expect(throws: JobError.self) { try DatasetSource.detect(input: t.dir.file("folder/empty")) }
        #expect(throws: JobError.badInput(path: t.dir.file("nowhere"), detail: "no such file or directory")) {
            try DatasetSource.detect(input: t.dir.file("nowhere"))
        }
        #expect(throws: JobError.self) { try DatasetSource.detect(input: t.dir.file("folder/plain/a.jpg")) }
    }
}
