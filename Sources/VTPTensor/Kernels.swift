import Foundation
import CVTPKernels

/// Element-wise and row-wise kernels over contiguous float buffers.
///
/// Each kernel walks raw pointers with SIMD where the width allows; none allocates.
public enum Kernels {
    /// Adds `bias[n]` to each of `rows` rows of `x[rows×n]`.
    public static func addBias(_ x: UnsafeMutablePointer<Float>, rows: Int, n: Int, bias: UnsafePointer<Float>) {
        for r in 0..<rows {
            let row = x + r * n
            var i = 0
            while i + 8 <= n {
                let v = UnsafeRawPointer(row + i).loadUnaligned(as: SIMD8<Float>.self)
                    + UnsafeRawPointer(bias + i).loadUnaligned(as: SIMD8<Float>.self)
                UnsafeMutableRawPointer(row + i).storeBytes(of: v, as: SIMD8<Float>.self)
                i += 8
            }
            while i < n { row[i] += bias[i]; i += 1 }
        }
    }

    /// LayerNorm over the last dimension: `(x - mean) / sqrt(var + eps) * weight + bias`,
    /// with biased variance as PyTorch uses; statistics accumulate in double.
    public static func layerNorm(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, rows: Int, n: Int,
                                 weight: UnsafePointer<Float>?, bias: UnsafePointer<Float>?, eps: Float) {
        // In C over float64 vectors: the scalar float64 sums here were 3% of a forward pass.
        vtp_norm_rows(x, out, rows, Int32(n), weight, bias, eps, 1)
    }

    /// RMSNorm over the last dimension: `x * rsqrt(mean(x²) + eps) * weight`.
    public static func rmsNorm(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, rows: Int, n: Int,
                               weight: UnsafePointer<Float>?, eps: Float) {
        vtp_norm_rows(x, out, rows, Int32(n), weight, nil, eps, 0)
    }

    /// The reference's bfloat16 rotary embedding of `count` head vectors of `headDim` values,
    /// `stride` floats apart, at one position (`sin`/`cos`: that position's `headDim` values):
    /// `bf(bf(x·cos) + bf(rotate_half(x)·sin))`, x rounded to bfloat16 first.
    public static func ropeBFloat16(_ v: UnsafeMutablePointer<Float>, stride: Int, count: Int, headDim: Int,
                                    sin: UnsafePointer<Float>, cos: UnsafePointer<Float>) {
        vtp_rope_bf16(v, stride, Int32(count), Int32(headDim), sin, cos)
    }

    /// Rounds `count` floats to bfloat16 in place (nearest-even).
    public static func roundToBFloat16(_ v: UnsafeMutablePointer<Float>, count: Int) {
        vtp_round_bf16_inplace(v, count)
    }

    /// GELU with the error function (not the tanh approximation), `x · Φ(x)`, in place; erf is
    /// computed as PyTorch's vectorized CPU kernel computes it (absolute error under 1.5e-7).
    public static func gelu(_ x: UnsafeMutablePointer<Float>, count: Int) {
        // 16 lanes in C: glibc's scalar erff and the loop around it were 12% of a CLIP text pass.
        vtp_gelu(x, count, 0)
    }

    /// QuickGELU, `x · sigmoid(1.702 x)`, in place.
    public static func quickGelu(_ x: UnsafeMutablePointer<Float>, count: Int) {
        vtp_gelu(x, count, 1)
    }

    /// SwiGLU gate: `a[i] = silu(a[i]) * b[i]`.
    public static func siluMultiply(_ a: UnsafeMutablePointer<Float>, _ b: UnsafePointer<Float>, count: Int) {
        // 16 lanes in C where the CPU has AVX-512: the SIMD8 loop was 6% of a bf16 forward pass.
        vtp_silu_multiply(a, b, count)
    }

    /// Row-wise softmax in place over `rows` rows of width `n`; `-inf` entries get weight 0.
    /// A row that is entirely `-inf` becomes NaN, as in PyTorch.
    public static func softmaxRows(_ x: UnsafeMutablePointer<Float>, rows: Int, n: Int) {
        let vectorEnd = n & ~7
        for r in 0..<rows {
            let row = x + r * n
            var mx8 = SIMD8<Float>(repeating: -.infinity)
            var i = 0
            while i < vectorEnd { mx8 = pointwiseMax(mx8, VectorMath.load(row + i)); i += 8 }
            var mx = mx8.max()
            while i < n { mx = max(mx, row[i]); i += 1 }
            if mx == -.infinity {
                for j in 0..<n { row[j] = .nan }
                continue
            }
            let shift = SIMD8<Float>(repeating: mx)
            var sum8 = SIMD8<Float>()
            i = 0
            while i < vectorEnd {
                let e = VectorMath.exp(VectorMath.load(row + i) - shift)
                VectorMath.store(e, row + i)
                sum8 += e
                i += 8
            }
            var sum = sum8.sum()
            while i < n { let e = expf(row[i] - mx); row[i] = e; sum += e; i += 1 }
            let inv = SIMD8<Float>(repeating: 1 / sum)
            i = 0
            while i < vectorEnd { VectorMath.store(VectorMath.load(row + i) * inv, row + i); i += 8 }
            while i < n { row[i] *= inv[0]; i += 1 }
        }
    }

    /// L2-normalizes each row as `F.normalize`: `x / max(‖x‖, 1e-12)`.
    public static func l2NormalizeRows(_ x: UnsafeMutablePointer<Float>, rows: Int, n: Int) {
        for r in 0..<rows {
            let row = x + r * n
            var sq = 0.0
            for i in 0..<n { sq += Double(row[i]) * Double(row[i]) }
            let norm = max(Float(sq.squareRoot()), 1e-12)
            for i in 0..<n { row[i] /= norm }
        }
    }
}
