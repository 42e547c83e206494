import Foundation
import Synchronization
import VTPVocabulary

/// One sample a reader came to: an item to enqueue, or a sample it saw and could not list.
enum ListingEntry {
    case item(JobItem)
    case skipped(SkippedSample)
}

/// A reader's walk over its input in listing order, holding only what the next entry needs (the
/// pending directories of a folder tree, the member table of one tar shard).
protocol ListingCursor {
    /// Class names labels index (`classes[label]`), known from the start of the walk.
    var classes: [String] { get }
    /// The next entry; nil once the walk is over. Items' ordinals are left for the caller, who
    /// does not call it again after it returned nil or threw (a walk does not resume after an error).
    mutating func next() throws -> ListingEntry?
}

/// An input listed without holding its items: a first pass (``scan(path:open:eachSourceId:)``)
/// counts, checks and fingerprints it, and each ``items()`` walks it again from disk, refusing
/// anything that changed in between. Memory is bounded by the reader's cursor and the skipped
/// samples, not by the number of items.
public struct StreamedScan: Sendable {
    /// The input (folder, tar shard or folder of shards).
    public let path: String
    /// How many items it lists.
    public let itemCount: Int
    /// Samples the reader saw and could not list.
    public let skipped: [SkippedSample]
    /// Class names labels index, empty when the input names none.
    public let classes: [String]
    /// How many items carry a caption with more than whitespace.
    public let captionedItems: Int
    /// An order-sensitive hash of every entry's source id, which a later pass must reproduce.
    let checksum: UInt64
    let open: @Sendable () throws -> any ListingCursor

    init(path: String, itemCount: Int, skipped: [SkippedSample], classes: [String], captionedItems: Int, checksum: UInt64,
         open: @escaping @Sendable () throws -> any ListingCursor) {
        self.path = path
        self.itemCount = itemCount
        self.skipped = skipped
        self.classes = classes
        self.captionedItems = captionedItems
        self.checksum = checksum
        self.open = open
    }

    /// Walks `open()` once. `eachSourceId` sees every item's and skipped sample's id in order
    /// (for the listing's digest).
    static func scan(path: String, open: @escaping @Sendable () throws -> any ListingCursor,
                     eachSourceId: (String) -> Void) throws -> StreamedScan {
        var cursor = try open()
        var count = 0, captioned = 0
        var skipped: [SkippedSample] = []
        var checksum = EntryChecksum()
        while let entry = try cursor.next() {
            checksum.add(entry)
            switch entry {
            case let .item(item):
                count += 1
                if item.caption?.contains(where: { !$0.isWhitespace }) == true { captioned += 1 }
                eachSourceId(item.sourceId)
            case let .skipped(sample):
                skipped.append(sample)
                eachSourceId(sample.sourceId)
            }
        }
        return StreamedScan(path: path, itemCount: count, skipped: skipped, classes: cursor.classes,
                            captionedItems: captioned, checksum: checksum.value, open: open)
    }

    /// The items in listing order (ordinals from 0), walked again from disk. A read error, or an
    /// input that no longer matches the scan, ends the sequence early and is thrown by
    /// ``StreamedItems/check()``.
    public func items() -> StreamedItems { StreamedItems(scan: self) }

    /// ``items()`` read into memory; throws what ended the pass early.
    public func collectItems() throws -> [JobItem] {
        let items = items()
        var collected: [JobItem] = []
        collected.reserveCapacity(itemCount)
        for item in items { collected.append(item) }
        try items.check()
        return collected
    }

    /// The whole listing in memory, as the in-memory readers return it.
    func collect() throws -> DatasetListing {
        DatasetListing(items: try collectItems(), classes: classes, skipped: skipped)
    }
}

/// The items of a ``StreamedScan`` as a sequence that holds only the reader's cursor.
/// `Sequence` cannot throw, so the error that ended it is kept for ``check()``.
public struct StreamedItems: Sequence, Sendable {
    let scan: StreamedScan
    private let failure = ListingFailure()

