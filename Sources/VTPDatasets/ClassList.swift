import Foundation
import VTPVocabulary

/// Class names a job was given (`--classes`): label `i` is `names[i]`. Manifest labels written as
/// class names map to their index here; without a list they are sorted as ImageFolder classes are.
public struct ClassList: Sendable, Equatable {
    /// Names in label order.
    public var names: [String]
    /// Where the names came from (a file path, or `imagenet`), named in errors.
    public var source: String

    public init(names: [String], source: String) {
        self.names = names
        self.source = source
    }

    /// Reads a UTF-8 file with one class name per line (``nonBlankLines(_:)``): the format
    /// `clip-score --classes FILE` reads, so both give a name the same index.
    public static func read(file path: String) throws(DatasetError) -> ClassList {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .cannotRead(path: path, reason: "expected a readable text file with one class name per line")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw .badClassList(path: path, detail: "not UTF-8 text")
        }
        let names = nonBlankLines(text)
        guard !names.isEmpty else { throw .badClassList(path: path, detail: "lists no class names") }
        return ClassList(names: names, source: path)
    }

    /// The non-blank lines of `text`, surrounding spaces and tabs removed (a `\r\n` ending counts
    /// as one line break); a leading byte-order mark, which Windows editors write, is dropped.
    public static func nonBlankLines(_ text: String) -> [String] {
        let text = text.hasPrefix("\u{FEFF}") ? String(text.dropFirst()) : text
        return text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    /// The indices of each name by its UTF-8 bytes (more than one when the list repeats it).
    /// Bytes, not `String`, because Swift's equality merges canonically equivalent spellings
    /// that Python keeps apart.
    var indicesByName: [[UInt8]: [Int]] {
        var index: [[UInt8]: [Int]] = [:]
        for (i, name) in names.enumerated() { index[Array(name.utf8), default: []].append(i) }
        return index
    }
}
