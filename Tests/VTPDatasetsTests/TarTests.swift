import Foundation
import Testing
import VTPVocabulary
@testable import VTPDatasets

@Suite struct TarTests {
    /// A member path over 100 bytes, which ustar splits into prefix + name, GNU stores in an 'L'
    /// record and pax in a `path` record.
    static let longDir = "very-long-directory-name-" + String(repeating: "d", count: 60) + "/second-level-" + String(repeating: "e", count: 30)
    static let longName = longDir + "/image-with-a-long-name.jpg"

    private func makeTree(_ t: TempDir) throws -> [String: [UInt8]] {
        var files: [String: [UInt8]] = [:]
        files["short.txt"] = Array("hello".utf8)
        files[Self.longName] = (0..<1500).map { UInt8($0 % 251) }
        files["empty.bin"] = []
        files["caf\u{e9}.png"] = Array("unicode".utf8)
        for (name, bytes) in files { try t.file("src/" + name, bytes) }
        return files
    }

    @Test(arguments: ["ustar", "gnu", "pax"])
    func readsMembersOfEachFormatByOffset(format: String) throws {
        let t = try TempDir()
        let files = try makeTree(t)
        let order = ["short.txt", Self.longName, "empty.bin", "caf\u{e9}.png"]
        try runTar(["--format=\(format)", "-cf", t.path + "/out.tar"] + order, in: t.path + "/src")
        let archive = try TarArchive(path: t.path + "/out.tar")
        let regular = archive.members.filter { $0.kind == .regular }
        #expect(regular.map(\.name) == order)
        for m in regular {
            #expect(try archive.read(m) == files[m.name], "\(m.name)")
            let direct = try TarArchive.readMember(tarPath: archive.path, offset: m.dataOffset, size: m.size)
            #expect(direct == files[m.name], "\(m.name) read by offset")
            #expect(m.dataOffset % 512 == 0)
        }
    }

    @Test func directoriesAreListedAsDirectories() throws {
        let t = try TempDir()
        try t.file("src/d/x.jpg", "1")
        try runTar(["--format=gnu", "-cf", t.path + "/d.tar", "d"], in: t.path + "/src")
        let archive = try TarArchive(path: t.path + "/d.tar")
        #expect(archive.members.map(\.name) == ["d/", "d/x.jpg"])
        #expect(archive.members.map(\.kind) == [.directory, .regular])
    }

    @Test func corruptOrTruncatedArchivesAreErrorsNamingTheFile() throws {
        let t = try TempDir()
        try t.file("src/a.jpg", (0..<700).map { UInt8($0 & 0xFF) })
        try runTar(["--format=ustar", "-cf", t.path + "/a.tar", "a.jpg"], in: t.path + "/src")
        var bytes = [UInt8](FileManager.default.contents(atPath: t.path + "/a.tar")!)

        var flipped = bytes
        flipped[10] ^= 0x01
        let bad = try t.file("flipped.tar", flipped)
        do { _ = try TarArchive(path: bad); Issue.record("checksum not verified") } catch let e as DatasetError {
            #expect(e.description.hasPrefix(bad + ": bad tar archive at byte 0: header checksum"), "\(e)")
        }

        bytes.removeLast(bytes.count - 1024)  // header + part of the data
        let cut = try t.file("cut.tar", bytes)
        do { _ = try TarArchive(path: cut); Issue.record("truncation not detected") } catch let e as DatasetError {
            #expect(e.description.contains("runs past the end of the file"), "\(e)")
        }
        #expect(throws: DatasetError.self) { try TarArchive.readMember(tarPath: cut, offset: 512, size: 4096) }
    }

    /// A ustar header block with a valid checksum.
    private func headerBlock(name: String, size: [UInt8], typeflag: UInt8 = UInt8(ascii: "0")) -> [UInt8] {
        var block = [UInt8](repeating: 0, count: 512)
        block.replaceSubrange(0..<name.utf8.count, with: name.utf8)
        block.replaceSubrange(124..<136, with: size)
        block[156] = typeflag
        block.replaceSubrange(257..<263, with: Array("ustar\0".utf8))
        block.replaceSubrange(148..<156, with: [UInt8](repeating: 0x20, count: 8))
        let sum = block.reduce(0) { $0 + Int($1) }
        block.replaceSubrange(148..<156, with: Array(String(format: "%06o\0 ", sum).utf8))
        return block
    }

