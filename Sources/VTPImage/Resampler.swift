/// Pillow's convolution resampling filters (`Image.Resampling`).
public enum ResampleFilter: Sendable, Equatable {
    case box, bilinear, bicubic

    /// Half-width of the kernel at scale 1.
    var support: Double {
        switch self {
        case .box: return 0.5
        case .bilinear: return 1.0
        case .bicubic: return 2.0
        }
    }

    /// The kernel, with Pillow's operation order so every double rounds the same way.
    @inline(__always)
    func weight(_ x: Double) -> Double {
        switch self {
        case .box:
            return x > -0.5 && x <= 0.5 ? 1.0 : 0.0
        case .bilinear:
            let x = abs(x)
            return x < 1.0 ? 1.0 - x : 0.0
        case .bicubic:
            let a = -0.5
            let x = abs(x)
            if x < 1.0 { return ((a + 2.0) * x - (a + 3.0)) * x * x + 1 }
            if x < 2.0 { return (((x - 5) * x + 8) * x - 4) * a }
            return 0.0
        }
    }
}

/// Which Pillow release's pass order to reproduce. Both passes round to 8 bits, so the
/// order changes some pixels by one level; releases differ only in that choice. Where this
/// module defaults it, the default is `.pillow13`, what a fresh `pip install pillow` gives.
public enum PillowCompatibility: String, Sendable, Equatable, CaseIterable {
    /// Pillow up to 12.x: always the horizontal pass first (the semantics of the
    /// `Resample.c` the reference fixtures were made with).
    case pillow12
    /// Pillow 13: the vertical pass first when the height shrinks by more than twice as
    /// many pixels as the width does.
    case pillow13

    /// Whether Pillow runs the vertical pass first for this resize.
    func verticalFirst(inWidth: Int, inHeight: Int, outWidth: Int, outHeight: Int) -> Bool {
        switch self {
        case .pillow12: return false
        case .pillow13:
            let shrinkY = inHeight - outHeight
            return shrinkY > 0 && shrinkY > (inWidth - outWidth) * 2
        }
    }
}

/// Per-output-sample source span and 8-bit fixed-point weights along one axis, computed
/// as Pillow's `precompute_coeffs` followed by `normalize_coeffs_8bpc`.
struct ResampleAxis {
    /// Fractional bits of the fixed-point weights (Pillow's PRECISION_BITS).
    static let precisionBits: Int32 = 32 - 8 - 2

    /// Maximum taps per output sample.
    let taps: Int
    /// First source index of each output sample.
    let first: [Int]
    /// Number of source samples each output sample reads.
    let count: [Int]
    /// `outSize * taps` weights, row per output sample.
    let weights: [Int32]

    /// Half-width of the kernel in source samples when resizing `inSize` to `outSize`.
    static func support(inSize: Int, outSize: Int, filter: ResampleFilter) -> Double {
        filter.support * max(Double(inSize) / Double(outSize), 1.0)
    }

    /// Maximum taps per output sample when resizing `inSize` to `outSize`.
    static func taps(inSize: Int, outSize: Int, filter: ResampleFilter) -> Int {
        Int(support(inSize: inSize, outSize: outSize, filter: filter).rounded(.up)) * 2 + 1
    }

    /// Bytes the tables of an axis take: `first`, `count` and `weights` for every output sample
    /// of the whole axis (not just a window of it), plus the kernel scratch.
    static func tableBytes(inSize: Int, outSize: Int, filter: ResampleFilter) -> Double {
        let taps = Double(taps(inSize: inSize, outSize: outSize, filter: filter))
        return Double(outSize) * (Double(2 * MemoryLayout<Int>.stride) + taps * Double(MemoryLayout<Int32>.stride))
            + taps * Double(MemoryLayout<Double>.stride)
    }

    /// An upper bound of `sourceSpan(of:).count` for `outputs` consecutive output samples.
    static func spanBound(inSize: Int, outSize: Int, outputs: Int, filter: ResampleFilter) -> Double {
        let scale = Double(inSize) / Double(outSize)
        let support = support(inSize: inSize, outSize: outSize, filter: filter)
        return min(Double(inSize), (Double(max(outputs, 1)) - 1) * scale + 2 * support + 2)
    }

