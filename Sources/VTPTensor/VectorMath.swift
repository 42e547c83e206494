/// SIMD versions of the scalar functions the hot loops need, accurate to a few float32 ulps.
public enum VectorMath {
    /// e^x for 8 lanes (Cephes `expf` polynomial, ≤ 2 ulp on [-87, 88]); inputs below -87.3
    /// (including -inf) give exactly 0 and inputs above 88.7 give +inf, as expf would.
    @inline(__always)
    public static func exp(_ x: SIMD8<Float>) -> SIMD8<Float> {
        let tooSmall = x .< -87.33654
        let tooLarge = x .> 88.72283
        // Selects, not pointwiseMin/Max: those stayed calls into the generic stdlib in hot loops.
        var clamped = x
        clamped.replace(with: -87.33654, where: tooSmall)
        clamped.replace(with: 88.72283, where: tooLarge)
        // Adding 1.5·2²³ rounds to the nearest integer (ties to even) and leaves it in the low
        // mantissa bits, which avoids a float → int conversion Swift does not vectorize.
        let magic = SIMD8<Float>(repeating: 12_582_912)
        let t = clamped * 1.44269504088896341 + magic
        let n = t - magic
        let ni = unsafeBitCast(t, to: SIMD8<Int32>.self) &- 0x4B40_0000
        let r = clamped - n * 0.693359375 + n * 2.12194440e-4
        var p = SIMD8<Float>(repeating: 1.9875691500e-4)
        p = p * r + 1.3981999507e-3
        p = p * r + 8.3334519073e-3
        p = p * r + 4.1665795894e-2
        p = p * r + 1.6666665459e-1
        p = p * r + 5.0000001201e-1
        let y = p * r * r + r + 1
        // 2^n from the exponent bits; n lies in [-126, 128], so split it in two factors to stay
        // in the normal range at both ends.
        let half = ni &>> 1
        let scaleA = unsafeBitCast((half &+ 127) &<< 23, to: SIMD8<Float>.self)
        let scaleB = unsafeBitCast((ni &- half &+ 127) &<< 23, to: SIMD8<Float>.self)
        var result = y * scaleA * scaleB
        result.replace(with: 0, where: tooSmall)
        result.replace(with: .infinity, where: tooLarge)
        return result
    }

    /// Rounds 8 floats to bfloat16 precision (round-to-nearest-even, NaN kept quiet), as
    /// PyTorch's float → bfloat16 conversion does, returning them as float32.
    @inline(__always)
    public static func roundToBFloat16(_ v: SIMD8<Float>) -> SIMD8<Float> {
        let bits = unsafeBitCast(v, to: SIMD8<UInt32>.self)
        let lsb = (bits &>> 16) & 1
        var rounded = (bits &+ 0x7FFF &+ lsb) & 0xFFFF_0000
        rounded.replace(with: (bits | 0x0040_0000) & 0xFFFF_0000, where: v .!= v)
        return unsafeBitCast(rounded, to: SIMD8<Float>.self)
    }

    /// Loads 8 floats from `p` (no alignment needed).
    @inline(__always)
    public static func load(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
    }

    /// Stores 8 floats at `p` (no alignment needed).
    @inline(__always)
    public static func store(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<Float>.self)
    }
}
