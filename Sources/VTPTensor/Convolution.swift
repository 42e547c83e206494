/// Geometry of a 2-D convolution as PyTorch's `Conv2d` has it (groups 1, dilation 1, zero padding).
public struct ConvGeometry: Sendable, Equatable {
    public let inChannels: Int
    public let outChannels: Int
    public let kernelHeight: Int
    public let kernelWidth: Int
    public let strideY: Int
    public let strideX: Int
    public let padY: Int
    public let padX: Int

    public init(inChannels: Int, outChannels: Int, kernel: (Int, Int), stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0)) {
        self.inChannels = inChannels
        self.outChannels = outChannels
        (kernelHeight, kernelWidth) = kernel
        (strideY, strideX) = stride
        (padY, padX) = padding
    }

    /// Weights per output channel: `inChannels · kernelHeight · kernelWidth`.
    public var patchSize: Int { inChannels * kernelHeight * kernelWidth }

    /// The output height and width for an input of `height` × `width`.
    public func outputSize(height: Int, width: Int) -> (height: Int, width: Int) {
        ((height + 2 * padY - kernelHeight) / strideY + 1, (width + 2 * padX - kernelWidth) / strideX + 1)
    }
}

/// Convolution, pooling and resampling of one channel-major image (C, H, W) at a time, for the
/// CNNs of the evaluation metrics (Inception for FID, VGG for LPIPS). Convolutions are im2col +
/// GEMM, split over output columns (or, when the image is small, over output channels).
public enum Convolution {
    /// Floats of im2col scratch one task fills at a time (4 MiB), bounding memory on large images.
    static let scratchFloats = 1 << 20

    /// `output (Cout, Ho, Wo) = weights (Cout, Cin·kh·kw) · patches(input) + bias`, then ReLU when
    /// `relu`. `weights` is PyTorch's `Conv2d.weight` layout.
    public static func conv2d(_ input: UnsafePointer<Float>, height: Int, width: Int, geometry g: ConvGeometry,
                              weights: UnsafePointer<Float>, bias: UnsafePointer<Float>?, relu: Bool,
                              output: UnsafeMutablePointer<Float>, pool: ComputePool) {
        let (oh, ow) = g.outputSize(height: height, width: width)
        let columns = oh * ow, k = g.patchSize
        guard columns > 0 else { return }
        let direct = g.kernelHeight == 1 && g.kernelWidth == 1 && g.strideY == 1 && g.strideX == 1 && g.padY == 0 && g.padX == 0
        let chunk = max(16, min(columns, scratchFloats / max(1, k)))
        let chunks = (columns + chunk - 1) / chunk
        if chunks >= pool.threads || direct && columns >= 256 * pool.threads {
            let chunkCount = direct ? pool.threads : chunks
            pool.parallelFor(chunkCount) { range in
                let scratch = direct ? nil : UnsafeMutablePointer<Float>.allocate(capacity: k * chunk)
                defer { scratch?.deallocate() }
                for c in range {
                    let start = columns * c / chunkCount, end = columns * (c + 1) / chunkCount
                    guard start < end else { continue }
                    let b: UnsafePointer<Float>, ldb: Int
                    if let scratch {
                        im2col(input, height: height, width: width, geometry: g, outputWidth: ow, columns: start..<end, into: scratch)
                        (b, ldb) = (UnsafePointer(scratch), end - start)
                    } else {
                        (b, ldb) = (input + start, columns)
                    }
                    BLAS.gemm(m: g.outChannels, n: end - start, k: k, a: weights, lda: k, b: b, ldb: ldb, transposeB: false,
                              c: output + start, ldc: columns)
                    epilogue(output, channels: 0..<g.outChannels, columns: start..<end, stride: columns, bias: bias, relu: relu)
                }
            }
        } else {
            // Few output columns: one patch matrix, the GEMM split over output channels.
            let patches: UnsafePointer<Float>
            var owned: UnsafeMutablePointer<Float>?
            if direct {
                patches = input
            } else {
                let scratch = UnsafeMutablePointer<Float>.allocate(capacity: k * columns)
                im2col(input, height: height, width: width, geometry: g, outputWidth: ow, columns: 0..<columns, into: scratch)
                owned = scratch
                patches = UnsafePointer(scratch)
            }
            defer { owned?.deallocate() }
            pool.parallelFor(g.outChannels, grain: 8) { rows in
                BLAS.gemm(m: rows.count, n: columns, k: k, a: weights + rows.lowerBound * k, lda: k, b: patches, ldb: columns,
                          transposeB: false, c: output + rows.lowerBound * columns, ldc: columns)
                epilogue(output, channels: rows, columns: 0..<columns, stride: columns, bias: bias, relu: relu)
            }
        }
    }

