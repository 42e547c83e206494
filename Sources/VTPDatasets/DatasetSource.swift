import Foundation
import VTPVocabulary

/// Lists any supported input as items in deterministic order, choosing the reader from what the
/// input is rather than from a flag.
public enum DatasetSource {
    /// The input layouts ``enumerate(input:)`` recognises.
    public enum Kind: String, Sendable, Equatable, Codable {
        /// `root/<class>/**/<image>`, labelled like torchvision's `ImageFolder`.
        case imageFolder = "image-folder"
        /// A folder with images directly inside (walked recursively), unlabelled.
        case plainFolder = "plain-folder"
        /// A `.jsonl`/`.ndjson` or `.csv` manifest.
        case manifest
        /// One WebDataset `.tar` shard.
        case webDatasetTar = "webdataset-tar"
        /// A folder of WebDataset `.tar` shards.
        case webDatasetDirectory = "webdataset-directory"
    }

    /// Decides what `input` is:
    /// - a file ending in `.jsonl`/`.ndjson`/`.csv` is a manifest, one ending in `.tar` a WebDataset shard;
    /// - a directory holding `.tar` files and no image files is a WebDataset shard folder;
    /// - a directory holding image files directly is a plain folder (images below subfolders included);
    /// - a directory holding only subdirectories is an ImageFolder tree (subdirectories are classes).
    public static func detect(input: String) throws(JobError) -> Kind {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: input, isDirectory: &isDir) else {
            throw .badInput(path: input, detail: "no such file or directory")
        }
        if !isDir.boolValue {
            let lower = input.lowercased()
            if lower.hasSuffix(".jsonl") || lower.hasSuffix(".ndjson") || lower.hasSuffix(".csv") { return .manifest }
            if lower.hasSuffix(".tar") { return .webDatasetTar }
            throw .badInput(path: input, detail: "not a directory, .jsonl/.ndjson/.csv manifest or .tar shard")
        }
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: input) } catch {
            throw .badInput(path: input, detail: "cannot list directory: \(FileErrorText.reason(error, at: input))")
        }
        var hasImages = false, hasTars = false, hasDirs = false
        for name in names {
            var sub: ObjCBool = false
            _ = FileManager.default.fileExists(atPath: input + "/" + name, isDirectory: &sub)
            if sub.boolValue { hasDirs = true; continue }
            if ImageExtensions.matches(name) { hasImages = true }
            if name.lowercased().hasSuffix(".tar") { hasTars = true }
        }
        if hasTars && !hasImages { return .webDatasetDirectory }
        if hasImages { return .plainFolder }
        if hasDirs { return .imageFolder }
        throw .badInput(path: input, detail: "directory holds no images, class folders or .tar shards")
    }

    /// Lists `input` (see ``detect(input:)``). Items carry `ordinal == index`, so shards cut from
    /// the listing are the same on every run over unchanged input. `classes` numbers a
    /// manifest's class-name labels (see ``ManifestReader``); other inputs number their own.
    public static func enumerate(input: String, classes: ClassList? = nil) throws(JobError) -> DatasetListing {
        try enumerate(input: input, as: detect(input: input), classes: classes)
    }

    /// Lists `input` with an explicitly chosen reader.
    public static func enumerate(input: String, as kind: Kind, classes: ClassList? = nil) throws(JobError) -> DatasetListing {
        do {
            switch kind {
            case .imageFolder: return try ImageFolderReader.listClasses(root: input)
            case .plainFolder: return try ImageFolderReader.listImages(root: input)
            case .manifest: return try ManifestReader.list(manifest: input, classes: classes)
            case .webDatasetTar: return try WebDatasetReader.list(shards: [input])
            case .webDatasetDirectory: return try WebDatasetReader.list(directory: input)
            }
        } catch let error as DatasetError {
            throw .badInput(path: input, detail: "\(kind.rawValue): \(error)")
        } catch {
            throw .badInput(path: input, detail: "\(kind.rawValue): \(error)")
        }
    }
}

