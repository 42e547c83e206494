import Foundation

/// Why an image pair cannot be scored.
public enum ImageMetricError: Error, Equatable, CustomStringConvertible {
    /// The two images (or the stated shape) disagree in size.
    case shapeMismatch(expected: Int, original: Int, reconstruction: Int)
    /// SSIM's 11×11 window reflects 5 pixels at each border, so each side needs at least 6.
    case tooSmall(height: Int, width: Int)

    public var description: String {
        switch self {
        case let .shapeMismatch(expected, original, reconstruction):
            "image metrics: the shape holds \(expected) values, the original has \(original) and the reconstruction \(reconstruction)"
        case let .tooSmall(height, width): "image metrics: SSIM needs images of at least 6×6 pixels, got \(height)×\(width)"
        }
    }
}

/// The image-quality numbers of the upstream reconstruction evaluation
/// (`tools/test_reconstruction_hf.py`), on one image pair at a time: channel-major float images
/// (C, H, W) with values in [0, 1], as the reference has them after denormalizing and clamping.
///
/// Sums are taken in double precision; the reference works in float32, so results agree with it
/// to about 1e-6 relative.
public enum ReconstructionMetrics {
    /// Upstream's `calculate_psnr` on the images scaled to 0–255: `20·log10(255 / √MSE)`, with MSE
    /// the mean over every value of the image; `+inf` for identical images.
    public static func psnr(original: UnsafeBufferPointer<Float>, reconstruction: UnsafeBufferPointer<Float>) throws(ImageMetricError) -> Double {
        guard original.count == reconstruction.count else {
            throw .shapeMismatch(expected: original.count, original: original.count, reconstruction: reconstruction.count)
        }
        var sum = 0.0
        for i in 0..<original.count {
            // The reference multiplies each image by 255 in float32 before subtracting.
            let d = Double(original[i] * 255) - Double(reconstruction[i] * 255)
            sum += d * d
        }
        let mse = sum / Double(max(1, original.count))
        return mse == 0 ? .infinity : 20 * log10(255 / mse.squareRoot())
    }

    /// The Gaussian window's taps: torchmetrics' `_gaussian` for σ 1.5 and its derived size
    /// `int(3.5σ + 0.5)·2 + 1` = 11, normalized to sum 1.
    static let windowRadius = 5
    static let window: [Double] = {
        let sigma = 1.5
        let taps = (-windowRadius...windowRadius).map { exp(-pow(Double($0) / sigma, 2) / 2) }
        let total = taps.reduce(0, +)
        return taps.map { $0 / total }
    }()

