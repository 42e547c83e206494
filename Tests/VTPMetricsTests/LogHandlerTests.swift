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

    @Test func textLineIsTimeLevelLoggerMessageThenIdsFirst() {
        let collector = LineCollector()
        var log = logger(.text, collector)
        log[metadataKey: "worker"] = "w1"
        log.info("shard leased", metadata: ["job": "3", "shard": "7"])
        log.warning("lease expired", metadata: ["event": "lease_expired", "shard": "2", "job": "3", "outcome": "requeued"])
        log.critical("fatal error", metadata: ["error": "two\nlines", "path": "/data/a b.jpg"])
        log.debug("not shown")
        #expect(collector.lines == [
            "2025-11-29T01:54:56.789Z info  vtp.coordinator: shard leased job=3 shard=7 worker=w1\n",
            "2025-11-29T01:54:56.789Z warning vtp.coordinator: lease expired job=3 shard=2 worker=w1 event=lease_expired outcome=requeued\n",
            "2025-11-29T01:54:56.789Z critical vtp.coordinator: fatal error worker=w1 error=\"two\\nlines\" path=\"/data/a b.jpg\"\n",
        ])
    }

    @Test func textMessageWithLineBreaksStaysOneLine() {
        let collector = LineCollector()
        logger(.text, collector).error("first\nsecond")
        #expect(collector.lines == ["2025-11-29T01:54:56.789Z error vtp.coordinator: first\\nsecond\n"])
    }

    @Test func optionsWinOverTheConfigurationAndDefaultsAreTextAndInfo() throws {
        let defaults = try VTPLogging.choose(formatOption: nil, levelOption: nil)
        #expect(defaults.format == .text && defaults.level == .info)
        let configured = try VTPLogging.choose(formatOption: nil, levelOption: nil, configuredFormat: "logfmt", configuredLevel: "debug")
        #expect(configured.format == .logfmt && configured.level == .debug)
        let overridden = try VTPLogging.choose(formatOption: "JSON", levelOption: "error", configuredFormat: "logfmt", configuredLevel: "debug")
        #expect(overridden.format == .json && overridden.level == .error)
    }

    @Test(arguments: [
        ("xml", nil, nil, "--log-format: 'xml' is not one of text, logfmt, json"),
        (nil, "loud", nil, "--log-level: 'loud' is not one of trace, debug, info, notice, warning, error, critical"),
        (nil, nil, "yaml", "vtp.toml: logging.format: 'yaml' is not one of text, logfmt, json"),
    ] as [(String?, String?, String?, String)])
    func badNamesAreErrorsNamingTheOptionOrKeyAndTheAllowedValues(_ format: String?, _ level: String?, _ configured: String?,
                                                                  _ expected: String) {
        #expect {
            try VTPLogging.choose(formatOption: format, levelOption: level, configuredFormat: configured, configurationSource: "vtp.toml")
        } throws: { error in
            (error as? VTPLogging.ChoiceError)?.description == expected
        }
    }

    @Test func levelNamesParse() {
        #expect(VTPLogging.level(named: "WARNING") == .warning)
        #expect(VTPLogging.level(named: "trace") == .trace)
        #expect(VTPLogging.level(named: "loud") == nil)
        #expect(LogFormat(rawValue: "json") == .json)
        #expect(VTPLogging.format(named: "Text") == .text && VTPLogging.format(named: "xml") == nil)
        #expect(VTPLogging.levelNames == ["trace", "debug", "info", "notice", "warning", "error", "critical"])
    }
}
