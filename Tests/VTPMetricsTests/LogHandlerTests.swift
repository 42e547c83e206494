import Foundation
import Synchronization
import Logging
import Testing
import VTPVocabulary
@testable import VTPMetrics

/// Collects lines a handler writes.
final class LineCollector: Sendable {
    private let stored = Mutex<[String]>([])
    var lines: [String] { stored.withLock { $0 } }
    var output: LogOutput { LogOutput { [self] line in stored.withLock { $0.append(line) } } }
}

@Suite("Structured log handler")
struct LogHandlerTests {
    let fixedTime = Date(timeIntervalSince1970: 1_764_381_296.789)  // 2025-11-29T01:54:56.789Z

    func logger(_ format: LogFormat, _ collector: LineCollector, level: Logger.Level = .info) -> Logger {
        let time = fixedTime
        return Logger(label: "vtp.coordinator") { label in
            StructuredLogHandler(label: label, format: format, level: level, output: collector.output, clock: { time })
        }
    }

    @Test func logfmtLineCarriesLevelLabelMessageAndSortedMetadata() {
        let collector = LineCollector()
        var log = logger(.logfmt, collector)
        log[metadataKey: "worker"] = "w-1"
        log.info("shard leased", metadata: ["job": "3", "shard": "3/7"])
        log.debug("not shown")
        log.warning("odd = \"value\"", metadata: ["path": "/data/a b.jpg", "empty": ""])
        #expect(collector.lines == [
            "ts=2025-11-29T01:54:56.789Z level=info logger=vtp.coordinator msg=\"shard leased\" job=3 shard=3/7 worker=w-1\n",
            "ts=2025-11-29T01:54:56.789Z level=warning logger=vtp.coordinator msg=\"odd = \\\"value\\\"\" empty=\"\" path=\"/data/a b.jpg\" worker=w-1\n",
        ])
    }

    @Test func jsonLineIsValidJSONWithNestedMetadata() throws {
        let collector = LineCollector()
        let log = logger(.json, collector, level: .debug)
        log.debug("stage timings", metadata: ["job": "12", "timings": ["read": "0.1", "infer": "2.5"],
                                              "ids": ["a", "b"], "note": "tab\there\nnewline \u{1}"])
        #expect(collector.lines.count == 1)
        let line = collector.lines[0]
        #expect(line.hasSuffix("}\n"))
        #expect(line.hasPrefix("{\"ts\":\"2025-11-29T01:54:56.789Z\",\"level\":\"debug\",\"logger\":\"vtp.coordinator\",\"msg\":\"stage timings\""))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["job"] as? String == "12")
        #expect(object["ids"] as? [String] == ["a", "b"])
        #expect((object["timings"] as? [String: String]) == ["read": "0.1", "infer": "2.5"])
        #expect(object["note"] as? String == "tab\there\nnewline \u{1}")
    }

    @Test func callMetadataOverridesLoggerMetadata() {
        let collector = LineCollector()
        var log = logger(.logfmt, collector)
        log[metadataKey: "job"] = "1"
        log.error("failed", metadata: ["job": "2"])
        #expect(collector.lines.first?.contains(" job=2\n") == true)
        #expect(collector.lines.first?.contains("level=error") == true)
    }

    @Test func levelNamesParse() {
        #expect(VTPLogging.level(named: "WARNING") == .warning)
        #expect(VTPLogging.level(named: "trace") == .trace)
        #expect(VTPLogging.level(named: "loud") == nil)
        #expect(LogFormat(rawValue: "json") == .json)
    }
}
