import Foundation
import VTPDatasets
import VTPQueue
import VTPVocabulary

/// A job as the user asked for it (`vtp run` / `vtp submit`): what to run over which input into
/// which output. Turns into the ledger's `JobSpec` and items, and recognises an earlier submission
/// of the same job so `vtp run` resumes instead of starting over.
public struct JobRequest: Sendable, Equatable {
    public var parameters: JobParameters
    /// Absolute paths: workers on other machines resolve them on shared storage.
    public var input: String
    public var output: String
    public var model: String
    public var shardSize: Int
    public var priority: Int32
    public var maxAttempts: Int32
    /// The classes a manifest's class-name labels map to (`--classes`); nil numbers them in
    /// sorted order (see ``ManifestReader``).
    public var labelClasses: ClassList?

    /// Paths are made absolute against the current directory.
    public init(parameters: JobParameters, input: String, output: String, model: String, shardSize: Int,
                priority: Int32 = 0, maxAttempts: Int32 = 3, labelClasses: ClassList? = nil) {
        self.parameters = parameters
        self.input = Self.absolute(input)
        self.output = Self.absolute(output)
        self.model = Self.absolute(model)
        self.shardSize = shardSize
        self.priority = priority
        self.maxAttempts = maxAttempts
        self.labelClasses = labelClasses
    }

    /// The ledger's description of the job.
    public var spec: JobSpec { spec(labelClasses: parameters.labelClasses) }

    /// The ledger's description of the job with the class names its listing found
    /// (``list(maxItems:)``), which travel in the parameters to the finalizer's manifest.
    public func spec(labelClasses: [String]) -> JobSpec {
        var parameters = parameters
        parameters.labelClasses = labelClasses
        return JobSpec(type: parameters.jobType.rawValue, parametersJSON: parameters.json(), model: model, inputLocation: input,
                       outputLocation: output, priority: priority, maxAttempts: maxAttempts, shardSize: shardSize)
    }

    /// Lists the input (blocking: call from a thread you own) as ledger items held in memory.
    /// Samples the reader skipped come back separately so they can be reported; `classes` names
    /// the labels (`classes[label]`), empty when the input names none.
    public func listItems(maxItems: Int = .max) throws -> (items: [JobItem], skipped: [SkippedSample], classes: [String]) {
        let listing = try list(maxItems: maxItems)
        return (try listing.collect(), listing.skipped, listing.classes)
    }

    /// Lists the input (blocking: call from a thread you own) for enqueueing. The input is read
    /// through once here, checked and fingerprinted, and stays on disk: ``JobListing/items()``
    /// reads it again as the ledger cuts it into shards, so its size is not bounded by memory.
    public func list(maxItems: Int = .max) throws -> JobListing {
        var digest = ListingDigest()
        let scan: StreamedScan
        if case let .linearProbe(probe) = parameters {
            // A linear probe's items are the heads of its sweep; the input is read by the workers.
            let heads = probe.heads.map { JobItem(ordinal: 0, sourceId: $0.key, location: .file(path: input)) }
            scan = StreamedScan.listed(path: input, items: heads) { digest.add($0) }
        } else {
            let kind = try DatasetSource.detect(input: input)
            scan = try DatasetSource.scan(input: input, as: kind, classes: labelClasses) { digest.add($0) }
        }
        let listing = JobListing(scan: scan, digest: digest.value)
        guard listing.itemCount > 0 else { throw JobError.badInput(path: input, detail: "no images found") }
        guard listing.itemCount <= maxItems else {
            throw JobError.badInput(path: input, detail: "\(listing.itemCount) items exceed the limit of \(maxItems) per job")
        }
        if needsCaptions, listing.captionedItems == 0 {
            throw Self.nothingToScore("none of the \(listing.itemCount) items of \(input) has a caption")
        }
        return listing
    }

    /// A clip-score job without classes scores only captions: without any it would write rows of ids only.
    var needsCaptions: Bool {
        if case let .clipScore(parameters) = parameters, parameters.classes == nil { return true }
        return false
    }

    /// Refuses, before anything is started or listed, a job that cannot produce anything from
    /// this kind of input: a clip-score job without classes over image folders (which carry no
    /// captions). Inputs that may carry captions are checked when listed (``list(maxItems:)``).
    public func checkBeforeListing() throws(JobError) {
        guard needsCaptions else { return }
        let kind = try DatasetSource.detect(input: input)
        if kind == .imageFolder || kind == .plainFolder {
            throw Self.nothingToScore("\(input) is an image folder (\(kind.rawValue)), which carries no captions")
        }
    }

    private static func nothingToScore(_ why: String) -> JobError {
        .invalidParameter(field: "classes", detail: """
            clip-score has nothing to score: no classes were given (pass --classes imagenet or a file of class names) \
            and \(why) (captions come from a .jsonl/.csv manifest's caption column or WebDataset .txt members)
            """)
    }

    /// Whether `job` is this request submitted earlier: same kind, parameters (compared decoded,
    /// since the ledger normalises the JSON), input, output and model. The class names are left
    /// out: the stored ones come from the listing, which the request has not made yet.
    public func matches(_ job: JobRecord) -> Bool {
        guard job.type == parameters.jobType.rawValue, job.inputLocation == input, job.outputLocation == output,
              job.model == model,
              var stored = try? JobParameters.decode(jobType: parameters.jobType, json: job.parametersJSON) else { return false }
        var asked = parameters
        stored.labelClasses = []
        asked.labelClasses = []
        return stored == asked
    }

    /// The newest job in `ledger` matching this request (finished or not), if any; a job whose
    /// enqueue never finished (``JobState/listing``) does not count.
    public func existingJob(in ledger: Ledger) async throws -> JobRecord? {
        try await ledger.listJobs(limit: 1000).first { matches($0) && $0.state != .cancelled && $0.state != .listing }
    }

    private static func absolute(_ path: String) -> String {
        URL(fileURLWithPath: path).standardizedFileURL.path
    }
}

/// A job's input as listed for enqueueing: its size, class names, skipped samples and fingerprint,
/// and its items, which are read again from disk (``JobRequest/list(maxItems:)``).
public struct JobListing: Sendable {
    private let scan: StreamedScan
    /// How many items the input lists.
    public var itemCount: Int { scan.itemCount }
    /// Samples the reader saw but could not list.
    public var skipped: [SkippedSample] { scan.skipped }
    /// The class names labels index (`classes[label]`), empty when the input names none.
    public var classes: [String] { scan.classes }
    /// How many items carry a caption with more than whitespace.
    public var captionedItems: Int { scan.captionedItems }
    /// The listing's fingerprint (``ListingDigest``), items and skipped samples alike.
    public let digest: String

    init(scan: StreamedScan, digest: String) {
        self.scan = scan
        self.digest = digest
    }

    /// The items in listing order, for one pass; its ``StreamedItems/check()`` afterwards throws
    /// what ended the pass early (an input that changed on disk).
    public func items() -> StreamedItems { scan.items() }

    /// All items in memory (tests).
    public func collect() throws -> [JobItem] { try scan.collectItems() }
}

extension Ledger {
    /// Enqueues a job over `listing` (``enqueue(_:listing:end:)``), reading a manifest's items as
    /// the shards are cut; a manifest that changed since it was listed fails the enqueue and leaves
    /// no job behind.
    public func enqueue(_ spec: JobSpec, listing: JobListing) async throws -> Int64 {
        let items = listing.items()
        let skipped = listing.skipped, digest = listing.digest
        return try await enqueue(spec, listing: items) {
            try items.check()
            return ListingEnd(skipped: skipped, listingDigest: digest)
        }
    }
}
