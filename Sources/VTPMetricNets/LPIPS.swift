import VTPTensor

/// The LPIPS distance of upstream's reconstruction evaluation (`vtp/utils/lpips.py`, LightningDiT's
/// and taming-transformers' VGG variant): both images (values in [-1, 1]) shifted and scaled per
/// channel, run through VGG16's convolutions, the five ReLU outputs `relu1_2` … `relu5_3` unit-
/// normalized across channels at every pixel, their squared differences weighted by the learned
/// 1×1 layers `lin0` … `lin4`, averaged over pixels and summed over the five. Dropout is off, as
/// in `eval()`.
///
/// Weights: the module's `state_dict` in safetensors (`net.slice1.0.weight` … `net.slice5.28.bias`
/// from torchvision's VGG16, `lin0.model.1.weight` … from LPIPS' `vgg.pth`);
/// scripts/convert_lpips_weights.py writes it.
public final class LPIPS: Sendable {
    /// `ScalingLayer`'s constants.
    static let shift: [Float] = [-0.030, -0.088, -0.188]
    static let scale: [Float] = [0.458, 0.448, 0.450]
    /// VGG16 `features` indices of the convolutions in each slice, and their widths.
    static let slices: [(indices: [Int], channels: Int)] = [([0, 2], 64), ([5, 7], 128), ([10, 12, 14], 256),
                                                           ([17, 19, 21], 512), ([24, 26, 28], 512)]

    private let convolutions: [[ConvUnit]]
    private let linear: [[Float]]

    public init(weightsAt path: String) throws(MetricNetError) {
        let r = try WeightReader(path: path)
        var convolutions: [[ConvUnit]] = []
        var linear: [[Float]] = []
        var cin = 3
        for (s, slice) in Self.slices.enumerated() {
            var units: [ConvUnit] = []
            for index in slice.indices {
                units.append(try r.conv("net.slice\(s + 1).\(index)", .conv(cin, slice.channels, 3, padding: 1), bias: true, relu: true))
                cin = slice.channels
            }
            convolutions.append(units)
            linear.append(try r.values("lin\(s).model.1.weight", shape: [1, slice.channels, 1, 1]))
        }
        self.convolutions = convolutions
        self.linear = linear
    }

    /// The distance between two (3, H, W) images with values in [-1, 1].
    public func distance(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, height: Int, width: Int, pool: ComputePool) -> Double {
        let fa = layers(a, height: height, width: width, pool: pool), fb = layers(b, height: height, width: width, pool: pool)
        var total = 0.0
        for (k, (x, y)) in zip(fa, fb).enumerated() {
            total += Self.weightedDifference(x, y, weights: linear[k])
        }
        return total
    }

    private func layers(_ image: UnsafePointer<Float>, height: Int, width: Int, pool: ComputePool) -> [FeatureMap] {
        var x = FeatureMap(channels: 3, height: height, width: width)
        let plane = height * width
        for c in 0..<3 {
            let src = image + c * plane, dst = x.mutablePointer + c * plane
            for i in 0..<plane { dst[i] = (src[i] - Self.shift[c]) / Self.scale[c] }
        }
        var outputs: [FeatureMap] = []
        for (s, units) in convolutions.enumerated() {
            if s > 0 { x = Pooling.max(x, kernel: 2, stride: 2, pool: pool) }
            for unit in units { x = unit(x, pool: pool) }
            outputs.append(x)
        }
        return outputs
    }

    /// `spatial_average(lin((normalize(x) − normalize(y))²))` for one layer: per pixel, each
    /// feature vector divided by its norm plus 1e-10, in float as torch computes it.
    static func weightedDifference(_ x: FeatureMap, _ y: FeatureMap, weights: [Float]) -> Double {
        let plane = x.plane, channels = x.channels
        var normX = [Float](repeating: 0, count: plane), normY = [Float](repeating: 0, count: plane)
        for c in 0..<channels {
            let px = x.pointer + c * plane, py = y.pointer + c * plane
            for i in 0..<plane {
                normX[i] += px[i] * px[i]
                normY[i] += py[i] * py[i]
            }
        }
        for i in 0..<plane {
            normX[i] = normX[i].squareRoot() + 1e-10
            normY[i] = normY[i].squareRoot() + 1e-10
        }
        var map = [Float](repeating: 0, count: plane)
        for c in 0..<channels {
            let px = x.pointer + c * plane, py = y.pointer + c * plane, w = weights[c]
            for i in 0..<plane {
                let d = px[i] / normX[i] - py[i] / normY[i]
                map[i] += w * d * d
            }
        }
        var sum = 0.0
        for v in map { sum += Double(v) }
        return sum / Double(plane)
    }
}
