import CImageShims
import Foundation

/// Encodes RGB images for outputs (reconstructions, previews).
public enum ImageEncoder {
    /// PNG, 8-bit RGB, optionally Adam7-interlaced; `compressionLevel` is zlib's 0...9.
    public static func png(_ image: RGBImage, interlaced: Bool = false, compressionLevel: Int = 6) throws(ImageError) -> Data {
        try image.withUnsafePixels { (pixels) throws(ImageError) -> Data in
            try png(samples: UnsafeRawBufferPointer(pixels), width: image.width, height: image.height,
                    layout: .rgb8, interlaced: interlaced, compressionLevel: compressionLevel)
        }
    }

    /// Baseline JPEG with 4:2:0 chroma subsampling at `quality` (1...100).
    public static func jpeg(_ image: RGBImage, quality: Int = 90) throws(ImageError) -> Data {
        guard (1...100).contains(quality) else { throw .invalidArgument("JPEG quality \(quality) outside 1...100") }
        return try image.withUnsafePixels { (pixels) throws(ImageError) -> Data in
            try collect(format: .jpeg) { out, size, message in
                vtp_jpeg_encode_rgb(pixels.baseAddress, UInt32(image.width), UInt32(image.height), Int32(quality),
                                    out, size, message)
            }
        }
    }

    /// Sample layouts `png(samples:...)` accepts.
    public enum PNGLayout: Sendable {
        /// One 8-bit gray sample per pixel.
        case gray8
        /// One 16-bit gray sample per pixel.
        case gray16
        /// 8-bit gray then alpha.
        case grayAlpha8
        /// 8-bit R, G, B.
        case rgb8
        /// 16-bit R, G, B.
        case rgb16
        /// 8-bit R, G, B, A.
        case rgba8
        /// 16-bit R, G, B, A.
        case rgba16

        var colorType: Int32 {
            switch self {
            case .gray8, .gray16: return 0
            case .rgb8, .rgb16: return 2
            case .grayAlpha8: return 4
            case .rgba8, .rgba16: return 6
            }
        }
        var bitDepth: Int32 {
            switch self {
            case .gray16, .rgb16, .rgba16: return 16
            default: return 8
            }
        }
        var bytesPerPixel: Int {
            let channels: Int
            switch self {
            case .gray8, .gray16: channels = 1
            case .grayAlpha8: channels = 2
            case .rgb8, .rgb16: channels = 3
            case .rgba8, .rgba16: channels = 4
            }
            return channels * Int(bitDepth) / 8
        }
    }

    /// PNG from packed samples in `layout` (16-bit samples big-endian, as PNG stores them).
    public static func png(
        samples: UnsafeRawBufferPointer, width: Int, height: Int, layout: PNGLayout, interlaced: Bool = false,
        compressionLevel: Int = 6
    ) throws(ImageError) -> Data {
        guard width > 0, height > 0, samples.count == width * height * layout.bytesPerPixel else {
            throw .invalidArgument("PNG \(width)x\(height) \(layout) needs \(width * height * layout.bytesPerPixel) bytes, got \(samples.count)")
        }
        guard (0...9).contains(compressionLevel) else {
            throw .invalidArgument("PNG compression level \(compressionLevel) outside 0...9")
        }
        return try collect(format: .png) { out, size, message in
            vtp_png_encode(samples.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt32(width), UInt32(height),
                           layout.colorType, layout.bitDepth, interlaced ? 1 : 0, Int32(compressionLevel),
                           out, size, message)
        }
    }

    /// Runs a shim encoder and moves its malloc'ed output into `Data`.
    private static func collect(
        format: ImageFormat,
        _ body: (UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>, UnsafeMutablePointer<Int>, UnsafeMutablePointer<CChar>) -> vtp_img_status
    ) throws(ImageError) -> Data {
        var buffer: UnsafeMutablePointer<UInt8>?
        var size = 0
        do {
            try ShimCall.check(source: "encoder", format: format) { message in body(&buffer, &size, message) }
        } catch {
            throw .encodingFailed(format: format, detail: error.description)
        }
        guard let buffer else { throw .encodingFailed(format: format, detail: "encoder returned no data") }
        return Data(bytesNoCopy: buffer, count: size, deallocator: .custom { pointer, _ in vtp_img_free(pointer) })
    }
}
