import ArgumentParser
import Foundation
import VTPConcurrency
import VTPJobs
import VTPVocabulary
import VTPText

/// `vtp text ...`: the CLIP text tokenizer.
struct TextCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "text",
        abstract: "CLIP text tools.",
        subcommands: [TextTokenizeCommand.self]
    )
}

/// `vtp text tokenize`: prints CLIP token ids, one JSON array per text.
struct TextTokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Print the CLIP token ids of each text as a JSON array (one per line).",
        discussion: """
            Ids match the VTP reference tokenizer (get_tokenizer('ViT-B-32'), ftfy installed): start token 49406, \
            end token 49407, zero padding to the context length. Arguments that are not valid UTF-8 are decoded \
            with U+FFFD replacements.
            """
    )

    @Option(name: .long, parsing: .unconditional, help: "Number of ids per text (CLIP models use 77).")
    var contextLength: Int = CLIPTokenizer.defaultContextLength

    @Flag(name: .long, help: "Read JSON strings from standard input, one per line, instead of arguments.")
    var jsonl = false

    @Argument(help: "Texts to tokenize.")
    var texts: [String] = []

    func validate() throws {
        guard contextLength >= 1 else { throw ValidationError("--context-length must be at least 1, got \(contextLength)") }
        if jsonl && !texts.isEmpty { throw ValidationError("give texts as arguments or --jsonl on standard input, not both") }
    }

    func run() throws {
        let tokenizer = try CLIPTokenizer.bundled()
        if jsonl {
            var lineNumber = 0
            var reader = LineReader(handle: .standardInput)
            while let line = reader.next() {
                lineNumber += 1
                if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { continue }
                let text: String
                do {
                    text = try JSONStringLine.decode(line)
                } catch {
                    throw InputLineError(lineNumber: lineNumber, problem: error)
                }
                print(Self.json(tokenizer.tokenize(text, contextLength: contextLength)))
            }
        } else {
            for text in texts { print(Self.json(tokenizer.tokenize(text, contextLength: contextLength))) }
        }
    }

    static func json(_ ids: [Int32]) -> String { "[" + ids.map(String.init).joined(separator: ",") + "]" }
}

/// A `--jsonl` line that is not one JSON string; stops the command with exit status 1.
struct InputLineError: Error, CustomStringConvertible {
    let lineNumber: Int
    let problem: JSONStringLine.Invalid
    var description: String { "standard input line \(lineNumber): expected one JSON string: \(problem)" }
}

/// Splits a file handle into '\n'-terminated byte lines without decoding them.
struct LineReader {
    let handle: FileHandle
    private var buffer: [UInt8] = []
    private var start = 0
    private var finished = false

    init(handle: FileHandle) { self.handle = handle }

    mutating func next() -> [UInt8]? {
        while true {
            if let newline = buffer[start...].firstIndex(of: 0x0A) {
                let line = Array(buffer[start..<newline])
                start = newline + 1
                return line
            }
            if finished {
                guard start < buffer.count else { return nil }
                let line = Array(buffer[start...])
                start = buffer.count
                return line
            }
            buffer.removeFirst(start)
            start = 0
            let chunk = handle.availableData
            if chunk.isEmpty { finished = true } else { buffer.append(contentsOf: chunk) }
        }
    }
}
