import CFaissShim

/// The one place a shim status code becomes a Swift error: runs `body` with an error buffer and
/// throws `IndexError.faiss` carrying the shim's message when the status is not `VTP_FAISS_OK`.
func faissCall(_ operation: String, path: String? = nil, _ body: (UnsafeMutablePointer<vtp_faiss_error>) -> Int32) throws {
    var error = vtp_faiss_error()
    let status = body(&error)
    guard status == Int32(VTP_FAISS_OK.rawValue) else {
        let message = withUnsafeBytes(of: &error.message) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        throw IndexError.faiss(operation: operation, path: path, status: Int(status), message: message)
    }
}
