import Foundation
import Testing
import VTPTensor

/// The convolution, pooling and resize kernels of the metric networks against direct loops over
/// PyTorch's definitions, on shapes that take every path (im2col chunks, the channel split, 1×1
/// without copies, rectangular kernels, strides, padding).
@Suite struct ConvolutionTests {
    /// Deterministic values in [-1, 1).
    static func values(_ count: Int, seed: Int) -> [Float] {
        (0..<count).map { i in Float(sin(Double(i) * 0.731 + Double(seed) * 1.37)) }
    }

    static func naiveConv(_ x: [Float], height: Int, width: Int, _ g: ConvGeometry, _ w: [Float], _ b: [Float], relu: Bool) -> [Float] {
        let (oh, ow) = g.outputSize(height: height, width: width)
        var out = [Float](repeating: 0, count: g.outChannels * oh * ow)
        for o in 0..<g.outChannels {
            for oy in 0..<oh {
                for ox in 0..<ow {
                    var sum = Double(b[o])
                    for c in 0..<g.inChannels {
                        for ky in 0..<g.kernelHeight {
                            for kx in 0..<g.kernelWidth {
                                let iy = oy * g.strideY - g.padY + ky, ix = ox * g.strideX - g.padX + kx
                                guard iy >= 0, iy < height, ix >= 0, ix < width else { continue }
                                let wi = ((o * g.inChannels + c) * g.kernelHeight + ky) * g.kernelWidth + kx
                                sum += Double(w[wi]) * Double(x[(c * height + iy) * width + ix])
                            }
                        }
                    }
                    out[(o * oh + oy) * ow + ox] = relu ? Float(max(sum, 0)) : Float(sum)
                }
            }
        }
        return out
    }

    static func maxDifference(_ a: [Float], _ b: [Float]) -> Float {
        precondition(a.count == b.count)
        return zip(a, b).map { abs($0 - $1) }.max() ?? 0
    }

    @Test(arguments: [
        // (cin, cout, kernel, stride, padding, height, width, threads)
        (3, 8, (3, 3), (2, 2), (0, 0), 37, 29, 2),
        (5, 7, (1, 7), (1, 1), (0, 3), 17, 17, 2),
        (5, 9, (7, 1), (1, 1), (3, 0), 17, 9, 1),
        (16, 12, (1, 1), (1, 1), (0, 0), 40, 40, 2),   // 1×1 straight from the input, split by columns
        (16, 12, (1, 1), (1, 1), (0, 0), 5, 5, 2),     // 1×1 on a small map, split by channels
        (4, 3, (3, 3), (1, 1), (1, 1), 300, 300, 2),   // several im2col chunks
        (64, 33, (3, 3), (1, 1), (1, 1), 8, 8, 2),     // few columns, split by channels
        (2, 4, (5, 5), (3, 3), (2, 2), 11, 13, 2),
    ])
    func convolutionMatchesTheDefinition(_ shape: (Int, Int, (Int, Int), (Int, Int), (Int, Int), Int, Int, Int)) {
        let (cin, cout, kernel, stride, padding, h, w, threads) = shape
        let g = ConvGeometry(inChannels: cin, outChannels: cout, kernel: kernel, stride: stride, padding: padding)
        let x = Self.values(cin * h * w, seed: 1), weights = Self.values(cout * g.patchSize, seed: 2), bias = Self.values(cout, seed: 3)
        let (oh, ow) = g.outputSize(height: h, width: w)
        for relu in [false, true] {
            var out = [Float](repeating: .nan, count: cout * oh * ow)
            x.withUnsafeBufferPointer { xp in
                weights.withUnsafeBufferPointer { wp in
                    bias.withUnsafeBufferPointer { bp in
                        out.withUnsafeMutableBufferPointer { op in
                            Convolution.conv2d(xp.baseAddress!, height: h, width: w, geometry: g, weights: wp.baseAddress!, bias: bp.baseAddress!,
                                               relu: relu, output: op.baseAddress!, pool: ComputePool(threads: threads))
                        }
                    }
                }
            }
            let expected = Self.naiveConv(x, height: h, width: w, g, weights, bias, relu: relu)
            #expect(Self.maxDifference(out, expected) < 1e-4 * Float(g.patchSize).squareRoot(), "\(shape) relu \(relu)")
        }
    }

    @Test func poolingFollowsPyTorch() {
        let c = 2, h = 5, w = 4
        let x = Self.values(c * h * w, seed: 4)
        var maxOut = [Float](repeating: 0, count: c * 5 * 4), avgOut = maxOut, avgPadded = maxOut
        x.withUnsafeBufferPointer { xp in
            Convolution.maxPool2d(xp.baseAddress!, channels: c, height: h, width: w, kernel: 3, stride: 1, padding: 1,
                                  output: &maxOut, pool: ComputePool(threads: 2))
            Convolution.avgPool2d(xp.baseAddress!, channels: c, height: h, width: w, kernel: 3, stride: 1, padding: 1,
                                  countIncludePad: false, output: &avgOut, pool: ComputePool(threads: 1))
            Convolution.avgPool2d(xp.baseAddress!, channels: c, height: h, width: w, kernel: 3, stride: 1, padding: 1,
                                  countIncludePad: true, output: &avgPadded, pool: ComputePool(threads: 1))
        }
        // Corner (0, 0) of channel 1: its window holds pixels (0..1, 0..1).
        let window = [x[20], x[21], x[24], x[25]]
        #expect(maxOut[20] == window.max()!)
        #expect(abs(avgOut[20] - window.reduce(0, +) / 4) < 1e-6)
        #expect(abs(avgPadded[20] - window.reduce(0, +) / 9) < 1e-6)
        // Stride 2 without padding on a 5 × 4 plane: 2 × 1 outputs.
        var strided = [Float](repeating: 0, count: c * 2)
        x.withUnsafeBufferPointer { xp in
            Convolution.maxPool2d(xp.baseAddress!, channels: c, height: h, width: w, kernel: 3, stride: 2, output: &strided, pool: ComputePool(threads: 1))
        }
        #expect(strided[1] == [8, 9, 10, 12, 13, 14, 16, 17, 18].map { x[$0] }.max()!)
    }

    /// `F.interpolate(mode="bilinear", align_corners=False)`: upsampling a ramp stays a ramp in the
    /// interior and clamps at the edges; the same size is the identity.
    @Test func bilinearResizeFollowsPyTorch() {
        let ramp: [Float] = [0, 1, 2, 3]
        var up = [Float](repeating: 0, count: 8)
        ramp.withUnsafeBufferPointer { rp in
            Convolution.resizeBilinear(rp.baseAddress!, channels: 1, height: 1, width: 4, outputHeight: 1, outputWidth: 8, output: &up,
                                       pool: ComputePool(threads: 1))
        }
        // Source x = (o + 0.5) / 2 − 0.5, clamped at 0: 0, 0.25, 0.75, 1.25, ..., 2.75, then 3.
        #expect(up == [0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3])
        let x = Self.values(3 * 6 * 7, seed: 5)
        var same = [Float](repeating: 0, count: x.count)
        x.withUnsafeBufferPointer { xp in
            Convolution.resizeBilinear(xp.baseAddress!, channels: 3, height: 6, width: 7, outputHeight: 6, outputWidth: 7, output: &same,
                                       pool: ComputePool(threads: 2))
        }
        #expect(same == x)
    }
}
