import Foundation

/// An independent reader for the parts of ZIP and pickle that a PyTorch archive uses, written
/// from the format specifications so that the writer is checked against something other than itself.
public struct ZipEntry {
    public var name: String
    public var localHeaderOffset: Int
    public var dataOffset: Int
    public var data: [UInt8]
    public var crc: UInt32
}

public enum ZipReadError: Error { case bad(String) }

/// Little-endian reads from a byte array.
extension Array where Element == UInt8 {
    public func u16(_ at: Int) -> Int { Int(self[at]) | Int(self[at + 1]) << 8 }
    public func u32(_ at: Int) -> Int { u16(at) | u16(at + 2) << 16 }
}

/// Parses the end-of-central-directory record, walks the central directory and checks each local
/// header against it (name, sizes, CRC, stored method).
public func readZip(_ bytes: [UInt8]) throws -> [ZipEntry] {
    guard let eocd = stride(from: bytes.count - 22, through: max(0, bytes.count - 22 - 65535), by: -1)
        .first(where: { bytes.u32($0) == 0x0605_4B50 }) else { throw ZipReadError.bad("no end of central directory") }
    let count = bytes.u16(eocd + 10)
    let cdSize = bytes.u32(eocd + 12)
    var p = bytes.u32(eocd + 16)
    guard p + cdSize == eocd else { throw ZipReadError.bad("central directory does not end at the EOCD") }
    var entries: [ZipEntry] = []
    for _ in 0..<count {
        guard bytes.u32(p) == 0x0201_4B50 else { throw ZipReadError.bad("bad central header signature at \(p)") }
        let method = bytes.u16(p + 10)
        let crc = UInt32(bytes.u32(p + 16))
        let compressed = bytes.u32(p + 20), size = bytes.u32(p + 24)
        let nameLength = bytes.u16(p + 28), extra = bytes.u16(p + 30), comment = bytes.u16(p + 32)
        let local = bytes.u32(p + 42)
        let name = String(decoding: bytes[(p + 46)..<(p + 46 + nameLength)], as: UTF8.self)
        guard method == 0, compressed == size else { throw ZipReadError.bad("\(name) is not stored") }
        guard bytes.u32(local) == 0x0403_4B50 else { throw ZipReadError.bad("bad local header for \(name)") }
        let localName = String(decoding: bytes[(local + 30)..<(local + 30 + bytes.u16(local + 26))], as: UTF8.self)
        guard localName == name else { throw ZipReadError.bad("local name \(localName) != \(name)") }
        let dataOffset = local + 30 + bytes.u16(local + 26) + bytes.u16(local + 28)
        let data = Array(bytes[dataOffset..<(dataOffset + size)])
        guard crc32(data) == crc, UInt32(bytes.u32(local + 14)) == crc else { throw ZipReadError.bad("CRC mismatch for \(name)") }
        entries.append(ZipEntry(name: name, localHeaderOffset: local, dataOffset: dataOffset, data: data, crc: crc))
        p += 46 + nameLength + extra + comment
    }
    return entries
}

/// Bitwise CRC-32, deliberately not table-driven like the writer's.
public func crc32(_ bytes: [UInt8]) -> UInt32 {
    var c: UInt32 = 0xFFFF_FFFF
    for b in bytes {
        c ^= UInt32(b)
        for _ in 0..<8 { c = (c >> 1) ^ (0xEDB8_8320 & (0 &- (c & 1))) }
    }
    return ~c
}

/// What a `_rebuild_tensor_v2(...)` call in the pickle describes.
public struct PickledTensor: Equatable {
    public var storageType: String
    public var storageKey: String
    public var location: String
    public var numel: Int
    public var storageOffset: Int
    public var shape: [Int]
    public var stride: [Int]
    public var requiresGrad: Bool

    public init(storageType: String, storageKey: String, location: String, numel: Int, storageOffset: Int,
                shape: [Int], stride: [Int], requiresGrad: Bool) {
        (self.storageType, self.storageKey, self.location, self.numel) = (storageType, storageKey, location, numel)
        (self.storageOffset, self.shape, self.stride, self.requiresGrad) = (storageOffset, shape, stride, requiresGrad)
    }
}

/// A small pickle VM for the opcodes `torch.save` emits, which only lets the globals a
/// `weights_only=True` load would allow and fails on anything else.
public indirect enum PickleValue: Equatable {
    case int(Int), string(String), bool(Bool), tuple([PickleValue]), dict([String: PickleValue])
    case global(String), persistent([PickleValue]), orderedDict, tensor(PickledTensor), mark
}

public struct PickleVM {
    static let allowedGlobals: Set<String> = ["torch._utils._rebuild_tensor_v2", "torch.FloatStorage", "collections.OrderedDict"]