    init(scan: StreamedScan) { self.scan = scan }

    /// Throws what ended an iteration early, if anything did.
    public func check() throws {
        if let error = failure.error { throw error }
    }

    public func makeIterator() -> Iterator { Iterator(scan: scan, failure: failure) }

    public struct Iterator: IteratorProtocol {
        let scan: StreamedScan
        let failure: ListingFailure
        private var cursor: (any ListingCursor)?
        private var opened = false
        private var count = 0, entries = 0
        private var checksum = EntryChecksum()

        init(scan: StreamedScan, failure: ListingFailure) {
            self.scan = scan
            self.failure = failure
        }

        public mutating func next() -> JobItem? {
            do {
                if !opened {
                    opened = true
                    cursor = try scan.open()
                    if cursor!.classes != scan.classes {
                        throw DatasetError.changedWhileListed(path: scan.path,
                            detail: "its classes are now \(cursor!.classes.joined(separator: ", ")), not \(scan.classes.joined(separator: ", "))")
                    }
                }
                guard cursor != nil else { return nil }
                while let entry = try cursor!.next() {
                    checksum.add(entry)
                    entries += 1
                    guard case var .item(item) = entry else { continue }
                    guard count < scan.itemCount else {
                        throw DatasetError.changedWhileListed(path: scan.path,
                            detail: "it has more than the \(scan.itemCount) items it had when checked")
                    }
                    item.ordinal = count
                    count += 1
                    return item
                }
                cursor = nil
                guard count == scan.itemCount, entries == scan.itemCount + scan.skipped.count, checksum.value == scan.checksum else {
                    throw DatasetError.changedWhileListed(path: scan.path,
                        detail: "it now lists \(count) items and \(entries - count) skipped samples, not \(scan.itemCount) and \(scan.skipped.count), or other ones")
                }
                return nil
            } catch {
                cursor = nil
                failure.record(error)
                return nil
            }
        }
    }
}

/// An order-sensitive hash of a walk's entries (ids and whether each was listed or skipped).
struct EntryChecksum {
    private(set) var value: UInt64 = 0x243f_6a88_85a3_08d3

    mutating func add(_ entry: ListingEntry) {
        switch entry {
        case let .item(item): add(id: item.sourceId, listed: true)
        case let .skipped(sample): add(id: sample.sourceId, listed: false)
        }
    }

    mutating func add(id: String, listed: Bool) { add(idHash: SourceIdHash.of(id), listed: listed) }

    /// ``add(id:listed:)`` with the id's ``SourceIdHash`` already computed.
    mutating func add(idHash: UInt64, listed: Bool) {
        value = SourceIdHash.mix(value ^ idHash ^ (listed ? 0 : 1))
    }
}

/// The first error of a listing pass, shared by the sequence and its iterators.
final class ListingFailure: Sendable {
    private let first = Mutex<(any Error)?>(nil)

    func record(_ error: any Error) { first.withLock { if $0 == nil { $0 = error } } }

    var error: (any Error)? { first.withLock { $0 } }
}

extension StreamedScan {
    /// A listing of items made in memory rather than read from disk (a linear-probe job's sweep of
    /// heads), with the same ordinals, fingerprint and re-walk as a reader's. `eachSourceId` sees
    /// every id in order, for the listing's digest.
    public static func listed(path: String, items: [JobItem], eachSourceId: (String) -> Void) -> StreamedScan {
        let numbered = items.enumerated().map { index, item in
            var item = item
            item.ordinal = index
            return item
        }
        // An in-memory cursor cannot fail.
        return try! scan(path: path, open: { InMemoryCursor(items: numbered) }, eachSourceId: eachSourceId)
    }
}

/// Walks items already in memory.
private struct InMemoryCursor: ListingCursor {
    let items: [JobItem]
    var position = 0
    var classes: [String] { [] }

    init(items: [JobItem]) { self.items = items }

    mutating func next() throws -> ListingEntry? {
        guard position < items.count else { return nil }
        defer { position += 1 }
        return .item(items[position])
    }
}
