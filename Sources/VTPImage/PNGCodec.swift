import CImageShims

/// Owns one libpng reader (through the setjmp shim) for the lifetime of a decode.
final class PNGReader {
    private let handle: OpaquePointer
    private let source: String
    /// IHDR and PLTE as read at open time.
    let info: vtp_png_info

    /// Reads the chunks up to the image data. `bytes` must outlive the reader.
    init(bytes: UnsafeRawBufferPointer, source: String) throws(ImageError) {
        var info = vtp_png_info()
        var opened: OpaquePointer?
        try ShimCall.check(source: source, format: .png) { message in
            var status = VTP_IMG_OK
            opened = vtp_png_open(bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count,
                                  &info, &status, message)
            return status
        }
        guard let opened else {
            throw ImageError.corrupt(source: source, format: .png, detail: "decoder could not be created")
        }
        self.handle = opened
        self.info = info
        self.source = source
    }

    deinit { vtp_png_close(handle) }

    /// Decodes all rows (every interlace pass) with the given libpng transformations.
    func decode(transforms: UInt32, into out: UnsafeMutableBufferPointer<UInt8>, rowBytes: Int) throws(ImageError) {
        try ShimCall.check(source: source, format: .png) { message in
            vtp_png_decode(handle, transforms, out.baseAddress, out.count, rowBytes, message)
        }
    }
}

/// PNG to RGB as PIL's PNG plugin plus `convert("RGB")` produce it: alpha and tRNS
/// dropped without compositing, 16-bit colour reduced to its high byte, 16-bit gray
/// (PIL mode I;16) clamped to 255, low bit depths scaled to 0...255, palette indices
/// past the end of PLTE shown as black.
enum PNGDecoding {
    private static let strip16 = UInt32(VTP_PNG_STRIP_16)
    private static let stripAlpha = UInt32(VTP_PNG_STRIP_ALPHA)
    private static let grayToRGB = UInt32(VTP_PNG_GRAY_TO_RGB)
    private static let expandGray = UInt32(VTP_PNG_EXPAND_GRAY)
    private static let packing = UInt32(VTP_PNG_PACKING)

    static func decode(_ bytes: UnsafeRawBufferPointer, source: String, maxPixels: Int,
                       budget: DecodeBudget? = nil) throws(ImageError) -> RGBImage {
        // IHDR must be the first chunk; its size is checked before libpng reads any further,
        // so a bomb is refused even when the rest of the file is missing or enormous.
        if bytes.count >= 24, bytes[12] == 0x49, bytes[13] == 0x48, bytes[14] == 0x44, bytes[15] == 0x52 {
            try PixelLimit.check(width: bigEndian32(bytes, at: 16), height: bigEndian32(bytes, at: 20),
                                 limit: maxPixels, source: source, format: .png)
        }
        try checkChunksBeforeImageData(bytes, source: source)
        let reader = try PNGReader(bytes: bytes, source: source)
        let info = reader.info
        let width = Int(info.width), height = Int(info.height)
        try PixelLimit.check(width: width, height: height, limit: maxPixels, source: source, format: .png)
        let depth = Int(info.bit_depth)
        if let budget {
            try budget.check(footprint(info), source: source, format: .png, width: width, height: height)
        }
        switch info.color_type {
        case 3:
            return try decodePalette(reader, width: width, height: height, depth: depth, source: source)
        case 0 where depth == 16:
            var raw = [UInt8](repeating: 0, count: width * height * 2)
            try raw.withUnsafeMutableBufferPointer { (out) throws(ImageError) in
                try reader.decode(transforms: 0, into: out, rowBytes: width * 2)
            }
            return RGBImage(width: width, height: height) { rgb in
                raw.withUnsafeBufferPointer { raw in
                    for i in 0..<(width * height) {
                        // PIL's I;16 -> RGB keeps values below 256 and saturates the rest.
                        let value = raw[i * 2] == 0 ? raw[i * 2 + 1] : 255
                        rgb[i * 3] = value
                        rgb[i * 3 + 1] = value
                        rgb[i * 3 + 2] = value
                    }
                }
            }
        case 0, 2, 4, 6:
            var transforms: UInt32 = depth == 16 ? strip16 : 0
            if info.color_type == 0 || info.color_type == 4 { transforms |= grayToRGB }
            if info.color_type == 4 || info.color_type == 6 { transforms |= stripAlpha }
            if info.color_type == 0 && depth < 8 { transforms |= expandGray }
            return try RGBImage(width: width, height: height) { (out) throws(ImageError) in
                try reader.decode(transforms: transforms, into: out, rowBytes: width * 3)
            }
        default:
            throw .unsupported(source: source, format: .png, detail: "colour type \(info.color_type)")
        }
    }

