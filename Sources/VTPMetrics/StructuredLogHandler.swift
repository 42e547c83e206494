import Foundation
import Logging

/// How `StructuredLogHandler` writes an event.
public enum LogFormat: String, Sendable, CaseIterable {
    /// `ts=… level=info logger=vtp.coordinator msg="shard leased" job=3 shard=7 worker=w1`
    case logfmt
    /// `{"ts":"…","level":"info","logger":"vtp.coordinator","msg":"shard leased","job":"3",…}`
    case json
}

/// Where finished log lines go. Writes are serialised so concurrent events never interleave.
///
/// `@unchecked Sendable` is safe because `write` runs only while `lock` is held, and the closure
/// itself is `@Sendable`.
public final class LogOutput: @unchecked Sendable {
    private let lock = NSLock()
    private let sink: @Sendable (String) -> Void

    /// An output that hands each complete line (with its trailing newline) to `sink`.
    public init(_ sink: @escaping @Sendable (String) -> Void) { self.sink = sink }

    /// Standard error, one `write` per line.
    public static let standardError = LogOutput { line in
        FileHandle.standardError.write(Data(line.utf8))
    }

    func write(_ line: String) { lock.withLock { sink(line) } }
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
        output.write(format == .json ? line.json() : line.logfmt())
    }
}

/// One event's fields and their two renderings. Metadata keys are sorted so lines are stable.
struct LogLine {
    var time: Date
    var level: Logger.Level
    var label: String
    var message: String
    var metadata: Logger.Metadata

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
    /// Routes every `Logger` in the process to `StructuredLogHandler` at `level` in `format`.
    /// swift-log allows this once per process; call it first thing in `main`/`run()`.
    public static func bootstrap(level: Logger.Level = .info, format: LogFormat = .logfmt,
                                 output: LogOutput = .standardError) {
        LoggingSystem.bootstrap { label in
            StructuredLogHandler(label: label, format: format, level: level, output: output)
        }
    }

    /// Parses a level name (`trace`, `debug`, `info`, `notice`, `warning`, `error`, `critical`).
    public static func level(named name: String) -> Logger.Level? {
        Logger.Level(rawValue: name.lowercased())
    }
}
