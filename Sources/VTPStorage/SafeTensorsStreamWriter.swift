import Foundation
import VTPVocabulary
import VTPSafeTensors

/// One tensor to stream into a safetensors file, borrowing the caller's memory.
public struct TensorPayload {
    enum Source {
        case floats(UnsafeBufferPointer<Float>, OutputDType)
        case int64s(UnsafeBufferPointer<Int64>)
    }

    let name: String
    let shape: [Int]
    let source: Source

    /// Float32 values stored as `dtype`.
    public static func floats(_ name: String, shape: [Int], _ values: UnsafeBufferPointer<Float>, as dtype: OutputDType) -> TensorPayload {
        TensorPayload(name: name, shape: shape, source: .floats(values, dtype))
    }

    /// Int64 values.
    public static func int64s(_ name: String, shape: [Int], _ values: UnsafeBufferPointer<Int64>) -> TensorPayload {
        TensorPayload(name: name, shape: shape, source: .int64s(values))
    }

    var dtype: SafeTensorsDType {
        switch source {
        case let .floats(_, d): d.safeTensorsDType
        case .int64s: .i64
        }
    }

    var elementCount: Int {
        switch source {
        case let .floats(v, _): v.count
        case let .int64s(v): v.count
        }
    }

    var byteCount: Int { elementCount * dtype.byteSize }
}

/// Writes a safetensors file straight from borrowed buffers, converting dtypes in bounded chunks,
/// so a 10,000-image latent shard never needs a second full copy in memory.
///
/// The layout is the one `SafeTensorsWriter` produces (tensors contiguous with no holes, ordered
/// by element size, largest first, then insertion order; sorted-key JSON header padded with spaces
/// to 8 bytes), and the file appears atomically.
public enum SafeTensorsStreamWriter {
    /// Elements converted per chunk.
    static let chunkElements = 1 << 16

    /// Writes `tensors` with string `metadata` to `path`.
    public static func write(_ tensors: [TensorPayload], metadata: [String: String], to path: String) throws {
        let file = try stage(tensors, metadata: metadata, to: path)
        try file.publish()
        AtomicOutputFile.syncDirectory(of: path)
    }

    /// Writes and syncs the file under a temporary name beside `path`; publishing it is the caller's.
    static func stage(_ tensors: [TensorPayload], metadata: [String: String], to path: String) throws -> AtomicOutputFile {
        var header: [String: Any] = [:]
        var offset = 0
        var starts: [Int] = []
        var names = Set<String>()
        // The format allows no holes, so alignment comes from writing wider elements first.
        let tensors = tensors.enumerated().sorted {
            ($0.element.dtype.byteSize, -$0.offset) > ($1.element.dtype.byteSize, -$1.offset)
        }.map(\.element)
        for t in tensors {
            guard names.insert(t.name).inserted else { throw StorageError.badInput(path: path, detail: "tensor '\(t.name)' given twice") }
            guard t.shape.allSatisfy({ $0 >= 0 }), t.shape.reduce(1, *) == t.elementCount else {
                throw StorageError.badInput(path: path, detail: "tensor '\(t.name)' has \(t.elementCount) values but shape \(t.shape)")
            }
            let start = offset
            header[t.name] = ["dtype": t.dtype.rawValue, "shape": t.shape, "data_offsets": [start, start + t.byteCount]] as [String: Any]
            starts.append(start)
            offset = start + t.byteCount
        }
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var headerData = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        headerData.append(contentsOf: [UInt8](repeating: 0x20, count: (headerData.count + 7) / 8 * 8 - headerData.count))

        let file = try AtomicOutputFile(path: path)
        var length = UInt64(headerData.count).littleEndian
        try withUnsafeBytes(of: &length) { try file.write($0) }
        try file.write(headerData)
        var written = 0
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: chunkElements * 8, alignment: 16)
        defer { scratch.deallocate() }
        for (t, start) in zip(tensors, starts) {
            try file.writeZeros(start - written)
            switch t.source {
            case let .floats(values, dtype):
                var i = 0
                while i < values.count {
                    let n = min(chunkElements, values.count - i)
                    let out = UnsafeMutableRawBufferPointer(rebasing: scratch[0..<(n * dtype.byteSize)])
                    FloatNarrowing.convert(UnsafeBufferPointer(rebasing: values[i..<(i + n)]), to: dtype, into: out)
                    try file.write(UnsafeRawBufferPointer(out))
                    i += n
                }
            case let .int64s(values):
                // safetensors is little-endian, as is every platform this package builds for.
                try file.write(UnsafeRawBufferPointer(values))
            }
            written = start + t.byteCount
        }
        try file.finish()
        return file
    }
}
