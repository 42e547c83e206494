import Foundation
import VTPVocabulary
import VTPImage
import VTPSafeTensors
import VTPTestSupport

/// Test inputs: the shared fixtures plus this target's own `Resources/`.
enum TestImages {
    static let fixtureNames: [String] = [
        "astronaut.png", "astronaut_rgba.png", "camera_gray.png", "chelsea.jpg", "chelsea_gray.jpg",
        "chelsea_tiny.jpg", "coffee.jpg", "coffee_cmyk.jpg", "coffee_palette.png", "dog.png",
        "hubble_large.jpg", "rocket.jpg", "rocket_progressive.jpg",
    ]

    static func fixture(_ name: String) -> String { Fixtures.path("images/\(name)") }

    static let resources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Resources")

    static func resource(_ name: String) -> String { resources.appendingPathComponent(name).path }

    /// Names of the generated PNG/WebP variants (everything with an expected decoding).
    static func resourceNames() throws -> [String] {
        try SafeTensorsFile(path: resource("expected.safetensors")).names.sorted()
    }

    /// A fresh temporary directory, removed by the caller.
    static func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("vtp-image-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }
}

/// How two equally sized uint8 images differ.
struct PixelComparison: CustomStringConvertible {
    let maxDifference: Int
    let identicalFraction: Double

    init(_ ours: [UInt8], _ reference: [UInt8]) {
        precondition(ours.count == reference.count)
        var maxDifference = 0, identical = 0
        for (a, b) in zip(ours, reference) {
            let d = abs(Int(a) - Int(b))
            maxDifference = max(maxDifference, d)
            if d == 0 { identical += 1 }
        }
        self.maxDifference = maxDifference
        identicalFraction = reference.isEmpty ? 1 : Double(identical) / Double(reference.count)
    }

    var description: String { "max diff \(maxDifference), \(String(format: "%.4f", identicalFraction * 100))% identical" }
}
