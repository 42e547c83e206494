import CImageShims

/// Calls into the libjpeg/libpng shim with a message buffer and converts its status.
enum ShimCall {
    /// Runs `body` with a message buffer of the size the shim expects; a non-OK status
    /// becomes the matching `ImageError` through `CodecFailure`.
    static func check(
        source: String, format: ImageFormat, _ body: (UnsafeMutablePointer<CChar>) -> vtp_img_status
    ) throws(ImageError) {
        let capacity = Int(VTP_IMG_MESSAGE_CAPACITY)
        let outcome: (vtp_img_status, String) = withUnsafeTemporaryAllocation(of: CChar.self, capacity: capacity) { buffer in
            let base = buffer.baseAddress!
            base.initialize(repeating: 0, count: capacity)
            let status = body(base)
            return (status, status == VTP_IMG_OK ? "" : String(cString: base))
        }
        guard outcome.0 != VTP_IMG_OK else { return }
        throw failure(of: outcome.0).error(source: source, format: format, message: outcome.1)
    }

    private static func failure(of status: vtp_img_status) -> CodecFailure {
        switch status {
        case VTP_IMG_TRUNCATED: return .truncated
        case VTP_IMG_UNSUPPORTED: return .unsupported
        case VTP_IMG_RESOURCE: return .resource
        default: return .corrupt
        }
    }
}
