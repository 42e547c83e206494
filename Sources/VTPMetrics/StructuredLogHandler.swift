import Foundation
import Logging
import Synchronization

/// How `StructuredLogHandler` writes an event.
public enum LogFormat: String, Sendable, CaseIterable {
    /// `2026-12-01T18:00:00.123Z info  vtp.coordinator: shard leased job=3 shard=7 worker=w1`, for people.
    case text
    /// `ts=… level=info logger=vtp.coordinator msg="shard leased" job=3 shard=7 worker=w1`
    case logfmt
    /// `{"ts":"…","level":"info","logger":"vtp.coordinator","msg":"shard leased","job":"3",…}`
    case json
}

/// Where finished log lines go. Writes are serialised so concurrent events never interleave.
public final class LogOutput: Sendable {
    private let writing = Mutex(())
    private let sink: @Sendable (String) -> Void

    /// An output that hands each complete line (with its trailing newline) to `sink`.
    public init(_ sink: @escaping @Sendable (String) -> Void) { self.sink = sink }

    /// Standard error, one `write` per line.
    public static let standardError = LogOutput { line in
        FileHandle.standardError.write(Data(line.utf8))
    }

    func write(_ line: String) { writing.withLock { _ in sink(line) } }
}

/// A swift-log handler printing one line per event: time, level, logger label, message and
/// metadata (job, shard and worker ids travel as metadata), as logfmt or JSON.
public struct StructuredLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    /// The logger's label, printed as `logger`.
    public let label: String
    public let format: LogFormat
    private let output: LogOutput
    private let clock: @Sendable () -> Date

    /// A handler for `label`; `clock` is injectable so tests get fixed timestamps.
    public init(label: String, format: LogFormat = .logfmt, level: Logger.Level = .info,
                output: LogOutput = .standardError, metadataProvider: Logger.MetadataProvider? = nil,
                clock: @escaping @Sendable () -> Date = { Date() }) {
        self.label = label
        self.format = format
        self.logLevel = level
        self.output = output
        self.metadataProvider = metadataProvider
        self.clock = clock
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        // Later sources win: provider (task-local context), then the logger's, then the call's.
        var merged = metadataProvider?.get() ?? [:]
        merged.merge(metadata) { _, new in new }
        if let explicit = event.metadata { merged.merge(explicit) { _, new in new } }
        if let error = event.error, merged["error"] == nil { merged["error"] = .string(String(describing: error)) }
        let line = LogLine(time: clock(), level: event.level, label: label, message: event.message.description,
                           metadata: merged)
        switch format {
        case .text: output.write(line.text())
        case .logfmt: output.write(line.logfmt())
        case .json: output.write(line.json())
        }
    }
}

/// One event's fields and their two renderings. Metadata keys are sorted so lines are stable.
struct LogLine {
    var time: Date
    var level: Logger.Level
    var label: String
    var message: String
    var metadata: Logger.Metadata

    /// Metadata a reader looks for first, in this order, ahead of the other keys (sorted).
    static let leadingKeys = ["job", "shard", "worker"]

    func text() -> String {
        let levelName = level.rawValue
        var line = "\(Self.timestamp(time)) \(levelName)\(String(repeating: " ", count: max(0, 5 - levelName.count))) \(label): \(message)"
        let keys = Self.leadingKeys.filter { metadata[$0] != nil }
            + metadata.keys.filter { !Self.leadingKeys.contains($0) }.sorted()
        for key in keys {
            line += " \(Self.logfmtKey(key))=\(Self.logfmtValue(Self.flatten(metadata[key]!)))"
        }
        // One event, one line: a message with line breaks would otherwise look like several events.
        return line.replacingOccurrences(of: "\n", with: "\\n") + "\n"
    }

    func logfmt() -> String {
        var line = "ts=\(Self.timestamp(time)) level=\(level.rawValue) logger=\(Self.logfmtValue(label)) msg=\(Self.logfmtValue(message))"
        for key in metadata.keys.sorted() {
            line += " \(Self.logfmtKey(key))=\(Self.logfmtValue(Self.flatten(metadata[key]!)))"
        }
        return line + "\n"
    }

    func json() -> String {
        var line = "{\"ts\":\(Self.jsonString(Self.timestamp(time))),\"level\":\(Self.jsonString(level.rawValue))"
        line += ",\"logger\":\(Self.jsonString(label)),\"msg\":\(Self.jsonString(message))"
        for key in metadata.keys.sorted() where !["ts", "level", "logger", "msg"].contains(key) {
            line += ",\(Self.jsonString(key)):\(Self.jsonValue(metadata[key]!))"
        }
        return line + "}\n"
    }

