import VTPSafeTensors
import VTPTensor

/// Why a metric network's weights cannot be used.
public enum MetricNetError: Error, Equatable, CustomStringConvertible {
    /// The weights file could not be opened or read as safetensors.
    case unreadable(path: String, reason: String)
    /// A tensor the network needs is missing or has the wrong shape.
    case badTensor(path: String, name: String, detail: String)

    public var description: String {
        switch self {
        case let .unreadable(path, reason): "\(path): cannot read the weights: \(reason)"
        case let .badTensor(path, name, detail): "\(path): tensor '\(name)' \(detail)"
        }
    }
}

/// One channel-major feature map (C, H, W).
struct FeatureMap {
    let channels: Int
    let height: Int
    let width: Int
    let values: Tensor

    init(channels: Int, height: Int, width: Int) {
        self.channels = channels
        self.height = height
        self.width = width
        values = Tensor(uninitialized: [channels, height, width])
    }

    var plane: Int { height * width }
    var pointer: UnsafePointer<Float> { values.pointer }
    var mutablePointer: UnsafeMutablePointer<Float> { values.mutablePointer }
}

/// A convolution with its bias (and a batch norm folded into both), optionally followed by ReLU.
struct ConvUnit {
    let geometry: ConvGeometry
    let weights: [Float]
    let bias: [Float]?
    let relu: Bool

    func outputSize(_ x: FeatureMap) -> (height: Int, width: Int) { geometry.outputSize(height: x.height, width: x.width) }

    /// Writes the result into channels `offset...` of `output` (a concatenation's slice).
    func apply(_ x: FeatureMap, into output: FeatureMap, channelOffset offset: Int = 0, pool: ComputePool) {
        precondition(x.channels == geometry.inChannels && offset + geometry.outChannels <= output.channels, "channel counts")
        precondition(outputSize(x) == (output.height, output.width), "output size")
        weights.withUnsafeBufferPointer { w in
            if let bias {
                bias.withUnsafeBufferPointer { b in
                    Convolution.conv2d(x.pointer, height: x.height, width: x.width, geometry: geometry, weights: w.baseAddress!,
                                       bias: b.baseAddress!, relu: relu, output: output.mutablePointer + offset * output.plane, pool: pool)
                }
            } else {
                Convolution.conv2d(x.pointer, height: x.height, width: x.width, geometry: geometry, weights: w.baseAddress!,
                                   bias: nil, relu: relu, output: output.mutablePointer + offset * output.plane, pool: pool)
            }
        }
    }

    func callAsFunction(_ x: FeatureMap, pool: ComputePool) -> FeatureMap {
        let (h, w) = outputSize(x)
        let out = FeatureMap(channels: geometry.outChannels, height: h, width: w)
        apply(x, into: out, pool: pool)
        return out
    }
}

/// Reads a network's tensors by PyTorch `state_dict` name, checking each shape.
struct WeightReader {
    let path: String
    let file: SafeTensorsFile

    init(path: String) throws(MetricNetError) {
        self.path = path
        do { file = try SafeTensorsFile(path: path) } catch { throw .unreadable(path: path, reason: "\(error)") }
    }

    func values(_ name: String, shape: [Int]) throws(MetricNetError) -> [Float] {
        guard file.tensors[name] != nil else { throw .badTensor(path: path, name: name, detail: "is missing") }
        do { return try file.tensor(name, expectedShape: shape).toArray() } catch {
            throw .badTensor(path: path, name: name, detail: "expected shape \(shape): \(error)")
        }
    }

    /// A plain `Conv2d` (weight and, when `bias`, bias) at `prefix`.
    func conv(_ prefix: String, _ geometry: ConvGeometry, bias: Bool, relu: Bool) throws(MetricNetError) -> ConvUnit {
        let g = geometry
        let w = try values(prefix + ".weight", shape: [g.outChannels, g.inChannels, g.kernelHeight, g.kernelWidth])
        return ConvUnit(geometry: g, weights: w, bias: bias ? try values(prefix + ".bias", shape: [g.outChannels]) : nil, relu: relu)
    }

    /// torchvision's `BasicConv2d` at `prefix`: `conv` (no bias), `bn` (BatchNorm2d, eps 0.001, inference
    /// statistics), ReLU; the norm is folded into the convolution's weights and a bias.
    func basicConv(_ prefix: String, _ geometry: ConvGeometry) throws(MetricNetError) -> ConvUnit {
        let g = geometry, c = [g.outChannels]
        var w = try values(prefix + ".conv.weight", shape: [g.outChannels, g.inChannels, g.kernelHeight, g.kernelWidth])
        let gamma = try values(prefix + ".bn.weight", shape: c), beta = try values(prefix + ".bn.bias", shape: c)
        let mean = try values(prefix + ".bn.running_mean", shape: c), variance = try values(prefix + ".bn.running_var", shape: c)
        var bias = [Float](repeating: 0, count: g.outChannels)
        let patch = g.patchSize
        for o in 0..<g.outChannels {
            let scale = gamma[o] / (variance[o] + 0.001).squareRoot()
            for i in o * patch..<(o + 1) * patch { w[i] *= scale }
            bias[o] = beta[o] - mean[o] * scale
        }
        return ConvUnit(geometry: g, weights: w, bias: bias, relu: true)
    }
}

extension ConvGeometry {
    /// Shorthand for the square and rectangular kernels of the metric networks.
    static func conv(_ cin: Int, _ cout: Int, _ kernel: (Int, Int), stride: Int = 1, padding: (Int, Int) = (0, 0)) -> ConvGeometry {
        ConvGeometry(inChannels: cin, outChannels: cout, kernel: kernel, stride: (stride, stride), padding: padding)
    }

    static func conv(_ cin: Int, _ cout: Int, _ kernel: Int, stride: Int = 1, padding: Int = 0) -> ConvGeometry {
        conv(cin, cout, (kernel, kernel), stride: stride, padding: (padding, padding))
    }
}

/// Pooling on feature maps.
enum Pooling {
    static func max(_ x: FeatureMap, kernel: Int, stride: Int, padding: Int = 0, pool: ComputePool) -> FeatureMap {
        let h = (x.height + 2 * padding - kernel) / stride + 1, w = (x.width + 2 * padding - kernel) / stride + 1
        let out = FeatureMap(channels: x.channels, height: h, width: w)
        Convolution.maxPool2d(x.pointer, channels: x.channels, height: x.height, width: x.width, kernel: kernel, stride: stride,
                              padding: padding, output: out.mutablePointer, pool: pool)
        return out
    }

    /// `avg_pool2d(kernel_size=3, stride=1, padding=1, count_include_pad=False)`.
    static func average3x3(_ x: FeatureMap, pool: ComputePool) -> FeatureMap {
        let out = FeatureMap(channels: x.channels, height: x.height, width: x.width)
        Convolution.avgPool2d(x.pointer, channels: x.channels, height: x.height, width: x.width, kernel: 3, stride: 1, padding: 1,
                              countIncludePad: false, output: out.mutablePointer, pool: pool)
        return out
    }

    /// Copies `x` into channels `offset...` of `output` (a pooling branch of a concatenation).
    static func copy(_ x: FeatureMap, into output: FeatureMap, channelOffset offset: Int) {
        precondition(x.plane == output.plane && offset + x.channels <= output.channels, "concatenation shape")
        (output.mutablePointer + offset * output.plane).update(from: x.pointer, count: x.channels * x.plane)
    }
}