    /// What decoding allocates: the RGB output, the raw buffer palette and 16-bit gray images are
    /// converted from, and libpng's two rows (current and previous, at the wider of the file's and
    /// the transformed pixel size). Rows are read one at a time, so no row-pointer array exists.
    static func footprint(_ info: vtp_png_info) -> DecodeFootprint {
        let width = Double(info.width), pixels = width * Double(info.height)
        let depth = Double(info.bit_depth)
        let samples: Double = switch info.color_type {
        case 2: 3
        case 4: 2
        case 6: 4
        default: 1
        }
        let raw: Double = switch info.color_type {
        case 3: pixels
        case 0 where info.bit_depth == 16: pixels * 2
        default: 0
        }
        let filePixelBytes = max(1, samples * depth / 8)
        let rowBytes = width * max(filePixelBytes, 3) + 64
        return DecodeFootprint(width: Int(info.width), height: Int(info.height),
                               codecPeakBytes: pixels * 3 + raw + 2 * rowBytes + DecodeFootprint.fixedOverhead)
    }

    /// libpng can allocate and zero a chunk's whole declared length before it reads the data: a
    /// 128-byte file announcing a 1.9 GB zTXt chunk spent 5 s zeroing memory inside png_read_info
    /// (the shim's png_set_chunk_malloc_max did not stop it) before the read ran off the end. Every chunk that
    /// png_read_info reads, those before the first IDAT, must fit in the file; libpng would find the
    /// same truncation, only after the allocation. IDAT data is read in small pieces and is left to it.
    static func checkChunksBeforeImageData(_ bytes: UnsafeRawBufferPointer, source: String) throws(ImageError) {
        var offset = 8
        while offset + 8 <= bytes.count {
            let length = bigEndian32(bytes, at: offset)
            let type = String(decoding: bytes[(offset + 4)..<(offset + 8)], as: UTF8.self)
            if type == "IDAT" { return }
            // 4 length bytes, 4 type bytes, the data and a 4-byte CRC.
            let available = bytes.count - offset - 12
            guard length <= available else {
                throw .truncated(source: source, format: .png,
                                 detail: "chunk '\(type)' at byte \(offset) declares \(length) bytes of data, "
                                     + "but the file has \(max(0, available)) left")
            }
            offset += 12 + length
        }
    }

    private static func bigEndian32(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> Int {
        (0..<4).reduce(0) { $0 << 8 | Int(bytes[offset + $1]) }
    }

    private static func decodePalette(
        _ reader: PNGReader, width: Int, height: Int, depth: Int, source: String
    ) throws(ImageError) -> RGBImage {
        var indices = [UInt8](repeating: 0, count: width * height)
        try indices.withUnsafeMutableBufferPointer { (out) throws(ImageError) in
            try reader.decode(transforms: depth < 8 ? packing : 0, into: out, rowBytes: width)
        }
        // PIL's palette starts all black and PLTE fills its first entries.
        var lut = [UInt8](repeating: 0, count: 256 * 3)
        let entries = Int(reader.info.palette_entries)
        withUnsafeBytes(of: reader.info.palette) { palette in
            for i in 0..<(entries * 3) { lut[i] = palette[i] }
        }
        return RGBImage(width: width, height: height) { rgb in
            indices.withUnsafeBufferPointer { indices in
                lut.withUnsafeBufferPointer { lut in
                    for i in 0..<(width * height) {
                        let entry = Int(indices[i]) * 3
                        rgb[i * 3] = lut[entry]
                        rgb[i * 3 + 1] = lut[entry + 1]
                        rgb[i * 3 + 2] = lut[entry + 2]
                    }
                }
            }
        }
    }
}