    public static func run(_ b: [UInt8]) throws -> (PickleValue, opcodes: [UInt8]) {
        var stack: [PickleValue] = []
        var memo: [Int: PickleValue] = [:]
        var opcodes: [UInt8] = []
        var i = 0
        func popMark() throws -> [PickleValue] {
            guard let m = stack.lastIndex(of: .mark) else { throw ZipReadError.bad("no MARK") }
            let items = Array(stack[(m + 1)...])
            stack.removeSubrange(m...)
            return items
        }
        func line() -> String {
            let end = b[i...].firstIndex(of: 0x0A)!
            defer { i = end + 1 }
            return String(decoding: b[i..<end], as: UTF8.self)
        }
        guard b.count >= 2, b[0] == 0x80, b[1] == 2 else { throw ZipReadError.bad("not pickle protocol 2") }
        i = 2
        while i < b.count {
            let op = b[i]; i += 1
            opcodes.append(op)
            switch op {
            case 0x7D: stack.append(.dict([:]))
            case 0x71: memo[Int(b[i])] = stack.last!; i += 1
            case 0x72: memo[b.u32(i)] = stack.last!; i += 4
            case 0x68: guard let v = memo[Int(b[i])] else { throw ZipReadError.bad("BINGET of unset memo \(b[i])") }; stack.append(v); i += 1
            case 0x6A: guard let v = memo[b.u32(i)] else { throw ZipReadError.bad("LONG_BINGET of unset memo") }; stack.append(v); i += 4
            case 0x28: stack.append(.mark)
            case 0x58:
                let n = b.u32(i)
                stack.append(.string(String(decoding: b[(i + 4)..<(i + 4 + n)], as: UTF8.self))); i += 4 + n
            case 0x63:
                let module = line(), name = line()
                let full = module + "." + name
                guard allowedGlobals.contains(full) else { throw ZipReadError.bad("global \(full) not allowed") }
                stack.append(.global(full))
            case 0x74: stack.append(.tuple(try popMark()))
            case 0x29: stack.append(.tuple([]))
            case 0x85, 0x86, 0x87:
                let n = Int(op - 0x84)
                let items = Array(stack.suffix(n)); stack.removeLast(n); stack.append(.tuple(items))
            case 0x4B: stack.append(.int(Int(b[i]))); i += 1
            case 0x4D: stack.append(.int(b.u16(i))); i += 2
            case 0x4A: stack.append(.int(Int(Int32(bitPattern: UInt32(b.u32(i)))))); i += 4
            case 0x51:
                guard case let .tuple(items) = stack.removeLast() else { throw ZipReadError.bad("BINPERSID needs a tuple") }
                stack.append(.persistent(items))
            case 0x88: stack.append(.bool(true))
            case 0x89: stack.append(.bool(false))
            case 0x52:
                guard case let .tuple(args) = stack.removeLast(), case let .global(fn) = stack.removeLast() else {
                    throw ZipReadError.bad("REDUCE needs a global and a tuple")
                }
                switch fn {
                case "collections.OrderedDict":
                    guard args.isEmpty else { throw ZipReadError.bad("OrderedDict with arguments") }
                    stack.append(.orderedDict)
                case "torch._utils._rebuild_tensor_v2":
                    guard args.count == 6, case let .persistent(pid) = args[0], pid.count == 5,
                          case .string("storage") = pid[0], case let .global(type) = pid[1], case let .string(key) = pid[2],
                          case let .string(location) = pid[3], case let .int(numel) = pid[4],
                          case let .int(offset) = args[1], case let .tuple(shape) = args[2], case let .tuple(stride) = args[3],
                          case let .bool(grad) = args[4], args[5] == .orderedDict else {
                        throw ZipReadError.bad("unexpected _rebuild_tensor_v2 arguments \(args)")
                    }
                    func ints(_ v: [PickleValue]) -> [Int] { v.map { if case let .int(x) = $0 { x } else { -1 } } }
                    stack.append(.tensor(PickledTensor(storageType: type, storageKey: key, location: location, numel: numel,
                                                       storageOffset: offset, shape: ints(shape), stride: ints(stride), requiresGrad: grad)))
                default: throw ZipReadError.bad("cannot call \(fn)")
                }
            case 0x73, 0x75:
                let items = op == 0x75 ? try popMark() : Array(stack.suffix(2))
                if op == 0x73 { stack.removeLast(2) }
                guard case var .dict(d) = stack.removeLast() else { throw ZipReadError.bad("SETITEMS without a dict") }
                for k in stride(from: 0, to: items.count, by: 2) {
                    guard case let .string(key) = items[k] else { throw ZipReadError.bad("non-string key") }
                    d[key] = items[k + 1]
                }
                stack.append(.dict(d))
            case 0x2E:
                guard i == b.count, stack.count == 1 else { throw ZipReadError.bad("STOP with \(stack.count) values or trailing bytes") }
                return (stack[0], opcodes)
            default:
                throw ZipReadError.bad(String(format: "unexpected opcode 0x%02x at %d", op, i - 1))
            }
        }
        throw ZipReadError.bad("no STOP")
    }
}
