import Foundation
import VTPVocabulary

/// Writes a dict of named float32 tensors in PyTorch's zip serialization, loadable by
/// `torch.load` (also with `weights_only=True`, since it only references `_rebuild_tensor_v2`,
/// `FloatStorage` and `OrderedDict`).
///
/// The archive holds, under a top-level folder named after the file (as `torch.save` does):
/// `data.pkl`, `.format_version`, `.storage_alignment`, `byteorder`, `data/<i>` (raw little-endian
/// float32 of tensor i, 64-byte aligned), `version` and `.data/serialization_id`.
public struct TorchZipWriter: Sendable {
    private var tensors: [(name: String, shape: [Int], values: [Float])] = []

    public init() {}

    /// Adds a contiguous float32 tensor; `values.count` must equal the product of `shape`.
    public mutating func add(_ name: String, shape: [Int], values: [Float]) {
        precondition(values.count == shape.reduce(1, *), "tensor \(name): \(values.count) values do not fill \(shape)")
        precondition(!tensors.contains { $0.name == name }, "tensor \(name) added twice")
        tensors.append((name, shape, values))
    }

    /// The archive bytes; `archiveName` is the top-level folder inside the zip.
    public func serialized(archiveName: String = "archive") -> Data {
        let entries = tensors.enumerated().map {
            TorchPicklePlan.Entry(key: $0.element.name, shape: $0.element.shape, storageKey: String($0.offset))
        }
        let pickle = TorchPicklePlan.pickle(entries)
        var zip = StoredZipWriter()
        let prefix = archiveName + "/"
        zip.add(name: prefix + "data.pkl", data: pickle)
        zip.add(name: prefix + ".format_version", data: Data("1".utf8))
        zip.add(name: prefix + ".storage_alignment", data: Data("64".utf8))
        zip.add(name: prefix + "byteorder", data: Data("little".utf8))
        var contentCRC = CRC32.checksum(pickle)
        for (i, t) in tensors.enumerated() {
            let bytes = t.values.withUnsafeBytes { Data($0) }
            contentCRC ^= CRC32.checksum(bytes) &* UInt32(i + 3)
            zip.add(name: prefix + "data/\(i)", data: bytes)
        }
        zip.add(name: prefix + "version", data: Data("3\n".utf8))
        // torch writes a 40-digit id; deriving it from the content keeps re-runs byte-identical.
        let id = ShardNaming.pad(Int(contentCRC), 40)
        zip.add(name: prefix + ".data/serialization_id", data: Data(id.utf8))
        return zip.finished()
    }

    /// Writes the archive atomically; the zip folder is the file name without its extension.
    public func write(to path: String) throws {
        let base = (path as NSString).lastPathComponent
        let stem = (base as NSString).deletingPathExtension
        try AtomicWrite.write(serialized(archiveName: stem.isEmpty ? "archive" : stem), to: path)
    }
}
