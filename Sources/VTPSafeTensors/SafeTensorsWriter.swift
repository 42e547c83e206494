import Foundation
import SystemPackage
import VTPTensor

/// Builds a safetensors file in memory and writes it atomically.
///
/// The format forbids holes between tensors, so alignment comes from ordering instead: tensors
/// are laid out by element size, largest first (insertion order within a size), and the header
/// is padded with spaces to a multiple of 8 bytes, as the reference `safetensors` library does.
/// Every F32 tensor then starts 4-byte aligned and readers can borrow it without copying.
public struct SafeTensorsWriter: Sendable {
    private var entries: [(name: String, dtype: SafeTensorsDType, shape: [Int], data: Data)] = []
    /// String metadata stored under `__metadata__`.
    public var metadata: [String: String] = [:]

    public init() {}

    /// Adds raw little-endian bytes for a tensor; the byte count must match dtype and shape.
    public mutating func add(_ name: String, dtype: SafeTensorsDType, shape: [Int], bytes: Data) {
        precondition(bytes.count == shape.reduce(1, *) * dtype.byteSize, "tensor \(name): \(bytes.count) bytes do not match \(shape) \(dtype)")
        precondition(!entries.contains { $0.name == name }, "tensor \(name) added twice")
        entries.append((name, dtype, shape, bytes))
    }

    /// Adds a float32 tensor, stored as F32, F16 or BF16.
    public mutating func add(_ name: String, _ tensor: Tensor, as dtype: SafeTensorsDType = .f32) {
        add(name, shape: tensor.shape, values: tensor.buffer, as: dtype)
    }

    /// Adds float values with a shape, stored as F32, F16 or BF16.
    public mutating func add(_ name: String, shape: [Int], values: UnsafeBufferPointer<Float>, as dtype: SafeTensorsDType = .f32) {
        var data: Data
        switch dtype {
        case .f32:
            data = Data(buffer: values)
        case .f16:
            data = Data(count: values.count * 2)
            data.withUnsafeMutableBytes { out in
                for (i, v) in values.enumerated() { out.storeBytes(of: HalfPrecision.float16Bits(v), toByteOffset: i * 2, as: UInt16.self) }
            }
        case .bf16:
            data = Data(count: values.count * 2)
            data.withUnsafeMutableBytes { out in
                for (i, v) in values.enumerated() { out.storeBytes(of: HalfPrecision.bfloat16Bits(v), toByteOffset: i * 2, as: UInt16.self) }
            }
        default:
            preconditionFailure("float values cannot be stored as \(dtype)")
        }
        add(name, dtype: dtype, shape: shape, bytes: data)
    }

    /// Adds an int64 tensor.
    public mutating func add(_ name: String, shape: [Int], int64s: [Int64]) {
        add(name, dtype: .i64, shape: shape, bytes: int64s.withUnsafeBufferPointer { Data(buffer: $0) })
    }

    /// Adds a uint8 tensor.
    public mutating func add(_ name: String, shape: [Int], uint8s: [UInt8]) {
        add(name, dtype: .u8, shape: shape, bytes: Data(uint8s))
    }

    /// The complete file contents.
    public func serialized() throws -> Data {
        var header: [String: Any] = [:]
        var offset = 0
        var layout: [Data] = []
        let ordered = entries.enumerated().sorted {
            ($0.element.dtype.byteSize, -$0.offset) > ($1.element.dtype.byteSize, -$1.offset)
        }.map(\.element)
        for e in ordered {
            header[e.name] = ["dtype": e.dtype.rawValue, "shape": e.shape, "data_offsets": [offset, offset + e.data.count]] as [String: Any]
            layout.append(e.data)
            offset += e.data.count
        }
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var headerData = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        let padded = (headerData.count + 7) / 8 * 8
        headerData.append(contentsOf: [UInt8](repeating: 0x20, count: padded - headerData.count))
        var out = Data(capacity: 8 + headerData.count + offset)
        var length = UInt64(headerData.count).littleEndian
        withUnsafeBytes(of: &length) { out.append(contentsOf: $0) }
        out.append(headerData)
        for data in layout { out.append(data) }
        return out
    }

    /// Writes the file to a temporary name beside `path`, fsyncs it and renames it into place.
    public func write(to path: String) throws {
        let data = try serialized()
        do {
            try AtomicFile.write(data, to: path)
        } catch {
            throw SafeTensorsError.writeFailed(path: path, reason: "\(error)")
        }
    }
}

/// Crash-safe whole-file writes: temporary file, fsync, rename, fsync of the directory.
public enum AtomicFile {
    /// Writes `data` so that `path` holds either its old contents or all of `data`, never a mix.
    public static func write(_ data: Data, to path: String) throws {
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent().path
        let tmp = dir + "/." + url.lastPathComponent + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        func posix(_ error: any Error) -> POSIXError {
            POSIXError(.init(rawValue: (error as? Errno)?.rawValue ?? EIO) ?? .EIO)
        }
        let descriptor: FileDescriptor
        do {
            descriptor = try FileDescriptor.open(FilePath(tmp), .writeOnly, options: [.create, .truncate, .closeOnExec],
                                                 permissions: [.ownerReadWrite, .groupRead, .otherRead])
        } catch { throw posix(error) }
        var ok = false
        defer {
            if !ok { unlink(tmp) }
        }
        // swift-system retries interrupted and short writes; it has no fsync.
        do {
            try descriptor.closeAfter {
                _ = try data.withUnsafeBytes { try descriptor.writeAll($0) }
                guard fsync(descriptor.rawValue) == 0 else { throw Errno(rawValue: errno) }
            }
        } catch { throw posix(error) }
        guard rename(tmp, path) == 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        ok = true
        let dfd = open(dir.isEmpty ? "." : dir, O_RDONLY)
        if dfd >= 0 { fsync(dfd); close(dfd) }
    }
}
