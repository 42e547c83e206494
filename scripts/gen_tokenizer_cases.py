#!/usr/bin/env python3
"""Generate Tests/VTPTextTests/Fixtures/tokenizer_extra_cases.json: expected CLIP token ids for inputs
that Tests/Fixtures/tokenizer_cases.json does not cover.

The tokenizer below follows vtp/tokenizers/text_tokenizer.py (SimpleTokenizer, clean='lower',
context length 77) step by step, with ftfy and regex installed as the reference expects:
    pip install ftfy==6.3.1 regex
Run from the repository root:  python3 scripts/gen_tokenizer_cases.py
Each case records the text (or, for invalid UTF-8, the raw bytes as hex and the text Python decodes
them to with errors="replace"), the cleaned text, the raw BPE ids and the 77 context ids.
"""
import gzip
import html
import json
import os

import ftfy
import regex

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BPE = os.path.join(ROOT, "Sources", "VTPText", "Resources", "bpe_simple_vocab_16e6.txt.gz")
OUT = os.path.join(ROOT, "Tests", "VTPTextTests", "Fixtures", "tokenizer_extra_cases.json")


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


class Reference:
    def __init__(self):
        self.byte_encoder = bytes_to_unicode()
        merges = gzip.open(BPE).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
        merges = [tuple(m.split()) for m in merges]
        vocab = list(self.byte_encoder.values())
        vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m) for m in merges]
        specials = ["<start_of_text>", "<end_of_text>"]
        vocab.extend(specials)
        self.encoder = dict(zip(vocab, range(len(vocab))))
        self.bpe_ranks = dict(zip(merges, range(len(merges))))
        self.cache = {t: t for t in specials}
        self.pat = regex.compile("|".join(specials) + r"""|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
                                 regex.IGNORECASE)

    @staticmethod
    def clean(text):
        text = ftfy.fix_text(text)
        text = html.unescape(html.unescape(text)).strip()
        return " ".join(text.split()).strip().lower()

    def bpe(self, token):
        if token in self.cache:
            return self.cache[token]
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            bigram = min(pairs, key=lambda p: self.bpe_ranks.get(p, float("inf")))
            if bigram not in self.bpe_ranks:
                break
            first, second = bigram
            new_word, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                    new_word.append(first + second)
                    i += 2
                else:
                    new_word.append(word[i])
                    i += 1
            word = tuple(new_word)
        out = " ".join(word)
        self.cache[token] = out
        return out

    def encode(self, text):
        ids = []
        for token in regex.findall(self.pat, self.clean(text)):
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self.bpe(token).split(" "))
        return ids

    def context(self, text, length=77):
        tokens = [49406] + self.encode(text) + [49407]
        if len(tokens) > length:
            tokens = tokens[:length]
            tokens[-1] = 49407
        return tokens + [0] * (length - len(tokens))


TEXTS = [
    # mojibake (UTF-8 read as windows-1252 / latin-1 / other code pages)
    "Ã©tÃ©", "The cafÃ© was closed", "â€œquotedâ€\x9d text", "Ð¿Ñ€Ð¸Ð²ÐµÑ‚ Ð¼Ð¸Ñ€", "Ãºnico seÃ±or",
    "Ã  la carte", "doesnâ€™t work", "l'Ã©lÃ¨ve", "voilÃ  ", "ÐšÐ¸ÐµÐ² 2024", "æ—¥æœ¬èªž",
    "IÃ±tÃ«rnÃ¢tiÃ´nÃ lizÃ¦tiÃ¸n", "This text is fine: café", "Ã¢â‚¬Å“double mojibakeÃ¢â‚¬\x9d",
    "â€¦ and so on", "\x80\x93 c1 controls \x91\x92", "The Mona Lisa doesnÃƒÂ¢Ã¢â€šÂ¬Ã¢â€žÂ¢t have eyebrows.",
    "ÃƒÂ©", "Ã\xa0 cÃ´tÃ© de", "æ\x96\x87å\xad\x97", "ï»¿BOM at start",
    # HTML entities
    "fish &amp; chips", "&lt;b&gt;bold&lt;/b&gt;", "&amp;amp; twice", "&amp;amp;amp; thrice", "caf&eacute;",
    "&EACUTE;t&Eacute;", "&#233;&#x00e9;&#X41;", "&#0; &#128; &#55296; &#1114112; &#xFFFFFFFFF;", "&notit; &notin",
    "&copy2024 &ampersand", "a<b &amp; c", "line1 &amp;\n<line2> &amp;\nline3 &amp;", "&;&#;&#x;&&amp",
    "&nbsp;spaced&nbsp;", "&HilbertSpace; &NotNestedGreaterGreater;", "&#12345678901234567890;",
    # full-width and ligatures
    "ＦＵＬＬ　ＷＩＤＴＨ　１２３", "ｶﾀｶﾅ", "ﬁsh ﬂour ﬀ ﬃ ﬄ ﬅ ﬆ", "Ĳssel ǆungla ǈ",
    # control characters, escapes, line breaks
    "tab\there\nnew\r\nline\rcr", "bell\x07 null\x00 del\x7f esc\x1b[31mred\x1b[0m",
    "zero\u200bwidth joiner\u200d nbsp\xa0 thin\u2009space", "bidi\u202ecsed\u202c \u2066iso\u2069",
    "\ufeffbom \ufff9anchor\ufffb", "sep\u2028line\u2029para\x85nel", "\x1c\x1d\x1e\x1f info seps",
    # quotes and apostrophes / contractions
    "it\u2019s \u201cquoted\u201d \u2018single\u2019 \u02bcmodifier", "I'M HERE, YOU'RE THERE, WE'VE, THEY'LL, HE'D",
    "it's 'quoted' ''double'' '", "'ſ <ſtart_of_text> <START_OF_TEXT> <end_of_text>",
    # emoji and symbols
    "a photo of a 🐶 dog 🐕‍🦺 with 👍🏽 and 🇯🇵", "❤️ love ✨ sparkle ™ ® ©", "≈ ∑ √ ∞ ≠ ±",
    # CJK and other scripts
    "一只可爱的猫", "東京タワーの写真", "한국어 텍스트", "Ελληνικά ΟΔΟΣ ΣΟΦΟΣ", "Привет, мир!", "مرحبا بالعالم",
    "नमस्ते दुनिया", "ภาษาไทย", "İstanbul ıi ß ẞ", "Ǆemal ǅ", "ᾳ ᾼ ͅ alone", "e\u0301 combining n\u0303",
    # numbers
    "٣ ४ ๕ ⅷ ½ ² 12345", "3.14159 and 1,000,000",
    # whitespace only / empty
    "", "   ", "\n\t ", "&nbsp;&nbsp;",
    # very long texts
    "a photo of " + "a very " * 60 + "long dog", "supercalifragilisticexpialidocious" * 20,
    "🐶" * 100, ("word " * 200).strip(),
    "东京塔的照片，一只猫坐在窗台上看着外面的雨。" * 30, "a" * 3000, "ab" * 700 + "c", "x9" * 500,
    "Ã©" * 400, "&amp;" * 300, "word\n" * 300,
]

INVALID_UTF8 = [
    b"caf\xe9", b"\xff\xfe bad", b"truncated \xe2\x82", b"\xed\xa0\x80 surrogate", b"\xc0\x80 overlong",
    b"mixed \xf0\x9f\x90 ok \xf0\x9f\x90\xb6", b"\x80\x81\x82", b"\xf4\x90\x80\x80 too big",
]


def fuzz_texts(count, seed=20261129):
    """Seeded random texts built from pieces that exercise every cleaning step, including mojibake made
    by encoding UTF-8 text and decoding it with the code pages ftfy knows (or a mix of them)."""
    import random
    rng = random.Random(seed)
    words = ["café", "naïve", "Zürich", "señor", "été", "São Paulo", "Kraków", "Ελλάδα", "Москва", "日本語",
             "한국", "中文字", "😀", "🐶", "👍🏽", "—", "…", "“quote”", "it’s", "€5", "½", "©", "™", "°C", "×",
             "dog", "cat", "photo", "of", "a", "the", "A", "BIG", "Ünïcödé", "ß", "ﬁ", "ＡＢ", "ｶﾅ", "١٢٣",
             "x²", "µm", "Œuvre", "Ǆ", "İ", "ΣΟΦΟΣ", "ÿ", "Ł", "ő", "ğ", "ș", "ā", "ž", "č", "→", "♥", "★",
             "\u00e9", "&", "<", ">", "'", "\"", "'s", "'LL", "#1", "@user", "http://x.y/z?a=1&b=2"]
    entities = ["&amp;", "&lt;", "&gt;", "&quot;", "&nbsp;", "&eacute;", "&EACUTE;", "&#233;", "&#x1F600;",
                "&hearts;", "&amp;eacute;", "&copy", "&notin", "&#x80;", "&#150;", "&zwj;", "&NotEqualTilde;"]
    controls = ["\x00", "\x07", "\x1b[1;31m", "\x1b[0m", "\r\n", "\r", "\n", "\t", "\u2028", "\x85", "\ufeff",
                "\u200b", "\u00ad", "\xa0", "\u3000", "\u0301", "\u0345", "\x1c", "\x9d", "\x81", "\x1a"]
    pages = ["latin-1", "windows-1252", "windows-1251", "windows-1250", "windows-1253", "windows-1254",
             "windows-1257", "iso-8859-2", "macroman", "cp437"]

    def mojibake(text):
        page = rng.choice(pages)
        return text.encode("utf-8").decode(page, errors="replace")

    texts = []
    for _ in range(count):
        pieces = []
        for _ in range(rng.randint(1, 12)):
            r = rng.random()
            if r < 0.45:
                pieces.append(rng.choice(words))
            elif r < 0.6:
                pieces.append(rng.choice(entities))
            elif r < 0.72:
                pieces.append(rng.choice(controls))
            elif r < 0.9:
                pieces.append(mojibake(" ".join(rng.choice(words) for _ in range(rng.randint(1, 3)))))
            else:
                pieces.append(str(rng.randint(0, 10 ** rng.randint(1, 8))))
        text = "".join(p + rng.choice([" ", " ", "", "  ", "\n"]) for p in pieces)
        if rng.random() < 0.1:
            text = mojibake(text)
        texts.append(text)
    return texts


def main():
    ref = Reference()
    fuzz_path = os.path.join(os.path.dirname(OUT), "tokenizer_fuzz_cases.json")
    fuzz = [{"text": t, "bpe": ref.encode(t)} for t in fuzz_texts(1500)]
    with open(fuzz_path, "w") as f:
        json.dump({"generator": "scripts/gen_tokenizer_cases.py", "ftfy": ftfy.__version__,
                   "regex": regex.__version__, "cases": fuzz}, f, ensure_ascii=True)
    print(f"wrote {len(fuzz)} cases to {fuzz_path}")
    cases = []
    for text in TEXTS:
        cases.append({"text": text, "clean": ref.clean(text), "bpe": ref.encode(text), "ids": ref.context(text)})
    import random
    rng = random.Random(5)
    pieces = [b"\x80", b"\xbf", b"\xc0", b"\xc1", b"\xc2", b"\xdf", b"\xe0", b"\xe0\xa0", b"\xed\xa0", b"\xef\xbf",
              b"\xf0", b"\xf0\x90", b"\xf0\x90\x80", b"\xf4\x8f", b"\xf5", b"\xff", b"a", b" ", b"\xc3\xa9", b"\xe2\x80\x99",
              b"\xf0\x9f\x98\x80", b"dog"]
    random_bytes = [b"".join(rng.choice(pieces) for _ in range(rng.randint(1, 10))) for _ in range(40)]
    for raw in INVALID_UTF8 + random_bytes:
        text = raw.decode("utf-8", errors="replace")
        cases.append({"utf8_hex": raw.hex(), "text": text, "clean": ref.clean(text), "bpe": ref.encode(text),
                      "ids": ref.context(text)})
    for length in (1, 2, 5, 16):
        text = "a diagram of a cat sitting on the mat"
        cases.append({"text": text, "context_length": length, "ids": ref.context(text, length),
                      "clean": ref.clean(text), "bpe": ref.encode(text)})
    # The shipped fixture must agree with this mirror, or the mirror is wrong.
    with open(os.path.join(ROOT, "Tests", "Fixtures", "tokenizer_cases.json")) as f:
        for case in json.load(f):
            assert ref.context(case["text"]) == case["ids"], case["text"]
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump({"generator": "scripts/gen_tokenizer_cases.py", "ftfy": ftfy.__version__,
                   "regex": regex.__version__, "cases": cases}, f, ensure_ascii=True, indent=1)
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
