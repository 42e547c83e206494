import CVTPKernels
import Foundation
import Testing
import VTPTensor

/// Packed B, byte for byte, against the layout written out element by element: panels of 16 (or
/// 32) columns of floats (`[k][16]`) or of bf16 pair words (`[k/2][16]`, depth k in the high half), columns
/// past n and depths past k zero. On AVX-512 CPUs the packing runs vector loads and gathers.
@Suite struct PackingTests {
    static func expected(path: vtp_path, source: [Float], ld: Int, transposed: Bool, n: Int, k: Int, bytes: Int) -> [UInt8] {
        let nr = Int(vtp_panel_columns(Int32(path.rawValue)))
        let panels = (n + nr - 1) / nr
        var out = [UInt8](repeating: 0, count: bytes)
        func value(_ col: Int, _ kk: Int) -> Float { transposed ? source[col * ld + kk] : source[kk * ld + col] }
        out.withUnsafeMutableBytes { raw in
            if vtp_path_is_bf16(Int32(path.rawValue)) != 0 {
                let pairs = bytes / (panels * nr * 4)
                let halves = raw.bindMemory(to: UInt16.self)
                for col in 0..<n {
                    for kk in 0..<k {
                        halves[(col / nr) * pairs * nr * 2 + (kk / 2) * nr * 2 + (col % nr) * 2 + 1 - (kk & 1)] = HalfPrecision.bfloat16Bits(value(col, kk))
                    }
                }
            } else {
                let depth = bytes / (panels * nr * 4)
                let floats = raw.bindMemory(to: Float.self)
                for col in 0..<n { for kk in 0..<k { floats[(col / nr) * depth * nr + kk * nr + col % nr] = value(col, kk) } }
            }
        }
        return out
    }

    @Test(arguments: [VTP_PATH_AVX512_F32, VTP_PATH_AVX512_F32_WIDE, VTP_PATH_AVX512BF16, VTP_PATH_AVX512_BF16, VTP_PATH_CHECK_F32,
                      VTP_PATH_CHECK_DPBF16])
    func packedBytesFollowTheLayout(_ path: vtp_path) {
        for (n, k, transposed) in [(37, 19, true), (37, 19, false), (16, 64, true), (64, 257, false), (1, 1, true), (300, 33, true)] {
            let ld = (transposed ? k : n) + 3
            let source = KernelTests.values((transposed ? n : k) * ld, seed: UInt64(n * 1000 + k))
            let bytes = vtp_packed_bytes(Int32(path.rawValue), Int32(n), Int32(k))
            var packed = [UInt8](repeating: 0xAB, count: bytes)
            source.withUnsafeBufferPointer { s in
                packed.withUnsafeMutableBytes { d in
                    vtp_pack_b_f32(Int32(path.rawValue), s.baseAddress!, ld, transposed ? 1 : 0, Int32(n), Int32(k), Int32(k), d.baseAddress!)
                }
            }
            let reference = Self.expected(path: path, source: source, ld: ld, transposed: transposed, n: n, k: k, bytes: bytes)
            #expect(packed == reference, "path \(path.rawValue) n \(n) k \(k) transposed \(transposed)")
        }
    }

    /// The C SwiGLU gate against its definition.
    @Test func siluMultiplyMatchesItsDefinition() {
        let a = KernelTests.values(1000, seed: 3).map { $0 * 40 }, b = KernelTests.values(1000, seed: 4)
        var out = a
        out.withUnsafeMutableBufferPointer { o in b.withUnsafeBufferPointer { Kernels.siluMultiply(o.baseAddress!, $0.baseAddress!, count: 1000) } }
        for i in 0..<1000 {
            let exact = Double(a[i]) / (1 + Foundation.exp(-Double(a[i]))) * Double(b[i])
            #expect(abs(Double(out[i]) - exact) <= 4e-7 * max(abs(exact), 1e-3), "\(a[i]) · \(b[i]): \(out[i]) vs \(exact)")
        }
    }
}
