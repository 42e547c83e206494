/// Errors raised while loading the CLIP vocabulary or reading tokenizer input.
public enum CLIPTokenizerError: Error, Equatable, CustomStringConvertible {
    /// The bundled vocabulary resource is missing from the module bundle.
    case vocabularyNotFound(name: String)
    /// The gzip stream could not be inflated; `detail` is zlib's message.
    case gzip(path: String, detail: String)
    /// The vocabulary file decoded but does not have the CLIP layout.
    case malformedVocabulary(path: String, detail: String)

    public var description: String {
        switch self {
        case .vocabularyNotFound(let name):
            return "CLIP vocabulary resource '\(name)' not found in the VTPText bundle"
        case .gzip(let path, let detail):
            return "cannot gunzip \(path): \(detail)"
        case .malformedVocabulary(let path, let detail):
            return "malformed CLIP vocabulary \(path): \(detail)"
        }
    }
}
