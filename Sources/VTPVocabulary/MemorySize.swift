import Foundation

/// A memory size written the way users write them on a command line or in a job document: `16G`,
/// `512M`, `1.5G`, `2048K` or a plain number of bytes. Units are binary (K = 1024 bytes, M = 1024 K,
/// G = 1024 M, T = 1024 G), as `free -h` and container memory limits count; a trailing `B` or `iB`
/// (`16GB`, `16GiB`) is accepted and means the same.
public enum MemorySize {
    /// Bytes in `text`. `option` names the flag or JSON key in the error (`--index-memory`, `index_memory`).
    /// - Throws: `JobError.invalidParameter(field: option, …)` saying what was expected.
    public static func parse(_ text: String, option: String) throws(JobError) -> Int {
        func bad(_ why: String) -> JobError {
            .invalidParameter(field: option, detail: "\(why); expected a size like 16G, 512M, 2048K or a number of bytes (binary units), got '\(text)'")
        }
        var body = Substring(text.trimmingCharacters(in: .whitespaces).uppercased())
        guard !body.isEmpty else { throw bad("empty") }
        if body.hasSuffix("IB") { body = body.dropLast(2) } else if body.hasSuffix("B") { body = body.dropLast() }
        var shift = 0
        if let unit = body.last, let power = ["K": 10, "M": 20, "G": 30, "T": 40][String(unit)] {
            shift = power
            body = body.dropLast()
        }
        guard !body.isEmpty, body.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }), body.filter({ $0 == "." }).count <= 1,
              let number = Double(body) else {
            throw bad("not a number with an optional K, M, G or T suffix")
        }
        let bytes = number * Double(1 << shift)
        guard bytes >= 1 else { throw bad("must be at least one byte") }
        guard bytes < 9.0e18 else { throw bad("too large") }
        return Int(bytes)
    }

    /// `bytes` in the largest binary unit that keeps it at least 1, for messages and records (`2.0G`).
    public static func describe(_ bytes: Int) -> String {
        let units = ["", "K", "M", "G", "T"]
        var value = Double(bytes), unit = 0
        while value >= 1024, unit < units.count - 1 { value /= 1024; unit += 1 }
        return unit == 0 ? "\(bytes)" : String(format: "%.1f%@", value, units[unit])
    }
}