    private func octal(_ n: Int) -> [UInt8] { Array(String(format: "%011o\0", n).utf8) }

    /// Found by the tar fuzzer's invariants (Fuzz/Corpus/tar/regression-*): sizes and record lengths
    /// near Int64.max used to overflow the bounds checks and trap, taking the coordinator down while
    /// it listed a shard. Each is now an error naming the file and the header's offset.
    @Test func sizesNearInt64MaxAreErrorsNotTraps() throws {
        let t = try TempDir()
        let end = [UInt8](repeating: 0, count: 1024)
        func paxArchive(_ records: String) -> [UInt8] {
            let data = Array(records.utf8)
            return headerBlock(name: "PaxHeaders/a.jpg", size: octal(data.count), typeflag: UInt8(ascii: "x"))
                + data + [UInt8](repeating: 0, count: (512 - data.count % 512) % 512)
                + headerBlock(name: "a.jpg", size: octal(0)) + end
        }
        let base256Max: [UInt8] = [0x80, 0, 0, 0, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]
        let cases: [(name: String, bytes: [UInt8], detail: String)] = [
            ("base256.tar", headerBlock(name: "c.jpg", size: base256Max) + end,
             "bad tar archive at byte 0: member 'c.jpg' of 9223372036854775807 bytes runs past the end of the file"),
            ("pax-size.tar", paxArchive("28 size=9223372036854775807\n"),
             "bad tar archive at byte 1024: member 'a.jpg' of 9223372036854775807 bytes runs past the end of the file"),
            ("pax-length.tar", paxArchive("12 path=abc\n9223372036854775807 size=1\n"),
             "bad tar archive at byte 0: malformed pax record at byte 12 of the extended header"),
        ]
        for (name, bytes, detail) in cases {
            let path = try t.file(name, bytes)
            #expect(throws: DatasetError.self, "\(name)") { try TarArchive(path: path) }
            do { _ = try TarArchive(path: path) } catch let e as DatasetError {
                #expect(e.description == "\(path): \(detail)")
            }
        }
        let small = try t.file("small.tar", headerBlock(name: "d.jpg", size: octal(3)) + [1, 2, 3] + [UInt8](repeating: 0, count: 509) + end)
        #expect(throws: DatasetError.self) { try TarArchive.readMember(tarPath: small, offset: 512, size: Int64.max) }
        #expect(throws: DatasetError.self) { try TarArchive.readMember(tarPath: small, offset: Int64.max, size: 1) }
        #expect(try TarArchive.readMember(tarPath: small, offset: 512, size: 3) == [1, 2, 3])
    }

    @Test func numericFieldsDecodeOctalAndBase256() throws {
        #expect(try TarHeader.number(Array("0000644 \0".utf8)[...], field: "mode") == 0o644)
        #expect(try TarHeader.number(Array("   17\0".utf8)[...], field: "size") == 0o17)
        var big = [UInt8](repeating: 0, count: 12)
        big[0] = 0x80
        big[7] = 0x02  // 2 << 32 = 8 GiB, beyond the 11 octal digits of ustar
        #expect(try TarHeader.number(big[...], field: "size") == 2 << 32)
        #expect(throws: TarHeader.Invalid.self) { try TarHeader.number(Array("12x4".utf8)[...], field: "size") }
    }

    @Test func paxRecordsParse() throws {
        func record(_ kv: String) -> String {
            var n = kv.utf8.count + 3
            while String(n).count + 2 + kv.utf8.count != n { n = String(n).count + 2 + kv.utf8.count }
            return "\(n) \(kv)\n"
        }
        let data = Array((record("path=dir/\u{e9}l\u{e8}ve.jpg") + record("size=42")).utf8)
        #expect(try PaxRecords.parse(data) == ["path": "dir/\u{e9}l\u{e8}ve.jpg", "size": "42"])
        #expect(throws: TarHeader.Invalid.self) { try PaxRecords.parse(Array("99 path=x\n".utf8)) }
    }
}
