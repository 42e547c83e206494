import Foundation

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

    /// `x[i] += y[i] * scale[i % n]` (a residual add through LayerScale), or plain `x += y`.
    public static func addResidual(_ x: UnsafeMutablePointer<Float>, _ y: UnsafePointer<Float>, count: Int,
                                   n: Int, scale: UnsafePointer<Float>?) {
        if let scale {
            let rows = count / n
            for r in 0..<rows {
                let xr = x + r * n, yr = y + r * n
                for i in 0..<n { xr[i] += yr[i] * scale[i] }
            }
        } else {
            var i = 0
            while i + 8 <= count {
                let v = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self)
                    + UnsafeRawPointer(y + i).loadUnaligned(as: SIMD8<Float>.self)
                UnsafeMutableRawPointer(x + i).storeBytes(of: v, as: SIMD8<Float>.self)
                i += 8
            }
            while i < count { x[i] += y[i]; i += 1 }
        }
    }

    /// LayerNorm over the last dimension: `(x - mean) / sqrt(var + eps) * weight + bias`,
    /// with biased variance as PyTorch uses; statistics accumulate in double.
    public static func layerNorm(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, rows: Int, n: Int,
                                 weight: UnsafePointer<Float>?, bias: UnsafePointer<Float>?, eps: Float) {
        for r in 0..<rows {
            let xr = x + r * n, o = out + r * n
            var sum = 0.0
            for i in 0..<n { sum += Double(xr[i]) }
            let mean = sum / Double(n)
            var sq = 0.0
            for i in 0..<n { let d = Double(xr[i]) - mean; sq += d * d }
            let rstd = Float(1.0 / (sq / Double(n) + Double(eps)).squareRoot())
            let m = Float(mean)
            for i in 0..<n {
                var v = (xr[i] - m) * rstd
                if let weight { v *= weight[i] }
                if let bias { v += bias[i] }
                o[i] = v
            }
        }
    }

    /// RMSNorm over the last dimension: `x * rsqrt(mean(x²) + eps) * weight`.
    public static func rmsNorm(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, rows: Int, n: Int,
                               weight: UnsafePointer<Float>?, eps: Float) {
        for r in 0..<rows {
            let xr = x + r * n, o = out + r * n
            var sq = 0.0
            for i in 0..<n { let v = Double(xr[i]); sq += v * v }
            let scale = Float(1.0 / (sq / Double(n) + Double(eps)).squareRoot())
            if let weight {
                for i in 0..<n { o[i] = (xr[i] * scale) * weight[i] }
            } else {
                for i in 0..<n { o[i] = xr[i] * scale }
            }
        }
    }

    /// Exact GELU, `x · Φ(x)` with the error function, in place.
    public static func gelu(_ x: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count {
            let v = x[i]
            x[i] = 0.5 * v * (1 + erff(v * 0.70710678118654752440))
        }
    }

    /// QuickGELU, `x · sigmoid(1.702 x)`, in place.
    public static func quickGelu(_ x: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count {
            let v = x[i]
            x[i] = v * (1 / (1 + expf(-1.702 * v)))
        }
    }

    /// SwiGLU gate: `a[i] = silu(a[i]) * b[i]`.
    public static func siluMultiply(_ a: UnsafeMutablePointer<Float>, _ b: UnsafePointer<Float>, count: Int) {
        for i in 0..<count {
            let v = a[i]
            a[i] = (v / (1 + expf(-v))) * b[i]
        }
    }

    /// Row-wise softmax in place over `rows` rows of width `n`; `-inf` entries get weight 0.
    public static func softmaxRows(_ x: UnsafeMutablePointer<Float>, rows: Int, n: Int) {
        for r in 0..<rows {
            let row = x + r * n
            var mx = -Float.infinity
            for i in 0..<n { mx = max(mx, row[i]) }
            if mx == -.infinity {
                for i in 0..<n { row[i] = .nan }
                continue
            }
            var sum: Float = 0
            for i in 0..<n { let e = expf(row[i] - mx); row[i] = e; sum += e }
            let inv = 1 / sum
            for i in 0..<n { row[i] *= inv }
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
