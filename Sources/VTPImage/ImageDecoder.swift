import Foundation

/// Decodes JPEG, PNG and WebP files to `RGBImage`, pixel for pixel what
/// `PIL.Image.open(f).convert("RGB")` returns (no EXIF rotation, no alpha compositing).
/// The format is chosen from the leading bytes, never from the file name.
public struct ImageDecoder: Sendable {
    /// Default pixel-count limit, a guard against decompression bombs.
    public static let defaultMaxPixels = 100_000_000

    /// Images whose header announces more than this many pixels are rejected before
    /// any pixel memory is allocated.
    public var maxPixels: Int

    /// A decoder with the given pixel limit.
    public init(maxPixels: Int = ImageDecoder.defaultMaxPixels) {
        self.maxPixels = maxPixels
    }

    /// Reads and decodes the file at `path`; errors name the path.
    public func decode(contentsOf path: String) throws(ImageError) -> RGBImage {
        let data: Data
        do {
            // Read, not mapped: a file truncated by another process while mapped would SIGBUS.
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw .unreadable(source: path, reason: (error as NSError).localizedDescription)
        }
        return try decode(data, source: path)
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
        case .supported(.jpeg): return try JPEGDecoding.decode(bytes, source: source, maxPixels: maxPixels)
        case .supported(.png): return try PNGDecoding.decode(bytes, source: source, maxPixels: maxPixels)
        case .supported(.webp): return try WebPDecoding.decode(bytes, source: source, maxPixels: maxPixels)
        case let .other(name): throw .unknownFormat(source: source, detected: name)
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
