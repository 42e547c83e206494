import Foundation
import VTPVocabulary

/// A fresh directory under the system temp dir, removed when the value dies.
final class TempDir {
    let path: String

    init() throws {
        path = NSTemporaryDirectory() + "vtp-storage-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    /// Every entry name in the directory, sorted.
    func names(_ sub: String = "") throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: sub.isEmpty ? path : path + "/" + sub).sorted()
    }
}

/// Deterministic pseudo-random floats (xorshift), so failures reproduce.
func pseudoRandom(count: Int, seed: UInt64, scale: Float = 3, offset: Float = 0) -> [Float] {
    var s = seed | 1
    return (0..<count).map { _ in
        s ^= s << 13; s ^= s >> 7; s ^= s << 17
        return Float(Double(s >> 11) / Double(1 << 53)) * 2 * scale - scale + offset
    }
}
