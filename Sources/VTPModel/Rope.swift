import Foundation
import VTPTensor

/// DINOv3's axial 2-D rotary position embedding, computed as the reference computes it.
///
/// The reference keeps the `periods` buffer and every RoPE operation in bfloat16: coordinates,
/// angles, sin/cos, and the rotation of q and k (which are cast to bfloat16 and back). Each step
/// below is one PyTorch bfloat16 kernel: computed in float32 and rounded to bfloat16.
/// Rotating in float32 instead lands near 1e-3 relative error, far outside the fixtures' tolerance.
struct RopeEmbedding {
    /// Per-head period for each of the `headDim / 4` frequencies, bfloat16 values as float32.
    let periods: [Float]
    let headDim: Int

    init(_ store: WeightStore, _ prefix: String, embedDim: Int, numHeads: Int) throws {
        headDim = embedDim / numHeads
        let name = prefix + ".periods"
        if store.contains(name) {
            let t = try store.tensor(name, [headDim / 4])
            periods = t.toArray().map(HalfPrecision.roundToBFloat16)
        } else {
            periods = Self.defaultPeriods(headDim: headDim)
        }
    }

    /// `base ** (2 · arange(D/4) / (D/2))` with base 100, in bfloat16 as `_init_weights` computes it.
    static func defaultPeriods(headDim: Int, base: Float = 100) -> [Float] {
        let bf = HalfPrecision.roundToBFloat16
        return (0..<(headDim / 4)).map { i in
            let exponent = bf(bf(2 * Float(i)) / Float(headDim / 2))
            return bf(powf(base, exponent))
        }
    }

    /// sin and cos tables of shape (H·W, headDim), bfloat16 values stored as float32.
    func tables(height: Int, width: Int) -> (sin: [Float], cos: [Float]) {
        let bf = HalfPrecision.roundToBFloat16
        let q = headDim / 4
        // "separate" normalisation: arange(0.5, n) / n, then 2c - 1, each rounded to bfloat16.
        func coords(_ n: Int) -> [Float] {
            (0..<n).map { i in
                let c = bf(bf(Float(i) + 0.5) / Float(n))
                return bf(bf(2 * c) - 1)
            }
        }
        let ch = coords(height), cw = coords(width)
        let twoPi = Float(2 * Double.pi)
        var sinT = [Float](repeating: 0, count: height * width * headDim)
        var cosT = sinT
        for y in 0..<height {
            for x in 0..<width {
                let p = y * width + x
                for axis in 0..<2 {
                    let c = axis == 0 ? ch[y] : cw[x]
                    let scaled = bf(twoPi * c)
                    for j in 0..<q {
                        let angle = bf(scaled / periods[j])
                        let s = bf(sinf(angle)), co = bf(cosf(angle))
                        let k = axis * q + j
                        sinT[p * headDim + k] = s
                        sinT[p * headDim + k + 2 * q] = s
                        cosT[p * headDim + k] = co
                        cosT[p * headDim + k + 2 * q] = co
                    }
                }
            }
        }
        return (sinT, cosT)
    }
}

/// Rotates one head vector in place with bfloat16 arithmetic:
/// `bf(bf(x·cos) + bf(rotate_half(x)·sin))` where x is first rounded to bfloat16.
/// `rotate_half(x)` is `[-x₂, x₁]` for the halves x₁, x₂; eight lanes at a time when the half allows.
@inline(__always)
func applyRopeBF16(_ v: UnsafeMutablePointer<Float>, headDim: Int, sin: UnsafePointer<Float>, cos: UnsafePointer<Float>,
                   scratch: UnsafeMutablePointer<Float>) {
    let half = headDim / 2
    if half % 8 == 0 {
        // A local function, not `let bf = VectorMath.roundToBFloat16`: a function value is called
        // indirectly and was 2.5% of a bf16 forward pass.
        @inline(__always) func bf(_ v: SIMD8<Float>) -> SIMD8<Float> { VectorMath.roundToBFloat16(v) }
        var i = 0
        while i < half {
            let x1 = bf(VectorMath.load(v + i)), x2 = bf(VectorMath.load(v + i + half))
            let first = bf(bf(x1 * VectorMath.load(cos + i)) + bf(-x2 * VectorMath.load(sin + i)))
            let second = bf(bf(x2 * VectorMath.load(cos + i + half)) + bf(x1 * VectorMath.load(sin + i + half)))
            VectorMath.store(first, v + i)
            VectorMath.store(second, v + i + half)
            i += 8
        }
        return
    }
    let bf = HalfPrecision.roundToBFloat16
    for i in 0..<headDim { scratch[i] = bf(v[i]) }
    for i in 0..<headDim {
        let rotated = i < half ? -scratch[i + half] : scratch[i - half]
        v[i] = bf(bf(scratch[i] * cos[i]) + bf(rotated * sin[i]))
    }
}

/// Rounds one head vector to bfloat16 in place (the reference casts q and k of the class token
/// to bfloat16 and back even though it does not rotate them).
@inline(__always)
func roundToBF16(_ v: UnsafeMutablePointer<Float>, count: Int) {
    for i in 0..<count { v[i] = HalfPrecision.roundToBFloat16(v[i]) }
}
