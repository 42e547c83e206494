import Foundation
import Testing
import VTPTensor

/// The engine's own GEMM and attention kernels against OpenBLAS sgemm and a float64 definition,
/// on every kernel path this CPU can run (`check` runs the AVX-512 tile code compiled for AVX2).
@Suite struct KernelTests {
    /// Every path this machine supports, the OpenBLAS fallback included.
    static let paths: [KernelISA] = KernelISA.allCases.filter(\.isSupported)
    static let kernelPaths: [KernelISA] = paths.filter { $0 != .blas }
    static let awkward = [1, 7, 17, 63, 65, 255, 257, 768, 3072]
    /// Read from /proc/cpuinfo, apart from the CPUID check the engine makes.
    static let cpuIsIntel = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?.contains("GenuineIntel") ?? false

    /// Deterministic values in [-0.5, 0.5).
    static func values(_ count: Int, seed: UInt64) -> [Float] {
        var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        return (0..<count).map { _ in
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            return Float(state >> 40) / Float(1 << 24) - 0.5
        }
    }

    static func roundedToBFloat16(_ v: [Float]) -> [Float] { v.map(HalfPrecision.roundToBFloat16) }

    /// OpenBLAS's `A · Bᵀ + bias` (B given n × k), in the inputs' precision as passed.
    static func sgemmReference(_ a: [Float], _ b: [Float], m: Int, n: Int, k: Int, bias: [Float]) -> [Float] {
        var c = [Float](repeating: 0, count: m * n)
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                c.withUnsafeMutableBufferPointer { pc in
                    BLAS.gemm(m: m, n: n, k: k, a: pa.baseAddress!, b: pb.baseAddress!, transposeB: true, c: pc.baseAddress!)
                }
            }
        }
        for i in 0..<m { for j in 0..<n { c[i * n + j] += bias[j] } }
        return c
    }

    /// Relative error against the largest reference magnitude.
    static func relativeError(_ ours: UnsafeBufferPointer<Float>, _ reference: [Float]) -> Float {
        var worst: Float = 0, scale: Float = 0
        for (x, y) in zip(ours, reference) { worst = max(worst, abs(x - y)); scale = max(scale, abs(y)) }
        return worst / max(scale, 1e-30)
    }

    /// Shapes: every awkward m with a spread of n and k (3072 among them, with the others small),
    /// bounded so the suite stays quick in a debug build.
    static let shapes: [(Int, Int, Int)] = {
        var out: [(Int, Int, Int)] = []
        for (i, m) in awkward.enumerated() {
            for (j, k) in awkward.enumerated() where (i + j) % 3 == 0 || m <= 17 || k <= 17 {
                let n = awkward[(i + 2 * j) % awkward.count]
                if m * n * k <= 30_000_000 { out.append((m, n, k)) }
            }
        }
        return out
    }()

    @Test(arguments: paths, ComputePrecision.allCases)
    func linearProductsMatchOpenBLASOnAwkwardShapes(_ isa: KernelISA, _ precision: ComputePrecision) {
        let engine = MatmulEngine(isa: isa, precision: precision)
        let pool = ComputePool(threads: 2)
        for (m, n, k) in Self.shapes {
            let a = Self.values(m * k, seed: UInt64(m * 31 + k)), w = Self.values(n * k, seed: UInt64(n * 17 + k))
            let bias = Self.values(n, seed: 99)
            let weight = PackedWeight(Tensor(shape: [n, k], values: w), n: n, k: k, engine: engine)
            let expected = precision == .bf16
                ? Self.sgemmReference(Self.roundedToBFloat16(a), Self.roundedToBFloat16(w), m: m, n: n, k: k, bias: bias)
                : Self.sgemmReference(a, w, m: m, n: n, k: k, bias: bias)
            let out = Tensor(zeros: [m, n])
            a.withUnsafeBufferPointer { pa in
                bias.withUnsafeBufferPointer { pb in
                    Matmul.apply(weight, pa.baseAddress!, rows: m, into: out.mutablePointer,
                                 epilogue: .init(bias: pb.baseAddress!), pool: pool)
                }
            }
            let error = Self.relativeError(out.buffer, expected)
            // Both sides accumulate in float32, in different orders: a few ulps of the sum's scale.
            #expect(error < 2e-6 * Float(max(1, k)).squareRoot(), "\(isa) \(precision) m \(m) n \(n) k \(k): rel \(error)")
        }
    }

    @Test(arguments: paths)
    func untransposedWeightsResidualAndLayerScale(_ isa: KernelISA) {
        let engine = MatmulEngine(isa: isa, precision: .fp32)
        let (m, n, k) = (65, 257, 63)
        let a = Self.values(m * k, seed: 1), bKN = Self.values(k * n, seed: 2)
        let residual = Self.values(m * n, seed: 3), scale = Self.values(n, seed: 4)
        // x @ P with P stored k × n (the text projection parameter).
        let weight = PackedWeight(Tensor(shape: [k, n], values: bKN), n: n, k: k, transposed: false, engine: engine)
        var bNK = [Float](repeating: 0, count: n * k)
        for r in 0..<k { for c in 0..<n { bNK[c * k + r] = bKN[r * n + c] } }
        let product = Self.sgemmReference(a, bNK, m: m, n: n, k: k, bias: [Float](repeating: 0, count: n))
        var expected = [Float](repeating: 0, count: m * n)
        for i in 0..<m { for j in 0..<n { expected[i * n + j] = residual[i * n + j] + scale[j] * (0.5 * product[i * n + j]) } }
        let out = Tensor(zeros: [m, n])
        a.withUnsafeBufferPointer { pa in
            residual.withUnsafeBufferPointer { pr in
                scale.withUnsafeBufferPointer { ps in
                    Matmul.apply(weight, pa.baseAddress!, rows: m, into: out.mutablePointer,
                                 epilogue: .init(alpha: 0.5, residual: pr.baseAddress!, scale: ps.baseAddress!),
                                 pool: ComputePool(threads: 2))
                }
            }
        }
        #expect(Self.relativeError(out.buffer, expected) < 1e-5, "\(isa)")
    }

    /// SwiGLU gated in the product's epilogue (w1 and w2 interleaved) gives the bits of the stacked
    /// product followed by siluMultiply, with part-filled tiles and with the few-row column split,
    /// on every path that gates in its tiles; the others decline to interleave.
    @Test(arguments: kernelPaths, ComputePrecision.allCases)
    func swigluInTheEpilogueIsTheStackedProductGated(_ isa: KernelISA, _ precision: ComputePrecision) {
        let engine = MatmulEngine(isa: isa, precision: precision)
        let (h, k) = (256, 200)
        let w1 = Tensor(shape: [h, k], values: Self.values(h * k, seed: 11))
        let w2 = Tensor(shape: [h, k], values: Self.values(h * k, seed: 12))
        let b1 = Self.values(h, seed: 13), b2 = Self.values(h, seed: 14), both = b1 + b2
        guard let fused = PackedWeight(interleavingValue: .float32(w1), gate: .float32(w2), n: h, k: k, engine: engine) else {
            #expect(isa == .avx2 || isa == .amx, "\(isa) should gate in its tiles")
            return
        }
        #expect(fused.gatesSwiGLU && fused.outputColumns == h)
        let stacked = PackedWeight(stacking: [.float32(w1), .float32(w2)], n: h, k: k, engine: engine)!
        for m in [1, 13, 14, 29, 130] {
            let x = Self.values(m * k, seed: UInt64(m))
            let gated = Tensor(zeros: [m, h]), ungated = Tensor(zeros: [m, 2 * h])
            x.withUnsafeBufferPointer { px in
                b1.withUnsafeBufferPointer { pb1 in
                    b2.withUnsafeBufferPointer { pb2 in
                        Matmul.apply(fused, px.baseAddress!, rows: m, into: gated.mutablePointer,
                                     epilogue: .init(bias: pb1.baseAddress!, gateBias: pb2.baseAddress!), pool: ComputePool(threads: 2))
                    }
                }
                both.withUnsafeBufferPointer { pb in
                    Matmul.apply(stacked, px.baseAddress!, rows: m, into: ungated.mutablePointer,
                                 epilogue: .init(bias: pb.baseAddress!), pool: .serial)
                }
            }
            let u = ungated.mutablePointer
            for r in 0..<m { Kernels.siluMultiply(u + r * 2 * h, u + r * 2 * h + h, count: h) }
            let expected = (0..<m).flatMap { r in (0..<h).map { u[r * 2 * h + $0] } }
            #expect(Array(gated.buffer) == expected, "\(isa) \(precision) with \(m) rows")
        }
    }

    /// RoPE in the product's epilogue gives the bits of the plain product followed by the RoPE
    /// kernel (prefix tokens only rounded), through `Matmul.apply` as the blocks call it: rows
    /// split over two threads (each chunk's first token), the few-row column split (whole heads per
    /// task), part-filled tiles, two depth blocks, heads of 64 and 128. Paths that cannot rotate in
    /// their tiles (AVX2, AMX, OpenBLAS) rotate each chunk after its product, with the same result.
    @Test(arguments: paths, ComputePrecision.allCases)
    func ropeInTheEpilogueIsTheProductThenRoPE(_ isa: KernelISA, _ precision: ComputePrecision) {
        let engine = MatmulEngine(isa: isa, precision: precision)
        for (hd, k) in [(64, 96), (128, 1000)] {
            let dim = 2 * hd, n = 3 * dim, tokens = 37, prefix = 5
            let weight = PackedWeight(Tensor(shape: [n, k], values: Self.values(n * k, seed: UInt64(hd))), n: n, k: k, engine: engine)
            let bias = Self.values(n, seed: 21)
            let sin = (0..<(tokens - prefix) * hd).map { Float(Foundation.sin(Double($0) * 0.37)) }
            let cos = (0..<(tokens - prefix) * hd).map { Float(Foundation.cos(Double($0) * 0.37)) }
            if [.avx512bf16, .avx512, .check, .checkDPBF16].contains(isa) { #expect(weight.fusesRoPE(headDim: hd), "\(isa)") }
            for (m, firstRow) in [(1, 0), (13, 30), (100, 3), (300, 7)] {
                let x = Self.values(m * k, seed: UInt64(m))
                let rotated = Tensor(zeros: [m, n]), plain = Tensor(zeros: [m, n])
                x.withUnsafeBufferPointer { px in
                    bias.withUnsafeBufferPointer { pb in
                        sin.withUnsafeBufferPointer { ps in
                            cos.withUnsafeBufferPointer { pc in
                                var epilogue = Matmul.Epilogue(bias: pb.baseAddress!)
                                epilogue.rope = Matmul.RoPE(sin: ps.baseAddress!, cos: pc.baseAddress!, columns: 2 * dim, headDim: hd,
                                                            tokens: tokens, prefix: prefix, firstRow: firstRow)
                                Matmul.apply(weight, px.baseAddress!, rows: m, into: rotated.mutablePointer, epilogue: epilogue,
                                             pool: ComputePool(threads: 2))
                                // The same pool: OpenBLAS's bits depend on how many rows share a call.
                                Matmul.apply(weight, px.baseAddress!, rows: m, into: plain.mutablePointer,
                                             epilogue: .init(bias: pb.baseAddress!), pool: ComputePool(threads: 2))
                                for r in 0..<m {
                                    let row = plain.mutablePointer + r * n, token = (firstRow + r) % tokens
                                    if token < prefix {
                                        Kernels.roundToBFloat16(row, count: 2 * dim)
                                    } else {
                                        let at = (token - prefix) * hd
                                        Kernels.ropeBFloat16(row, stride: hd, count: 2 * dim / hd, headDim: hd,
                                                             sin: ps.baseAddress! + at, cos: pc.baseAddress! + at)
                                    }
                                }
                            }
                        }
                    }
                }
                #expect(Array(rotated.buffer) == Array(plain.buffer), "\(isa) \(precision) hd \(hd) with \(m) rows from \(firstRow)")
            }
        }
    }

    @Test(arguments: paths, ComputePrecision.allCases)
    func fusedAttentionMatchesTheDefinition(_ isa: KernelISA, _ precision: ComputePrecision) {
        let engine = MatmulEngine(isa: isa, precision: precision)
        // 600 and 530 keys take several key tiles (the online rescaling); the others one.
        for (n, causal) in [(1, false), (77, true), (65, false), (257, false), (130, true), (600, false), (530, true)] {
            let (heads, hd) = (2, 24)
            let dim = heads * hd
            let qkv = Self.values(n * 3 * dim, seed: UInt64(n)).map { $0 * 4 }
            let out = Tensor(zeros: [n, dim])
            let ran = qkv.withUnsafeBufferPointer { p in
                FusedAttention.run(engine: engine, qkv: p.baseAddress!, batch: 1, tokens: n, dim: dim, heads: heads,
                                   causal: causal, into: out.mutablePointer, pool: ComputePool(threads: 2))
            }
            #expect(ran == (isa != .blas))
            guard ran else { continue }
            let r: (Float) -> Double = { precision == .bf16 ? Double(HalfPrecision.roundToBFloat16($0)) : Double($0) }
            var expected = [Float](repeating: 0, count: n * dim)
            for h in 0..<heads {
                for i in 0..<n {
                    var scores = [Double](repeating: -.infinity, count: n)
                    for j in 0..<n where !causal || j <= i {
                        var dot = 0.0
                        for e in 0..<hd { dot += r(qkv[i * 3 * dim + h * hd + e]) * r(qkv[j * 3 * dim + dim + h * hd + e]) }
                        scores[j] = dot / Double(hd).squareRoot()
                    }
                    let top = scores.max()!
                    let weights = scores.map { exp($0 - top) }
                    let total = weights.reduce(0, +)
                    for e in 0..<hd {
                        var acc = 0.0
                        for j in 0..<n { acc += weights[j] * r(qkv[j * 3 * dim + 2 * dim + h * hd + e]) }
                        expected[i * dim + h * hd + e] = Float(acc / total)
                    }
                }
            }
            let error = Self.relativeError(out.buffer, expected)
            // bf16 rounds the probabilities too (as autocast does), which costs up to ~2^-8 relative.
            #expect(error < (precision == .bf16 ? 8e-3 : 2e-6), "\(isa) \(precision) n \(n) causal \(causal): rel \(error)")
        }
    }

    /// The pair layout puts depth 2k in the high half of a word because Intel's vdpbf16ps adds that
    /// product first: so its chain over k is the FMA tiles' chain, and the widening tiles, the
    /// emulated vdpbf16ps of `check-avx512bf16` and (on Intel) the instruction itself give the same
    /// bits, for GEMMs and attention alike.
    /// (AMX's tdpbf16ps sums its 32 products in an order and precision of its own, so `amx` is not
    /// among them; its bits are checked for batch and thread invariance like every path's.)
    @Test func bf16PathsAccumulateInOneOrder() {
        let same: [KernelISA] = [.avx512, .check, .checkDPBF16] + (Self.cpuIsIntel ? [.avx512bf16] : [])
        let isas = same.filter(\.isSupported)
        let pool = ComputePool(threads: 2)
        let (m, n, k) = (67, 70, 515)
        let a = Self.values(m * k, seed: 3), w = Self.values(n * k, seed: 4)
        var outputs: [(KernelISA, [Float])] = []
        for isa in isas {
            let weight = PackedWeight(Tensor(shape: [n, k], values: w), n: n, k: k, engine: MatmulEngine(isa: isa, precision: .bf16))
            let out = Tensor(zeros: [m, n])
            a.withUnsafeBufferPointer { Matmul.apply(weight, $0.baseAddress!, rows: m, into: out.mutablePointer, pool: pool) }
            let (tokens, dim, heads) = (77, 128, 2)
            let qkv = Tensor(shape: [tokens, 3 * dim], values: Self.values(tokens * 3 * dim, seed: 5))
            let attended = Tensor(zeros: [tokens, dim])
            _ = FusedAttention.run(engine: MatmulEngine(isa: isa, precision: .bf16), qkv: qkv.pointer, batch: 1, tokens: tokens,
                                   dim: dim, heads: heads, causal: true, into: attended.mutablePointer, pool: pool)
            outputs.append((isa, Array(out.buffer) + Array(attended.buffer)))
        }
        for (isa, values) in outputs.dropFirst() {
            #expect(values == outputs[0].1, "\(isa) and \(outputs[0].0) differ in bf16")
        }
    }

    @Test func detectionAgreesWithTheCPUFlagsAndUnsupportedPathsAreRefused() throws {
        let flags = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?
            .split(separator: "\n").first { $0.hasPrefix("flags") }.map { Set($0.split(separator: " ").map(String.init)) }
        if let flags {
            // The kernel lists amx_tile and amx_bf16 only where it saves their state.
            let amx = flags.contains("avx512_bf16") && flags.contains("amx_tile") && flags.contains("amx_bf16")
            let expected: KernelISA = flags.contains("avx512f")
                ? (amx ? .amx : flags.contains("avx512_bf16") ? .avx512bf16 : .avx512)
                : (flags.contains("avx2") && flags.contains("fma") ? .avx2 : .blas)
            #expect(KernelISA.detected == expected)
        }
        // By default the detected path, except that Intel's slow vdpbf16ps gives way to widening.
        #expect(try KernelISA.fromEnvironment([:]) == (KernelISA.detected == .avx512bf16 && Self.cpuIsIntel ? .avx512 : KernelISA.detected))
        #expect(try KernelISA.fromEnvironment(["VTP_ISA": "blas"]) == .blas)
        #expect(throws: KernelError.unknownISA("sse9")) { try KernelISA.fromEnvironment(["VTP_ISA": "sse9"]) }
        for isa in KernelISA.allCases where !isa.isSupported {
            // Without AVX-512 the AVX-512 paths are refused, never run (they would raise SIGILL).
            #expect(throws: KernelError.unsupportedISA(isa, detected: KernelISA.detected)) {
                try KernelISA.fromEnvironment(["VTP_ISA": isa.rawValue])
            }
        }
        // The OpenBLAS fallback holds no packed copy of a float32 weight: it reads it in place.
        let weight = PackedWeight(Tensor(shape: [4, 3], values: Self.values(12, seed: 5)), n: 4, k: 3,
                                  engine: MatmulEngine(isa: .blas, precision: .fp32))
        #expect(weight.residentBytes == 0)
        // bf16 kernel paths hold two bytes per weight (plus panel padding), fp32 ones four.
        for isa in Self.kernelPaths {
            let w = Tensor(shape: [64, 256], values: Self.values(64 * 256, seed: 6))
            #expect(PackedWeight(w, n: 64, k: 256, engine: MatmulEngine(isa: isa, precision: .bf16)).residentBytes == 64 * 256 * 2)
            #expect(PackedWeight(w, n: 64, k: 256, engine: MatmulEngine(isa: isa, precision: .fp32)).residentBytes == 64 * 256 * 4)
        }
    }

    @Test(arguments: kernelPaths, ComputePrecision.allCases)
    func rowsGetTheSameBitsWhateverTheyShareACallWith(_ isa: KernelISA, _ precision: ComputePrecision) {
        let engine = MatmulEngine(isa: isa, precision: precision)
        let (n, k) = (300, 700)
        let weight = PackedWeight(Tensor(shape: [n, k], values: Self.values(n * k, seed: 8)), n: n, k: k, engine: engine)
        let a = Self.values(300 * k, seed: 9)
        func product(rows: Int, threads: Int) -> [Float] {
            let out = Tensor(zeros: [rows, n])
            a.withUnsafeBufferPointer { p in
                Matmul.apply(weight, p.baseAddress!, rows: rows, into: out.mutablePointer, pool: ComputePool(threads: threads))
            }
            return Array(out.buffer.prefix(n))
        }
        let alone = product(rows: 1, threads: 1)
        for (rows, threads) in [(3, 1), (13, 2), (300, 2), (300, 1)] {
            #expect(product(rows: rows, threads: threads).map(\.bitPattern) == alone.map(\.bitPattern), "\(isa) \(rows) rows \(threads) threads")
        }
    }
}
