import Testing
import VTPVocabulary
import VTPDatasets

@Suite struct ItemLocationTests {
    @Test(arguments: [
        ItemLocation.file(path: "/data/train/n01/img.JPEG"),
        .file(path: "relative/with space#and+plus.jpg"),
        .file(path: "tar:looks-like-a-tar.jpg"),
        .file(path: "file:odd"),
        .tarMember(tarPath: "/shards/00000.tar", offset: 1536, size: 48213),
        .tarMember(tarPath: "/odd#dir/a+b.tar", offset: 0, size: 0),
        .tarMember(tarPath: "s.tar", offset: Int64.max - 10, size: 10),
    ])
    func roundTrips(location: ItemLocation) throws {
        #expect(try ItemLocation(encoded: location.encoded) == location)
    }

    @Test func encodedForms() {
        #expect(ItemLocation.file(path: "/a/b.jpg").encoded == "/a/b.jpg")
        #expect(ItemLocation.tarMember(tarPath: "/s/0.tar", offset: 512, size: 100).encoded == "tar:/s/0.tar#512+100")
        #expect(ItemLocation.file(path: "tar:x").encoded == "file:tar:x")
    }

    @Test(arguments: ["", "file:", "tar:", "tar:/a.tar", "tar:#1+2", "tar:/a.tar#1", "tar:/a.tar#+2", "tar:/a.tar#1+",
                      "tar:/a.tar#-1+2", "tar:/a.tar#1+-2", "tar:/a.tar#1+2+3", "tar:/a.tar#0x10+2", "tar:/a.tar# 1+2",
                      "tar:/a.tar#99999999999999999999+1", "tar:/a.tar#9223372036854775807+1", "a\u{0}b"])
    func malformedStringsAreRejected(text: String) {
        #expect(throws: ItemLocationParseError.self) { try ItemLocation(encoded: text) }
    }
}
