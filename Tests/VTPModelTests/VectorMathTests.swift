import Foundation
import Testing
import VTPVocabulary
import VTPTensor

/// The SIMD kernels agree with their scalar definitions.
@Suite struct VectorMathTests {
    @Test func expIsWithinFourUlpsOfExpfAndHandlesTheEdges() {
        var worst: Float = 0
        var x: Float = -90
        while x < 89 {
            let lanes = SIMD8<Float>((0..<8).map { x + Float($0) * 0.0013 })
            let ours = VectorMath.exp(lanes)
            for i in 0..<8 {
                let ref = expf(lanes[i])
                if ref.isNormal {
                    worst = max(worst, abs(ours[i] - ref) / ref.ulp)
                } else if ref.isInfinite {
                    #expect(ours[i] == .infinity)
                } else {
                    #expect(ours[i] <= Float.leastNormalMagnitude)
                }
            }
            x += 0.0117
        }
        #expect(worst <= 4, "worst error \(worst) ulp")
        let edges = VectorMath.exp(SIMD8<Float>(-.infinity, -1000, -87.5, 0, 1, 88.7, 89, .infinity))
        #expect(edges[0] == 0 && edges[1] == 0 && edges[2] == 0)
        #expect(edges[3] == 1)
        #expect(abs(edges[4] - Float(M_E)) <= Float(M_E).ulp)
        #expect(edges[5].isFinite && edges[6] == .infinity && edges[7] == .infinity)
    }

    @Test func geluIsWithinPyTorchsErfErrorAndItsBitsDoNotDependOnPosition() {
        // Every x in [-10, 10] in steps of 1/1024, plus the edges; 20,481 values, so a tail of one.
        var values = (-10_240...10_240).map { Float($0) / 1024 }
        values += [0, -0, 1e-30, -1e-30, 40, -40, .infinity, -.infinity]
        for quick in [false, true] {
            func apply(_ values: inout [Float]) {
                values.withUnsafeMutableBufferPointer {
                    if quick { Kernels.quickGelu($0.baseAddress!, count: $0.count) } else { Kernels.gelu($0.baseAddress!, count: $0.count) }
                }
            }
            var ours = values
            apply(&ours)
            for (x, y) in zip(values, ours) {
                let v = Double(x)
                let ref = quick ? v / (1 + Foundation.exp(-1.702 * v)) : 0.5 * v * (1 + Foundation.erf(v / 2.squareRoot()))
                if x.isInfinite {
                    // -inf · 0 is NaN (PyTorch's result); QuickGELU's clamped exp leaves -inf · 2^-128.
                    #expect(x > 0 ? y == .infinity : y.isNaN || (quick && y == -.infinity), "\(x) → \(y)")
                    continue
                }
                // erf's absolute error (1.5e-7) and float32 rounding of erf near ±1 (1.2e-7) scaled by
                // |x|/2 (1 + erf cancels for negative x, in PyTorch's kernel too), plus the result's rounding.
                // QuickGELU: the float32 rounding of -1.702 x, relative error 6e-8, moves e^(-1.702 x) by
                // 6e-8 · 1.702 |x| of itself, plus exp's few ulps.
                let bound = quick ? abs(ref) * (1.2e-7 * abs(v) + 5e-7) + Double(Float.leastNormalMagnitude)
                    : 2.7e-7 * abs(v) / 2 + 4 * Double(max(abs(Float(ref)).ulp, Float.leastNormalMagnitude))
                #expect(abs(Double(y) - ref) <= bound, "\(quick ? "QuickGELU" : "GELU")(\(x)) = \(y), expected \(ref)")
            }
            // The same value gives the same bits as the i-th of 16 lanes and in a tail of any length.
            for length in [1, 5, 16, 17, 33] {
                var shifted = Array(values[7..<(7 + length)])
                apply(&shifted)
                #expect(shifted.map(\.bitPattern) == ours[7..<(7 + length)].map(\.bitPattern), "length \(length)")
            }
        }
    }

    @Test func simdBFloat16RoundingEqualsTheScalarConversion() {
        var rng = SystemRandomNumberGenerator()
        var values: [Float] = [0, -0, 1, -1, .nan, .infinity, -.infinity, .greatestFiniteMagnitude, .leastNonzeroMagnitude,
                               Float(bitPattern: 0x3F80_8000), Float(bitPattern: 0x3F81_8000), Float(bitPattern: 0x3F80_7FFF)]
        for _ in 0..<20_000 { values.append(Float(bitPattern: UInt32.random(in: 0...UInt32.max, using: &rng))) }
        while values.count % 8 != 0 { values.append(0.5) }
        for start in stride(from: 0, to: values.count, by: 8) {
            let lanes = SIMD8<Float>(values[start..<(start + 8)])
            let ours = VectorMath.roundToBFloat16(lanes)
            for i in 0..<8 {
                let ref = HalfPrecision.roundToBFloat16(lanes[i])
                #expect(ours[i].bitPattern == ref.bitPattern || (ours[i].isNaN && ref.isNaN), "\(lanes[i])")
            }
        }
    }

    @Test func softmaxMatchesTheDefinitionIncludingMaskedEntries() {
        let n = 37
        var row = (0..<n).map { Float(sin(Double($0)) * 5) }
        row[3] = -.infinity
        var expected = row.map { Double($0) }
        let mx = expected.max()!
        expected = expected.map { exp($0 - mx) }
        let sum = expected.reduce(0, +)
        row.withUnsafeMutableBufferPointer { Kernels.softmaxRows($0.baseAddress!, rows: 1, n: n) }
        #expect(row[3] == 0)
        for i in 0..<n { #expect(abs(Double(row[i]) - expected[i] / sum) < 1e-6) }
    }
}
