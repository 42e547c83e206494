import Foundation

/// Prometheus's own checker for the text exposition format, used where it is installed.
///
/// Tests that scrape vtp's metrics run it on what they scraped; on a machine without promtool
/// there is nothing to check the format with, so `check` returns nil and the test skips that part.
public enum Promtool {
    /// The places Debian's `prometheus` package and a manual install put the binary.
    static let candidates = ["/usr/bin/promtool", "/usr/local/bin/promtool"]

    /// The installed promtool, if any.
    public static var path: String? { candidates.first { FileManager.default.isExecutableFile(atPath: $0) } }

    /// `promtool check metrics` on `exposition`: its exit status and what it printed (lint
    /// findings name the metric), or nil when promtool is not installed.
    public static func check(_ exposition: String) throws -> (status: Int32, output: String)? {
        guard let path else { return nil }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = ["check", "metrics"]
        let input = Pipe(), output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = output
        try process.run()
        input.fileHandleForWriting.write(Data(exposition.utf8))
        try input.fileHandleForWriting.close()
        let report = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, report)
    }
}
