import Foundation
import Testing
import VTPVocabulary
@testable import VTPText

@Suite struct TokenizerBehaviourTests {
    let tokenizer: CLIPTokenizer

    init() throws { tokenizer = try CLIPTokenizer.bundled() }

    @Test func vocabularyHasCLIPLayout() {
        #expect(tokenizer.vocabularySize == 49408)
        #expect(tokenizer.encode("a dog") == [320, 1929])
        #expect(tokenizer.encode("") == [])
    }

    @Test func contextShapeAndTruncation() {
        let long = String(repeating: "dog ", count: 200)
        let row = tokenizer.tokenize(long)
        #expect(row.count == 77)
        #expect(row.first == CLIPTokenizer.startToken)
        #expect(row.last == CLIPTokenizer.endToken)
        #expect(tokenizer.tokenize("", contextLength: 5) == [49406, 49407, 0, 0, 0])
        #expect(tokenizer.tokenize("a dog", contextLength: 1) == [49407])
        // 0 means "default" in the reference (`context_length or 77`).
        #expect(tokenizer.tokenize("a dog", contextLength: 0).count == 77)
    }

    @Test func specialTokenTextMapsToSpecialIds() {
        #expect(tokenizer.encode("<start_of_text>x<end_of_text>") == [49406, 343, 49407])
    }

    @Test func concurrentUseGivesSameIdsAsSerial() async throws {
        let texts = (0..<400).map { "prompt \($0): a photo of a \(["red", "blue", "große", "café", "東京"][$0 % 5]) thing #\($0 * 7)" }
        let serialTokenizer = try CLIPTokenizer(vocabularyPath: CLIPTokenizerTestPaths.vocabulary)
        let expected = serialTokenizer.tokenize(texts)
        let shared = tokenizer
        let results = await withTaskGroup(of: (Int, [[Int32]]).self) { group in
            for worker in 0..<8 {
                group.addTask { (worker, shared.tokenize(texts)) }
            }
            var all: [[[Int32]]] = []
            for await (_, rows) in group { all.append(rows) }
            return all
        }
        #expect(results.count == 8)
        for rows in results { #expect(rows == expected) }
    }

    @Test func invalidVocabularyFilesAreTypedErrors() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vtp-text-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }

        let missing = dir.appendingPathComponent("missing.txt.gz").path
        #expect(throws: CLIPTokenizerError.vocabularyNotFound(name: missing)) {
            try CLIPTokenizer(vocabularyPath: missing)
        }

        let garbage = dir.appendingPathComponent("garbage.gz").path
        #expect(FileManager.default.createFile(atPath: garbage, contents: Data("not gzip at all".utf8)))
        #expect {
            try CLIPTokenizer(vocabularyPath: garbage)
        } throws: { error in
            guard case .gzip(let path, _) = error as? CLIPTokenizerError else { return false }
            return path == garbage
        }

        // A real gzip prefix cut in half is reported as truncated.
        let real = try Data(contentsOf: URL(fileURLWithPath: CLIPTokenizerTestPaths.vocabulary))
        let truncated = dir.appendingPathComponent("truncated.gz").path
        #expect(FileManager.default.createFile(atPath: truncated, contents: real.prefix(real.count / 2)))
        #expect(throws: CLIPTokenizerError.gzip(path: truncated, detail: "truncated gzip stream")) {
            try CLIPTokenizer(vocabularyPath: truncated)
        }
    }

    @Test func malformedMergesAreReported() {
        #expect {
            try BytePairVocabulary(mergesText: "#version\na b\n", path: "short.txt")
        } throws: { error in
            guard case .malformedVocabulary(let path, let detail) = error as? CLIPTokenizerError else { return false }
            return path == "short.txt" && detail.contains("48894")
        }
    }
}

enum CLIPTokenizerTestPaths {
    static let vocabulary = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Sources/VTPText/Resources/bpe_simple_vocab_16e6.txt.gz").path
}

@Suite struct BytePairAlgorithmTests {
    /// The heap version must reproduce the reference's rewrite loop on any symbol sequence.
    @Test func heapMergeEqualsDirectMerge() throws {
        let vocabulary = try CLIPTokenizer.bundled().vocabulary
        var generator = SystemRandomNumberGenerator()
        let alphabets: [[String]] = [
            ["a", "b", "e", "n", "r", "s", "t"], ["a"], ["東", "京", "の", "写", "真", "猫"], ["ab", "ba", "aa", "a b"],
            ["😀", "é", "ß", "x", "1", "-"],
        ]
        for round in 0..<300 {
            let alphabet = alphabets[round % alphabets.count]
            let count = Int.random(in: 1...120, using: &generator)
            let word = (0..<count).map { _ in alphabet.randomElement(using: &generator)! }.joined()
            let bytes = Array(word.utf8)
            var symbols = bytes.dropLast().map { vocabulary.byteIDs[Int($0)] }
            symbols.append(vocabulary.byteEndIDs[Int(bytes.last!)])
            #expect(vocabulary.mergeWithHeap(symbols) == vocabulary.mergeDirect(symbols), "\(word)")
        }
    }

    @Test func longWordsStayFast() throws {
        let tokenizer = try CLIPTokenizer.bundled()
        let paragraph = String(repeating: "東京タワーの写真と猫", count: 2_000)
        let clock = ContinuousClock()
        var ids: [Int] = []
        let elapsed = clock.measure { ids = tokenizer.encode(paragraph) }
        #expect(ids.count > 2_000)
        #expect(elapsed < .seconds(10))
    }
}

@Suite struct HostileInputTests {
    @Test func megabyteOfTextGivesOneContextRow() throws {
        let tokenizer = try CLIPTokenizer.bundled()
        let huge = String(repeating: "Ã©tÃ© &amp; a \u{0}\u{1B}[0m dog 東京 ", count: 40_000)
        let row = tokenizer.tokenize(huge)
        #expect(row.count == 77)
        #expect(row[0] == CLIPTokenizer.startToken && row[76] == CLIPTokenizer.endToken)
        #expect(!row.contains(0))
    }

    @Test func everyByteValueAndControlCharacterIsHandled() throws {
        let tokenizer = try CLIPTokenizer.bundled()
        let allBytes = (0...255).map(UInt8.init)
        let ids = tokenizer.encode(utf8: allBytes)
        #expect(!ids.isEmpty)
        let controls = String(String.UnicodeScalarView((0..<0x20).compactMap(Unicode.Scalar.init) + (0x7F...0x9F).compactMap(Unicode.Scalar.init)))
        #expect(tokenizer.tokenize(controls).count == 77)
    }
}
