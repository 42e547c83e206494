import VTPVocabulary
import VTPTensor

/// Narrowing of float32 buffers into the bytes of an output dtype, in place into a scratch buffer.
enum FloatNarrowing {
    /// Writes `source` as little-endian `dtype` elements into `destination`
    /// (which holds exactly `source.count * dtype.byteSize` bytes).
    static func convert(_ source: UnsafeBufferPointer<Float>, to dtype: OutputDType, into destination: UnsafeMutableRawBufferPointer) {
        precondition(destination.count == source.count * dtype.byteSize)
        switch dtype {
        case .float32:
            destination.copyMemory(from: UnsafeRawBufferPointer(source))
        case .float16:
            let out = destination.bindMemory(to: UInt16.self)
            for i in 0..<source.count { out[i] = HalfPrecision.float16Bits(source[i]).littleEndian }
        case .bfloat16:
            let out = destination.bindMemory(to: UInt16.self)
            for i in 0..<source.count { out[i] = HalfPrecision.bfloat16Bits(source[i]).littleEndian }
        }
    }
}
