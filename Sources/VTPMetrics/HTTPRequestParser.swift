/// Reads one HTTP/1.x request head from bytes as they arrive. A plain state machine: feed it
/// bytes, it says whether it needs more, has a request, or must reject the input.
///
/// Bodies are never read: the metrics endpoint only serves GET, and the connection is closed
/// after every response.
public struct HTTPRequestParser: Sendable {
    /// A parsed request line.
    public struct Request: Sendable, Equatable {
        public var method: String
        /// The target without its query string.
        public var path: String
        public var version: String
    }

    /// What the caller should do next.
    public enum Step: Sendable, Equatable {
        /// Read more bytes.
        case needMore
        /// The head is complete.
        case request(Request)
        /// Reply with this status and close.
        case reject(status: Int, reason: String)
    }

    /// Largest request head accepted, in bytes.
    public let maximumHeadBytes: Int
    private var buffer: [UInt8] = []

    /// A parser accepting heads up to `maximumHeadBytes` (8 KiB by default).
    public init(maximumHeadBytes: Int = 8192) {
        self.maximumHeadBytes = maximumHeadBytes
    }

    /// Appends bytes and reports progress.
    public mutating func feed<Bytes: Collection>(_ bytes: Bytes) -> Step where Bytes.Element == UInt8 {
        let searchFrom = max(0, buffer.count - 3)
        buffer.append(contentsOf: bytes)
        guard let end = Self.headEnd(in: buffer, from: searchFrom) else {
            if buffer.count > maximumHeadBytes {
                return .reject(status: 431, reason: "Request Header Fields Too Large")
            }
            return .needMore
        }
        if end > maximumHeadBytes { return .reject(status: 431, reason: "Request Header Fields Too Large") }
        return Self.parseHead(buffer[..<end])
    }

    /// The end of the blank line ending the head (`\r\n\r\n`, or a bare `\n\n` some clients send).
    private static func headEnd(in bytes: [UInt8], from start: Int) -> Int? {
        var i = start
        while i < bytes.count {
            if bytes[i] == 10 {
                if i + 1 < bytes.count, bytes[i + 1] == 10 { return i + 2 }
                if i + 2 < bytes.count, bytes[i + 1] == 13, bytes[i + 2] == 10 { return i + 3 }
            }
            i += 1
        }
        return nil
    }

    private static func parseHead(_ head: ArraySlice<UInt8>) -> Step {
        let lineEnd = head.firstIndex(of: 10) ?? head.endIndex
        var line = head[head.startIndex..<lineEnd]
        if line.last == 13 { line = line.dropLast() }
        guard line.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else {
            return .reject(status: 400, reason: "Bad Request")
        }
        let parts = line.split(separator: 32, omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, !parts[1].isEmpty else {
            return .reject(status: 400, reason: "Bad Request")
        }
        let version = String(decoding: parts[2], as: UTF8.self)
        guard version == "HTTP/1.1" || version == "HTTP/1.0" else {
            return .reject(status: 505, reason: "HTTP Version Not Supported")
        }
        let target = String(decoding: parts[1], as: UTF8.self)
        let path = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? target
        return .request(Request(method: String(decoding: parts[0], as: UTF8.self), path: path, version: version))
    }
}

/// Builds complete responses; every response closes the connection.
enum HTTPResponse {
    static func make(status: Int, reason: String, contentType: String, body: String, includeBody: Bool = true) -> [UInt8] {
        let bodyBytes = Array(body.utf8)
        var head = "HTTP/1.1 \(status) \(reason)\r\n"
        head += "Content-Type: \(contentType)\r\n"
        head += "Content-Length: \(bodyBytes.count)\r\n"
        head += "Connection: close\r\n\r\n"
        return Array(head.utf8) + (includeBody ? bodyBytes : [])
    }
}
