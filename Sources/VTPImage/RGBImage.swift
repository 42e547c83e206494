/// An 8-bit RGB image stored as one contiguous row-major HWC buffer
/// (`pixels[(y * width + x) * 3 + channel]`), the layout `numpy.asarray(pil_image)` has.
public struct RGBImage: Sendable, Equatable {
    /// Columns.
    public let width: Int
    /// Rows.
    public let height: Int
    /// `height * width * 3` bytes, R G B per pixel, rows top to bottom.
    public private(set) var pixels: [UInt8]

    /// Wraps existing pixels; `pixels.count` must be `width * height * 3`.
    public init(width: Int, height: Int, pixels: [UInt8]) throws(ImageError) {
        guard width > 0, height > 0, pixels.count == width * height * 3 else {
            throw .invalidArgument("RGBImage \(width)x\(height) needs \(max(0, width * height * 3)) bytes, got \(pixels.count)")
        }
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// Allocates without zero-filling and lets `fill` write every byte.
    init<E: Error>(width: Int, height: Int, fill: (UnsafeMutableBufferPointer<UInt8>) throws(E) -> Void) throws(E) {
        self.width = width
        self.height = height
        let count = width * height * 3
        var failure: E?
        pixels = [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            do throws(E) {
                try fill(buffer)
                initialized = count
            } catch {
                failure = error
                initialized = 0
            }
        }
        if let failure { throw failure }
    }

    /// Bytes per row.
    public var rowBytes: Int { width * 3 }

    /// Read access to the contiguous pixel buffer.
    public func withUnsafePixels<R, E: Error>(_ body: (UnsafeBufferPointer<UInt8>) throws(E) -> R) throws(E) -> R {
        try pixels.withUnsafeBufferPointer { (buffer) throws(E) -> R in try body(buffer) }
    }

    /// Write access to the contiguous pixel buffer.
    public mutating func withUnsafeMutablePixels<R, E: Error>(
        _ body: (UnsafeMutableBufferPointer<UInt8>) throws(E) -> R
    ) throws(E) -> R {
        try pixels.withUnsafeMutableBufferPointer { (buffer) throws(E) -> R in try body(buffer) }
    }

    /// The pixel at column `x`, row `y`.
    public subscript(x: Int, y: Int) -> (r: UInt8, g: UInt8, b: UInt8) {
        let i = (y * width + x) * 3
        return (pixels[i], pixels[i + 1], pixels[i + 2])
    }
}
