import Foundation
import SystemPackage
import VTPTensor

#if canImport(Glibc)
import Glibc
#endif

/// Element types of the safetensors format.
public enum SafeTensorsDType: String, Sendable, CaseIterable {
    case f64 = "F64", f32 = "F32", f16 = "F16", bf16 = "BF16"
    case i64 = "I64", i32 = "I32", i16 = "I16", i8 = "I8"
    case u64 = "U64", u32 = "U32", u16 = "U16", u8 = "U8", bool = "BOOL"

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .f64, .i64, .u64: 8
        case .f32, .i32, .u32: 4
        case .f16, .bf16, .i16, .u16: 2
        case .i8, .u8, .bool: 1
        }
    }

    /// Whether the type holds floating-point values that can be widened to float32.
    public var isFloatingPoint: Bool { self == .f32 || self == .f16 || self == .bf16 || self == .f64 }
}

/// Everything that can go wrong reading or writing a safetensors file; each case names the file.
public enum SafeTensorsError: Error, CustomStringConvertible, Equatable {
    case cannotOpen(path: String, reason: String)
    case truncated(path: String, detail: String)
    case badHeader(path: String, detail: String)
    case missingTensor(path: String, name: String)
    case wrongDType(path: String, name: String, found: String, expected: String)
    case wrongShape(path: String, name: String, found: [Int], expected: [Int])
    case writeFailed(path: String, reason: String)

    public var description: String {
        switch self {
        case let .cannotOpen(path, reason): "\(path): cannot open safetensors file: \(reason)"
        case let .truncated(path, detail): "\(path): truncated safetensors file: \(detail)"
        case let .badHeader(path, detail): "\(path): bad safetensors header: \(detail)"
        case let .missingTensor(path, name): "\(path): tensor '\(name)' is missing"
        case let .wrongDType(path, name, found, expected):
            "\(path): tensor '\(name)' has dtype \(found), expected \(expected)"
        case let .wrongShape(path, name, found, expected):
            "\(path): tensor '\(name)' has shape \(found), expected \(expected)"
        case let .writeFailed(path, reason): "\(path): cannot write safetensors file: \(reason)"
        }
    }
}

/// Where one tensor lives in a safetensors file.
public struct SafeTensorInfo: Sendable, Equatable {
    public let name: String
    public let dtype: SafeTensorsDType
    public let shape: [Int]
    /// Byte offset of the first element from the start of the file.
    public let offset: Int
    public let byteCount: Int
    public var elementCount: Int { shape.reduce(1, *) }
}

/// A read-only, memory-mapped safetensors file.
///
/// `@unchecked Sendable`: the mapping is read-only and immutable for the object's lifetime and
/// unmapped only in `deinit`.
public final class SafeTensorsFile: @unchecked Sendable {
    /// The file's path, used in every error message.
    public let path: String
    /// The `__metadata__` string map.
    public let metadata: [String: String]
    /// Tensor descriptions by name.
    public let tensors: [String: SafeTensorInfo]
    /// Tensor names in file order.
    public let names: [String]

    private let base: UnsafeMutableRawPointer?
    private let mappedLength: Int

