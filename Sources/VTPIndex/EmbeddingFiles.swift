import Foundation

/// The `img_emb/img_emb_{i}.npy` files of a `clip-embed` run, in item order.
enum EmbeddingFiles {
    /// Paths of every `*.npy` in `directory`, sorted by file name (item order: shard numbers are zero-padded).
    static func list(directory: String) throws -> [String] {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".npy") }
                .sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        } catch {
            throw IndexError.badEmbeddingFile(path: directory, detail: "cannot list directory: \(error)")
        }
        guard !names.isEmpty else { throw IndexError.empty(source: directory + "/*.npy") }
        return names.map { (directory as NSString).appendingPathComponent($0) }
    }
}
