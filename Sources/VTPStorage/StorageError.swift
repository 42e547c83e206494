import VTPVocabulary
/// Everything that can go wrong writing or reading an output file; each case names the file.
public enum StorageError: Error, CustomStringConvertible, Equatable {
    case writeFailed(path: String, reason: String)
    case readFailed(path: String, reason: String)
    case badInput(path: String, detail: String)
    case badFormat(path: String, detail: String)

    public var description: String {
        switch self {
        case let .writeFailed(path, reason): "\(path): cannot write: \(reason)"
        case let .readFailed(path, reason): "\(path): cannot read: \(reason)"
        case let .badInput(path, detail): "\(path): refusing to write: \(detail)"
        case let .badFormat(path, detail): "\(path): bad file: \(detail)"
        }
    }
}
