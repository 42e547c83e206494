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
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: directory) } catch {
            throw DatasetError.cannotRead(path: directory, reason: FileErrorText.reason(error, at: directory))
        }
        let tars = CodePointOrder.sorted(names.filter { $0.lowercased().hasSuffix(".tar") })
        return try list(shards: tars.map { directory + "/" + $0 })
    }

    /// Lists the given shards in the given order.
    public static func list(shards: [String]) throws -> DatasetListing {
        var listing = DatasetListing(items: [])
        var seen: [String: String] = [:]
        for shard in shards {
            let archive = try TarArchive(path: shard)
            let tarName = (shard as NSString).lastPathComponent
            for sample in try samples(of: archive) {
                let id = tarName + "/" + sample.key
                if let other = seen[id] {
                    throw DatasetError.badSample(path: shard, member: sample.key,
                        detail: "sample id '\(id)' repeats one from \(other); keys must be unique and contiguous")
                }
                seen[id] = shard
                do {
                    guard var item = try makeItem(sample, archive: archive, id: id) else {
                        listing.skipped.append(SkippedSample(sourceId: id,
                            reason: "no image member (\(imageExtensions.map { "." + $0 }.joined(separator: " "))); has \(sample.parts.keys.sorted().joined(separator: ", "))"))
                        continue
                    }
                    item.ordinal = listing.items.count
                    listing.items.append(item)
                } catch let e as SampleProblem {
                    listing.skipped.append(SkippedSample(sourceId: id, reason: e.reason))
                }
            }
        }
        return listing
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
