import Foundation
import Synchronization

/// Rendering entry point the registry uses for families of any series type.
protocol ExposableFamily: Sendable {
    var name: String { get }
    func appendExposition(to output: inout String)
}

/// All series of one metric name, one per combination of label values.
///
/// The series themselves are `Sendable` handles onto mutex-guarded storage.
public final class MetricFamily<Series: MetricSeries>: ExposableFamily, Sendable {
    /// The metric name.
    public let name: String
    /// The `# HELP` text.
    public let help: String
    /// Label names, in the order `labels(_:)` takes their values.
    public let labelNames: [String]
    private let make: @Sendable () -> Series
    /// Series by label values, and the label values in creation order.
    private let series: Mutex<(children: [[String]: Series], order: [[String]])>

    init(name: String, help: String, labelNames: [String], make: @escaping @Sendable () -> Series) {
        self.name = name
        self.help = help
        self.labelNames = labelNames
        self.make = make
        // An unlabelled metric exists from the start, so scrapes show an explicit 0 rather than nothing.
        series = Mutex(labelNames.isEmpty ? (children: [[]: make()], order: [[]]) : (children: [:], order: []))
    }

    /// The series for these label values (in `labelNames` order), created on first use.
    public func labels(_ values: [String]) throws -> Series {
        guard values.count == labelNames.count else {
            throw MetricsError.labelCountMismatch(metric: name, expected: labelNames.count, got: values.count)
        }
        return series.withLock { state in
            if let existing = state.children[values] { return existing }
            let created = make()
            state.children[values] = created
            state.order.append(values)
            return created
        }
    }

    /// The series for these label values.
    public func labels(_ values: String...) throws -> Series { try labels(values) }

    func appendExposition(to output: inout String) {
        let series = self.series.withLock { state in state.order.map { ($0, state.children[$0]!) } }
        output += "# HELP \(name) \(Exposition.escapeHelp(help))\n"
        output += "# TYPE \(name) \(Series.exposedType)\n"
        for (values, child) in series {
            child.appendSamples(name: name, labels: zip(labelNames, values).map { ($0, $1) }, to: &output)
        }
    }
}

/// Text exposition format 0.0.4 details: escaping and number formatting.
public enum Exposition {
    /// The `Content-Type` of a scrape response.
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// HELP text escapes backslash and newline.
    public static func escapeHelp(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for c in text.unicodeScalars {
            switch c {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    /// Label values escape backslash, double quote and newline.
    public static func escapeLabelValue(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for c in text.unicodeScalars {
            switch c {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    /// Sample values: integers without a fraction, `+Inf`, `-Inf`, `NaN`, otherwise the shortest round-trip form.
    public static func format(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value == .infinity { return "+Inf" }
        if value == -.infinity { return "-Inf" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return "\(value)"
    }

    static func appendSample(name: String, labels: [(name: String, value: String)], value: Double,
                             to output: inout String) {
        output += name
        if !labels.isEmpty {
            output += "{"
            for (i, label) in labels.enumerated() {
                if i > 0 { output += "," }
                output += label.name
                output += "=\""
                output += escapeLabelValue(label.value)
                output += "\""
            }
            output += "}"
        }
        output += " "
        output += format(value)
        output += "\n"
    }

    static func isValidMetricName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, isLetter(first) || first == "_" || first == ":" else { return false }
        return name.unicodeScalars.allSatisfy { isLetter($0) || isDigit($0) || $0 == "_" || $0 == ":" }
    }

    static func isValidLabelName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, isLetter(first) || first == "_", !name.hasPrefix("__") else {
            return false
        }
        return name.unicodeScalars.allSatisfy { isLetter($0) || isDigit($0) || $0 == "_" }
    }

    private static func isLetter(_ c: Unicode.Scalar) -> Bool { ("a"..."z").contains(c) || ("A"..."Z").contains(c) }
    private static func isDigit(_ c: Unicode.Scalar) -> Bool { ("0"..."9").contains(c) }
}
