import Foundation
import SystemPackage

/// Decodes JPEG, PNG and WebP files to `RGBImage`, pixel for pixel what
/// `PIL.Image.open(f).convert("RGB")` returns (no EXIF rotation, no alpha compositing).
/// The format is chosen from the leading bytes, never from the file name.
public struct ImageDecoder: Sendable {
    /// Default pixel-count limit, a guard against decompression bombs.
    public static let defaultMaxPixels = 100_000_000

    /// Images whose header announces more than this many pixels are rejected before
    /// any pixel memory is allocated.
    public var maxPixels: Int

    /// Memory ceiling of a decode and the transform after it, checked from the header before
    /// any pixel memory is allocated; nil for none. A JPEG that only fits when reduced is decoded
    /// with libjpeg's DCT scaling (see `JPEGDecoding`); every other image is decoded at full
    /// size, exactly as PIL decodes it, or refused.
    public var budget: DecodeBudget?

    /// A decoder with the given pixel limit and, optionally, a memory budget.
    public init(maxPixels: Int = ImageDecoder.defaultMaxPixels, budget: DecodeBudget? = nil) {
        self.maxPixels = maxPixels
        self.budget = budget
    }

    /// Reads and decodes the regular file at `path`; errors name the path. The file's bytes count
    /// against the budget, and a file larger than the whole budget is not read.
    public func decode(contentsOf path: String) throws(ImageError) -> RGBImage {
        let bytes = try Self.readRegularFile(path, maxBytes: budget?.maxBytes)
        var decoder = self
        decoder.budget?.heldBytes += bytes.count
        do {
            return try bytes.withUnsafeBytes { (raw) throws(ImageError) -> RGBImage in
                try decoder.decode(bytes: raw, source: path)
            }
        } catch let error as ImageError {
            throw error
        } catch {
            throw .unreadable(source: path, reason: "\(error)")
        }
    }

    /// Reads a whole regular file. Opened non-blocking and checked with `fstat` first, so a FIFO,
    /// socket or device named like an image is refused instead of blocking or streaming forever.
    static func readRegularFile(_ path: String, maxBytes: Int?) throws(ImageError) -> [UInt8] {
        func failure(_ code: Int32 = errno) -> ImageError { .unreadable(source: path, reason: String(cString: strerror(code))) }
        let descriptor: FileDescriptor
        do { descriptor = try FileDescriptor.open(FilePath(path), .readOnly, options: [.nonBlocking, .closeOnExec]) } catch {
            throw failure((error as? Errno)?.rawValue ?? EIO)
        }
        defer { try? descriptor.close() }
        let fd = descriptor.rawValue  // for fstat, which swift-system lacks
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw failure() }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw .notRegularFile(source: path, kind: FileKind.name(of: st.st_mode)) }
        let size = Int(st.st_size)
        if let maxBytes, size > maxBytes {
            throw .unreadable(source: path, reason: "the file is \(size) bytes (\(ByteCountText.format(size))), more than the "
                              + "decode memory budget of \(maxBytes) bytes (\(ByteCountText.format(maxBytes)))")
        }
        var bytes = [UInt8](repeating: 0, count: size)
        var done = 0
        while done < size {
            let n: Int
            do {
                n = try bytes.withUnsafeMutableBytes {
                    try descriptor.read(fromAbsoluteOffset: Int64(done), into: UnsafeMutableRawBufferPointer(rebasing: $0[done...]),
                                        retryOnInterrupt: true)
                }
            } catch { throw failure((error as? Errno)?.rawValue ?? EIO) }
            guard n > 0 else { throw .unreadable(source: path, reason: "the file shrank to \(done) bytes while being read") }
            done += n
        }
        return bytes
    }

    /// Decodes an in-memory image (e.g. a tar-shard member); `source` names it in errors.
    public func decode(_ data: Data, source: String) throws(ImageError) -> RGBImage {
        do {
            return try data.withUnsafeBytes { (bytes) throws(ImageError) -> RGBImage in
                try decode(bytes: bytes, source: source)
            }
        } catch let error as ImageError {
            throw error
        } catch {
            throw .unreadable(source: source, reason: "\(error)")
        }
    }

    /// Decodes bytes that stay valid for the duration of the call.
    public func decode(bytes: UnsafeRawBufferPointer, source: String) throws(ImageError) -> RGBImage {
        guard !bytes.isEmpty else { throw .empty(source: source) }
        switch ImageSignature.sniff(bytes) {
        case .supported(.jpeg): return try JPEGDecoding.decode(bytes, source: source, maxPixels: maxPixels, budget: budget)
        case .supported(.png): return try PNGDecoding.decode(bytes, source: source, maxPixels: maxPixels, budget: budget)
        case .supported(.webp): return try WebPDecoding.decode(bytes, source: source, maxPixels: maxPixels, budget: budget)
        case let .other(name): throw .unknownFormat(source: source, detected: name)
        }
    }
}

/// Names of the file types `stat` reports, for errors about non-regular files.
enum FileKind {
    /// "FIFO", "socket", "character device", "block device", "directory", "symbolic link" or "regular file".
    static func name(of mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFIFO: return "FIFO"
        case S_IFSOCK: return "socket"
        case S_IFCHR: return "character device"
        case S_IFBLK: return "block device"
        case S_IFDIR: return "directory"
        case S_IFLNK: return "symbolic link"
        case S_IFREG: return "regular file"
        default: return "file type \(String(mode & S_IFMT, radix: 8))"
        }
    }
}

/// What the leading bytes of a file say it is.
enum ImageSignature: Equatable {
    case supported(ImageFormat)
    /// Not decodable here; the name is set for formats PIL would open but we do not.
    case other(String?)

    /// Matches the same prefixes PIL's plugins accept.
    static func sniff(_ bytes: UnsafeRawBufferPointer) -> ImageSignature {
        func starts(_ prefix: [UInt8], at offset: Int = 0) -> Bool {
            guard bytes.count >= offset + prefix.count else { return false }
            for (i, byte) in prefix.enumerated() where bytes[offset + i] != byte { return false }
            return true
        }
        if starts([0xFF, 0xD8, 0xFF]) { return .supported(.jpeg) }
        if starts([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return .supported(.png) }
        if starts(Array("RIFF".utf8)) && starts(Array("WEBP".utf8), at: 8) { return .supported(.webp) }
        if starts(Array("GIF8".utf8)) { return .other("GIF") }
        if starts(Array("BM".utf8)) { return .other("BMP") }
        if starts([0x49, 0x49, 0x2A, 0x00]) || starts([0x4D, 0x4D, 0x00, 0x2A]) { return .other("TIFF") }
        if starts(Array("ftyp".utf8), at: 4) { return .other("HEIF/AVIF") }
        return .other(nil)
    }
}