    init(inSize: Int, outSize: Int, filter: ResampleFilter) {
        let scale = Double(inSize) / Double(outSize)
        let filterScale = max(scale, 1.0)
        let support = Self.support(inSize: inSize, outSize: outSize, filter: filter)
        let taps = Self.taps(inSize: inSize, outSize: outSize, filter: filter)
        let inverseScale = 1.0 / filterScale
        var first = [Int](repeating: 0, count: outSize)
        var count = [Int](repeating: 0, count: outSize)
        var weights = [Int32](repeating: 0, count: outSize * taps)
        var kernel = [Double](repeating: 0, count: taps)
        for out in 0..<outSize {
            let center = (Double(out) + 0.5) * scale
            // C's (int) cast truncates toward zero, as Int(_: Double) does.
            let lower = max(Int(center - support + 0.5), 0)
            let upper = min(Int(center + support + 0.5), inSize)
            let n = upper - lower
            var total = 0.0
            for x in 0..<n {
                let w = filter.weight((Double(x + lower) - center + 0.5) * inverseScale)
                kernel[x] = w
                total += w
            }
            for x in 0..<n {
                let w = total != 0.0 ? kernel[x] / total : kernel[x]
                let fixed = w * Double(1 << ResampleAxis.precisionBits)
                weights[out * taps + x] = Int32(w < 0 ? -0.5 + fixed : 0.5 + fixed)
            }
            first[out] = lower
            count[out] = n
        }
        self.taps = taps
        self.first = first
        self.count = count
        self.weights = weights
    }

    /// Source indices `outputs` read, as a half-open range (spans grow monotonically).
    func sourceSpan(of outputs: Range<Int>) -> Range<Int> {
        first[outputs.lowerBound]..<(first[outputs.upperBound - 1] + count[outputs.upperBound - 1])
    }
}

/// A rectangle of packed RGB rows in some buffer.
struct PixelPlane {
    var base: UnsafeMutablePointer<UInt8>
    /// Bytes between rows.
    var stride: Int
}

/// Pillow's two-pass separable resampling (`ImagingResampleInner`) on packed RGB, computing
/// only a requested window of the output: every output pixel depends only on its own
/// coefficients, so resize-then-crop fused this way gives the very same bytes.
enum Resampler {
    @inline(__always)
    static func clip8(_ sum: Int32) -> UInt8 {
        let v = sum >> ResampleAxis.precisionBits
        return v < 0 ? 0 : (v > 255 ? 255 : UInt8(truncatingIfNeeded: v))
    }

    /// Resizes `image` to `width`x`height` with `filter` (as `PIL.Image.resize` with the whole
    /// image as box) and returns only columns `xs` and rows `ys` of the result.
    static func resample(
        _ image: RGBImage, width: Int, height: Int, filter: ResampleFilter, xs: Range<Int>, ys: Range<Int>,
        compatibility: PillowCompatibility
    ) -> RGBImage {
        let needHorizontal = width != image.width
        let needVertical = height != image.height
        let horizontal = needHorizontal ? ResampleAxis(inSize: image.width, outSize: width, filter: filter) : nil
        let vertical = needVertical ? ResampleAxis(inSize: image.height, outSize: height, filter: filter) : nil
        let verticalFirst = compatibility.verticalFirst(inWidth: image.width, inHeight: image.height,
                                                        outWidth: width, outHeight: height)
        return RGBImage(width: xs.count, height: ys.count) { out in
            image.withUnsafePixels { source in
                let input = PixelPlane(base: UnsafeMutablePointer(mutating: source.baseAddress!), stride: image.rowBytes)
                let output = PixelPlane(base: out.baseAddress!, stride: xs.count * 3)
                switch (horizontal, vertical) {
                case (nil, nil):
                    copy(from: input, xOffset: xs.lowerBound, yOffset: ys.lowerBound, width: xs.count, rows: ys.count, to: output)
                case let (h?, nil):
                    horizontalPass(from: input, rowOffset: ys.lowerBound, rows: ys.count, axis: h, outputs: xs, sourceOffset: 0, to: output)
                case let (nil, v?):
                    verticalPass(from: input, axis: v, outputs: ys, sourceOffset: 0, columnOffset: xs.lowerBound, columns: xs.count, to: output)
                case let (h?, v?) where verticalFirst:
                    let columns = h.sourceSpan(of: xs)
                    withTemporaryPlane(width: columns.count, rows: ys.count) { temp in
                        verticalPass(from: input, axis: v, outputs: ys, sourceOffset: 0, columnOffset: columns.lowerBound,
                                     columns: columns.count, to: temp)
                        horizontalPass(from: temp, rowOffset: 0, rows: ys.count, axis: h, outputs: xs,
                                       sourceOffset: columns.lowerBound, to: output)
                    }
                case let (h?, v?):
                    let rows = v.sourceSpan(of: ys)
                    withTemporaryPlane(width: xs.count, rows: rows.count) { temp in
                        horizontalPass(from: input, rowOffset: rows.lowerBound, rows: rows.count, axis: h, outputs: xs,
                                       sourceOffset: 0, to: temp)
                        verticalPass(from: temp, axis: v, outputs: ys, sourceOffset: rows.lowerBound, columnOffset: 0,
                                     columns: xs.count, to: output)
                    }
                }
            }
        }
    }

