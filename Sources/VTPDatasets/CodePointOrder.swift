import VTPVocabulary
/// Python's `str` ordering, which torchvision's `sorted()` calls use.
///
/// Python compares strings by Unicode code point; Swift's `<` on `String` compares canonically
/// equivalent forms and so can disagree (e.g. for decomposed accents). Comparing UTF-8 bytes is
/// exactly code-point order, because UTF-8 preserves the ordering of the scalars it encodes.
public enum CodePointOrder {
    /// Whether `a` sorts before `b` in Python.
    @inlinable
    public static func less(_ a: String, _ b: String) -> Bool {
        a.utf8.lexicographicallyPrecedes(b.utf8)
    }

    /// `strings` sorted as Python's `sorted()` would.
    public static func sorted(_ strings: [String]) -> [String] {
        strings.sorted(by: less)
    }
}

/// The image file extensions torchvision's `IMG_EXTENSIONS` accepts, matched case-insensitively.
public enum ImageExtensions {
    /// torchvision's list, in its order.
    public static let all = [".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"]

    /// Whether `fileName` ends in one of the extensions, ignoring ASCII case as `str.lower()` would
    /// for these all-ASCII suffixes.
    public static func matches(_ fileName: String) -> Bool {
        let lower = fileName.lowercased()
        return all.contains { lower.hasSuffix($0) }
    }
}
