import VTPVocabulary
/// Everything that can go wrong listing or reading a dataset; each case names the file (and line
/// or member) so an operator can find the bad input.
public enum DatasetError: Error, CustomStringConvertible, Equatable {
    case cannotRead(path: String, reason: String)
    /// A FIFO, socket, device or directory where a file was expected; refused before reading.
    case notRegularFile(path: String, kind: String)
    /// A file larger than the caller allows itself to read into memory.
    case tooLarge(path: String, size: Int64, limit: Int)
    case notADirectory(path: String)
    case noClasses(path: String)
    case emptyClasses(path: String, classes: [String])
    case badManifestRow(path: String, line: Int, detail: String)
    case badManifestHeader(path: String, detail: String)
    case duplicateId(path: String, id: String, firstLine: Int, line: Int)
    case badTar(path: String, offset: Int64, detail: String)
    case badSample(path: String, member: String, detail: String)
    case unknownFormat(path: String)
    /// A `--classes` file that cannot serve as a class list.
    case badClassList(path: String, detail: String)
    /// A manifest read in several passes that differed between them.
    case changedWhileListed(path: String, detail: String)
    /// Two WebDataset shards of one file name: their sample ids (`<tar name>/<key>`) would repeat.
    case duplicateShardName(path: String, other: String)
    /// The scratch directory a large listing spills to (duplicate-id check) cannot be used.
    case scratchSpace(path: String, reason: String)

    public var description: String {
        switch self {
        case let .cannotRead(path, reason): "\(path): cannot read: \(reason)"
        case let .notRegularFile(path, kind): "\(path): not a regular file (\(kind)), expected an image file"
        case let .tooLarge(path, size, limit): "\(path): \(size) bytes, more than the \(limit) bytes allowed for one item"
        case let .notADirectory(path): "\(path): not a directory"
        case let .noClasses(path): "\(path): no class directories found (ImageFolder expects root/<class>/<image>)"
        case let .emptyClasses(path, classes):
            "\(path): no image files for classes \(classes.joined(separator: ", ")); supported extensions are \(ImageExtensions.all.joined(separator: ", "))"
        case let .badManifestRow(path, line, detail): "\(path):\(line): \(detail)"
        case let .badManifestHeader(path, detail): "\(path):1: bad header: \(detail)"
        case let .duplicateId(path, id, firstLine, line): "\(path):\(line): id '\(id)' already used on line \(firstLine)"
        case let .badTar(path, offset, detail): "\(path): bad tar archive at byte \(offset): \(detail)"
        case let .badSample(path, member, detail): "\(path): member '\(member)': \(detail)"
        case let .unknownFormat(path): "\(path): not a directory, .jsonl, .csv or .tar input"
        case let .badClassList(path, detail): "\(path): \(detail) (expected a UTF-8 text file with one class name per line)"
        case let .changedWhileListed(path, detail): "\(path): changed while it was being listed (\(detail)); nothing was enqueued, run again once it is complete"
        case let .duplicateShardName(path, other):
            "\(path): a shard with the same file name as \(other); sample ids ('<tar name>/<key>') would repeat, rename one"
        case let .scratchSpace(path, reason):
            "\(path): cannot hold the scratch file of the duplicate-id check (\(reason)); it needs 8 bytes per manifest row, set TMPDIR to a directory with room"
        }
    }
}
