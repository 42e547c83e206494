import Foundation

/// Builds input trees from the fixture images.
public struct InputTree: Sendable {
    public let dir: TemporaryDirectory

    public init(_ label: String) throws { dir = try TemporaryDirectory(label) }

    public var path: String { dir.path }

    /// Copies fixture image `name` to `relative` under the tree.
    public func copy(_ name: String, to relative: String) throws {
        let target = dir.file(relative)
        try FileManager.default.createDirectory(atPath: (target as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: Fixtures.path("images/" + name), toPath: target)
    }

    /// Writes raw bytes to `relative`.
    public func write(_ bytes: [UInt8], to relative: String) throws {
        let target = dir.file(relative)
        try FileManager.default.createDirectory(atPath: (target as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        guard FileManager.default.createFile(atPath: target, contents: Data(bytes)) else {
            throw CocoaError(.fileWriteUnknown)
        }
    }

    /// The first `fraction` of a fixture image's bytes.
    public static func truncated(_ name: String, keep fraction: Double) throws -> [UInt8] {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("images/" + name))))
        return Array(bytes.prefix(Int(Double(bytes.count) * fraction)))
    }
}

/// The tiny model and its reference outputs.
public enum TinyModel {
    public static var directory: String { Fixtures.path("vtp-tiny") }
    public static let channels = 16, grid = 16
    public static var latentElements: Int { channels * grid * grid }
}

/// Runs `tar` (the real one) in `directory`.
public func runTar(_ arguments: [String], in directory: String) throws {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["tar"] + arguments
    process.currentDirectoryURL = URL(fileURLWithPath: directory)
    try process.run()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else { throw CocoaError(.fileWriteUnknown) }
}
