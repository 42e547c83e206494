import CZlib

/// Inflates gzip data with zlib. The only place in VTPText that touches zlib's C API.
enum Gunzip {
    /// Decompresses a complete gzip stream held in memory.
    /// - Parameter path: names the source in errors.
    static func decompress(_ compressed: [UInt8], path: String) throws(CLIPTokenizerError) -> [UInt8] {
        let stream = InflateStream()
        try check(inflateInit2_(&stream.z, 16 + MAX_WBITS, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)),
                  stream: stream, path: path)
        stream.initialised = true
        var output: [UInt8] = []
        output.reserveCapacity(compressed.count * 4)
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        var status: Int32 = Z_OK
        try compressed.withUnsafeBufferPointer { (input) throws(CLIPTokenizerError) in
            stream.z.next_in = UnsafeMutablePointer(mutating: input.baseAddress)
            stream.z.avail_in = uInt(input.count)
            while status != Z_STREAM_END {
                let produced = chunk.withUnsafeMutableBufferPointer { out -> Int in
                    stream.z.next_out = out.baseAddress
                    stream.z.avail_out = uInt(out.count)
                    status = inflate(&stream.z, Z_NO_FLUSH)
                    return out.count - Int(stream.z.avail_out)
                }
                if status != Z_OK && status != Z_STREAM_END {
                    // Z_BUF_ERROR with no input left means the stream was cut short.
                    if status == Z_BUF_ERROR && stream.z.avail_in == 0 {
                        throw .gzip(path: path, detail: "truncated gzip stream")
                    }
                    try check(status, stream: stream, path: path)
                }
                output.append(contentsOf: chunk[0..<produced])
            }
        }
        return output
    }

    /// Turns a zlib status into a typed error carrying zlib's own message.
    private static func check(_ status: Int32, stream: InflateStream, path: String) throws(CLIPTokenizerError) {
        guard status != Z_OK && status != Z_STREAM_END else { return }
        let message = stream.z.msg.map { String(cString: $0) } ?? "zlib status \(status)"
        throw .gzip(path: path, detail: message)
    }
}

/// Owns a `z_stream` so `inflateEnd` runs on every exit path.
private final class InflateStream {
    var z = z_stream()
    var initialised = false
    deinit { if initialised { inflateEnd(&z) } }
}
