import Foundation
import Testing
import VTPVocabulary
@testable import VTPDatasets

@Suite struct ManifestTests {
    @Test func jsonlRowsResolveRelativeToTheManifest() throws {
        let t = try TempDir()
        let m = try t.file("sub/list.jsonl", """
        {"path": "imgs/a.jpg", "label": 3, "caption": "a cat"}

        {"path": "/abs/b.png", "id": "b-id", "label": null}
        {"path": "c.webp", "id": 17, "caption": "multi\\nline", "label": 9007199254740993}\r

        """)
        let listing = try ManifestReader.list(manifest: m)
        #expect(listing.items.count == 3)
        #expect(listing.items[0] == JobItem(ordinal: 0, sourceId: "imgs/a.jpg",
                                                location: .file(path: t.path + "/sub/imgs/a.jpg"), label: 3, caption: "a cat"))
        #expect(listing.items[1].sourceId == "b-id")
        #expect(listing.items[1].location == .file(path: "/abs/b.png"))
        #expect(listing.items[1].label == nil)
        #expect(listing.items[2].sourceId == "17")
        #expect(listing.items[2].caption == "multi\nline")
        #expect(listing.items[2].label == 9007199254740993)  // beyond float64's exact integers
    }

    @Test(arguments: [
        ("{\"path\": \"a.jpg\"}\n{\"path\": \"b.jpg\"\n", 2, "not valid JSON"),
        ("{\"path\": \"a.jpg\"}\n\n{\"label\": 1}\n", 3, "'path' is missing"),
        ("{\"path\": \"a.jpg\", \"label\": \"3\"}\n", 1, "'label' must be an integer"),
        ("{\"path\": \"a.jpg\", \"label\": 1.5}\n", 1, "'label' must be an integer"),
        ("{\"path\": \"a.jpg\", \"label\": true}\n", 1, "'label' must be an integer"),
        ("[\"a.jpg\"]\n", 1, "expected a JSON object"),
        ("{\"path\": \"\"}\n", 1, "'path' is empty"),
        ("{\"path\": \"a.jpg\", \"caption\": 5}\n", 1, "'caption' must be a string"),
        ("{\"path\": \"a.jpg\", \"id\": \"\"}\n", 1, "'id' is empty"),
        ("{\"path\": \"a.jpg\", \"id\": 2.5}\n", 1, "'id' must be a string or an integer"),
        ("{\"path\": \"a.jpg\"}\n{\"path\": \"a.jpg\"}\n", 2, "id 'a.jpg' already used on line 1"),
        // Found by the manifest fuzzer (Fuzz/Corpus/manifest/crash-nul-in-path.csv has the CSV form).
        ("{\"path\": \"a.jpg\"}\n{\"path\": \"b.j\\u0000pg\"}\n", 2, "'path' contains a NUL byte"),
        ("{\"path\": \"a.jpg\", \"id\": \"k\\u0000\"}\n", 1, "'id' contains a NUL byte"),
    ])
    func jsonlBadRowsNameFileAndLine(text: String, line: Int, detail: String) throws {
        let t = try TempDir()
        let m = try t.file("m.jsonl", text)
        do {
            _ = try ManifestReader.list(manifest: m)
            Issue.record("expected an error for \(text)")
        } catch let e as DatasetError {
            #expect(e.description.hasPrefix("\(m):\(line): "), "\(e)")
            #expect(e.description.contains(detail), "\(e)")
        }
    }

    @Test func csvHandlesRFC4180Quoting() throws {
        let t = try TempDir()
        let m = try t.file("list.csv", "\u{FEFF}id,path,label,caption,extra\r\n"
            + "one,a.jpg,0,\"plain, with comma\",x\r\n"
            + "two,\"dir/b c.png\",,\"she said \"\"hi\"\"\nand left\",\r\n"
            + "\r\n"
            + ",c.jpg, 7 ,,\n"
            + "four,d.jpg,2,last,")
        let listing = try ManifestReader.list(manifest: m)
        #expect(listing.items.map(\.sourceId) == ["one", "two", "c.jpg", "four"])
        #expect(listing.items.map(\.label) == [0, nil, 7, 2])
        #expect(listing.items[0].caption == "plain, with comma")
        #expect(listing.items[1].caption == "she said \"hi\"\nand left")
        #expect(listing.items[1].location == .file(path: t.path + "/dir/b c.png"))
        #expect(listing.items[2].caption == nil)
        #expect(listing.items[3].caption == "last")
    }

    @Test(arguments: [
        // The row after a quoted line break starts on line 4, and the error must say so.
        ("path,label\n\"a\nb.jpg\",1\nc.jpg\n", 4, "1 fields, header has 2"),
        ("path,label\na.jpg,one\n", 2, "label 'one' is not an integer"),
        ("path,caption\na.jpg,\"open\nstill open\n", 2, "never closed"),
        ("path,caption\na.jpg,bad\"quote\n", 2, "quote inside an unquoted field"),
        ("path,caption\na.jpg,\"done\"x\n", 2, "after a closing quote"),
        ("path,id\na.jpg,k\nb.jpg,k\n", 3, "already used on line 2"),
        ("path\r\na.jpg\rb.jpg\n", 2, "carriage return"),
        ("id,path\n1,a.j\0pg\n", 2, "'path' contains a NUL byte"),
        ("path,id\na.jpg,\0\n", 2, "'id' contains a NUL byte"),
    ])
    func csvBadRowsNameFileAndLine(text: String, line: Int, detail: String) throws {
        let t = try TempDir()
        let m = try t.file("m.csv", text)
        do {
            _ = try ManifestReader.list(manifest: m)
            Issue.record("expected an error for \(text.debugDescription)")
        } catch let e as DatasetError {
            #expect(e.description.hasPrefix("\(m):\(line): "), "\(e)")
            #expect(e.description.contains(detail), "\(e)")
        }
    }

    @Test func csvHeaderProblems() throws {
        let t = try TempDir()
        let noPath = try t.file("a.csv", "file,label\nx.jpg,1\n")
        #expect(throws: DatasetError.badManifestHeader(path: noPath, detail: "no 'path' column (found file, label)")) {
            try ManifestReader.list(manifest: noPath)
        }
        let empty = try t.file("b.csv", "")
        #expect(throws: DatasetError.badManifestHeader(path: empty, detail: "file is empty")) { try ManifestReader.list(manifest: empty) }
        let other = try t.file("c.txt", "")
        #expect(throws: DatasetError.unknownFormat(path: other)) { try ManifestReader.list(manifest: other) }
    }

    @Test func csvParserStateMachine() throws {
        let records = try CSVParser.parse(Array("a,\"b\"\"c\",\n\"\",d\r\n".utf8))
        #expect(records == [
            CSVParser.Record(fields: [Array("a".utf8), Array("b\"c".utf8), []], line: 1),
            CSVParser.Record(fields: [[], Array("d".utf8)], line: 2),
        ])
        #expect(throws: CSVParser.SyntaxError(line: 1, detail: "quoted field opened here is never closed")) {
            try CSVParser.parse(Array("\"abc".utf8))
        }
    }
}
