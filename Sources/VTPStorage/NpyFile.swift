import Foundation
import VTPVocabulary
import VTPTensor

/// NumPy `.npy` files (format 1.0 written; 1.0, 2.0 and 3.0 read) of little-endian float16 or
/// float32 in C order: what clip-retrieval's `img_emb/img_emb_{i}.npy` holds and `np.load` reads.
public enum NpyFile {
    /// Element types this module writes and reads.
    public enum Element: String, Sendable, CaseIterable {
        case float16 = "<f2"
        case float32 = "<f4"

        var byteSize: Int { self == .float16 ? 2 : 4 }
        var outputDType: OutputDType { self == .float16 ? .float16 : .float32 }
    }

    /// A loaded array, widened to float32.
    public struct Array: Sendable, Equatable {
        /// Array shape (C order).
        public var shape: [Int]
        /// Element type the file stored.
        public var element: Element
        /// Values widened to float32.
        public var values: [Float]
    }

    static let magic: [UInt8] = [0x93] + Swift.Array("NUMPY".utf8)

    /// The header dict exactly as `numpy.lib.format` writes it: `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`,
    /// space-padded and newline-terminated so the data starts on a 64-byte boundary.
    static func header(shape: [Int], element: Element) -> Data {
        let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        var dict = "{'descr': '\(element.rawValue)', 'fortran_order': False, 'shape': \(shapeText), }"
        let unpadded = magic.count + 2 + 2 + dict.utf8.count + 1
        dict += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        var out = Data(magic)
        out.append(contentsOf: [1, 0])
        out.le16(UInt16(dict.utf8.count))
        out.append(Data(dict.utf8))
        return out
    }

    /// The whole file for `values` of `shape`, stored as `element`.
    public static func serialized(shape: [Int], values: UnsafeBufferPointer<Float>, as element: Element = .float32) -> Data {
        precondition(values.count == shape.reduce(1, *), "\(values.count) values do not fill \(shape)")
        var out = header(shape: shape, element: element)
        let start = out.count
        out.count += values.count * element.byteSize
        out.withUnsafeMutableBytes { raw in
            FloatNarrowing.convert(values, to: element.outputDType, into: UnsafeMutableRawBufferPointer(rebasing: raw[start...]))
        }
        return out
    }

    /// Writes `values` of `shape` atomically to `path`.
    public static func write(shape: [Int], values: UnsafeBufferPointer<Float>, as element: Element = .float32, to path: String) throws {
        try AtomicWrite.write(serialized(shape: shape, values: values, as: element), to: path)
    }

