import Foundation
import VTPStorage

/// The `img_emb/img_emb_{i}.npy` files of a `clip-embed` run, concatenated in item order.
enum EmbeddingFiles {
    struct Loaded {
        var values: [Float]
        var dimension: Int
        var files: [String]
    }

    /// Reads every `*.npy` in `directory`, sorted by file name, as one row-major float32 matrix.
    static func load(directory: String) throws -> Loaded {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".npy") }
                .sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        } catch {
            throw IndexError.badEmbeddingFile(path: directory, detail: "cannot list directory: \(error)")
        }
        guard !names.isEmpty else { throw IndexError.empty(source: directory + "/*.npy") }
        var values: [Float] = []
        var dimension: Int?
        var firstFile = ""
        var paths: [String] = []
        for name in names {
            let path = (directory as NSString).appendingPathComponent(name)
            let array: NpyFile.Array
            do {
                array = try NpyFile.read(path)
            } catch {
                throw IndexError.badEmbeddingFile(path: path, detail: "\(error)")
            }
            guard array.shape.count == 2 else {
                throw IndexError.badEmbeddingFile(path: path, detail: "expected a 2-D N x D array, found shape \(array.shape)")
            }
            if let dimension, array.shape[1] != dimension {
                throw IndexError.dimensionMismatch(source: "\(path) (\(firstFile) has \(dimension))", expected: dimension, found: array.shape[1])
            }
            if dimension == nil {
                dimension = array.shape[1]
                firstFile = name
                reserveForAll(names, in: directory, firstFileValues: array.values.count, into: &values)
            }
            values.append(contentsOf: array.values)
            paths.append(path)
        }
        guard let dimension, dimension > 0 else { throw IndexError.badEmbeddingFile(path: directory, detail: "embeddings have dimension 0") }
        return Loaded(values: values, dimension: dimension, files: paths)
    }

    /// Reserves room for every file's values up front, estimated from file sizes at the first file's
    /// bytes per value, so 10^7 rows are not copied over and over while the array grows.
    private static func reserveForAll(_ names: [String], in directory: String, firstFileValues: Int, into values: inout [Float]) {
        func size(_ name: String) -> Int {
            ((try? FileManager.default.attributesOfItem(atPath: (directory as NSString).appendingPathComponent(name)))?[.size] as? Int) ?? 0
        }
        guard firstFileValues > 0 else { return }
        let bytesPerValue = max(1, (size(names[0]) + firstFileValues / 2) / firstFileValues)
        values.reserveCapacity(names.reduce(0) { $0 + size($1) } / bytesPerValue)
    }
}
