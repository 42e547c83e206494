import Foundation
import VTPSafeTensors

/// The stand-in weights of the metric networks that scripts/reference/metric_weights.py gave the
/// reference when it wrote the goldens, rebuilt bit for bit from `Tests/Fixtures/metric-weights-layout.json`
/// (the released weights come from the network and do not fit in the repository).
public enum StandInWeights {
    struct Entry: Decodable {
        var name: String
        var shape: [Int]
        var low: Double
        var high: Double
    }

    /// FNV-1a 64 of the name's UTF-8 bytes: the generator's seed.
    static func seed(_ name: String) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in name.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
        return h
    }

    /// `count` values `(z >> 40) / 2^24` of splitmix64 seeded with the name's hash.
    public static func uniforms(_ name: String, count: Int) -> [Double] {
        let s = seed(name)
        return (0..<count).map { i in
            var z = s &+ UInt64(i + 1) &* 0x9E37_79B9_7F4A_7C15
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            return Double(z >> 40) / Double(1 << 24)
        }
    }

    /// Writes the stand-in weights of `network` (`inception` or `lpips`) to `path` as safetensors.
    public static func write(network: String, to path: String) throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("metric-weights-layout.json")))
        let layout = try JSONDecoder().decode([String: [Entry]].self, from: data)
        guard let entries = layout[network] else { throw CocoaError(.fileReadCorruptFile) }
        var writer = SafeTensorsWriter()
        for entry in entries {
            let count = entry.shape.reduce(1, *)
            let values = uniforms(entry.name, count: count).map { Float(entry.low + (entry.high - entry.low) * $0) }
            values.withUnsafeBufferPointer { writer.add(entry.name, shape: entry.shape, values: $0) }
        }
        try writer.write(to: path)
    }
}
