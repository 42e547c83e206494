import Foundation
import Testing
import VTPVocabulary
@testable import VTPDatasets

/// Manifests are read in 1 MiB blocks, checked in one pass and read again for their items
/// (``ManifestReader/scan(manifest:classes:eachSourceId:)``): rows that straddle blocks, line
/// numbers far into the file, and a file that changes between the passes.
@Suite struct ManifestStreamingTests {
    /// About 3.5 MiB: every block boundary falls inside some row.
    private static let rows = 12_000

    private static func caption(_ i: Int) -> String { "caption \(i) " + String(repeating: "xyz", count: 90 + i % 37) }

    @Test func jsonlRowsAcrossBlocksListLikeTheRowsThemselves() throws {
        let t = try TempDir()
        var text = "\u{FEFF}"
        for i in 0..<Self.rows {
            text += "{\"path\": \"img/\(i).jpg\", \"label\": \"class-\(i % 7)\", \"caption\": \"\(Self.caption(i))\"}\n"
            if i % 1000 == 999 { text += "\r\n  \n" }  // blank lines, which count as lines
        }
        let m = try t.file("big.jsonl", text)
        #expect(text.utf8.count > 3 << 20)
        var seen: [String] = []
        let scan = try ManifestReader.scan(manifest: m) { seen.append($0) }
        #expect(scan.itemCount == Self.rows)
        #expect(scan.captionedItems == Self.rows)
        #expect(scan.classes == (0..<7).map { "class-\($0)" })
        #expect(seen == (0..<Self.rows).map { "img/\($0).jpg" })
        let items = scan.items()
        var count = 0
        for item in items {
            #expect(item.ordinal == count)
            #expect(item.sourceId == "img/\(count).jpg")
            #expect(item.label == count % 7)
            #expect(item.caption == Self.caption(count))
            #expect(item.location == .file(path: t.path + "/img/\(count).jpg"))
            count += 1
        }
        try items.check()
        #expect(count == Self.rows)
        // The same file read twice gives the same items.
        #expect(try ManifestReader.list(manifest: m).items.count == Self.rows)
    }

