import Foundation

/// Where an item's encoded image bytes live.
public enum ItemLocation: Sendable, Hashable, Codable {
    /// A standalone image file (absolute or caller-relative path).
    case file(path: String)
    /// One member of a tar archive: `size` bytes starting at byte `offset` of the tar file, so a
    /// worker can read it with a single positioned read and no re-scan of the archive.
    case tarMember(tarPath: String, offset: Int64, size: Int64)
}

/// One input sample of a job, the same record from the dataset listing through the ledger and
/// the wire to the worker and the writers, so nothing a reader found is lost on the way.
public struct JobItem: Sendable, Hashable, Codable {
    /// Position in the job's full listing (0-based, job-wide, not within a shard); a re-run over
    /// the same input yields the same ordinal.
    public var ordinal: Int
    /// Stable identifier written to every output sidecar: the path relative to the dataset root,
    /// the manifest's `id` column, or `tarname/key` for WebDataset samples.
    public var sourceId: String
    /// Where to read the encoded image.
    public var location: ItemLocation
    /// Integer class label, if the source has one.
    public var label: Int?
    /// Caption text, if the source has one.
    public var caption: String?
    /// The sample's other metadata as a JSON object text (a WebDataset `.json` member, a
    /// manifest's extra columns), carried verbatim into the output sidecars; nil when none.
    public var metadata: String?

    public init(ordinal: Int, sourceId: String, location: ItemLocation, label: Int? = nil,
                caption: String? = nil, metadata: String? = nil) {
        self.ordinal = ordinal
        self.sourceId = sourceId
        self.location = location
        self.label = label
        self.caption = caption
        self.metadata = metadata
    }

    /// ``metadata`` parsed as an object (empty when absent or not an object).
    public var metadataFields: [String: JSONValue] {
        guard let metadata, case let .object(fields)? = try? JSONValue(json: metadata) else { return [:] }
        return fields
    }
}

/// A sample that a reader saw but could not turn into an item (e.g. a WebDataset key with no
/// image member); recorded so a run's manifest and the ledger list it as a failure instead of
/// losing it silently.
public struct SkippedSample: Sendable, Hashable, Codable {
    /// The id the sample would have had.
    public var sourceId: String
    /// Why it was skipped.
    public var reason: String

    public init(sourceId: String, reason: String) {
        self.sourceId = sourceId
        self.reason = reason
    }
}

/// The result of listing a dataset: items in deterministic order plus what was skipped.
public struct DatasetListing: Sendable {
    /// Items; `items[i].ordinal == i`.
    public var items: [JobItem]
    /// Class names by label for ImageFolder trees (`classes[label]`), empty otherwise.
    public var classes: [String]
    /// Samples seen but not listed.
    public var skipped: [SkippedSample]

    public init(items: [JobItem], classes: [String] = [], skipped: [SkippedSample] = []) {
        self.items = items
        self.classes = classes
        self.skipped = skipped
    }
}
