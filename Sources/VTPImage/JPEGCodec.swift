import CImageShims

/// Owns one libjpeg decompressor (through the setjmp shim) for the lifetime of a decode.
final class JPEGDecompressor {
    private let handle: OpaquePointer
    private let source: String
    /// Header fields read at open time.
    let info: vtp_jpeg_info

    /// Parses the header. `bytes` must stay valid until the decompressor is released.
    init(bytes: UnsafeRawBufferPointer, source: String) throws(ImageError) {
        var info = vtp_jpeg_info()
        var opened: OpaquePointer?
        try ShimCall.check(source: source, format: .jpeg) { message in
            var status = VTP_IMG_OK
            opened = vtp_jpeg_open(bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count,
                                   &info, &status, message)
            return status
        }
        guard let opened else {
            throw ImageError.corrupt(source: source, format: .jpeg, detail: "decoder could not be created")
        }
        self.handle = opened
        self.info = info
        self.source = source
    }

    deinit { vtp_jpeg_close(handle) }

    /// Decodes every scanline into `out` (`width * height * info.output_channels` bytes).
    func decode(into out: UnsafeMutableBufferPointer<UInt8>) throws(ImageError) {
        try ShimCall.check(source: source, format: .jpeg) { message in
            vtp_jpeg_decode(handle, out.baseAddress, out.count, message)
        }
    }
}

/// JPEG to RGB exactly as `PIL.Image.open(f).convert("RGB")`: libjpeg's default colour
/// handling and IDCT, gray replicated, and 4-component files read as Adobe-inverted CMYK.
enum JPEGDecoding {
    static func decode(_ bytes: UnsafeRawBufferPointer, source: String, maxPixels: Int) throws(ImageError) -> RGBImage {
        let decompressor = try JPEGDecompressor(bytes: bytes, source: source)
        let width = Int(decompressor.info.width), height = Int(decompressor.info.height)
        try PixelLimit.check(width: width, height: height, limit: maxPixels, source: source, format: .jpeg)
        if decompressor.info.output_channels == 3 {
            return try RGBImage(width: width, height: height) { (out) throws(ImageError) in
                try decompressor.decode(into: out)
            }
        }
        var cmyk = [UInt8](repeating: 0, count: width * height * 4)
        try cmyk.withUnsafeMutableBufferPointer { (out) throws(ImageError) in try decompressor.decode(into: out) }
        return cmyk.withUnsafeBufferPointer { convertInvertedCMYK($0, width: width, height: height) }
    }

    /// PIL reads every 4-component JPEG with raw mode "CMYK;I" (Adobe writes inverted
    /// CMYK), then converts CMYK to RGB as `255 - k - c*(255 - k)/255` with its rounded
    /// integer MULDIV255. Both steps are folded together here.
    static func convertInvertedCMYK(_ cmyk: UnsafeBufferPointer<UInt8>, width: Int, height: Int) -> RGBImage {
        RGBImage(width: width, height: height) { rgb in
            for i in 0..<(width * height) {
                let notK = Int32(cmyk[i * 4 + 3])  // 255 - inverted K
                for c in 0..<3 {
                    let inverted = 255 - Int32(cmyk[i * 4 + c])
                    let t = inverted * notK + 128
                    let scaled = ((t >> 8) + t) >> 8
                    rgb[i * 3 + c] = UInt8(clamping: notK - scaled)
                }
            }
        }
    }
}

/// Rejects images whose header announces more pixels than allowed, before any pixel buffer exists.
enum PixelLimit {
    static func check(width: Int, height: Int, limit: Int, source: String, format: ImageFormat) throws(ImageError) {
        let (pixels, overflow) = width.multipliedReportingOverflow(by: height)
        if overflow || pixels > limit {
            throw .tooManyPixels(source: source, width: width, height: height, limit: limit)
        }
        if width <= 0 || height <= 0 {
            throw .corrupt(source: source, format: format, detail: "image has zero width or height")
        }
    }
}
