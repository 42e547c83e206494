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