    /// Bytes `resample` allocates for the same arguments (tables, the intermediate plane, the
    /// vertical pass's accumulator and the output), computed from the sizes alone so a caller can
    /// refuse an image before any of it exists. Kept beside `resample` so the two change together.
    static func workingBytes(
        inWidth: Int, inHeight: Int, width: Int, height: Int, filter: ResampleFilter, columns: Int, rows: Int,
        compatibility: PillowCompatibility
    ) -> Double {
        let needHorizontal = width != inWidth, needVertical = height != inHeight
        var bytes = Double(columns) * Double(rows) * 3
        if needHorizontal { bytes += ResampleAxis.tableBytes(inSize: inWidth, outSize: width, filter: filter) }
        if needVertical { bytes += ResampleAxis.tableBytes(inSize: inHeight, outSize: height, filter: filter) }
        let accumulatorPerColumn = Double(3 * MemoryLayout<Int32>.stride)
        switch (needHorizontal, needVertical) {
        case (false, false), (true, false):
            break
        case (false, true):
            bytes += Double(columns) * accumulatorPerColumn
        case (true, true):
            if compatibility.verticalFirst(inWidth: inWidth, inHeight: inHeight, outWidth: width, outHeight: height) {
                let span = ResampleAxis.spanBound(inSize: inWidth, outSize: width, outputs: columns, filter: filter)
                bytes += span * Double(rows) * 3 + span * accumulatorPerColumn
            } else {
                let span = ResampleAxis.spanBound(inSize: inHeight, outSize: height, outputs: rows, filter: filter)
                bytes += Double(columns) * span * 3 + Double(columns) * accumulatorPerColumn
            }
        }
        return bytes
    }

    private static func withTemporaryPlane(width: Int, rows: Int, _ body: (PixelPlane) -> Void) {
        let stride = width * 3
        let buffer = UnsafeMutablePointer<UInt8>.allocate(capacity: max(stride * rows, 1))
        defer { buffer.deallocate() }
        body(PixelPlane(base: buffer, stride: stride))
    }

    private static func copy(from input: PixelPlane, xOffset: Int, yOffset: Int, width: Int, rows: Int, to output: PixelPlane) {
        for y in 0..<rows {
            (output.base + y * output.stride).update(from: input.base + (y + yOffset) * input.stride + xOffset * 3, count: width * 3)
        }
    }

    /// Output columns `outputs` for `rows` rows starting at source row `rowOffset`; source
    /// column indices are shifted by `sourceOffset` (the first column present in `input`).
    private static func horizontalPass(
        from input: PixelPlane, rowOffset: Int, rows: Int, axis: ResampleAxis, outputs: Range<Int>, sourceOffset: Int,
        to output: PixelPlane
    ) {
        let half: Int32 = 1 << (ResampleAxis.precisionBits - 1)
        axis.weights.withUnsafeBufferPointer { weights in
            axis.first.withUnsafeBufferPointer { first in
                axis.count.withUnsafeBufferPointer { count in
                    for y in 0..<rows {
                        let line = input.base + (y + rowOffset) * input.stride
                        let target = output.base + y * output.stride
                        for (i, xx) in outputs.enumerated() {
                            let k = weights.baseAddress! + xx * axis.taps
                            var p = line + (first[xx] - sourceOffset) * 3
                            var s0 = half, s1 = half, s2 = half
                            for x in 0..<count[xx] {
                                let w = k[x]
                                s0 &+= Int32(p[0]) &* w
                                s1 &+= Int32(p[1]) &* w
                                s2 &+= Int32(p[2]) &* w
                                p += 3
                            }
                            target[i * 3] = clip8(s0)
                            target[i * 3 + 1] = clip8(s1)
                            target[i * 3 + 2] = clip8(s2)
                        }
                    }
                }
            }
        }
    }

    /// Output rows `outputs`, `columns` pixels wide starting at column `columnOffset` of
    /// `input`; source row indices are shifted by `sourceOffset` (the first row in `input`).
    private static func verticalPass(
        from input: PixelPlane, axis: ResampleAxis, outputs: Range<Int>, sourceOffset: Int, columnOffset: Int,
        columns: Int, to output: PixelPlane
    ) {
        let half: Int32 = 1 << (ResampleAxis.precisionBits - 1)
        let samples = columns * 3
        let accumulator = UnsafeMutablePointer<Int32>.allocate(capacity: max(samples, 1))
        defer { accumulator.deallocate() }
        axis.weights.withUnsafeBufferPointer { weights in
            for (row, yy) in outputs.enumerated() {
                accumulator.update(repeating: half, count: samples)
                let k = weights.baseAddress! + yy * axis.taps
                let firstRow = axis.first[yy] - sourceOffset
                for t in 0..<axis.count[yy] {
                    let w = k[t]
                    let line = input.base + (firstRow + t) * input.stride + columnOffset * 3
                    for i in 0..<samples {
                        accumulator[i] &+= Int32(line[i]) &* w
                    }
                }
                let target = output.base + row * output.stride
                for i in 0..<samples {
                    target[i] = clip8(accumulator[i])
                }
            }
        }
    }
}
