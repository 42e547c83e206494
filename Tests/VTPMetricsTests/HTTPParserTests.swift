import Testing
import VTPVocabulary
@testable import VTPMetrics

@Suite("HTTP request head parser")
struct HTTPParserTests {
    @Test func parsesAHeadDeliveredByteByByte() {
        var parser = HTTPRequestParser()
        let text = Array("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n".utf8)
        for byte in text.dropLast() { #expect(parser.feed([byte]) == .needMore) }
        #expect(parser.feed([text.last!]) == .request(.init(method: "GET", path: "/metrics", version: "HTTP/1.1")))
    }

    @Test func acceptsBareNewlines() {
        var parser = HTTPRequestParser()
        #expect(parser.feed(Array("HEAD / HTTP/1.0\n\n".utf8)) == .request(.init(method: "HEAD", path: "/", version: "HTTP/1.0")))
    }

    @Test func rejectsMalformedOversizedAndUnknownVersions() {
        var bad = HTTPRequestParser()
        #expect(bad.feed(Array("GARBAGE\r\n\r\n".utf8)) == .reject(status: 400, reason: "Bad Request"))
        var control = HTTPRequestParser()
        #expect(control.feed(Array("GET /\u{1} HTTP/1.1\r\n\r\n".utf8)) == .reject(status: 400, reason: "Bad Request"))
        var version = HTTPRequestParser()
        #expect(version.feed(Array("GET / HTTP/2.0\r\n\r\n".utf8)) == .reject(status: 505, reason: "HTTP Version Not Supported"))
        var big = HTTPRequestParser(maximumHeadBytes: 64)
        #expect(big.feed(Array("GET / HTTP/1.1\r\n".utf8)) == .needMore)
        #expect(big.feed(Array(repeating: UInt8(ascii: "a"), count: 100)) == .reject(status: 431, reason: "Request Header Fields Too Large"))
    }
}
