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

    /// Lists `input` with an explicitly chosen reader, into memory.
    public static func enumerate(input: String, as kind: Kind, classes: ClassList? = nil) throws(JobError) -> DatasetListing {
        let scan = try scan(input: input, as: kind, classes: classes) { _ in }
        do { return try scan.collect() } catch {
            throw .badInput(path: input, detail: "\(kind.rawValue): \(error)")
        }
    }
}

extension DatasetSource {
    /// Lists `input` without holding its items (``StreamedScan``): a first pass counts, checks
    /// and fingerprints it (`eachSourceId` sees every item's and skipped sample's id, in order),
    /// and ``StreamedScan/items()`` reads it again, in the memory of the reader's cursor (one
    /// manifest block, one tar's member table, a folder walk's frontier). Blocking: call from a
    /// thread you own.
    public static func scan(input: String, as kind: Kind, classes: ClassList? = nil,
                            eachSourceId: (String) -> Void) throws(JobError) -> StreamedScan {
        do {
            switch kind {
            case .manifest: return try ManifestReader.scan(manifest: input, classes: classes, eachSourceId: eachSourceId)
            case .imageFolder: return try ImageFolderReader.scanClasses(root: input, eachSourceId: eachSourceId)
            case .plainFolder: return try ImageFolderReader.scanImages(root: input, eachSourceId: eachSourceId)
            case .webDatasetTar: return try WebDatasetReader.scan(shards: [input], path: input, eachSourceId: eachSourceId)
            case .webDatasetDirectory: return try WebDatasetReader.scan(directory: input, eachSourceId: eachSourceId)
            }
        } catch {
            throw .badInput(path: input, detail: "\(kind.rawValue): \(error)")
        }
    }
}