    /// Maps `path` and validates its header: every tensor's byte range must fit in the file,
    /// match its dtype and shape, and not overlap another.
    public init(path: String) throws {
        self.path = path
        let descriptor: FileDescriptor
        do { descriptor = try FileDescriptor.open(FilePath(path), .readOnly, options: [.closeOnExec]) } catch {
            throw SafeTensorsError.cannotOpen(path: path, reason: String(cString: strerror((error as? Errno)?.rawValue ?? EIO)))
        }
        defer { try? descriptor.close() }
        // fstat and mmap have no swift-system form; the mapping outlives the descriptor.
        let fd = descriptor.rawValue
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw SafeTensorsError.cannotOpen(path: path, reason: String(cString: strerror(errno))) }
        let size = Int(st.st_size)
        guard size >= 8 else { throw SafeTensorsError.truncated(path: path, detail: "\(size) bytes, need at least 8 for the header length") }
        guard let map = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), map != MAP_FAILED else {
            throw SafeTensorsError.cannotOpen(path: path, reason: "mmap failed: \(String(cString: strerror(errno)))")
        }
        base = map
        mappedLength = size
        do {
            (metadata, tensors, names) = try Self.parseHeader(UnsafeRawPointer(map), size: size, path: path)
        } catch {
            munmap(map, size)
            throw error
        }
    }

    deinit {
        if let base { munmap(base, mappedLength) }
    }

    private static func parseHeader(_ p: UnsafeRawPointer, size: Int, path: String) throws
        -> ([String: String], [String: SafeTensorInfo], [String])
    {
        // Checked as the unsigned value it is: a file that is not safetensors at all often has the high bit set.
        let storedLength = UInt64(littleEndian: p.loadUnaligned(as: UInt64.self))
        guard storedLength > 0, storedLength <= 100_000_000 else {
            throw SafeTensorsError.badHeader(path: path, detail: "header length \(storedLength) is not plausible")
        }
        let headerLength = Int(storedLength)
        guard 8 + headerLength <= size else {
            throw SafeTensorsError.truncated(path: path, detail: "header of \(headerLength) bytes but file has \(size)")
        }
        let headerData = Data(bytes: p + 8, count: headerLength)
        let json: Any
        do { json = try JSONSerialization.jsonObject(with: headerData) } catch {
            throw SafeTensorsError.badHeader(path: path, detail: "header is not JSON")
        }
        guard let dict = json as? [String: Any] else {
            throw SafeTensorsError.badHeader(path: path, detail: "header is not a JSON object")
        }
        let dataStart = 8 + headerLength
        var metadata: [String: String] = [:]
        var tensors: [String: SafeTensorInfo] = [:]
        var ordered: [(Int, String)] = []
        for (name, value) in dict {
            if name == "__metadata__" {
                guard let m = value as? [String: Any] else {
                    throw SafeTensorsError.badHeader(path: path, detail: "__metadata__ is not an object")
                }
                for (k, v) in m {
                    guard let s = v as? String else {
                        throw SafeTensorsError.badHeader(path: path, detail: "__metadata__['\(k)'] is not a string")
                    }
                    metadata[k] = s
                }
                continue
            }
            guard let entry = value as? [String: Any],
                  let dtypeName = entry["dtype"] as? String,
                  let shapeAny = entry["shape"] as? [Any],
                  let offsetsAny = entry["data_offsets"] as? [Any], offsetsAny.count == 2
            else {
                throw SafeTensorsError.badHeader(path: path, detail: "entry '\(name)' needs dtype, shape and two data_offsets")
            }
            guard let dtype = SafeTensorsDType(rawValue: dtypeName) else {
                throw SafeTensorsError.badHeader(path: path, detail: "tensor '\(name)' has unknown dtype \(dtypeName)")
            }
            let shape = try shapeAny.map { d -> Int in
                guard let n = nonNegativeInteger(d) else {
                    throw SafeTensorsError.badHeader(path: path, detail: "tensor '\(name)' has a bad shape")
                }
                return n
            }
            let offsets = try offsetsAny.map { d -> Int in
                guard let n = nonNegativeInteger(d) else {
                    throw SafeTensorsError.badHeader(path: path, detail: "tensor '\(name)' has bad data_offsets")
                }
                return n
            }
            // Like the reference library, a shape whose element or byte count overflows is an error. The
            // elements are multiplied in SafeTensorInfo.elementCount's order, so that product cannot trap later.
            var elements = 1
            var overflow = false
            for dimension in shape where !overflow { (elements, overflow) = elements.multipliedReportingOverflow(by: dimension) }
            let (expectedBytes, bytesOverflow) = elements.multipliedReportingOverflow(by: dtype.byteSize)
            guard !overflow, !bytesOverflow else {
                throw SafeTensorsError.badHeader(path: path, detail: "tensor '\(name)' has shape \(shape), too large for any file")
            }
            guard offsets[1] >= offsets[0], offsets[1] - offsets[0] == expectedBytes else {
                throw SafeTensorsError.badHeader(path: path,
                    detail: "tensor '\(name)' spans \(offsets[1] - offsets[0]) bytes, shape \(shape) of \(dtypeName) needs \(expectedBytes)")
            }
            guard offsets[1] <= size - dataStart else {
                throw SafeTensorsError.truncated(path: path,
                    detail: "tensor '\(name)' ends at data offset \(offsets[1]) but the file has \(size - dataStart) bytes of data")
            }
            tensors[name] = SafeTensorInfo(name: name, dtype: dtype, shape: shape,
                                           offset: dataStart + offsets[0], byteCount: expectedBytes)
            ordered.append((offsets[0], name))
        }
        // Like the reference library: tensors must tile the data section exactly, with no hole
        // and no overlap, and the file must end where the last tensor does.
        ordered.sort { $0.0 < $1.0 }
        var end = 0
        for (_, name) in ordered {
            let info = tensors[name]!
            let start = info.offset - dataStart
            guard start == end else {
                throw SafeTensorsError.badHeader(path: path,
                    detail: "tensor '\(name)' starts at data offset \(start), expected \(end) (holes and overlaps are not allowed)")
            }
            end = start + info.byteCount
        }
        guard dataStart + end == size else {
            throw SafeTensorsError.badHeader(path: path, detail: "\(size - dataStart - end) bytes after the last tensor")
        }
        return (metadata, tensors, ordered.map(\.1))
    }

    /// A JSON number that is a non-negative integer fitting an Int. Read from its text, not with
    /// `intValue`, which wraps 2^64 - 1 to -1 and truncates 1.5 to 1.
    private static func nonNegativeInteger(_ value: Any) -> Int? {
        guard let number = value as? NSNumber, let n = Int(number.stringValue), n >= 0 else { return nil }
        return n
    }

    /// The description of `name`, or an error naming the file and tensor.
    public func info(_ name: String) throws -> SafeTensorInfo {
        guard let info = tensors[name] else { throw SafeTensorsError.missingTensor(path: path, name: name) }
        return info
    }

    /// Raw bytes of a tensor, valid while this file object lives.
    public func rawBytes(_ name: String) throws -> UnsafeRawBufferPointer {
        let info = try info(name)
        return UnsafeRawBufferPointer(start: UnsafeRawPointer(base!) + info.offset, count: info.byteCount)
    }

    /// Drops the resident pages of a tensor's bytes (those wholly inside it) from memory, for data
    /// already copied elsewhere (packed weights). The mapping stays valid: a later read faults the
    /// pages back in from the file.
    public func releasePages(of name: String) {
        guard let info = tensors[name], let base else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (Int(bitPattern: base) + info.offset + page - 1) / page * page
        let end = (Int(bitPattern: base) + info.offset + info.byteCount) / page * page
        guard end > start, let pointer = UnsafeMutableRawPointer(bitPattern: start) else { return }
        _ = madvise(pointer, end - start, MADV_DONTNEED)
    }

    /// A float32 tensor with the stored values, widened from F16/BF16/F64 if needed.
    ///
    /// F32 data that is 4-byte aligned is borrowed from the mapping without a copy.
    public func tensor(_ name: String, expectedShape: [Int]? = nil) throws -> Tensor {
        let info = try info(name)
        if let expectedShape, expectedShape != info.shape {
            throw SafeTensorsError.wrongShape(path: path, name: name, found: info.shape, expected: expectedShape)
        }
        let src = UnsafeRawPointer(base!) + info.offset
        let n = info.elementCount
        switch info.dtype {
        case .f32:
            if Int(bitPattern: src) % 4 == 0 {
                let p = src.assumingMemoryBound(to: Float.self)
                return Tensor(shape: info.shape, storage: TensorStorage(borrowingReadOnly: p, count: n, owner: self))
            }
            let out = Tensor(uninitialized: info.shape)
            UnsafeMutableRawPointer(out.mutablePointer).copyMemory(from: src, byteCount: n * 4)
            return out
        case .f16:
            let out = Tensor(uninitialized: info.shape)
            HalfPrecision.widenFloat16(src, count: n, into: out.mutablePointer)
            return out
        case .bf16:
            let out = Tensor(uninitialized: info.shape)
            HalfPrecision.widenBFloat16(src, count: n, into: out.mutablePointer)
            return out
        case .f64:
            let out = Tensor(uninitialized: info.shape)
            for i in 0..<n { out.mutablePointer[i] = Float(src.loadUnaligned(fromByteOffset: i * 8, as: Double.self)) }
            return out
        default:
            throw SafeTensorsError.wrongDType(path: path, name: name, found: info.dtype.rawValue, expected: "F32, F16, BF16 or F64")
        }
    }

    /// Integer tensor values widened to Int64 (I64, I32, I16, I8, U8, U16, U32, BOOL).
    public func int64s(_ name: String) throws -> [Int64] {
        let info = try info(name)
        let src = UnsafeRawPointer(base!) + info.offset
        let n = info.elementCount
        switch info.dtype {
        case .i64: return (0..<n).map { src.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self) }
        case .i32: return (0..<n).map { Int64(src.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self)) }
        case .u32: return (0..<n).map { Int64(src.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self)) }
        case .i16: return (0..<n).map { Int64(src.loadUnaligned(fromByteOffset: $0 * 2, as: Int16.self)) }
        case .u16: return (0..<n).map { Int64(src.loadUnaligned(fromByteOffset: $0 * 2, as: UInt16.self)) }
        case .i8: return (0..<n).map { Int64(src.load(fromByteOffset: $0, as: Int8.self)) }
        case .u8, .bool: return (0..<n).map { Int64(src.load(fromByteOffset: $0, as: UInt8.self)) }
        default:
            throw SafeTensorsError.wrongDType(path: path, name: name, found: info.dtype.rawValue, expected: "an integer type")
        }
    }

    /// The bytes of a U8 tensor.
    public func uint8s(_ name: String) throws -> [UInt8] {
        let info = try info(name)
        guard info.dtype == .u8 else {
            throw SafeTensorsError.wrongDType(path: path, name: name, found: info.dtype.rawValue, expected: "U8")
        }
        return Array(try rawBytes(name))
    }
}
