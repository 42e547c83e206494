import Foundation
import VTPVocabulary

/// The files of one output shard, written under temporary names and made visible together.
///
/// Readers (LightningDiT's glob of `*.safetensors`, clip-retrieval's `img_emb/*.npy`) and the
/// finalizer treat a shard as present when its main file exists, so ``publish()`` renames the
/// partners (id sidecars, metadata, caption embeddings, logits) into place first and the main file
/// last. A rewrite replaces stale partners by rename, never leaving a gap in which an existing
/// main file lacks one. When anything fails (a full disk while staging, a rename refused), every
/// temporary file is deleted and partners already renamed are put back as they were, so nothing of
/// the failed write remains: a shard's files appear together or not at all.
///
/// Not thread-safe; one value serves one shard write.
public final class ShardFileSet {
    /// Directory the relative names resolve under (subdirectories must exist).
    public let directory: String
    private var partners: [(relative: String, file: AtomicOutputFile?)] = []
    private var main: AtomicOutputFile?

    public init(directory: String) {
        self.directory = directory
    }

    private func path(_ relative: String) -> String { directory + "/" + relative }

    private func add(_ file: AtomicOutputFile, relative: String, isMain: Bool) {
        if isMain {
            precondition(main == nil, "a shard has one main file")
            main = file
        } else {
            partners.append((relative, file))
        }
    }

    /// Stages a JSON Lines file (one key-sorted object per row).
    public func stageJSONL<Row: Encodable>(_ rows: [Row], as relative: String, isMain: Bool = false) throws {
        let target = path(relative)
        add(try AtomicWrite.stage(JSONLWriter.encode(rows, path: target), to: target), relative: relative, isMain: isMain)
    }

    /// Stages a `.npy` array of `values` with `shape`, stored as `element`.
    public func stageNpy(shape: [Int], values: UnsafeBufferPointer<Float>, element: NpyFile.Element, as relative: String,
                         isMain: Bool = false) throws {
        let target = path(relative)
        add(try AtomicWrite.stage(NpyFile.serialized(shape: shape, values: values, as: element), to: target),
            relative: relative, isMain: isMain)
    }

    /// Stages a safetensors file streamed from the caller's buffers.
    public func stageSafeTensors(_ tensors: [TensorPayload], metadata: [String: String], as relative: String,
                                 isMain: Bool = false) throws {
        let target = path(relative)
        add(try SafeTensorsStreamWriter.stage(tensors, metadata: metadata, to: target), relative: relative, isMain: isMain)
    }

    /// A partner this write no longer has (e.g. caption embeddings of a job without text): an
    /// earlier run's file by that name is removed when the others are published.
    public func removeOnPublish(_ relative: String) {
        partners.append((relative, nil))
    }

    /// Deletes every staged temporary file; nothing becomes visible. (Dropping the set does the same.)
    public func discard() {
        partners.removeAll()
        main = nil
    }

    /// Renames the partners into place, then the main file, and syncs the directories. On failure
    /// the partners already renamed are restored (or removed, if they did not exist before), every
    /// temporary is deleted and the error is rethrown.
    public func publish() throws {
        guard let main else { preconditionFailure("a shard needs a main file to publish") }
        defer { discard() }
        // Per published partner: its path and where its previous version was kept, if it had one.
        var done: [(path: String, previous: String?)] = []
        do {
            for (relative, file) in partners {
                let target = path(relative)
                let previous = try Self.keepPrevious(of: target)
                done.append((target, previous))
                if let file {
                    try file.publish()
                } else if previous == nil {
                    // Nothing to remove.
                } else if unlink(target) != 0 && errno != ENOENT {
                    throw StorageError.writeFailed(path: target, reason: "cannot remove the stale file: \(AtomicOutputFile.lastError())")
                }
            }
            try main.publish()
        } catch {
            for (target, previous) in done.reversed() {
                if let previous {
                    rename(previous, target)
                    // When both names are links to one file, rename does nothing and leaves this one.
                    unlink(previous)
                } else {
                    unlink(target)
                }
            }
            throw error
        }
        for (_, previous) in done { if let previous { unlink(previous) } }
        var synced: Set<String> = []
        for file in [main.path] + partners.compactMap({ $0.file?.path }) {
            let dir = (file as NSString).deletingLastPathComponent
            if synced.insert(dir).inserted { AtomicOutputFile.syncDirectory(of: file) }
        }
    }

    /// A second name for the current file at `target`, if there is one, so a failed publish can
    /// put it back: a hard link, which leaves `target` in place until the new file replaces it;
    /// where links are not supported, the file itself is moved aside.
    private static func keepPrevious(of target: String) throws -> String? {
        var st = stat()
        guard lstat(target, &st) == 0 else { return nil }
        let previous = TemporaryName.beside(target)
        if link(target, previous) == 0 { return previous }
        guard rename(target, previous) == 0 else {
            throw StorageError.writeFailed(path: target, reason: "cannot keep the previous version: \(AtomicOutputFile.lastError())")
        }
        return previous
    }
}
