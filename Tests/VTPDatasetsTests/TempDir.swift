import Foundation
import VTPVocabulary

/// A fresh directory under the system temp dir, removed when the value dies.
final class TempDir {
    let path: String

    init() throws {
        path = NSTemporaryDirectory() + "vtp-datasets-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    /// Writes `bytes` to `relative`, creating parent directories.
    @discardableResult
    func file(_ relative: String, _ bytes: [UInt8]) throws -> String {
        let full = path + "/" + relative
        try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        guard FileManager.default.createFile(atPath: full, contents: Data(bytes)) else { throw CocoaError(.fileWriteUnknown) }
        return full
    }

    @discardableResult
    func file(_ relative: String, _ text: String) throws -> String { try file(relative, Array(text.utf8)) }

    func dir(_ relative: String) throws {
        try FileManager.default.createDirectory(atPath: path + "/" + relative, withIntermediateDirectories: true)
    }
}

/// Runs `tar` with arguments in `directory`, failing the test on a non-zero exit.
func runTar(_ arguments: [String], in directory: String) throws {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["tar"] + arguments
    p.currentDirectoryURL = URL(fileURLWithPath: directory)
    try p.run()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else {
        throw CocoaError(.fileWriteUnknown, userInfo: [NSLocalizedDescriptionKey: "tar \(arguments) exited \(p.terminationStatus)"])
    }
}
