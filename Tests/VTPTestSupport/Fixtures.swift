import Foundation
import VTPSafeTensors

/// Locates the reference fixtures copied into `Tests/Fixtures`.
public enum Fixtures {
    /// `Tests/Fixtures` in the source tree.
    public static let root: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")

    /// The repository's root directory (for tests that check the docs against the code).
    public static var repositoryRoot: String { root.deletingLastPathComponent().deletingLastPathComponent().path }

    /// Path of a file below `Tests/Fixtures`.
    public static func path(_ relative: String) -> String { root.appendingPathComponent(relative).path }

    /// Opens a fixture safetensors file.
    public static func safetensors(_ relative: String) throws -> SafeTensorsFile {
        try SafeTensorsFile(path: path(relative))
    }
}

/// The relative-error measure the fixture README states.
public struct ToleranceReport: CustomStringConvertible, Sendable {
    /// mean|ours - ref| / mean|ref|
    public let meanRelative: Double
    /// max|ours - ref| / max|ref|
    public let maxRelative: Double

    /// Whether both measures are within the fixture tolerance (1e-4 mean, 5e-3 max).
    public var withinFixtureTolerance: Bool { meanRelative <= 1e-4 && maxRelative <= 5e-3 }

    public var description: String { String(format: "mean rel %.3e, max rel %.3e", meanRelative, maxRelative) }

    /// Compares two equally long float sequences.
    public init<A: Collection, B: Collection>(ours: A, reference: B) where A.Element == Float, B.Element == Float {
        precondition(ours.count == reference.count, "length \(ours.count) vs \(reference.count)")
        var sumDiff = 0.0, sumRef = 0.0, maxDiff = 0.0, maxRef = 0.0
        for (a, b) in zip(ours, reference) {
            let d = abs(Double(a) - Double(b))
            sumDiff += d
            sumRef += abs(Double(b))
            maxDiff = max(maxDiff, d.isNaN ? .infinity : d)
            maxRef = max(maxRef, abs(Double(b)))
        }
        meanRelative = sumRef == 0 ? sumDiff : sumDiff / sumRef
        maxRelative = maxRef == 0 ? maxDiff : maxDiff / maxRef
    }
}
