import Testing
import VTPCoordinator
import VTPVocabulary

/// `vtp run --update` compares a new listing with the job's source ids held as 128-bit hashes.
struct InputChangeTests {
    private static func items(_ ids: [String]) -> [JobItem] {
        ids.enumerated().map { JobItem(ordinal: $0.offset, sourceId: $0.element, location: .file(path: "/in/" + $0.element)) }
    }

    @Test func newAndMissingSamplesAreCountedAgainstTheJobsIds() {
        var known = JobSourceIds((0..<1000).map { "old/\($0).jpg" })
        #expect(known.count == 1000 && known.unseenCount == 1000)
        let listing = Self.items((2..<1000).map { "old/\($0).jpg" } + (0..<5).map { "new/\($0).jpg" })
        var change = InputChange(listing: listing, skipped: [SkippedSample(sourceId: "new/bad", reason: "broken")], known: &known)
        #expect(change.addedCount == 5 && change.addedExamples == ["new/0.jpg", "new/1.jpg", "new/2.jpg"])
        #expect(change.addedSkipped.map(\.sourceId) == ["new/bad"])
        #expect(change.missingCount == 2 && known.unseenCount == 2)
        #expect(known.contains("old/0.jpg") && !known.contains("new/0.jpg"))
        change.missingExamples = ["old/0.jpg", "old/1.jpg"]
        #expect(change.summary() == "6 new (new/0.jpg, new/1.jpg, new/2.jpg, …), 2 missing (old/0.jpg, old/1.jpg)")
        #expect(!change.isEmpty)
    }

    @Test func theSameListingIsNoChangeAndSeeingAnIdTwiceCountsItOnce() {
        let ids = (0..<300).map { "x\($0)" }
        var known = JobSourceIds(ids)
        let change = InputChange(listing: Self.items(ids + ids.prefix(10)), skipped: [], known: &known)
        #expect(change.isEmpty && known.unseenCount == 0)
        #expect(change.summary() == "0 new, 0 missing")
        var empty = JobSourceIds([String]())
        let all = InputChange(listing: Self.items(["a"]), skipped: [], known: &empty)
        #expect(all.addedCount == 1 && all.missingCount == 0)
    }
}