extension DatasetSource {
    /// Lists `input` without holding its items (see ``DatasetScan``): a first pass counts, checks
    /// and fingerprints it (`eachSourceId` sees every item's and skipped sample's id, in order),
    /// and ``DatasetScan/items()`` reads it again. Blocking: call from a thread you own.
    public static func scan(input: String, as kind: Kind, classes: ClassList? = nil,
                            eachSourceId: (String) -> Void) throws(JobError) -> DatasetScan {
        do {
            switch kind {
            case .manifest: return DatasetScan(.manifest(try ManifestReader.scan(manifest: input, classes: classes, eachSourceId: eachSourceId)))
            case .imageFolder: return DatasetScan(.streamed(try ImageFolderReader.scanClasses(root: input, eachSourceId: eachSourceId)))
            case .plainFolder: return DatasetScan(.streamed(try ImageFolderReader.scanImages(root: input, eachSourceId: eachSourceId)))
            case .webDatasetTar:
                return DatasetScan(.streamed(try WebDatasetReader.scan(shards: [input], path: input, eachSourceId: eachSourceId)))
            case .webDatasetDirectory: return DatasetScan(.streamed(try WebDatasetReader.scan(directory: input, eachSourceId: eachSourceId)))
            }
        } catch {
            throw .badInput(path: input, detail: "\(kind.rawValue): \(error)")
        }
    }
}

/// An input counted and checked by ``DatasetSource/scan(input:as:classes:eachSourceId:)``, whose
/// items stay on disk until ``items()`` reads them again; any kind of input, in the memory of its
/// reader's cursor (one manifest block, one tar's member table, a folder walk's frontier).
public struct DatasetScan: Sendable {
    enum Storage: Sendable {
        case manifest(ManifestScan)
        case streamed(StreamedScan)
    }

    let storage: Storage

    init(_ storage: Storage) { self.storage = storage }

    /// How many items the input lists.
    public var itemCount: Int {
        switch storage {
        case let .manifest(scan): scan.itemCount
        case let .streamed(scan): scan.itemCount
        }
    }

    /// Samples the reader saw and could not list (a manifest refuses bad rows instead).
    public var skipped: [SkippedSample] {
        switch storage {
        case .manifest: []
        case let .streamed(scan): scan.skipped
        }
    }

    /// The class names labels index (`classes[label]`), empty when the input names none.
    public var classes: [String] {
        switch storage {
        case let .manifest(scan): scan.classes
        case let .streamed(scan): scan.classes
        }
    }

    /// How many items carry a caption with more than whitespace.
    public var captionedItems: Int {
        switch storage {
        case let .manifest(scan): scan.captionedItems
        case let .streamed(scan): scan.captionedItems
        }
    }

    /// The items in listing order (ordinals from 0), for one pass; its ``DatasetItems/check()``
    /// afterwards throws what ended the pass early (an input that changed on disk).
    public func items() -> DatasetItems {
        switch storage {
        case let .manifest(scan): DatasetItems(storage: .manifest(scan.items()))
        case let .streamed(scan): DatasetItems(storage: .streamed(scan.items()))
        }
    }

    /// All items in memory (tests, small inputs); throws what ended the pass early.
    public func collectItems() throws -> [JobItem] {
        switch storage {
        case let .manifest(scan): try scan.collectItems()
        case let .streamed(scan): try scan.collectItems()
        }
    }
}

/// One pass over a ``DatasetScan``'s items.
public struct DatasetItems: Sequence, Sendable {
    enum Storage: Sendable {
        case manifest(ManifestItems)
        case streamed(StreamedItems)
    }

    let storage: Storage

    /// Throws what ended the pass early, if anything did.
    public func check() throws {
        switch storage {
        case let .manifest(items): try items.check()
        case let .streamed(items): try items.check()
        }
    }

    public func makeIterator() -> Iterator {
        switch storage {
        case let .manifest(items): Iterator(manifest: items.makeIterator(), streamed: nil)
        case let .streamed(items): Iterator(manifest: nil, streamed: items.makeIterator())
        }
    }

    public struct Iterator: IteratorProtocol {
        var manifest: ManifestItems.Iterator?
        var streamed: StreamedItems.Iterator?

        public mutating func next() -> JobItem? {
            if manifest != nil { return manifest!.next() }
            return streamed?.next()
        }
    }
}
