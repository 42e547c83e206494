import Foundation
import Testing
import VTPVocabulary
import VTPTestSupport
@testable import VTPText

/// Cases produced by the reference tokenizer (see Tests/Fixtures/README.md and scripts/gen_tokenizer_cases.py).
struct ReferenceCase: Decodable, Sendable, CustomTestStringConvertible {
    let text: String
    let ids: [Int32]?
    let clean: String?
    let bpe: [Int]?
    let utf8_hex: String?
    let context_length: Int?

    var testDescription: String { utf8_hex.map { "bytes \($0)" } ?? String(reflecting: String(text.prefix(60))) }

    var rawBytes: [UInt8]? {
        guard let hex = utf8_hex else { return nil }
        var bytes: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            bytes.append(UInt8(hex[index..<next], radix: 16)!)
            index = next
        }
        return bytes
    }
}

enum ReferenceCases {
    static func shipped() throws -> [ReferenceCase] {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("tokenizer_cases.json")))
        return try JSONDecoder().decode([ReferenceCase].self, from: data)
    }

    struct ExtraFile: Decodable { let cases: [ReferenceCase] }

    static let extraPath = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/tokenizer_extra_cases.json")

    static func extra() throws -> [ReferenceCase] {
        try JSONDecoder().decode(ExtraFile.self, from: Data(contentsOf: extraPath)).cases
    }

    static func extraOrEmpty() -> [ReferenceCase] { (try? extra()) ?? [] }
    static func shippedOrEmpty() -> [ReferenceCase] { (try? shipped()) ?? [] }
}

@Suite struct ReferenceCaseTests {
    let tokenizer: CLIPTokenizer

    init() throws { tokenizer = try CLIPTokenizer.bundled() }

    @Test func fixtureFilesLoad() throws {
        #expect(try ReferenceCases.shipped().count == 53)
        #expect(try ReferenceCases.extra().count >= 130)
    }

    @Test("Tests/Fixtures/tokenizer_cases.json", arguments: ReferenceCases.shippedOrEmpty())
    func shippedCase(_ c: ReferenceCase) {
        #expect(tokenizer.tokenize(c.text) == c.ids!)
    }

    @Test("the shipped cases as one batch") func shippedBatch() throws {
        let cases = try ReferenceCases.shipped()
        #expect(tokenizer.tokenize(cases.map(\.text)) == cases.map { $0.ids! })
    }

    @Test("extra reference cases", arguments: ReferenceCases.extraOrEmpty())
    func extraCase(_ c: ReferenceCase) {
        if let bytes = c.rawBytes {
            #expect(String(decoding: bytes, as: UTF8.self) == c.text, "decoding with replacement differs from Python")
            #expect(tokenizer.encode(utf8: bytes) == c.bpe)
            #expect(tokenizer.tokenize(utf8: bytes) == c.ids!)
        }
        if let clean = c.clean {
            #expect(PythonText.codePoints(tokenizer.clean(c.text)) == PythonText.codePoints(clean))
        }
        if let bpe = c.bpe { #expect(tokenizer.encode(c.text) == bpe) }
        #expect(tokenizer.tokenize(c.text, contextLength: c.context_length ?? 77) == c.ids!)
    }
}

@Suite struct FuzzCaseTests {
    /// 1500 seeded random texts full of mojibake, entities, controls and mixed scripts, with the ids the
    /// reference pipeline gives them (scripts/gen_tokenizer_cases.py).
    @Test func randomTextsMatchReference() throws {
        let tokenizer = try CLIPTokenizer.bundled()
        let url = ReferenceCases.extraPath.deletingLastPathComponent().appendingPathComponent("tokenizer_fuzz_cases.json")
        let cases = try JSONDecoder().decode(ReferenceCases.ExtraFile.self, from: Data(contentsOf: url)).cases
        #expect(cases.count == 1500)
        var failures: [String] = []
        for c in cases where tokenizer.encode(c.text) != c.bpe {
            failures.append(String(reflecting: c.text))
        }
        #expect(failures.isEmpty, "\(failures.count) mismatches, first: \(failures.prefix(5))")
    }
}