    /// RFC 3339 UTC with milliseconds.
    static func timestamp(_ date: Date) -> String {
        // Nearest millisecond: a fraction such as .789 is not exact in binary and would truncate to .788.
        let totalMillis = Int64((date.timeIntervalSince1970 * 1000).rounded())
        let wholeSeconds = totalMillis >= 0 ? totalMillis / 1000 : (totalMillis - 999) / 1000
        var seconds = time_t(wholeSeconds)
        let millis = Int(totalMillis - wholeSeconds * 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ n: Int32, _ width: Int) -> String {
            let digits = String(n)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2)).\(pad(Int32(millis), 3))Z"
    }

    static func flatten(_ value: Logger.Metadata.Value) -> String {
        switch value {
        case .string(let s): s
        case .stringConvertible(let c): c.description
        case .array(let items): "[" + items.map(flatten).joined(separator: ",") + "]"
        case .dictionary(let d): "{" + d.keys.sorted().map { "\($0):\(flatten(d[$0]!))" }.joined(separator: ",") + "}"
        }
    }

    /// Keys may not contain spaces, `=` or quotes in logfmt; such characters become `_`.
    static func logfmtKey(_ key: String) -> String {
        let cleaned = String(key.unicodeScalars.map { c -> Character in
            c.value <= 0x20 || c == "=" || c == "\"" ? "_" : Character(c)
        })
        return cleaned.isEmpty ? "_" : cleaned
    }

    /// Bare when safe, otherwise double-quoted with `\` `"` and control characters escaped.
    static func logfmtValue(_ value: String) -> String {
        let needsQuotes = value.isEmpty || value.unicodeScalars.contains { $0.value <= 0x20 || $0 == "=" || $0 == "\"" || $0 == "\\" }
        // Quoted logfmt values use JSON string escaping.
        return needsQuotes ? jsonString(value) : value
    }

    static func jsonValue(_ value: Logger.Metadata.Value) -> String {
        switch value {
        case .string(let s): jsonString(s)
        case .stringConvertible(let c): jsonString(c.description)
        case .array(let items): "[" + items.map(jsonValue).joined(separator: ",") + "]"
        case .dictionary(let d):
            "{" + d.keys.sorted().map { "\(jsonString($0)):\(jsonValue(d[$0]!))" }.joined(separator: ",") + "}"
        }
    }

    static func jsonString(_ text: String) -> String {
        var out = "\""
        for c in text.unicodeScalars {
            switch c {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if c.value < 0x20 { out += "\\u" + hex4(c.value) } else { out.unicodeScalars.append(c) }
            }
        }
        return out + "\""
    }

    private static func hex4(_ value: UInt32) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 4 - digits.count) + digits
    }
}

/// Process-wide logging setup for the `vtp` executables.
public enum VTPLogging {
    /// The format and level of the one bootstrap this process made, nil before it.
    private static let installed = Mutex<(format: LogFormat, level: Logger.Level)?>(nil)

    /// Routes every `Logger` in the process to `StructuredLogHandler` at `level` in `format`.
    ///
    /// swift-log allows one bootstrap per process (a second traps), so only the first call takes
    /// effect; later ones return false and change nothing. Long-running commands call it first
    /// thing in `run()`; tests never call it (they build loggers with an explicit handler).
    @discardableResult
    public static func bootstrap(level: Logger.Level = .info, format: LogFormat = .text,
                                 output: LogOutput = .standardError) -> Bool {
        let first = installed.withLock { current in
            guard current == nil else { return false }
            current = (format, level)
            return true
        }
        guard first else { return false }
        LoggingSystem.bootstrap { label in
            StructuredLogHandler(label: label, format: format, level: level, output: output)
        }
        return true
    }

    /// The format `bootstrap` installed, nil when it was not called (the `vtp` command then
    /// reports a fatal error as plain text).
    public static var installedFormat: LogFormat? { installed.withLock { $0?.format } }

    /// The level names, in increasing severity, as `--log-level` and `logging.level` accept them.
    public static let levelNames = Logger.Level.allCases.map(\.rawValue)

    /// Parses a level name (`trace`, `debug`, `info`, `notice`, `warning`, `error`, `critical`).
    public static func level(named name: String) -> Logger.Level? {
        Logger.Level(rawValue: name.lowercased())
    }

    /// Parses a format name (`text`, `logfmt`, `json`).
    public static func format(named name: String) -> LogFormat? {
        LogFormat(rawValue: name.lowercased())
    }

    /// A log format or level that is not one of the allowed names.
    public struct ChoiceError: Error, CustomStringConvertible, Equatable, Sendable {
        public let description: String
    }

    /// The format and level to log with: each command-line value when given, else the
    /// configuration file's (`configured…`, with `configurationSource` naming where it came from),
    /// else `text` and `info`. A value that names no format or level is an error naming the
    /// option or key and the allowed values.
    public static func choose(formatOption: String?, levelOption: String?,
                              configuredFormat: String? = nil, configuredLevel: String? = nil,
                              configurationSource: String = "configuration") throws(ChoiceError) -> (format: LogFormat, level: Logger.Level) {
        func pick<T>(_ option: String?, _ optionName: String, _ configured: String?, _ key: String,
                     _ parse: (String) -> T?, _ allowed: [String], _ fallback: T) throws(ChoiceError) -> T {
            let allowedText = allowed.joined(separator: ", ")
            if let option {
                guard let value = parse(option) else {
                    throw ChoiceError(description: "\(optionName): '\(option)' is not one of \(allowedText)")
                }
                return value
            }
            if let configured {
                guard let value = parse(configured) else {
                    throw ChoiceError(description: "\(configurationSource): \(key): '\(configured)' is not one of \(allowedText)")
                }
                return value
            }
            return fallback
        }
        let format = try pick(formatOption, "--log-format", configuredFormat, "logging.format", format(named:),
                              LogFormat.allCases.map(\.rawValue), .text)
        let level = try pick(levelOption, "--log-level", configuredLevel, "logging.level", level(named:), levelNames, .info)
        return (format, level)
    }
}