    /// SSIM as torchmetrics' `StructuralSimilarityIndexMeasure(data_range=1.0)` computes it for one
    /// image (its default Gaussian window, σ 1.5, K1 0.01, K2 0.03): each image reflect-padded by 5
    /// pixels, local means and (clamped non-negative) variances and the covariance taken with the
    /// 11×11 window over every pixel, and the SSIM map averaged over all channels and pixels.
    public static func ssim(original: UnsafeBufferPointer<Float>, reconstruction: UnsafeBufferPointer<Float>,
                            channels: Int, height: Int, width: Int) throws(ImageMetricError) -> Double {
        let plane = height * width
        guard original.count == channels * plane, reconstruction.count == channels * plane else {
            throw .shapeMismatch(expected: channels * plane, original: original.count, reconstruction: reconstruction.count)
        }
        let r = windowRadius
        guard height > r, width > r else { throw .tooSmall(height: height, width: width) }
        let c1 = 0.01 * 0.01, c2 = 0.03 * 0.03
        let paddedWidth = width + 2 * r, paddedHeight = height + 2 * r
        // The five maps the window averages, reflect-padded: x, y, x², y², xy.
        var padded = [[Double]](repeating: [Double](repeating: 0, count: paddedHeight * paddedWidth), count: 5)
        var filtered = [[Double]](repeating: [Double](repeating: 0, count: plane), count: 5)
        var columns = [Double](repeating: 0, count: height * paddedWidth)
        var total = 0.0
        for channel in 0..<channels {
            let base = channel * plane
            for py in 0..<paddedHeight {
                let y = reflect(py - r, height)
                for px in 0..<paddedWidth {
                    let x = reflect(px - r, width)
                    let a = Double(original[base + y * width + x]), b = Double(reconstruction[base + y * width + x])
                    let p = py * paddedWidth + px
                    padded[0][p] = a
                    padded[1][p] = b
                    padded[2][p] = a * a
                    padded[3][p] = b * b
                    padded[4][p] = a * b
                }
            }
            for map in 0..<5 { separableWindow(padded[map], into: &filtered[map], scratch: &columns, height: height, width: width) }
            for i in 0..<plane {
                let muX = filtered[0][i], muY = filtered[1][i]
                let muXX = muX * muX, muYY = muY * muY, muXY = muX * muY
                let sigmaXX = max(0, filtered[2][i] - muXX), sigmaYY = max(0, filtered[3][i] - muYY)
                let sigmaXY = filtered[4][i] - muXY
                total += ((2 * muXY + c1) * (2 * sigmaXY + c2)) / ((muXX + muYY + c1) * (sigmaXX + sigmaYY + c2))
            }
        }
        return total / Double(channels * plane)
    }

    /// PyTorch's "reflect" padding: the border pixel is not repeated (index -1 reads index 1).
    private static func reflect(_ i: Int, _ n: Int) -> Int {
        i < 0 ? -i : (i >= n ? 2 * (n - 1) - i : i)
    }

    /// The 11×11 window as two 11-tap passes over a padded plane: down the columns into
    /// `scratch` (height × padded width), then along the rows into `output` (height × width). Both
    /// inner loops run along contiguous rows.
    private static func separableWindow(_ input: [Double], into output: inout [Double], scratch: inout [Double],
                                        height: Int, width: Int) {
        let taps = window.count, paddedWidth = width + taps - 1
        input.withUnsafeBufferPointer { source in
            scratch.withUnsafeMutableBufferPointer { columns in
                for y in 0..<height {
                    let row = columns.baseAddress! + y * paddedWidth
                    for x in 0..<paddedWidth { row[x] = 0 }
                    for k in 0..<taps {
                        let w = window[k]
                        let from = source.baseAddress! + (y + k) * paddedWidth
                        for x in 0..<paddedWidth { row[x] += w * from[x] }
                    }
                }
            }
        }
        scratch.withUnsafeBufferPointer { columns in
            output.withUnsafeMutableBufferPointer { out in
                for y in 0..<height {
                    let row = out.baseAddress! + y * width
                    let from = columns.baseAddress! + y * paddedWidth
                    for x in 0..<width { row[x] = 0 }
                    for k in 0..<taps {
                        let w = window[k]
                        for x in 0..<width { row[x] += w * from[x + k] }
                    }
                }
            }
        }
    }

    /// Upstream's `transform_rev` and clamp: a network-space image (normalized with `mean`/`std`
    /// per channel) back to [0, 1], as `Normalize(-mean/std, 1/std)` then `clamp(0, 1)` compute it
    /// in float32.
    public static func denormalize(_ values: UnsafeBufferPointer<Float>, channels: Int, mean: [Double], std: [Double]) -> [Float] {
        precondition(mean.count == channels && std.count == channels && values.count % channels == 0, "one mean and std per channel")
        let plane = values.count / channels
        var out = [Float](repeating: 0, count: values.count)
        for c in 0..<channels {
            // Python computes the reversed mean and std in double; torch rounds them to float32.
            let shift = Float(-mean[c] / std[c]), scale = Float(1 / std[c])
            for i in c * plane..<(c + 1) * plane { out[i] = min(1, max(0, (values[i] - shift) / scale)) }
        }
        return out
    }
}
