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
        ("{\"path\": \"a.jpg\", \"label\": \" \"}\n", 1, "'label' is an empty string"),
        ("{\"path\": \"a.jpg\", \"label\": 1.5}\n", 1, "'label' must be an integer or a class name"),
        ("{\"path\": \"a.jpg\", \"label\": true}\n", 1, "'label' must be an integer or a class name"),
        ("{\"path\": \"a.jpg\", \"label\": [\"cat\"]}\n", 1, "'label' must be an integer or a class name"),
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
        ("path,label\na.jpg,1\nb.jpg,one\n", 3, "label 'one' is a class name, but line 2's label 1 is an integer"),
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

    // MARK: Class-name labels

    @Test func classNamesAreNumberedInImageFolderOrderWithoutAClassList() throws {
        let t = try TempDir()
        // "Zebra" sorts before "cat" (code point order, as torchvision sorts class folders), and
        // the decomposed "e\u{301}" and the precomposed "\u{e9}" are two classes (bytes order them),
        // although Swift's == calls them equal.
        let m = try t.file("m.jsonl", #"""
        {"path": "1.jpg", "label": "cat"}
        {"path": "2.jpg", "label": "Zebra"}
        {"path": "3.jpg"}
        {"path": "4.jpg", "label": " cat "}
        {"path": "5.jpg", "label": "caf\u00e9"}
        {"path": "6.jpg", "label": "cafe\u0301"}
        {"path": "7.jpg", "label": null}
        """#)
        let listing = try ManifestReader.list(manifest: m)
        #expect(listing.classes == ["Zebra", "cafe\u{301}", "caf\u{e9}", "cat"])
        #expect(listing.items.map(\.label) == [3, 0, nil, 3, 2, 1, nil])
        #expect(listing.classes.map { Array($0.utf8) } == ["Zebra", "cafe\u{301}", "caf\u{e9}", "cat"].map { Array($0.utf8) })
    }

    @Test func csvClassNamesAndIntegerTextMeanTheSameAsInJSONL() throws {
        let t = try TempDir()
        let csv = try t.file("m.csv", "path,label\na.jpg,dog\nb.jpg,cat\nc.jpg,\nd.jpg,dog\n")
        let listing = try ManifestReader.list(manifest: csv)
        #expect(listing.items.map(\.label) == [1, 0, nil, 1])
        #expect(listing.classes == ["cat", "dog"])
        // "10" is the integer 10 in either format, never a name sorted before "2".
        let jsonl = try t.file("n.jsonl", "{\"path\": \"a.jpg\", \"label\": \"10\"}\n{\"path\": \"b.jpg\", \"label\": 2}\n")
        let numbers = try ManifestReader.list(manifest: jsonl)
        #expect(numbers.items.map(\.label) == [10, 2])
        #expect(numbers.classes.isEmpty)
    }

    @Test func aClassListNumbersNamesByItsLinesAndBoundsIntegers() throws {
        let t = try TempDir()
        let file = try t.file("classes.txt", "\u{FEFF}dog\r\n\n  cat  \nbird\n")
        let classes = try ClassList.read(file: file)
        #expect(classes == ClassList(names: ["dog", "cat", "bird"], source: file))
        let m = try t.file("m.jsonl", """
        {"path": "1.jpg", "label": "bird"}
        {"path": "2.jpg", "label": 0}
        {"path": "3.jpg", "label": "cat"}
        {"path": "4.jpg"}
        """)
        let listing = try ManifestReader.list(manifest: m, classes: classes)
        // With a list, names and integers may mix: both name an entry of the same list.
        #expect(listing.items.map(\.label) == [2, 0, 1, nil])
        #expect(listing.classes == ["dog", "cat", "bird"])
        // A manifest of integers alone still records the list it indexes.
        let ints = try t.file("i.csv", "path,label\na.jpg,2\n")
        #expect(try ManifestReader.list(manifest: ints, classes: classes).classes == ["dog", "cat", "bird"])
    }

    @Test(arguments: [
        ("{\"path\": \"a.jpg\", \"label\": \"dog\"}\n{\"path\": \"b.jpg\", \"label\": \"fish\"}\n", 2,
         "label 'fish' is not one of the 3 classes in "),
        ("{\"path\": \"a.jpg\", \"label\": 3}\n", 1, "label 3 is not an index of the 3 classes in "),
        ("{\"path\": \"a.jpg\", \"label\": -1}\n", 1, "label -1 is not an index of the 3 classes in "),
    ])
    func labelsOutsideTheClassListNameManifestLineAndLabel(text: String, line: Int, detail: String) throws {
        let t = try TempDir()
        let file = try t.file("classes.txt", "dog\ncat\nbird\n")
        let m = try t.file("m.jsonl", text)
        do {
            _ = try ManifestReader.list(manifest: m, classes: try ClassList.read(file: file))
            Issue.record("expected an error for \(text)")
        } catch let e as DatasetError {
            #expect(e.description.hasPrefix("\(m):\(line): "), "\(e)")
            #expect(e.description.contains(detail + file), "\(e)")
        }
    }

    @Test func mixedLabelsWithoutAClassListAndAmbiguousNamesAreRefused() throws {
        let t = try TempDir()
        let mixed = try t.file("m.jsonl", "{\"path\": \"a.jpg\", \"label\": \"cat\"}\n{\"path\": \"b.jpg\"}\n{\"path\": \"c.jpg\", \"label\": 4}\n")
        #expect(throws: DatasetError.badManifestRow(path: mixed, line: 3, detail:
            "label 4 is an integer, but line 1's label 'cat' is a class name; labels must be all integers or all class names, unless --classes FILE lists the classes (names then map to their index in it and integers index it)")) {
            try ManifestReader.list(manifest: mixed)
        }
        let twice = try t.file("twice.txt", "crane\nbird\ncrane\n")
        let m = try t.file("n.jsonl", "{\"path\": \"a.jpg\", \"label\": \"bird\"}\n{\"path\": \"b.jpg\", \"label\": \"crane\"}\n")
        #expect(throws: DatasetError.badManifestRow(path: m, line: 2,
                                                     detail: "label 'crane' is ambiguous: \(twice) lists it 2 times (as labels 0, 2)")) {
            try ManifestReader.list(manifest: m, classes: try ClassList.read(file: twice))
        }
    }

    @Test func classListFileProblemsNameTheFile() throws {
        let t = try TempDir()
        let blank = try t.file("blank.txt", "\n  \n")
        #expect(throws: DatasetError.badClassList(path: blank, detail: "lists no class names")) { try ClassList.read(file: blank) }
        let binary = try t.file("bin.txt", [0xFF, 0xFE, 0x00])
        #expect(throws: DatasetError.badClassList(path: binary, detail: "not UTF-8 text")) { try ClassList.read(file: binary) }
        #expect(throws: DatasetError.cannotRead(path: t.path + "/none.txt",
                                                reason: "expected a readable text file with one class name per line")) {
            try ClassList.read(file: t.path + "/none.txt")
        }
    }
}
