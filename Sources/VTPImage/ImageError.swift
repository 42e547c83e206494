/// Container formats the decoder recognises by their leading bytes.
public enum ImageFormat: String, Sendable, Equatable, CaseIterable {
    case jpeg = "JPEG"
    case png = "PNG"
    case webp = "WebP"
}

/// Why an image could not be read, decoded, transformed or encoded. Every case that
/// concerns input data names its source (a path, or `shard.tar:member.jpg`).
public enum ImageError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The file could not be read at all.
    case unreadable(source: String, reason: String)
    /// Zero bytes.
    case empty(source: String)
    /// The leading bytes match no supported format; `detected` names a recognised
    /// but unsupported one (e.g. "GIF").
    case unknownFormat(source: String, detected: String?)
    /// The data stops before the image is complete.
    case truncated(source: String, format: ImageFormat, detail: String)
    /// The codec rejected the data.
    case corrupt(source: String, format: ImageFormat, detail: String)
    /// Well-formed data in a variant this decoder does not handle.
    case unsupported(source: String, format: ImageFormat, detail: String)
    /// The header announces more pixels than the configured limit (decompression-bomb guard).
    case tooManyPixels(source: String, width: Int, height: Int, limit: Int)
    /// Decoding and preprocessing the image would allocate more than the decode memory budget;
    /// found from the header, before any pixel memory exists. `detail` says what was tried.
    case overBudget(source: String, format: ImageFormat, width: Int, height: Int, neededBytes: Int, budgetBytes: Int,
                    detail: String)
    /// Not a regular file (a FIFO, socket, device or directory), refused before it is opened for reading.
    case notRegularFile(source: String, kind: String)
    /// A caller passed impossible sizes or buffers.
    case invalidArgument(String)
    /// An encoder failed.
    case encodingFailed(format: ImageFormat, detail: String)

    public var description: String {
        switch self {
        case let .unreadable(source, reason):
            return "\(source): cannot read file: \(reason)"
        case let .empty(source):
            return "\(source): empty file (0 bytes), expected a JPEG, PNG or WebP image"
        case let .unknownFormat(source, detected?):
            return "\(source): \(detected) images are not supported, expected JPEG, PNG or WebP"
        case let .unknownFormat(source, nil):
            return "\(source): unknown image format (leading bytes match no JPEG, PNG or WebP signature)"
        case let .truncated(source, format, detail):
            return "\(source): truncated \(format.rawValue) file: \(detail)"
        case let .corrupt(source, format, detail):
            return "\(source): corrupt \(format.rawValue) data: \(detail)"
        case let .unsupported(source, format, detail):
            return "\(source): unsupported \(format.rawValue) variant: \(detail)"
        case let .tooManyPixels(source, width, height, limit):
            // A PNG header can announce 2^32 x 2^32, whose product does not fit an Int.
            let (pixels, overflow) = width.multipliedReportingOverflow(by: height)
            return "\(source): \(width)x\(height) = \(overflow ? "more than \(Int.max)" : String(pixels)) pixels exceeds the limit of \(limit)"
        case let .overBudget(source, format, width, height, needed, budget, detail):
            return "\(source): decoding and preprocessing this \(width)x\(height) \(format.rawValue) image would need "
                + "\(needed) bytes (\(ByteCountText.format(needed))), more than the decode memory budget of \(budget) bytes "
                + "(\(ByteCountText.format(budget)))" + (detail.isEmpty ? "" : "; \(detail)")
        case let .notRegularFile(source, kind):
            return "\(source): not a regular file (\(kind)), expected an image file"
        case let .invalidArgument(detail):
            return "invalid argument: \(detail)"
        case let .encodingFailed(format, detail):
            return "\(format.rawValue) encoding failed: \(detail)"
        }
    }
}

/// How a codec call failed, independent of which C library reported it.
enum CodecFailure: Sendable {
    case corrupt, truncated, unsupported, resource

    /// The single place where a C library's failure becomes an `ImageError`.
    func error(source: String, format: ImageFormat, message: String) -> ImageError {
        let detail = message.isEmpty ? "decoder reported no message" : message
        switch self {
        case .corrupt: return .corrupt(source: source, format: format, detail: detail)
        case .truncated: return .truncated(source: source, format: format, detail: detail)
        case .unsupported: return .unsupported(source: source, format: format, detail: detail)
        case .resource: return .corrupt(source: source, format: format, detail: "decoder resource failure: \(detail)")
        }
    }
}