    @Test func csvRecordsWithLineBreaksAcrossBlocksKeepTheirLineNumbers() throws {
        let t = try TempDir()
        var text = "path,caption\n"
        for i in 0..<Self.rows { text += "img/\(i).jpg,\"\(Self.caption(i))\nsecond line\"\n" }
        // Header on line 1, two lines per record: the bad record starts on line 2 + 2 * rows.
        text += "img/bad.jpg,\"x\",extra\n"
        let m = try t.file("big.csv", text)
        #expect(throws: DatasetError.badManifestRow(path: m, line: 2 + 2 * Self.rows, detail: "3 fields, header has 2")) {
            try ManifestReader.list(manifest: m)
        }
        let good = try t.file("good.csv", String(text.dropLast("img/bad.jpg,\"x\",extra\n".count)))
        let listing = try ManifestReader.list(manifest: good)
        #expect(listing.items.count == Self.rows)
        #expect(listing.items.last?.caption == Self.caption(Self.rows - 1) + "\nsecond line")
    }

    @Test func aDuplicateIdFarIntoTheFileIsReportedWithBothLines() throws {
        let t = try TempDir()
        var text = ""
        for i in 0..<Self.rows { text += "{\"path\": \"img/\(i).jpg\"}\n" }
        text += "{\"path\": \"other.jpg\", \"id\": \"img/17.jpg\"}\n"
        let m = try t.file("dup.jsonl", text)
        #expect(throws: DatasetError.duplicateId(path: m, id: "img/17.jpg", firstLine: 18, line: Self.rows + 1)) {
            try ManifestReader.scan(manifest: m)
        }
    }

    @Test func theDuplicateCheckSpillsSortedRunsAndStillFindsBothLines() throws {
        let t = try TempDir()
        var text = ""
        for i in 0..<5_000 { text += "{\"path\": \"img/\(i).jpg\"}\n" }
        let unique = try t.file("unique.jsonl", text)
        // Runs of 700 hashes: eight runs merged from the scratch file.
        #expect(try ManifestReader.scan(manifest: unique, classes: nil, duplicateCheckRun: 700) { _ in }.itemCount == 5_000)
        text += "{\"path\": \"late.jpg\", \"id\": \"img/3.jpg\"}\n"
        let dup = try t.file("dup.jsonl", text)
        #expect(throws: DatasetError.duplicateId(path: dup, id: "img/3.jpg", firstLine: 4, line: 5_001)) {
            try ManifestReader.scan(manifest: dup, classes: nil, duplicateCheckRun: 700) { _ in }
        }
    }

    @Test func repeatedValuesAreFoundAcrossRunsInMemoryAndOnDisk() throws {
        var generator = SystemRandomNumberGenerator()
        var values = (0..<20_000).map { _ in UInt64.random(in: 0...UInt64.max, using: &generator) }
        let twice: Set<UInt64> = [values[3], values[19_999], values[10_000]]
        values += [values[10_000], values[3], values[19_999], values[3]]
        values.shuffle(using: &generator)
        for capacity in [1, 999, 1 << 15, 1 << 20] {
            let t = try TempDir()
            var finder = RepeatedValueFinder(runCapacity: capacity, scratchDirectory: t.path)
            for value in values { try finder.add(value) }
            #expect(try finder.finish() == twice, "runs of \(capacity)")
            // The scratch file is unlinked at once: nothing is left in the directory.
            #expect(try FileManager.default.contentsOfDirectory(atPath: t.path).isEmpty)
        }
        // A stream of nothing but duplicates names the smallest maxRepeated, not all of them.
        for capacity in [1 << 20, 3_000] {
            let t = try TempDir()
            var all = RepeatedValueFinder(runCapacity: capacity, scratchDirectory: t.path)
            for _ in 0..<2 { for v in (0..<10_000).reversed() { try all.add(UInt64(v * 2)) } }
            #expect(try all.finish() == Set((0..<RepeatedValueFinder.maxRepeated).map { UInt64($0 * 2) }))
        }
        var nowhere = RepeatedValueFinder(runCapacity: 2, scratchDirectory: "/nonexistent-vtp-scratch")
        try nowhere.add(1)
        #expect(throws: DatasetError.self) { try nowhere.add(2) }
    }

    @Test func aManifestThatChangesBetweenThePassesEndsTheItemsWithAnError() throws {
        let t = try TempDir()
        let rows = (0..<100).map { "{\"path\": \"img/\($0).jpg\"}\n" }
        let m = try t.file("m.jsonl", rows.joined())
        let scan = try ManifestReader.scan(manifest: m)
        // One id renamed: same row count, another id.
        var changed = rows
        changed[40] = "{\"path\": \"img/renamed.jpg\"}\n"
        try changed.joined().write(toFile: m, atomically: true, encoding: .utf8)
        let items = scan.items()
        var count = 0
        for _ in items { count += 1 }
        #expect(count == 100)
        #expect {
            try items.check()
        } throws: { error in
            guard case let .changedWhileListed(path, _)? = error as? DatasetError else { return false }
            return path == m && (error as? DatasetError)?.description.contains("nothing was enqueued") == true
        }
        // A row added: the pass stops at the row the scan did not see.
        try (rows + ["{\"path\": \"img/new.jpg\"}\n"]).joined().write(toFile: m, atomically: true, encoding: .utf8)
        let grown = scan.items()
        #expect(Array(grown).count == 100)
        #expect(throws: DatasetError.self) { try grown.check() }
    }

    @Test func aLineLongerThanTheRowLimitIsRefusedWithoutReadingTheRest() throws {
        let t = try TempDir()
        let m = try t.file("long.jsonl", "{\"path\": \"a.jpg\"}\n{\"path\": \"" + String(repeating: "a", count: ManifestRowReader.maxRowBytes + 10))
        #expect(throws: DatasetError.badManifestRow(path: m, line: 2, detail: "line is longer than \(ManifestRowReader.maxRowBytes) bytes")) {
            try ManifestReader.scan(manifest: m)
        }
    }
}