    /// Reads a `.npy` file of `<f2` or `<f4` in C order.
    public static func read(_ path: String) throws -> Array {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw StorageError.readFailed(path: path, reason: "cannot open file")
        }
        return try parse([UInt8](data), path: path)
    }

    /// Where a `.npy` file's data lies and what it holds: read from the header alone, so a caller can
    /// map the file and widen rows in place instead of loading it whole.
    public struct Layout: Sendable, Equatable {
        /// Array shape (C order).
        public var shape: [Int]
        /// Element type of the stored values.
        public var element: Element
        /// Byte offset of the first value.
        public var dataOffset: Int
        /// Bytes per stored value.
        public var elementSize: Int { element.byteSize }
    }

    /// Parses the header of `.npy` bytes (at least the header; `fileSize` is the whole file's length) and
    /// checks that the data after it is exactly what the shape needs. `path` only names the source in errors.
    public static func layout(_ raw: UnsafeRawBufferPointer, fileSize: Int, path: String) throws -> Layout {
        func bad(_ detail: String) -> StorageError { .badFormat(path: path, detail: detail) }
        guard raw.count >= 10, Swift.Array(raw[0..<6]) == magic else { throw bad("not a .npy file (magic missing)") }
        let major = raw[6]
        let headerLength: Int
        let headerStart: Int
        switch major {
        case 1:
            headerLength = Int(raw[8]) | Int(raw[9]) << 8
            headerStart = 10
        case 2, 3:
            guard raw.count >= 12 else { throw bad("truncated header length") }
            headerLength = Int(raw[8]) | Int(raw[9]) << 8 | Int(raw[10]) << 16 | Int(raw[11]) << 24
            headerStart = 12
        default:
            throw bad("unsupported format version \(major).\(raw[7])")
        }
        guard headerStart + headerLength <= raw.count, headerStart + headerLength <= fileSize else {
            throw bad("header runs past the end of the file")
        }
        let text = String(decoding: raw[headerStart..<(headerStart + headerLength)], as: UTF8.self)
        let dict = try NpyHeaderParser.parse(text, path: path)
        guard let element = Element(rawValue: dict.descr) else { throw bad("dtype '\(dict.descr)' is not '<f2' or '<f4'") }
        guard !dict.fortranOrder else { throw bad("Fortran-order arrays are not supported") }
        let count = dict.shape.reduce(1, *)
        let dataStart = headerStart + headerLength
        guard fileSize - dataStart == count * element.byteSize else {
            throw bad("shape \(dict.shape) of \(element.rawValue) needs \(count * element.byteSize) data bytes, file has \(fileSize - dataStart)")
        }
        return Layout(shape: dict.shape, element: element, dataOffset: dataStart)
    }

    /// Parses `.npy` bytes; `path` only names the source in errors.
    public static func parse(_ bytes: [UInt8], path: String) throws -> Array {
        let layout = try bytes.withUnsafeBytes { try Self.layout($0, fileSize: bytes.count, path: path) }
        let element = layout.element
        let count = layout.shape.reduce(1, *)
        let dataStart = layout.dataOffset
        var values = [Float](repeating: 0, count: count)
        bytes.withUnsafeBytes { raw in
            values.withUnsafeMutableBufferPointer { out in
                let src = raw.baseAddress! + dataStart
                switch element {
                case .float32: UnsafeMutableRawPointer(out.baseAddress!).copyMemory(from: src, byteCount: count * 4)
                case .float16: HalfPrecision.widenFloat16(src, count: count, into: out.baseAddress!)
                }
            }
        }
        return Array(shape: layout.shape, element: element, values: values)
    }
}

/// Parses the Python-literal header dict of a `.npy` file (only the three keys numpy writes).
enum NpyHeaderParser {
    struct Header { var descr: String; var fortranOrder: Bool; var shape: [Int] }

    static func parse(_ text: String, path: String) throws -> Header {
        func bad(_ detail: String) -> StorageError { .badFormat(path: path, detail: "header \(detail): \(text.trimmingCharacters(in: .whitespacesAndNewlines))") }
        func value(of key: String) throws -> Substring {
            guard let k = text.range(of: "'\(key)'") else { throw bad("has no '\(key)'") }
            var rest = text[k.upperBound...].drop { $0 == " " }
            guard rest.first == ":" else { throw bad("has no ':' after '\(key)'") }
            rest = rest.dropFirst().drop { $0 == " " }
            return rest
        }
        let descrRest = try value(of: "descr")
        guard let q = descrRest.first, q == "'" || q == "\"", let end = descrRest.dropFirst().firstIndex(of: q) else {
            throw bad("'descr' is not a string")
        }
        let descr = String(descrRest[descrRest.index(after: descrRest.startIndex)..<end])
        let fortranRest = try value(of: "fortran_order")
        let fortran: Bool
        if fortranRest.hasPrefix("False") { fortran = false } else if fortranRest.hasPrefix("True") { fortran = true } else {
            throw bad("'fortran_order' is not True or False")
        }
        let shapeRest = try value(of: "shape")
        guard shapeRest.first == "(", let close = shapeRest.firstIndex(of: ")") else { throw bad("'shape' is not a tuple") }
        let inner = shapeRest[shapeRest.index(after: shapeRest.startIndex)..<close]
        let shape = try inner.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }.map { s -> Int in
            guard let v = Int(s.hasSuffix("L") ? String(s.dropLast()) : s), v >= 0 else { throw bad("'shape' has a bad dimension '\(s)'") }
            return v
        }
        return Header(descr: descr, fortranOrder: fortran, shape: shape)
    }
}
