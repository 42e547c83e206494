/// A ceiling on the memory one image may take on its way from encoded bytes to model-ready
/// pixels: the decoder's buffers, the codec's own working memory, every intermediate the
/// transform allocates and whatever the caller holds beside them (the encoded file, the output
/// tensors).
///
/// The pixel limit alone does not bound memory: a 2 x 50,000,000 PNG is within 10^8 pixels, but
/// center-cropping it to 256 first resizes it to 256 x 6,400,000,000. Every cost here is computed
/// from the header before anything is allocated, so such an image fails as an item instead of
/// taking the process down.
public struct DecodeBudget: Sendable, Equatable {
    /// 1 GiB: room for a 10^8-pixel image (300 MB of RGB) and its preprocessing.
    public static let defaultMaxBytes = 1 << 30

    /// Bytes one decode plus preprocess may take at its peak.
    public var maxBytes: Int
    /// The transform that follows the decode, whose intermediates count too; nil for a decode alone.
    public var transform: PreprocessTransform?
    /// Pass order of that transform (it changes the size of the resampler's intermediate).
    public var compatibility: PillowCompatibility
    /// Bytes the caller holds or will allocate beside the decode and the transform.
    public var heldBytes: Int

    public init(maxBytes: Int = DecodeBudget.defaultMaxBytes, transform: PreprocessTransform? = nil,
                compatibility: PillowCompatibility = .pillow13, heldBytes: Int = 0) {
        self.maxBytes = maxBytes
        self.transform = transform
        self.compatibility = compatibility
        self.heldBytes = heldBytes
    }

    /// Peak bytes of decoding to `footprint` and then applying the transform: the codec's peak,
    /// or the decoded image plus the transform's peak, whichever is larger (the codec's own
    /// memory is freed before the transform runs).
    func peakBytes(_ footprint: DecodeFootprint) -> Double {
        let decoded = Double(footprint.width) * Double(footprint.height) * 3
        let transformBytes = transform?.workingBytes(width: footprint.width, height: footprint.height,
                                                     compatibility: compatibility) ?? 0
        return Double(heldBytes) + max(footprint.codecPeakBytes, decoded + transformBytes)
    }

    func fits(_ footprint: DecodeFootprint) -> Bool { peakBytes(footprint) <= Double(maxBytes) }

    /// Throws `.overBudget` unless `footprint` fits.
    func check(_ footprint: DecodeFootprint, source: String, format: ImageFormat, width: Int, height: Int,
               detail: String = "") throws(ImageError) {
        guard !fits(footprint) else { return }
        throw .overBudget(source: source, format: format, width: width, height: height,
                          neededBytes: Self.saturated(peakBytes(footprint)), budgetBytes: maxBytes, detail: detail)
    }

    static func saturated(_ bytes: Double) -> Int { bytes >= Double(Int.max) ? Int.max : Int(bytes.rounded(.up)) }
}

/// What one decode allocates, known from the header alone.
struct DecodeFootprint {
    /// Size of the decoded RGB image.
    var width: Int
    var height: Int
    /// Peak bytes while the codec runs: the RGB output, any raw buffer it is converted from, and
    /// the codec's own working memory.
    var codecPeakBytes: Double

    /// Slack for allocations too small to model (zlib's window, libpng's and libwebp's structures).
    static let fixedOverhead = Double(1 << 20)
}

/// Byte counts for people: binary units with one decimal.
enum ByteCountText {
    static func format(_ bytes: Int) -> String {
        let units = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
        var value = Double(bytes), unit = 0
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        if unit == 0 { return "\(bytes) bytes" }
        let tenths = Int((value * 10).rounded())
        return "\(tenths / 10).\(tenths % 10) \(units[unit])"
    }
}
