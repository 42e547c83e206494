import FuzzSupport
import VTPDatasets
import VTPVocabulary

/// `ManifestReader.list(manifest:)` (the checking pass and the item pass that `vtp run`/`vtp job
/// submit` run on a `.csv` or `.jsonl` input, read in 1 MiB blocks) on the same bytes as both formats: the RFC 4180 state machine with header mapping, and the
/// JSON Lines reader with its metadata re-encoding.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzManifest(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = fuzzInput(data, size)
    for name in ["manifest.csv", "manifest.jsonl"] {
        let path = ScratchFile.write(bytes, name: name)
        do {
            let listing = try ManifestReader.list(manifest: path)
            var ids = Set<String>()
            for (ordinal, item) in listing.items.enumerated() {
                require(item.ordinal == ordinal, "item \(ordinal) has ordinal \(item.ordinal)")
                require(ids.insert(item.sourceId).inserted, "source id '\(item.sourceId)' listed twice")
                guard case let .file(itemPath) = item.location, !itemPath.isEmpty else {
                    require(false, "manifest item '\(item.sourceId)' is not a file: \(item.location.encoded)")
                    return 0
                }
                require((try? ItemLocation(encoded: item.location.encoded)) == item.location,
                        "location '\(item.location.encoded)' does not round-trip")
                // A label that names a class (names were given) is an index of the class list.
                if !listing.classes.isEmpty, let label = item.label {
                    require(listing.classes.indices.contains(label),
                            "label \(label) of '\(item.sourceId)' is outside the \(listing.classes.count) classes")
                }
                if let metadata = item.metadata {
                    // Metadata is stored and shipped as JSON object text.
                    guard case .object? = try? JSONValue(json: metadata) else {
                        require(false, "metadata of '\(item.sourceId)' is not a JSON object: \(metadata)")
                        return 0
                    }
                }
            }
        } catch {
            require("\(error)".hasPrefix(path + ":"), "manifest error does not name the file: \(error)")
        }
    }
    return 0
}
