/// Bit-exact conversions between float32 and the 16-bit formats checkpoints store.
public enum HalfPrecision {
    /// Widens IEEE half floats to float32.
    public static func widenFloat16(_ src: UnsafeRawPointer, count: Int, into dst: UnsafeMutablePointer<Float>) {
        for i in 0..<count {
            let bits = src.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)
            dst[i] = Float(Float16(bitPattern: bits))
        }
    }

    /// Widens bfloat16 to float32 (exact: bfloat16 is the top half of a float32).
    public static func widenBFloat16(_ src: UnsafeRawPointer, count: Int, into dst: UnsafeMutablePointer<Float>) {
        for i in 0..<count {
            let bits = src.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)
            dst[i] = Float(bitPattern: UInt32(bits) << 16)
        }
    }

    /// Rounds a float32 to bfloat16 with round-to-nearest-even, as PyTorch does; NaN stays NaN.
    @inlinable @inline(__always)
    public static func bfloat16Bits(_ value: Float) -> UInt16 {
        let bits = value.bitPattern
        if value.isNaN { return UInt16(truncatingIfNeeded: (bits >> 16) | 0x40) }
        let rounding = UInt32(0x7FFF) + ((bits >> 16) & 1)
        return UInt16(truncatingIfNeeded: (bits &+ rounding) >> 16)
    }

    /// Rounds a float32 to the nearest bfloat16 value and returns it as float32.
    @inlinable @inline(__always)
    public static func roundToBFloat16(_ value: Float) -> Float {
        Float(bitPattern: UInt32(bfloat16Bits(value)) << 16)
    }

    /// Rounds a float32 to IEEE half (round-to-nearest-even).
    @inlinable @inline(__always)
    public static func float16Bits(_ value: Float) -> UInt16 { Float16(value).bitPattern }
}
