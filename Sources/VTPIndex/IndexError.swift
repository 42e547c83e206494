import Foundation

/// Everything that can go wrong building, writing, reading or searching an embedding index.
/// Each case names the file or argument involved and what was expected.
public enum IndexError: Error, CustomStringConvertible, Equatable, Sendable {
    /// faiss rejected or failed an operation; `operation` says which, `path` names the file when there is one.
    case faiss(operation: String, path: String?, status: Int, message: String)
    /// Vectors or queries do not have the dimension the index or the other files have.
    case dimensionMismatch(source: String, expected: Int, found: Int)
    /// A buffer's length is not a whole number of rows.
    case raggedBuffer(source: String, count: Int, dimension: Int)
    /// An argument or option is out of range.
    case invalidArgument(name: String, detail: String)
    /// An embedding is NaN or infinite; faiss would silently rank it anywhere.
    case nonFiniteValue(source: String, row: Int)
    /// There is nothing to index.
    case empty(source: String)
    /// An embedding file could not be read or is not an N x D array.
    case badEmbeddingFile(path: String, detail: String)
    /// The index files of a directory do not agree with each other or with `infos.json`.
    case inconsistentIndex(path: String, detail: String)
    /// The index or its infos could not be written.
    case writeFailed(path: String, reason: String)

    public var description: String {
        switch self {
        case let .faiss(operation, path, status, message):
            "faiss \(operation)\(path.map { " of \($0)" } ?? "") failed (status \(status)): \(message)"
        case let .dimensionMismatch(source, expected, found):
            "\(source): expected vectors of dimension \(expected), found \(found)"
        case let .raggedBuffer(source, count, dimension):
            "\(source): \(count) floats are not a whole number of rows of dimension \(dimension)"
        case let .invalidArgument(name, detail): "\(name): \(detail)"
        case let .nonFiniteValue(source, row): "\(source): row \(row) holds a NaN or infinite value"
        case let .empty(source): "\(source): no vectors to index"
        case let .badEmbeddingFile(path, detail): "\(path): bad embedding file: \(detail)"
        case let .inconsistentIndex(path, detail): "\(path): inconsistent index: \(detail)"
        case let .writeFailed(path, reason): "\(path): cannot write: \(reason)"
        }
    }
}

extension IndexError {
    /// Creates the index's output directory (and its parents), as `writeFailed` naming it if it cannot.
    static func createDirectory(_ path: String) throws {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw IndexError.writeFailed(path: path, reason: "\(error)")
        }
    }
}
