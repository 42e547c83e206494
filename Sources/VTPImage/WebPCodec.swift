import CWebP

/// WebP to RGB as PIL returns it: the (single) frame decoded with libwebp's default
/// settings, alpha dropped. libwebp reports errors by status code, so no shim is needed.
enum WebPDecoding {
    static func decode(_ bytes: UnsafeRawBufferPointer, source: String, maxPixels: Int,
                       budget: DecodeBudget? = nil) throws(ImageError) -> RGBImage {
        guard let base = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) else {
            throw .empty(source: source)
        }
        var config = WebPDecoderConfig()
        guard WebPInitDecoderConfig(&config) != 0 else {
            throw .unsupported(source: source, format: .webp, detail: "libwebp decoder ABI mismatch")
        }
        let featureStatus = WebPGetFeatures(base, bytes.count, &config.input)
        try check(featureStatus, source: source, stage: "header")
        if config.input.has_animation != 0 {
            throw .unsupported(source: source, format: .webp, detail: "animated WebP")
        }
        let width = Int(config.input.width), height = Int(config.input.height)
        try PixelLimit.check(width: width, height: height, limit: maxPixels, source: source, format: .webp)
        if let budget {
            try budget.check(footprint(config.input, width: width, height: height), source: source, format: .webp,
                             width: width, height: height)
        }
        var status = VP8_STATUS_OK
        let image = RGBImage(width: width, height: height) { out in
            config.output.colorspace = MODE_RGB
            config.output.is_external_memory = 1
            config.output.u.RGBA.rgba = out.baseAddress
            config.output.u.RGBA.stride = Int32(width * 3)
            config.output.u.RGBA.size = out.count
            status = WebPDecode(base, bytes.count, &config)
            WebPFreeDecBuffer(&config.output)
        }
        try check(status, source: source, stage: "image data")
        return image
    }

    /// What decoding allocates: the RGB output; for lossless (or undetermined) data libwebp's
    /// whole-image ARGB buffer; for lossy data with alpha the alpha plane; and row caches.
    static func footprint(_ features: WebPBitstreamFeatures, width: Int, height: Int) -> DecodeFootprint {
        let pixels = Double(width) * Double(height)
        var bytes = pixels * 3 + Double(width) * 64 + DecodeFootprint.fixedOverhead
        if features.format != 1 { bytes += pixels * 4 + Double(width) * 4 * 16 }  // 2 lossless, 0 mixed/unknown
        if features.has_alpha != 0 { bytes += pixels * 2 }
        return DecodeFootprint(width: width, height: height, codecPeakBytes: bytes)
    }

    private static func check(_ status: VP8StatusCode, source: String, stage: String) throws(ImageError) {
        let failure: CodecFailure
        switch status {
        case VP8_STATUS_OK: return
        case VP8_STATUS_NOT_ENOUGH_DATA: failure = .truncated
        case VP8_STATUS_UNSUPPORTED_FEATURE: failure = .unsupported
        case VP8_STATUS_OUT_OF_MEMORY, VP8_STATUS_INVALID_PARAM: failure = .resource
        default: failure = .corrupt
        }
        throw failure.error(source: source, format: .webp, message: "libwebp status \(status.rawValue) in \(stage)")
    }
}
