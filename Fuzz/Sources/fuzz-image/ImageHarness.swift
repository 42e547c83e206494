import FuzzSupport
import VTPImage

/// The worker's decode step (`PreprocessPipeline.prepare`): `ImageDecoder(maxPixels:).decode(bytes:source:)`
/// on the raw bytes of an item, which sniffs the format and runs the JPEG, PNG or WebP path with its
/// pixel-limit checks. The limit is lower than the product's default so that a header announcing a
/// large image costs milliseconds, not seconds; the checks are the same code either way, and
/// scripts/fuzz.sh caps single allocations far below what an unchecked 2^32-pixel header would ask for.
private let maxPixels = 1 << 20
private let source = "fuzz-input.img"

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzImage(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = fuzzInput(data, size)
    do {
        let image = try ImageDecoder(maxPixels: maxPixels).decode(bytes: bytes, source: source)
        require(image.width > 0 && image.height > 0 && image.width * image.height <= maxPixels,
                "decoded a \(image.width)x\(image.height) image past the \(maxPixels)-pixel limit")
        require(image.pixels.count == image.width * image.height * 3,
                "\(image.width)x\(image.height) image has \(image.pixels.count) bytes")
    } catch {
        // The worker records this text as the item's failure reason.
        require(error.description.hasPrefix(source + ": "), "decode error does not name its source: \(error)")
    }
    return 0
}
