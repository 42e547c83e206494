/// Per-channel mean and standard deviation for torchvision `Normalize`.
public struct Normalization: Sendable, Equatable {
    /// R, G, B means (as float32, the dtype torch casts them to).
    public let mean: [Float]
    /// R, G, B standard deviations.
    public let std: [Float]

    /// Three means and three non-zero standard deviations.
    public init(mean: [Float], std: [Float]) throws(ImageError) {
        guard mean.count == 3, std.count == 3, !std.contains(0) else {
            throw .invalidArgument("normalization needs 3 means and 3 non-zero stds, got \(mean) / \(std)")
        }
        self.mean = mean
        self.std = std
    }

    private init(unchecked mean: [Float], _ std: [Float]) {
        self.mean = mean
        self.std = std
    }

    /// timm's IMAGENET_DEFAULT_MEAN / IMAGENET_DEFAULT_STD.
    public static let imagenet = Normalization(unchecked: [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    /// mean = std = 0.5, mapping [0, 1] to [-1, 1].
    public static let half = Normalization(unchecked: [0.5, 0.5, 0.5], [0.5, 0.5, 0.5])

    /// `(v / 255 - mean) / std` for every byte value, in float32 with torch's operation
    /// order (ToTensor divides, Normalize subtracts then divides), so a lookup is exact.
    func table(channel: Int) -> [Float] {
        (0..<256).map { (Float($0) / 255 - mean[channel]) / std[channel] }
    }
}

extension RGBImage {
    /// torchvision `ToTensor()` followed by `Normalize(mean, std)` (or no normalization when
    /// `normalization` is nil), optionally mirrored first, written as float32 CHW planes into
    /// `destination`, which must hold exactly `3 * height * width` floats. Pass a slice of a
    /// (B, 3, H, W) batch buffer to fill one sample in place.
    public func writeCHW(
        into destination: UnsafeMutableBufferPointer<Float>, normalization: Normalization?, flipHorizontally: Bool = false
    ) throws(ImageError) {
        let plane = width * height
        guard destination.count == 3 * plane, let base = destination.baseAddress else {
            throw .invalidArgument("CHW buffer holds \(destination.count) floats, a \(width)x\(height) image needs \(3 * plane)")
        }
        let tables: [[Float]] = (0..<3).map { channel in
            normalization?.table(channel: channel) ?? (0..<256).map { Float($0) / 255 }
        }
        withUnsafePixels { pixels in
            for channel in 0..<3 {
                tables[channel].withUnsafeBufferPointer { table in
                    let out = base + channel * plane
                    for y in 0..<height {
                        let row = pixels.baseAddress! + y * rowBytes + channel
                        let target = out + y * width
                        if flipHorizontally {
                            for x in 0..<width { target[x] = table[Int(row[(width - 1 - x) * 3])] }
                        } else {
                            for x in 0..<width { target[x] = table[Int(row[x * 3])] }
                        }
                    }
                }
            }
        }
    }
}
