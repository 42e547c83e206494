import Foundation

/// OpenAI CLIP's byte-level BPE text tokenizer, producing the ids the VTP reference produces with
/// `vtp.tokenizers.get_tokenizer('ViT-B-32', context_length=77)` and `ftfy` installed.
///
/// Text goes through `ftfy.fix_text` (ftfy 6 defaults), two rounds of `html.unescape`, whitespace
/// collapsing and Python's `str.lower()`, then the reference's regular-expression pre-tokenizer, the
/// byte-to-unicode mapping and BPE. Load it once and share it: it is immutable apart from an
/// internally locked BPE cache, so one instance serves any number of threads.
public final class CLIPTokenizer: Sendable {
    /// `<start_of_text>`
    public static let startToken: Int32 = 49406
    /// `<end_of_text>`
    public static let endToken: Int32 = 49407
    /// The context length every CLIP model uses.
    public static let defaultContextLength = 77
    /// Name of the bundled merges file.
    public static let vocabularyResource = "bpe_simple_vocab_16e6.txt.gz"

    let vocabulary: BytePairVocabulary
    private let cache = BytePairCache()

    /// Loads a gzip'ed CLIP merges file (`bpe_simple_vocab_16e6.txt.gz`).
    public init(vocabularyPath path: String) throws(CLIPTokenizerError) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .vocabularyNotFound(name: path)
        }
        let text = String(decoding: try Gunzip.decompress([UInt8](data), path: path), as: UTF8.self)
        vocabulary = try BytePairVocabulary(mergesText: text, path: path)
        guard vocabulary.startID == Self.startToken, vocabulary.endID == Self.endToken else {
            throw .malformedVocabulary(path: path, detail: "special tokens at \(vocabulary.startID)/\(vocabulary.endID), expected 49406/49407")
        }
    }

    private static let bundledResult: Result<CLIPTokenizer, CLIPTokenizerError> = {
        let name = (vocabularyResource as NSString).deletingPathExtension
        guard let url = Bundle.module.url(forResource: name, withExtension: "gz") else {
            return .failure(.vocabularyNotFound(name: vocabularyResource))
        }
        return Result { () throws(CLIPTokenizerError) in try CLIPTokenizer(vocabularyPath: url.path) }
    }()

    /// The tokenizer over the vocabulary bundled with VTPText, loaded on first use and shared.
    public static func bundled() throws(CLIPTokenizerError) -> CLIPTokenizer {
        try bundledResult.get()
    }

    /// Number of vocabulary entries (49408 for CLIP).
    public var vocabularySize: Int { vocabulary.count }

    /// The reference's `_clean_lower`: `ftfy.fix_text`, `html.unescape` twice, strip,
    /// `" ".join(text.split())`, `lower()`.
    public func clean(_ text: String) -> String {
        PythonText.string(cleanCodePoints(PythonText.codePoints(text)))
    }

    func cleanCodePoints(_ text: [UInt32]) -> [UInt32] {
        var t = TextFixer.fixText(text)
        t = HTMLUnescape.unescape(HTMLUnescape.unescape(t))
        t = PythonText.collapseWhitespace(PythonText.strip(t))
        return PythonText.lower(t)
    }

    /// BPE ids of `text` without start/end tokens, padding or truncation (the reference's `encode`).
    public func encode(_ text: String) -> [Int] {
        encodeIDs(PythonText.codePoints(text)).map(Int.init)
    }

    /// `encode` for raw bytes. Invalid UTF-8 is decoded with U+FFFD replacements exactly as Python's
    /// `bytes.decode("utf-8", errors="replace")` does (one U+FFFD per maximal invalid subsequence),
    /// which is the `str` the reference would be handed for such input.
    public func encode(utf8 bytes: some Collection<UInt8>) -> [Int] {
        encode(String(decoding: bytes, as: UTF8.self))
    }

    func encodeIDs(_ text: [UInt32]) -> [Int32] {
        let cleaned = cleanCodePoints(text)
        var ids = [Int32]()
        ids.reserveCapacity(cleaned.count / 3 + 4)
        var bytes = [UInt8]()
        for range in PreTokenizer.split(cleaned) {
            bytes.removeAll(keepingCapacity: true)
            for c in cleaned[range] { appendUTF8(c, to: &bytes) }
            ids.append(contentsOf: bpe(bytes))
        }
        return ids
    }

    private static let specialWords: [[UInt8]: [Int32]] = [
        Array("<start_of_text>".utf8): [startToken], Array("<end_of_text>".utf8): [endToken],
    ]

    private func bpe(_ bytes: [UInt8]) -> [Int32] {
        if let special = Self.specialWords[bytes] { return special }
        if let hit = cache.value(for: bytes) { return hit }
        let ids = vocabulary.encodeWord(bytes)
        cache.store(ids, for: bytes)
        return ids
    }

    /// Token ids of one text as the model consumes them: start token, BPE ids, end token, zero
    /// padding to `contextLength`; longer texts are cut to `contextLength` with the end token kept last.
    ///
    /// A `contextLength` below 1 falls back to 77, as the reference's `context_length or 77` does for 0.
    public func tokenize(_ text: String, contextLength: Int = CLIPTokenizer.defaultContextLength) -> [Int32] {
        let length = contextLength >= 1 ? contextLength : Self.defaultContextLength
        var tokens = [Self.startToken]
        tokens.append(contentsOf: encodeIDs(PythonText.codePoints(text)))
        tokens.append(Self.endToken)
        if tokens.count > length {
            tokens.removeLast(tokens.count - length)
            tokens[length - 1] = Self.endToken
        }
        tokens.append(contentsOf: repeatElement(0, count: length - tokens.count))
        return tokens
    }

    /// `tokenize` for raw bytes, decoded like `encode(utf8:)`.
    public func tokenize(utf8 bytes: some Collection<UInt8>, contextLength: Int = CLIPTokenizer.defaultContextLength) -> [Int32] {
        tokenize(String(decoding: bytes, as: UTF8.self), contextLength: contextLength)
    }

    /// Batch form used by CLIP jobs: one row of exactly `contextLength` ids per text.
    ///
    /// Ids are `Int32` (the vocabulary has 49408 entries) so rows can be copied straight into the
    /// text tower's integer input; the reference returns the same values as int64.
    public func tokenize(_ texts: [String], contextLength: Int = CLIPTokenizer.defaultContextLength) -> [[Int32]] {
        texts.map { tokenize($0, contextLength: contextLength) }
    }

    @inline(__always) private func appendUTF8(_ c: UInt32, to bytes: inout [UInt8]) {
        switch c {
        case 0..<0x80:
            bytes.append(UInt8(c))
        case 0x80..<0x800:
            bytes.append(UInt8(0xC0 | (c >> 6))); bytes.append(UInt8(0x80 | (c & 0x3F)))
        case 0x800..<0x10000:
            bytes.append(UInt8(0xE0 | (c >> 12))); bytes.append(UInt8(0x80 | ((c >> 6) & 0x3F)))
            bytes.append(UInt8(0x80 | (c & 0x3F)))
        default:
            bytes.append(UInt8(0xF0 | (c >> 18))); bytes.append(UInt8(0x80 | ((c >> 12) & 0x3F)))
            bytes.append(UInt8(0x80 | ((c >> 6) & 0x3F))); bytes.append(UInt8(0x80 | (c & 0x3F)))
        }
    }
}