    /// The patch matrix rows (Cin·kh·kw) for output columns `columns` (flat `oy · Wo + ox`), zero outside the image.
    static func im2col(_ input: UnsafePointer<Float>, height: Int, width: Int, geometry g: ConvGeometry, outputWidth ow: Int,
                       columns: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        let n = columns.count
        var row = 0
        for ci in 0..<g.inChannels {
            let plane = input + ci * height * width
            for ky in 0..<g.kernelHeight {
                for kx in 0..<g.kernelWidth {
                    let dst = out + row * n
                    var p = columns.lowerBound
                    while p < columns.upperBound {
                        let oy = p / ow, ox0 = p % ow
                        let run = min(ow - ox0, columns.upperBound - p)
                        let iy = oy * g.strideY - g.padY + ky
                        let d = dst + (p - columns.lowerBound)
                        if iy < 0 || iy >= height {
                            d.update(repeating: 0, count: run)
                        } else {
                            let src = plane + iy * width
                            for j in 0..<run {
                                let ix = (ox0 + j) * g.strideX - g.padX + kx
                                d[j] = ix >= 0 && ix < width ? src[ix] : 0
                            }
                        }
                        p += run
                    }
                    row += 1
                }
            }
        }
    }

    static func epilogue(_ output: UnsafeMutablePointer<Float>, channels: Range<Int>, columns: Range<Int>, stride: Int,
                         bias: UnsafePointer<Float>?, relu: Bool) {
        guard bias != nil || relu else { return }
        for c in channels {
            let b = bias?[c] ?? 0
            let row = output + c * stride
            for p in columns {
                let v = row[p] + b
                row[p] = relu ? max(v, 0) : v
            }
        }
    }

    /// PyTorch's `max_pool2d` (no dilation, floor mode, padding counts as −∞) on (C, H, W).
    public static func maxPool2d(_ input: UnsafePointer<Float>, channels: Int, height: Int, width: Int, kernel: Int, stride: Int,
                                 padding: Int = 0, output: UnsafeMutablePointer<Float>, pool: ComputePool) {
        let oh = (height + 2 * padding - kernel) / stride + 1, ow = (width + 2 * padding - kernel) / stride + 1
        pool.parallelFor(channels) { range in
            for c in range {
                let src = input + c * height * width, dst = output + c * oh * ow
                for oy in 0..<oh {
                    for ox in 0..<ow {
                        var best = -Float.infinity
                        for ky in 0..<kernel {
                            let iy = oy * stride - padding + ky
                            guard iy >= 0 && iy < height else { continue }
                            for kx in 0..<kernel {
                                let ix = ox * stride - padding + kx
                                guard ix >= 0 && ix < width else { continue }
                                best = max(best, src[iy * width + ix])
                            }
                        }
                        dst[oy * ow + ox] = best
                    }
                }
            }
        }
    }

    /// PyTorch's `avg_pool2d` (floor mode) on (C, H, W); `countIncludePad` false divides by the
    /// window's in-image pixels, as the FID Inception blocks ask.
    public static func avgPool2d(_ input: UnsafePointer<Float>, channels: Int, height: Int, width: Int, kernel: Int, stride: Int,
                                 padding: Int, countIncludePad: Bool, output: UnsafeMutablePointer<Float>, pool: ComputePool) {
        let oh = (height + 2 * padding - kernel) / stride + 1, ow = (width + 2 * padding - kernel) / stride + 1
        pool.parallelFor(channels) { range in
            for c in range {
                let src = input + c * height * width, dst = output + c * oh * ow
                for oy in 0..<oh {
                    for ox in 0..<ow {
                        let y0 = oy * stride - padding, x0 = ox * stride - padding
                        var sum: Float = 0
                        var inside = 0
                        for iy in max(0, y0)..<min(height, y0 + kernel) {
                            for ix in max(0, x0)..<min(width, x0 + kernel) {
                                sum += src[iy * width + ix]
                                inside += 1
                            }
                        }
                        let divisor = countIncludePad ? kernel * kernel : inside
                        dst[oy * ow + ox] = sum / Float(divisor)
                    }
                }
            }
        }
    }

    /// PyTorch's `F.interpolate(mode="bilinear", align_corners=False)` without antialiasing, (C, H, W) → (C, outH, outW).
    public static func resizeBilinear(_ input: UnsafePointer<Float>, channels: Int, height: Int, width: Int,
                                      outputHeight oh: Int, outputWidth ow: Int, output: UnsafeMutablePointer<Float>, pool: ComputePool) {
        // Source coordinate of each output row/column: (o + 0.5)·scale − 0.5, clamped at 0, in float as ATen computes it.
        func taps(_ outCount: Int, _ inCount: Int) -> [(i0: Int, i1: Int, w0: Float, w1: Float)] {
            let scale = Float(inCount) / Float(outCount)
            return (0..<outCount).map { o in
                let real = max(Float(0), scale * (Float(o) + 0.5) - 0.5)
                let i0 = min(Int(real), inCount - 1)
                let i1 = i0 + (i0 < inCount - 1 ? 1 : 0)
                let l1 = real - Float(i0)
                return (i0, i1, 1 - l1, l1)
            }
        }
        let ys = taps(oh, height), xs = taps(ow, width)
        pool.parallelFor(channels) { range in
            for c in range {
                let src = input + c * height * width, dst = output + c * oh * ow
                for (oy, y) in ys.enumerated() {
                    let r0 = src + y.i0 * width, r1 = src + y.i1 * width
                    for (ox, x) in xs.enumerated() {
                        dst[oy * ow + ox] = y.w0 * (x.w0 * r0[x.i0] + x.w1 * r0[x.i1]) + y.w1 * (x.w0 * r1[x.i0] + x.w1 * r1[x.i1])
                    }
                }
            }
        }
    }
}
