import Foundation

/// Short human spellings of durations, rates, sizes and counts for terminal output.
/// Pure functions, so every rounding edge is unit-tested.
public enum HumanFormat {
    /// `45s`, `3m05s`, `2h03m`, `3d04h`; `-` for nil, negative or non-finite input.
    public static func duration(_ seconds: Double?) -> String {
        guard let seconds, seconds.isFinite, seconds >= 0 else { return "-" }
        let total = Int64(seconds.rounded())
        if total < 60 { return "\(total)s" }
        if total < 3600 { return "\(total / 60)m\(pad2(total % 60))s" }
        if total < 86_400 { return "\(total / 3600)h\(pad2(total % 3600 / 60))m" }
        return "\(total / 86_400)d\(pad2(total % 86_400 / 3600))h"
    }

    /// Items per second with three significant digits: `0.52/s`, `12.3/s`, `845/s`, `12.5k/s`.
    public static func rate(_ perSecond: Double) -> String {
        guard perSecond.isFinite, perSecond > 0 else { return "0/s" }
        return significant(perSecond) + "/s"
    }

    /// Binary sizes: `512 B`, `1.5 KiB`, `3.25 GiB`.
    public static func bytes(_ count: Int64) -> String {
        guard count >= 1024 else { return "\(max(0, count)) B" }
        let units = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
        var value = Double(count) / 1024
        var unit = 0
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return trimmed(value, decimals: value < 10 ? 2 : (value < 100 ? 1 : 0)) + " " + units[unit]
    }

    /// Thousands separated by commas: `1,234,567`.
    public static func count(_ value: Int64) -> String {
        let digits = String(value.magnitude)
        var out = ""
        for (i, c) in digits.enumerated() {
            if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
            out.append(c)
        }
        return (value < 0 ? "-" : "") + out
    }

    /// A fraction as a percentage with one decimal: `42.5%`; clamps to 0...100.
    public static func percent(_ fraction: Double) -> String {
        let clamped = fraction.isFinite ? min(1, max(0, fraction)) : 0
        return String(format: "%.1f%%", clamped * 100)
    }

    /// Three significant digits with k/M/G suffixes.
    static func significant(_ value: Double) -> String {
        let suffixes = ["", "k", "M", "G", "T"]
        var scaled = value
        var index = 0
        while scaled >= 999.5 && index < suffixes.count - 1 {
            scaled /= 1000
            index += 1
        }
        let decimals = scaled >= 99.95 ? 0 : (scaled >= 9.995 ? 1 : 2)
        return trimmed(scaled, decimals: decimals) + suffixes[index]
    }

    /// Fixed decimals with trailing zeros (and a bare point) removed.
    static func trimmed(_ value: Double, decimals: Int) -> String {
        var text = String(format: "%.\(decimals)f", value)
        if text.contains(".") {
            while text.hasSuffix("0") { text.removeLast() }
            if text.hasSuffix(".") { text.removeLast() }
        }
        return text
    }

    private static func pad2(_ value: Int64) -> String { value < 10 ? "0\(value)" : "\(value)" }
}

/// A fixed-width progress bar.
public enum ProgressBar {
    /// Glyph set.
    public enum Style: Sendable {
        /// Block characters with eighth-cell resolution.
        case unicode
        /// `#` and `.`, for terminals and logs without UTF-8.
        case ascii
    }

    /// `width` cells filled in proportion to `fraction` (clamped to 0...1, NaN counts as 0).
    public static func render(fraction: Double, width: Int, style: Style = .unicode) -> String {
        let width = max(0, width)
        let clamped = fraction.isFinite ? min(1, max(0, fraction)) : 0
        switch style {
        case .ascii:
            let filled = Int((clamped * Double(width)).rounded(.down))
            return String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        case .unicode:
            let eighths = Int((clamped * Double(width) * 8).rounded(.down))
            let full = eighths / 8
            let partial = eighths % 8
            let partials = ["", "▏", "▎", "▍", "▌", "▋", "▊", "▉"]
            var bar = String(repeating: "█", count: full)
            if full < width {
                bar += partial > 0 ? partials[partial] : "░"
                bar += String(repeating: "░", count: width - full - 1)
            }
            return bar
        }
    }
}

/// Left/right aligned columns separated by two spaces, widths fitted to the content.
public struct TextTable: Sendable {
    /// Column alignment.
    public enum Alignment: Sendable { case left, right }

    public var headers: [String]
    public var alignments: [Alignment]
    public private(set) var rows: [[String]] = []

    /// A table with these headers; columns are left-aligned unless `alignments` says otherwise.
    public init(headers: [String], alignments: [Alignment]? = nil) {
        self.headers = headers
        self.alignments = alignments ?? Array(repeating: .left, count: headers.count)
    }

    /// Adds a row; missing cells print empty, extra cells are dropped.
    public mutating func append(_ row: [String]) {
        rows.append((0..<headers.count).map { $0 < row.count ? row[$0] : "" })
    }

    /// The table as lines without trailing spaces, each ending in a newline.
    public func render() -> String {
        let all = [headers] + rows
        let widths = (0..<headers.count).map { column in all.map { $0[column].count }.max() ?? 0 }
        var out = ""
        for row in all {
            var cells: [String] = []
            for (column, cell) in row.enumerated() {
                let padding = String(repeating: " ", count: widths[column] - cell.count)
                let alignment = column < alignments.count ? alignments[column] : .left
                cells.append(alignment == .left ? cell + padding : padding + cell)
            }
            var line = cells.joined(separator: "  ")
            while line.hasSuffix(" ") { line.removeLast() }
            out += line + "\n"
        }
        return out
    }
}
