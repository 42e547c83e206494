import Foundation
import VTPVocabulary
import VTPImage
import VTPJobs
import VTPSafeTensors
import VTPTensor
import VTPStorage
import VTPTestSupport

/// The tiny fixture's CLIP reference outputs and the texts behind its `text_tokens`.
enum ClipReference {
    /// The captions whose CLIP tokens are the fixture's `text_tokens` rows (checked by a test).
    static let texts = ["a diagram", "a dog", "a cat", "a person", "a photo of a tabby cat.", "a rocket launch"]
    static let dimension = 64

    /// Fixture images, how the reference preprocessed each, and its row in the expected tensors.
    static let images: [(name: String, transform: TransformOption, normalize: NormalizeOption, row: Int)] = [
        ("dog.png", .resize, .imagenet, 0), ("chelsea.jpg", .admCenterCrop, .imagenet, 1), ("rocket.jpg", .admCenterCrop, .half, 2),
    ]

    static func rows(_ name: String) throws -> (values: [Float], width: Int) {
        let t = try Fixtures.safetensors("vtp-tiny.expected.safetensors").tensor(name)
        return (t.toArray(), t.count / t.shape[0])
    }

    static func row(_ name: String, _ row: Int) throws -> [Float] {
        let (values, width) = try rows(name)
        return Array(values[(row * width)..<((row + 1) * width)])
    }
}

/// Reads the outputs of a CLIP job back.
struct ClipOutput {
    let directory: String

    func npy(_ relative: String) throws -> NpyFile.Array { try NpyFile.read(directory + "/" + relative) }

    func jsonl<Row: Decodable>(_ relative: String, as type: Row.Type) throws -> [Row] {
        let data = try Data(contentsOf: URL(fileURLWithPath: directory + "/" + relative))
        return try data.split(separator: UInt8(ascii: "\n")).map { try JSONDecoder().decode(Row.self, from: Data($0)) }
    }

    func manifestObject() throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: directory + "/manifest.json"))
        return try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
    }
}

/// Writes a JSONL manifest of `rows` (path relative to the tree) into `tree`.
func writeManifest(_ rows: [[String: Any]], in tree: InputTree, name: String = "items.jsonl") throws -> String {
    let lines = try rows.map { String(decoding: try JSONSerialization.data(withJSONObject: $0, options: [.sortedKeys]), as: UTF8.self) }
    try tree.write(Array((lines.joined(separator: "\n") + "\n").utf8), to: name)
    return tree.dir.file(name)
}

func dot(_ a: ArraySlice<Float>, _ b: ArraySlice<Float>) -> Float {
    zip(a, b).reduce(0) { $0 + $1.0 * $1.1 }
}

/// Deterministic noise images, so every item has its own embedding.
func noisePNG(seed: UInt64, size: Int = 32) throws -> [UInt8] {
    var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
    var pixels = [UInt8](repeating: 0, count: size * size * 3)
    for i in pixels.indices {
        state ^= state << 13; state ^= state >> 7; state ^= state << 17
        pixels[i] = UInt8(truncatingIfNeeded: state >> 24)
    }
    return [UInt8](try ImageEncoder.png(try RGBImage(width: size, height: size, pixels: pixels)))
}
