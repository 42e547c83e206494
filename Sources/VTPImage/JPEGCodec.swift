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

    /// The output size at `scaleNumerator`/8 (libjpeg's own rounding).
    func scaledSize(_ scaleNumerator: Int) throws(ImageError) -> (width: Int, height: Int) {
        var width: UInt32 = 0, height: UInt32 = 0
        try ShimCall.check(source: source, format: .jpeg) { message in
            vtp_jpeg_scaled_size(handle, Int32(scaleNumerator), &width, &height, message)
        }
        return (Int(width), Int(height))
    }

    /// Sets the DCT scale of the decode (8: full size) and the cap on libjpeg's large allocations.
    func configure(scaleNumerator: Int, maxMemory: Int?) throws(ImageError) {
        try ShimCall.check(source: source, format: .jpeg) { message in
            vtp_jpeg_configure(handle, Int32(scaleNumerator), UInt64(max(0, maxMemory ?? 0)), message)
        }
    }

    /// Decodes every scanline into `out` (`width * height * info.output_channels` bytes at the configured scale).
    func decode(into out: UnsafeMutableBufferPointer<UInt8>) throws(ImageError) {
        try ShimCall.check(source: source, format: .jpeg) { message in
            vtp_jpeg_decode(handle, out.baseAddress, out.count, message)
        }
    }
}

/// JPEG to RGB exactly as `PIL.Image.open(f).convert("RGB")`: libjpeg's default colour
/// handling and IDCT, gray replicated, and 4-component files read as Adobe-inverted CMYK.
///
/// One exception, only under a memory budget: a JPEG whose full-size decode and preprocessing
/// would exceed the budget is decoded with libjpeg's DCT scaling at the smallest scale M/8 whose
/// output still covers the transform's target (e.g. a short side of at least the crop size), if
/// that fits. Its pixels then differ from PIL's (which always decodes full size); every JPEG that
/// fits at full size is decoded at full size, so ordinary images stay bit-identical.
enum JPEGDecoding {
    static func decode(_ bytes: UnsafeRawBufferPointer, source: String, maxPixels: Int,
                       budget: DecodeBudget? = nil) throws(ImageError) -> RGBImage {
        let decompressor = try JPEGDecompressor(bytes: bytes, source: source)
        let fullWidth = Int(decompressor.info.width), fullHeight = Int(decompressor.info.height)
        try PixelLimit.check(width: fullWidth, height: fullHeight, limit: maxPixels, source: source, format: .jpeg)
        var scale = 8
        if let budget {
            scale = try chooseScale(decompressor, budget: budget, source: source)
            // libjpeg's own cap too, in case its whole-image arrays ever outgrow the estimate.
            try decompressor.configure(scaleNumerator: scale, maxMemory: budget.maxBytes)
        }
        let (width, height) = scale == 8 ? (fullWidth, fullHeight) : try decompressor.scaledSize(scale)
        if decompressor.info.output_channels == 3 {
            return try RGBImage(width: width, height: height) { (out) throws(ImageError) in
                try decompressor.decode(into: out)
            }
        }
        var cmyk = [UInt8](repeating: 0, count: width * height * 4)
        try cmyk.withUnsafeMutableBufferPointer { (out) throws(ImageError) in try decompressor.decode(into: out) }
        return cmyk.withUnsafeBufferPointer { convertInvertedCMYK($0, width: width, height: height) }
    }

    /// What decoding at `width`x`height` allocates: the output (and for CMYK the RGB it becomes),
    /// libjpeg's coefficient buffer (full size whatever the scale) and its row buffers.
    static func footprint(_ info: vtp_jpeg_info, width: Int, height: Int) -> DecodeFootprint {
        let pixels = Double(width) * Double(height)
        let output = info.output_channels == 3 ? pixels * 3 : pixels * 4 + pixels * 3
        return DecodeFootprint(width: width, height: height,
                               codecPeakBytes: output + Double(info.coefficient_bytes) + Double(info.work_bytes)
                                   + DecodeFootprint.fixedOverhead)
    }

    /// 8 (full size) when that fits the budget, else the smallest DCT scale whose output covers
    /// the transform's target; throws when even that does not fit (or nothing smaller covers it).
    static func chooseScale(_ decompressor: JPEGDecompressor, budget: DecodeBudget, source: String) throws(ImageError) -> Int {
        let info = decompressor.info
        let fullWidth = Int(info.width), fullHeight = Int(info.height)
        let full = footprint(info, width: fullWidth, height: fullHeight)
        if budget.fits(full) { return 8 }
        guard let transform = budget.transform else {
            try budget.check(full, source: source, format: .jpeg, width: fullWidth, height: fullHeight)
            return 8
        }
        for scale in 1..<8 {
            let (width, height) = try decompressor.scaledSize(scale)
            guard transform.isCovered(width: width, height: height, fullWidth: fullWidth, fullHeight: fullHeight) else { continue }
            let reduced = footprint(info, width: width, height: height)
            try budget.check(reduced, source: source, format: .jpeg, width: fullWidth, height: fullHeight,
                             detail: "even decoded at \(scale)/8 scale (\(width)x\(height), the smallest that covers the target)")
            return scale
        }
        try budget.check(full, source: source, format: .jpeg, width: fullWidth, height: fullHeight,
                         detail: "no reduced JPEG decode covers the target size")
        return 8
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
