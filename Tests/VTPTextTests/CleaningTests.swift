import Testing
import VTPVocabulary
@testable import VTPText

@Suite struct PythonTextTests {
    func cps(_ s: String) -> [UInt32] { PythonText.codePoints(s) }

    @Test func lowerFollowsPython() {
        #expect(PythonText.lower(cps("ΟΔΟΣ ΣΟΦΟΣ Σ AΣ.")) == cps("οδος σοφος σ aς."))
        #expect(PythonText.lower(cps("İ")) == [0x69, 0x307])
        #expect(PythonText.lower(cps("ẞ ǅ")) == cps("ß ǆ"))
    }

    @Test func whitespaceIsPythonIsspace() {
        #expect(PythonText.collapseWhitespace(cps("\u{1C}a\u{1F} \u{3000}b\u{85}\u{200B}c ")) == cps("a b \u{200B}c"))
        #expect(PythonText.strip(cps("\u{2029} x \u{A0}")) == cps("x"))
    }
}

@Suite struct HTMLUnescapeTests {
    func unescape(_ s: String) -> String { PythonText.string(HTMLUnescape.unescape(PythonText.codePoints(s))) }

    @Test func matchesPythonHtmlUnescape() {
        #expect(unescape("&amp;&lt;&gt;&quot;&#39;") == "&<>\"'")
        #expect(unescape("&notit; &notin; &amp") == "¬it; ∉ &")
        #expect(unescape("&#0;&#128;&#x110000;&#xD800;&#1;") == "\u{FFFD}€\u{FFFD}\u{FFFD}")
        #expect(unescape("&#;&#x;&unknown; & &;") == "&#;&#x;&unknown; & &;")
        #expect(unescape("&#65&#x42x") == "ABx")
        #expect(unescape("&NotNestedGreaterGreater;") == "\u{2AA2}\u{338}")
    }
}

@Suite struct TextFixerTests {
    func fix(_ s: String) -> String { PythonText.string(TextFixer.fixText(PythonText.codePoints(s))) }

    @Test func repairsMojibake() {
        #expect(fix("Ã©tÃ©") == "été")
        #expect(fix("doesnâ€™t") == "doesn't")
        #expect(fix("This is fine: café") == "This is fine: café")
    }

    @Test func appliesCharacterFixers() {
        #expect(fix("ﬁsh ＡＢＣ　１") == "fish ABC 1")
        #expect(fix("a\r\nb\rc\u{2028}d") == "a\nb\nc\nd")
        #expect(fix("\u{1B}[31mred\u{1B}[0m\u{7}") == "red")
        #expect(fix("e\u{301}") == "é")
        #expect(fix("&eacute; &EACUTE;") == "é É")
        // A '<' switches HTML unescaping off from that line on.
        #expect(fix("&amp;\n<b> &amp;\n&amp;") == "&\n<b> &amp;\n&amp;")
    }
}

@Suite struct ByteLevelTests {
    @Test func strictUTF8MatchesPython() {
        #expect(StrictUTF8.decode([0x61, 0xC3, 0xA9], allowVariants: false) == [0x61, 0xE9])
        #expect(StrictUTF8.decode([0xC0, 0x80], allowVariants: false) == nil)
        #expect(StrictUTF8.decode([0xC0, 0x80], allowVariants: true) == [0])
        #expect(StrictUTF8.decode([0xED, 0xA0, 0xBD, 0xED, 0xB8, 0x80], allowVariants: true) == [0x1F600])
        #expect(StrictUTF8.decode([0xED, 0xA0, 0x80], allowVariants: true) == nil)
        #expect(StrictUTF8.decode([0xE0, 0x80, 0x80], allowVariants: false) == nil)
        #expect(StrictUTF8.decode([0xF4, 0x90, 0x80, 0x80], allowVariants: false) == nil)
        #expect(StrictUTF8.decode([0xE2, 0x82], allowVariants: false) == nil)
    }

    @Test func lossySequencesBecomeReplacementCharacters() {
        #expect(ByteFixes.replaceLossySequences([0x61, 0xC3, 0x3F, 0x1A]) == [0x61, 0xEF, 0xBF, 0xBD, 0xEF, 0xBF, 0xBD])
    }

    @Test func restoresNoBreakSpace() {
        #expect(ByteFixes.restoreByteA0([0xC3, 0x20, 0x6C]) == [0xC3, 0xA0, 0x20, 0x6C])
        // Before "s " the word rule stays out, but the altered-UTF-8 rule still restores the byte.
        #expect(ByteFixes.restoreByteA0([0xC3, 0x20, 0x73, 0x20]) == [0xC3, 0xA0, 0x73, 0x20])
    }

    @Test func preTokenizerFollowsPattern() {
        let text = PythonText.codePoints("it's 3.5k <start_of_text>'ſ ͅx!!")
        let pieces = PreTokenizer.split(text).map { PythonText.string(text[$0]) }
        #expect(pieces == ["it", "'s", "3", ".", "5", "k", "<start_of_text>", "'ſ", "x", "!!"])
    }
}

@Suite struct JSONStringLineTests {
    @Test func decodesPythonJSONDumps() throws {
        #expect(try JSONStringLine.decode(Array(#" "a \"dog\" \\ \/ \n\t\u00e9\ud83d\ude00" "#.utf8)) == "a \"dog\" \\ / \n\té😀")
        // Lone surrogates, which Python's json accepts, become U+FFFD as ftfy would make them.
        #expect(try JSONStringLine.decode(Array(#""\ud800x\udc00""#.utf8)) == "\u{FFFD}x\u{FFFD}")
        #expect(try JSONStringLine.decode(Array(#""\ud800\u0041""#.utf8)) == "\u{FFFD}A")
        #expect(try JSONStringLine.decode([0x22, 0x63, 0xFF, 0x22]) == "c\u{FFFD}")
    }

    @Test func rejectsWhatIsNotOneString() {
        #expect(throws: JSONStringLine.Invalid(offset: 0, reason: "expected '\"'")) { try JSONStringLine.decode(Array("42".utf8)) }
        #expect(throws: JSONStringLine.Invalid(offset: 3, reason: "unterminated string")) { try JSONStringLine.decode(Array("\"ab".utf8)) }
        #expect(throws: JSONStringLine.Invalid(offset: 4, reason: "unexpected text after the string")) {
            try JSONStringLine.decode(Array("\"a\" x".utf8))
        }
        #expect(throws: JSONStringLine.Invalid(offset: 3, reason: "expected four hex digits after \\u")) {
            try JSONStringLine.decode(Array(#""\u12""#.utf8))
        }
    }
}
