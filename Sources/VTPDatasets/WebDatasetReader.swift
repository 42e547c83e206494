import Foundation
import VTPVocabulary

/// Lists WebDataset `.tar` shards (including img2dataset's output) as items whose image is a tar member.
///
/// As in `webdataset`, a member's key is its path up to the first dot of the basename and its
/// extension is the rest, lower-cased; consecutive members with the same key form one sample.
/// `.jpg/.jpeg/.png/.webp` is the image, `.cls` an integer label, `.txt` the caption and `.json`
/// metadata: the whole object becomes the item's ``JobItem/metadata`` (img2dataset's `url`,
/// `key`, `width`...), and its `caption` is used when no `.txt` exists.
/// The source id is `<tar file name>/<key>`, e.g. `00000.tar/000000000`.
public enum WebDatasetReader {
    /// Image extensions in preference order when a sample has more than one.
    public static let imageExtensions = ["jpg", "jpeg", "png", "webp"]
    /// Largest `.cls`/`.txt`/`.json` member read while listing.
    static let maxTextSize: Int64 = 1 << 20

    /// Lists every `*.tar` directly in `directory`, in code-point order of file name.
    public static func list(directory: String) throws -> DatasetListing {
        try scan(directory: directory) { _ in }.collect()
    }

    /// Lists the given shards in the given order.
    public static func list(shards: [String]) throws -> DatasetListing {
        try scan(shards: shards, path: shards.first ?? "") { _ in }.collect()
    }

    /// ``list(directory:)`` without holding the items: one pass reads every shard's member table
    /// (one shard at a time) to count and check the samples, and the scan's
    /// ``StreamedScan/items()`` reads them again.
    public static func scan(directory: String, eachSourceId: (String) -> Void) throws -> StreamedScan {
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: directory) } catch {
            throw DatasetError.cannotRead(path: directory, reason: FileErrorText.reason(error, at: directory))
        }
        let tars = CodePointOrder.sorted(names.filter { $0.lowercased().hasSuffix(".tar") })
        return try scan(shards: tars.map { directory + "/" + $0 }, path: directory, eachSourceId: eachSourceId)
    }

    /// ``list(shards:)`` without holding the items; `path` names the input in errors.
    public static func scan(shards: [String], path: String, eachSourceId: (String) -> Void) throws -> StreamedScan {
        // Sample ids are "<tar file name>/<key>", so two shards of one name could repeat ids; with
        // distinct names, repeated ids can only come from one shard, which is checked as it is read.
        var shardByName: [String: String] = [:]
        for shard in shards {
            let name = (shard as NSString).lastPathComponent
            if let other = shardByName[name] {
                throw DatasetError.duplicateShardName(path: shard, other: other)
            }
            shardByName[name] = shard
        }
        return try StreamedScan.scan(path: path, open: { ShardCursor(shards: shards) }, eachSourceId: eachSourceId)
    }

    /// Reads the shards one after another, holding one shard's member table.
    private struct ShardCursor: ListingCursor {
        let shards: [String]
        let classes: [String] = []
        private var shardIndex = 0
        private var archive: TarArchive?
        private var tarName = ""
        private var samples: [Sample] = []
        private var sampleIndex = 0

        init(shards: [String]) { self.shards = shards }

        mutating func next() throws -> ListingEntry? {
            while true {
                if let archive, sampleIndex < samples.count {
                    let sample = samples[sampleIndex]
                    sampleIndex += 1
                    let id = tarName + "/" + sample.key
                    do {
                        guard let item = try makeItem(sample, archive: archive, id: id) else {
                            return .skipped(SkippedSample(sourceId: id,
                                reason: "no image member (\(imageExtensions.map { "." + $0 }.joined(separator: " "))); has \(sample.parts.keys.sorted().joined(separator: ", "))"))
                        }
                        return .item(item)
                    } catch let e as SampleProblem {
                        return .skipped(SkippedSample(sourceId: id, reason: e.reason))
                    }
                }
                archive = nil
                samples = []
                sampleIndex = 0
                guard shardIndex < shards.count else { return nil }
                let shard = shards[shardIndex]
                shardIndex += 1
                let opened = try TarArchive(path: shard)
                samples = try WebDatasetReader.samples(of: opened)
                var keys = [String: Int](minimumCapacity: samples.count)
                for (k, sample) in samples.enumerated() {
                    if let first = keys[sample.key] {
                        throw DatasetError.badSample(path: shard, member: sample.key,
                            detail: "sample key '\(sample.key)' repeats sample \(first + 1) of the shard; keys must be unique and contiguous")
                    }
                    keys[sample.key] = k
                }
                tarName = (shard as NSString).lastPathComponent
                archive = opened
            }
        }
    }

    /// A group of consecutive members sharing a key.
    struct Sample {
        var key: String
        var parts: [String: TarMember]
    }

    private struct SampleProblem: Error { var reason: String }

    /// Splits a member path into (key, lower-cased extension), or nil when the basename has no dot.
    static func keyAndExtension(_ name: String) -> (key: String, ext: String)? {
        let slash = name.lastIndex(of: "/").map { name.index(after: $0) } ?? name.startIndex
        guard let dot = name[slash...].firstIndex(of: "."), dot > slash else { return nil }
        return (String(name[..<dot]), String(name[name.index(after: dot)...]).lowercased())
    }

    static func samples(of archive: TarArchive) throws -> [Sample] {
        var out: [Sample] = []
        for member in archive.members where member.kind == .regular {
            let base = (member.name as NSString).lastPathComponent
            // webdataset skips top-level "__...__" metadata members.
            if !member.name.contains("/") && base.hasPrefix("__") && base.hasSuffix("__") { continue }
            guard let (key, ext) = keyAndExtension(member.name) else { continue }
            if out.last?.key != key { out.append(Sample(key: key, parts: [:])) }
            guard out[out.count - 1].parts[ext] == nil else {
                throw DatasetError.badSample(path: archive.path, member: member.name,
                    detail: "sample '\(key)' has two '.\(ext)' members")
            }
            out[out.count - 1].parts[ext] = member
        }
        return out
    }

    private static func makeItem(_ sample: Sample, archive: TarArchive, id: String) throws -> JobItem? {
        guard let image = imageExtensions.lazy.compactMap({ sample.parts[$0] }).first else { return nil }
        func text(_ ext: String) throws -> String? {
            guard let m = sample.parts[ext] else { return nil }
            guard m.size <= maxTextSize else { throw SampleProblem(reason: ".\(ext) member is \(m.size) bytes, more than \(maxTextSize)") }
            guard let s = String(validating: try archive.read(m), as: UTF8.self) else {
                throw SampleProblem(reason: ".\(ext) member is not valid UTF-8")
            }
            return s
        }
        var label: Int?
        if let cls = try text("cls") {
            let trimmed = cls.trimmingCharacters(in: .whitespacesAndNewlines)
            guard let v = Int(trimmed) else { throw SampleProblem(reason: ".cls member '\(trimmed)' is not an integer") }
            label = v
        }
        var caption = try text("txt")
        var metadata: String?
        if let json = try text("json") {
            guard case let .object(fields)? = try? JSONValue(json: json) else {
                throw SampleProblem(reason: ".json member is not a JSON object")
            }
            if caption == nil, case let .string(c)? = fields["caption"] { caption = c }
            metadata = JSONValue.object(fields).jsonText
        }
        return JobItem(ordinal: 0, sourceId: id,
                           location: .tarMember(tarPath: archive.path, offset: image.dataOffset, size: image.size),
                           label: label, caption: caption, metadata: metadata)
    }
}
