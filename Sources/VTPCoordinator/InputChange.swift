import VTPQueue
import VTPVocabulary

/// A fingerprint of an input listing: its sample count and an order-independent 128-bit sum of
/// per-sample hashes of the source ids (items and skipped samples alike). Equal listings give
/// equal digests, so a re-run that finds the stored digest again skips reading the job's items
/// back; any added, removed or renamed sample changes it. Not a cryptographic hash: it guards
/// against accidents, not adversaries.
public struct ListingDigest: Sendable {
    private var low: UInt64 = 0, high: UInt64 = 0, count = 0

    /// An empty listing's digest, to ``add(_:)`` source ids to one at a time.
    public init() {}

    /// Adds one sample (an item or a skipped sample) by its source id.
    public mutating func add(_ id: String) {
        let (a, b) = Self.hashes(id)
        let (sum, carry) = low.addingReportingOverflow(a)
        low = sum
        high = high &+ b &+ (carry ? 1 : 0)
        count += 1
    }

    /// The fingerprint of what was added: `v1:<count>:<128-bit sum in hex>`.
    public var value: String { "v1:\(count):" + Self.hex(high) + Self.hex(low) }

    /// The fingerprint of a listing held in memory.
    public static func of(items: [JobItem], skipped: [SkippedSample]) -> String {
        var digest = ListingDigest()
        for item in items { digest.add(item.sourceId) }
        for sample in skipped { digest.add(sample.sourceId) }
        return digest.value
    }

    /// Two FNV-1a 64 hashes with different offset bases, each finished with a 64-bit mix so
    /// that sums of similar ids do not cancel.
    private static func hashes(_ id: String) -> (UInt64, UInt64) {
        (SourceIdHash.of(id), SourceIdHash.mix(SourceIdHash.fnv1a(id, basis: 0x6c62_272e_07bb_0142) ^ 0x9e37_79b9_7f4a_7c15))
    }

    private static func hex(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}

/// How a new listing of a job's input differs from the job: samples it has that the job lacks
/// (by source id) and samples of the job it no longer has.
public struct InputChange: Sendable, Equatable {
    /// New items, in listing order (their ordinals are the new listing's, not the job's).
    public var added: [JobItem]
    /// New samples the listing skipped (unreadable manifest rows, ...), failures of the update.
    public var addedSkipped: [SkippedSample]
    /// Source ids of the job no longer in the input, sorted.
    public var missing: [String]

    public var isEmpty: Bool { added.isEmpty && addedSkipped.isEmpty && missing.isEmpty }

    /// The difference between a listing and the source ids a job already has.
    public init(listing items: [JobItem], skipped: [SkippedSample], known: Set<String>) {
        added = items.filter { !known.contains($0.sourceId) }
        addedSkipped = skipped.filter { !known.contains($0.sourceId) }
        var listed = Set<String>(minimumCapacity: items.count + skipped.count)
        for item in items { listed.insert(item.sourceId) }
        for sample in skipped { listed.insert(sample.sourceId) }
        missing = known.subtracting(listed).sorted()
    }

    /// "3 new (a.jpg, b.jpg, c.jpg), 1 missing (old.jpg)": counts with at most `examples` ids each.
    public func summary(examples: Int = 3) -> String {
        func part(_ count: Int, _ what: String, _ ids: [String]) -> String {
            let shown = ids.prefix(examples).joined(separator: ", ")
            return "\(count) \(what)" + (ids.isEmpty ? "" : " (\(shown)\(ids.count > examples ? ", …" : ""))")
        }
        let newIDs = added.map(\.sourceId) + addedSkipped.map(\.sourceId)
        return part(newIDs.count, "new", newIDs) + ", " + part(missing.count, "missing", missing)
    }
}
