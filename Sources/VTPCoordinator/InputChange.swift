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
    static func hashes(_ id: String) -> (UInt64, UInt64) {
        (SourceIdHash.of(id), SourceIdHash.mix(SourceIdHash.fnv1a(id, basis: 0x6c62_272e_07bb_0142) ^ 0x9e37_79b9_7f4a_7c15))
    }

    private static func hex(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}

/// How a new listing of a job's input differs from the job: how many samples it has that the job
/// lacks (by source id) and how many of the job's it no longer has, with a few of each by name.
public struct InputChange: Sendable, Equatable {
    /// How many new items the listing has.
    public var addedCount: Int
    /// The first few new items' source ids, in listing order.
    public var addedExamples: [String]
    /// New samples the listing skipped (unreadable manifest rows, ...), failures of the update.
    public var addedSkipped: [SkippedSample]
    /// How many samples of the job are no longer in the input.
    public var missingCount: Int
    /// The first few of them, in the job's order.
    public var missingExamples: [String]

    public var isEmpty: Bool { addedCount == 0 && addedSkipped.isEmpty && missingCount == 0 }

    /// The difference between a listing (`items`, then `skipped`) and a job's source ids, which
    /// ``JobSourceIds/markSeen(_:)`` records as they are found. `examples` ids of each kind are kept.
    /// `missingExamples` is left for the caller, who can name the job's ids (``JobSourceIds/firstUnseen(in:limit:)``).
    public init(listing items: some Sequence<JobItem>, skipped: [SkippedSample], known: inout JobSourceIds, examples: Int = 3) {
        addedCount = 0
        addedExamples = []
        for item in items where !known.markSeen(item.sourceId) {
            addedCount += 1
            if addedExamples.count < examples { addedExamples.append(item.sourceId) }
        }
        addedSkipped = skipped.filter { !known.markSeen($0.sourceId) }
        missingCount = known.unseenCount
        missingExamples = []
    }

    /// "3 new (a.jpg, b.jpg, c.jpg), 1 missing (old.jpg)": counts with at most `examples` ids each.
    public func summary(examples: Int = 3) -> String {
        func part(_ count: Int, _ what: String, _ ids: [String]) -> String {
            let shown = ids.prefix(examples).joined(separator: ", ")
            return "\(count) \(what)" + (ids.isEmpty ? "" : " (\(shown)\(count > min(ids.count, examples) ? ", …" : ""))")
        }
        let newIDs = addedExamples + addedSkipped.map(\.sourceId)
        return part(addedCount + addedSkipped.count, "new", newIDs) + ", " + part(missingCount, "missing", missingExamples)
    }
}

/// The source ids of a job, held as 128-bit hashes in a sorted array (16 bytes per item, against
/// the ids' 50–200 bytes as strings), with a mark for each one a new listing has seen: what
/// `vtp run --update` compares a new listing with. Two different ids sharing all 128 bits
/// (about 1 in 10^20 for a billion items) would make a new item look done.
public struct JobSourceIds: Sendable {
    private struct Key: Comparable, Sendable {
        var high: UInt64
        var low: UInt64
        static func < (a: Key, b: Key) -> Bool { a.high != b.high ? a.high < b.high : a.low < b.low }
    }

    private var keys: [Key] = []
    private var seen: [UInt64] = []
    /// How many of the ids no listing has marked seen.
    public private(set) var unseenCount = 0

    /// Hashes `ids` (any order; the job's ids are unique).
    public init(_ ids: some Sequence<String>) {
        var keys: [Key] = []
        for id in ids { keys.append(Self.key(id)) }
        self.init(keys: keys)
    }

    private init(keys unsorted: [Key]) {
        keys = unsorted
        keys.sort()
        seen = [UInt64](repeating: 0, count: (keys.count + 63) / 64)
        unseenCount = keys.count
    }

    /// Reads the ids of every item of `job` from its shard manifests (one shard at a time) and its
    /// listing failures.
    public static func of(job: Int64, ledger: Ledger) async throws -> JobSourceIds {
        var keys: [Key] = []
        keys.reserveCapacity(Int(try await ledger.job(job).itemCount))
        try await ledger.forEachShardItems(job: job) { _, items in
            for item in items { keys.append(key(item.sourceId)) }
        }
        for failure in try await ledger.listingFailures(job: job) { keys.append(key(failure.sourceID)) }
        return JobSourceIds(keys: keys)
    }

    /// How many ids the job has.
    public var count: Int { keys.count }

    /// Whether the job has `id`.
    public func contains(_ id: String) -> Bool { index(of: Self.key(id)) != nil }

    /// Marks `id` seen; false when the job does not have it.
    public mutating func markSeen(_ id: String) -> Bool {
        guard let i = index(of: Self.key(id)) else { return false }
        let bit: UInt64 = 1 << UInt64(i % 64)
        if seen[i / 64] & bit == 0 {
            seen[i / 64] |= bit
            unseenCount -= 1
        }
        return true
    }

    /// Up to `limit` ids of `job` not marked seen, in the job's order; reads its shard manifests
    /// until it has them.
    public func firstUnseen(in job: Int64, ledger: Ledger, limit: Int = 3) async throws -> [String] {
        guard unseenCount > 0, limit > 0 else { return [] }
        var found: [String] = []
        func take(_ id: String) -> Bool {
            if let i = index(of: Self.key(id)), seen[i / 64] & (1 << UInt64(i % 64)) == 0 { found.append(id) }
            return found.count >= limit
        }
        struct Enough: Error {}
        do {
            try await ledger.forEachShardItems(job: job) { _, items in
                for item in items where take(item.sourceId) { throw Enough() }
            }
            for failure in try await ledger.listingFailures(job: job) where take(failure.sourceID) { break }
        } catch is Enough {}
        return found
    }

    private static func key(_ id: String) -> Key {
        let (low, high) = ListingDigest.hashes(id)
        return Key(high: high, low: low)
    }

    private func index(of key: Key) -> Int? {
        var lower = 0, upper = keys.count
        while lower < upper {
            let middle = (lower + upper) / 2
            if keys[middle] < key { lower = middle + 1 } else { upper = middle }
        }
        return lower < keys.count && keys[lower] == key ? lower : nil
    }
}
