import CVTPKernels
import Foundation

/// The precision the engine computes matrix products in, separate from how a checkpoint stores
/// its weights.
///
/// `bf16` follows `torch.autocast("cpu", dtype=torch.bfloat16)`: weights held once in bfloat16,
/// activations rounded to bfloat16 at every product, float32 accumulation and float32 outputs;
/// norms, softmax and the residual stream stay float32.
public enum ComputePrecision: String, Sendable, CaseIterable, Codable {
    case fp32
    case bf16
}

/// The instruction-set path the kernels run on.
public enum KernelISA: String, Sendable, CaseIterable, Codable {
    /// AMX-BF16 (with AVX-512F and AVX512_BF16): 32×32 `tdpbf16ps` tiles for bf16, the AVX-512 FMA
    /// tiles for fp32. Its bf16 bits are its own: the instruction sums 32 products in an order of its
    /// own, so they differ from the other paths' by rounding (still the same whatever the batch).
    case amx
    /// AVX-512F with AVX512_BF16: `vdpbf16ps` tiles for bf16, FMA tiles for fp32.
    case avx512bf16
    /// AVX-512F: 28×16 FMA tiles; bf16 weights are widened to float32 in registers as the tile reads them.
    case avx512
    /// AVX2 + FMA: 6×16 FMA tiles; bf16 weights widened in registers.
    case avx2
    /// The AVX-512 tile geometry and code compiled for AVX2, so machines without AVX-512 can test
    /// the packing, tiling and epilogues the AVX-512 paths run. Slower; never picked by itself.
    case check
    /// The `avx512bf16` path's bf16 packing (A and B in bfloat16 pairs) and tiles, with `vdpbf16ps`
    /// emulated on AVX2: lets machines without AVX512_BF16 test everything of that path but the
    /// instruction. fp32 runs as `check`.
    case checkDPBF16 = "check-avx512bf16"
    /// OpenBLAS sgemm (the portable fallback); bf16 rounds weights and activations to bf16 values.
    case blas

    /// The best path this CPU supports.
    public static let detected: KernelISA = {
        switch Int32(vtp_cpu_isa()) {
        case Int32(VTP_ISA_AMX.rawValue): .amx
        case Int32(VTP_ISA_AVX512BF16.rawValue): .avx512bf16
        case Int32(VTP_ISA_AVX512.rawValue): .avx512
        case Int32(VTP_ISA_AVX2.rawValue): .avx2
        default: .blas
        }
    }()

    /// The path used when `VTP_ISA` does not name one: the best detected, except that a CPU whose
    /// `vdpbf16ps` is slower than its float32 FMA (Intel's, measured at half the rate) runs bf16
    /// on the `avx512` widening tiles, which reach the FMA rate on half the weight bytes.
    /// `VTP_ISA=avx512bf16` still selects the `vdpbf16ps` tiles there.
    public static let preferred: KernelISA = detected == .avx512bf16 && vtp_cpu_dpbf16_is_fast() == 0 ? .avx512 : detected

    /// Whether this CPU can run the path.
    public var isSupported: Bool {
        let rank: (KernelISA) -> Int = { [.blas: 0, .avx2: 1, .check: 1, .checkDPBF16: 1, .avx512: 2, .avx512bf16: 3, .amx: 4][$0]! }
        return rank(self) <= rank(Self.detected)
    }

    /// The path named by `VTP_ISA`, or ``preferred`` when it is unset.
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) throws -> KernelISA {
        guard let name = environment["VTP_ISA"], !name.isEmpty else { return preferred }
        guard let isa = KernelISA(rawValue: name) else {
            throw KernelError.unknownISA(name)
        }
        return try resolve(isa)
    }

    /// `explicit` when given (an error when this CPU cannot run it), else ``fromEnvironment(_:)``.
    public static func resolve(_ explicit: KernelISA?) throws -> KernelISA {
        guard let explicit else { return try fromEnvironment() }
        guard explicit.isSupported else { throw KernelError.unsupportedISA(explicit, detected: detected) }
        return explicit
    }
}

/// Errors of the kernel layer.
public enum KernelError: Error, CustomStringConvertible, Equatable {
    case unknownISA(String)
    case unsupportedISA(KernelISA, detected: KernelISA)

    public var description: String {
        switch self {
        case let .unknownISA(name):
            "VTP_ISA=\(name) is not a kernel path; expected one of \(KernelISA.allCases.map(\.rawValue).joined(separator: ", "))"
        case let .unsupportedISA(isa, detected):
            "VTP_ISA=\(isa.rawValue) needs instructions this CPU lacks (it supports up to \(detected.rawValue))"
        }
    }
}

/// A kernel path and a precision: decides how weights are packed and which tile runs.
public struct MatmulEngine: Sendable, Equatable {
    public let isa: KernelISA
    public let precision: ComputePrecision

    /// The C kernel path, or nil for OpenBLAS.
    let path: Int32?

    public init(isa: KernelISA, precision: ComputePrecision) {
        self.isa = isa
        self.precision = precision
        let bf16 = precision == .bf16
        // float32 on AVX-512: 14×32 tiles on AMD CPUs, 28×16 on Intel's (faster on each, same bits).
        let avx512F32 = vtp_cpu_dpbf16_is_fast() != 0 ? VTP_PATH_AVX512_F32_WIDE : VTP_PATH_AVX512_F32
        switch isa {
        case .amx: path = Int32((bf16 ? VTP_PATH_AMX_BF16 : avx512F32).rawValue)
        case .avx512bf16: path = Int32((bf16 ? VTP_PATH_AVX512BF16 : avx512F32).rawValue)
        case .avx512: path = Int32((bf16 ? VTP_PATH_AVX512_BF16 : avx512F32).rawValue)
        case .avx2: path = Int32((bf16 ? VTP_PATH_AVX2_BF16 : VTP_PATH_AVX2_F32).rawValue)
        case .check: path = Int32((bf16 ? VTP_PATH_CHECK_BF16 : VTP_PATH_CHECK_F32).rawValue)
        case .checkDPBF16: path = Int32((bf16 ? VTP_PATH_CHECK_DPBF16 : VTP_PATH_CHECK_F32).rawValue)
        case .blas: path = nil
        }
    }

    /// The engine for `precision` on `isa`, or on the path `VTP_ISA` names (or the best one detected).
    public static func resolve(precision: ComputePrecision, isa: KernelISA? = nil) throws -> MatmulEngine {
        MatmulEngine(isa: try KernelISA.resolve(isa), precision: precision)
    }

    /// Whether packed weights live in bfloat16.
    public var storesBFloat16: Bool { path.map { vtp_path_is_bf16($0) != 0 } ?? false }

    /// Whether weights are copied into a layout of their own (the memory-mapped originals can then be released).
    public var packsWeights: Bool { path != nil || precision == .bf16 }
}

/// A weight matrix in the layout its engine's tile reads: packed panels (float32 or bfloat16) on
/// the kernel paths, a float32 tensor on OpenBLAS.
///
/// Logically `n × k` (out features × in features, a PyTorch `Linear` weight). Immutable after
/// packing, so concurrent products only read it (`@unchecked Sendable`).
public final class PackedWeight: @unchecked Sendable {
    public let engine: MatmulEngine
    /// Output columns.
    public let n: Int
    /// Depth (input features).
    public let k: Int
    private let packed: UnsafeMutableRawPointer?
    private let dense: Tensor?
    /// Bytes the packed or copied weight holds in memory (0 when borrowed from a mapping).
    public let residentBytes: Int

    /// Packs a float32 weight: `n × k` when `transposed` (a Linear weight), else `k × n`.
    public init(_ weight: Tensor, n: Int, k: Int, transposed: Bool = true, engine: MatmulEngine) {
        precondition(weight.count == n * k, "weight of \(weight.count) elements is not \(n)×\(k)")
        self.engine = engine
        self.n = n
        self.k = k
        gatesSwiGLU = false
        defer { withExtendedLifetime(weight) {} }
        if let path = engine.path {
            let bytes = vtp_packed_bytes(path, Int32(n), Int32(k))
            let buffer = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 64), alignment: 64)
            vtp_pack_b_f32(path, weight.pointer, transposed ? k : n, transposed ? 1 : 0, Int32(n), Int32(k), Int32(k), buffer)
            packed = buffer
            dense = nil
            residentBytes = bytes
            return
        }
        packed = nil
        if !transposed || engine.precision == .bf16 {
            // OpenBLAS reads B as n × k; bf16 on OpenBLAS holds bf16 values in float32.
            let copy = Tensor(uninitialized: [n, k])
            let src = weight.pointer, dst = copy.mutablePointer
            if transposed { dst.update(from: src, count: n * k) } else {
                for row in 0..<k { for col in 0..<n { dst[col * k + row] = src[row * n + col] } }
            }
            if engine.precision == .bf16 { vtp_round_bf16_inplace(dst, n * k) }
            dense = copy
            residentBytes = n * k * 4
        } else {
            dense = weight.reshaped([n, k])
            residentBytes = 0
        }
    }

    /// Packs a weight stored as bfloat16 bits (`n × k`, row-major), used as stored on bf16 kernel
    /// paths; other engines widen it to float32 first.
    public convenience init(bfloat16 bits: UnsafeRawPointer, n: Int, k: Int, engine: MatmulEngine) {
        if let path = engine.path, vtp_path_is_bf16(path) != 0 {
            self.init(packedBFloat16: bits, n: n, k: k, path: path, engine: engine)
        } else {
            let widened = Tensor(uninitialized: [n, k])
            HalfPrecision.widenBFloat16(bits, count: n * k, into: widened.mutablePointer)
            self.init(widened, n: n, k: k, engine: engine)
        }
    }

    private init(packedBFloat16 bits: UnsafeRawPointer, n: Int, k: Int, path: Int32, engine: MatmulEngine) {
        self.engine = engine
        self.n = n
        self.k = k
        gatesSwiGLU = false
        let bytes = vtp_packed_bytes(path, Int32(n), Int32(k))
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 64), alignment: 64)
        vtp_pack_b_bf16(path, bits.assumingMemoryBound(to: UInt16.self), k, 1, Int32(n), Int32(k), Int32(k), buffer)
        packed = buffer
        dense = nil
        residentBytes = bytes
    }

    /// Where a weight's `n × k` values come from when several are packed into one.
    public enum Source {
        /// Float32 values (a Linear weight: n rows of k).
        case float32(Tensor)
        /// bfloat16 bits, n rows of k, used as stored where the engine keeps bf16 weights.
        case bfloat16(UnsafeRawPointer)
    }

    /// Whether ``init(stacking:n:k:engine:)`` can stack parts of `n` columns for `engine` (so a
    /// caller need not load the sources to find out).
    public static func canStack(n: Int, engine: MatmulEngine) -> Bool {
        guard let path = engine.path else { return false }
        return n % Int(vtp_panel_columns(path)) == 0
    }

    /// Whether ``init(interleavingValue:gate:n:k:engine:)`` can interleave a value and gate of
    /// `n × k` for `engine`: its tiles gate in the epilogue at depth k, over whole panels.
    public static func canInterleave(n: Int, k: Int, engine: MatmulEngine) -> Bool {
        guard let path = engine.path, vtp_gemm_fuses_swiglu(path, Int32(k)) != 0 else { return false }
        return n % Int(vtp_panel_columns(path)) == 0
    }

    /// Weights of `n × k` each stacked by rows (`[w₀; w₁; …]`: their output columns side by side, in
    /// order), packed straight from their sources; nil on OpenBLAS, or where a part's columns do not
    /// fill whole panels. Each output column is the same chain of products as in its own weight,
    /// and one product computes all their outputs with its input packed once.
    public convenience init?(stacking parts: [Source], n: Int, k: Int, engine: MatmulEngine) {
        guard let path = engine.path, !parts.isEmpty, Self.canStack(n: n, engine: engine) else { return nil }
        let partBytes = vtp_packed_bytes(path, Int32(n), Int32(k))
        self.init(path: path, engine: engine, n: parts.count * n, k: k, gatesSwiGLU: false) { buffer in
            for (i, part) in parts.enumerated() { Self.pack(part, columns: 0..<n, k: k, path: path, into: buffer + i * partBytes) }
        }
    }

    /// SwiGLU's value and gate weights (`n × k` each) packed with their panels interleaved (value
    /// panel j, then gate panel j), for a product whose epilogue gates in registers
    /// (``gatesSwiGLU``): its output is `value · sigmoid(value) · gate`, `n` columns, with no hidden
    /// activations of twice that width to write and read back. Packed straight from the sources:
    /// packing each weight first and freeing the copies left 100 MB of a B model in malloc's heap.
    /// Nil where the engine cannot gate in its tiles (OpenBLAS, AMX, AVX2, more depth than one
    /// block; see `vtp_gemm_fuses_swiglu`) or `n` does not fill whole panels.
    public convenience init?(interleavingValue value: Source, gate: Source, n: Int, k: Int, engine: MatmulEngine) {
        guard let path = engine.path, Self.canInterleave(n: n, k: k, engine: engine) else { return nil }
        let columns = Int(vtp_panel_columns(path))
        let panelBytes = vtp_packed_bytes(path, Int32(columns), Int32(k))
        self.init(path: path, engine: engine, n: 2 * n, k: k, gatesSwiGLU: true) { buffer in
            for panel in 0..<(n / columns) {
                let range = panel * columns..<(panel + 1) * columns
                Self.pack(value, columns: range, k: k, path: path, into: buffer + 2 * panel * panelBytes)
                Self.pack(gate, columns: range, k: k, path: path, into: buffer + (2 * panel + 1) * panelBytes)
            }
        }
    }

    /// Packs output columns `columns` (rows of the n × k source) into consecutive panels at `dst`.
    private static func pack(_ source: Source, columns: Range<Int>, k: Int, path: Int32, into dst: UnsafeMutableRawPointer) {
        switch source {
        case let .float32(tensor):
            vtp_pack_b_f32(path, tensor.pointer + columns.lowerBound * k, k, 1, Int32(columns.count), Int32(k), Int32(k), dst)
            withExtendedLifetime(tensor) {}
        case let .bfloat16(bits):
            if vtp_path_is_bf16(path) != 0 {
                vtp_pack_b_bf16(path, bits.assumingMemoryBound(to: UInt16.self) + columns.lowerBound * k, k, 1,
                                Int32(columns.count), Int32(k), Int32(k), dst)
            } else {
                let widened = Tensor(uninitialized: [columns.count, k])
                HalfPrecision.widenBFloat16(bits + columns.lowerBound * k * 2, count: columns.count * k, into: widened.mutablePointer)
                pack(.float32(widened), columns: 0..<columns.count, k: k, path: path, into: dst)
            }
        }
    }

    private convenience init(path: Int32, engine: MatmulEngine, n: Int, k: Int, gatesSwiGLU: Bool,
                             fill: (UnsafeMutableRawPointer) -> Void) {
        let bytes = vtp_packed_bytes(path, Int32(n), Int32(k))
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 64), alignment: 64)
        fill(buffer)
        self.init(engine: engine, n: n, k: k, packed: buffer, bytes: bytes, gatesSwiGLU: gatesSwiGLU)
    }

    private init(engine: MatmulEngine, n: Int, k: Int, packed: UnsafeMutableRawPointer, bytes: Int, gatesSwiGLU: Bool) {
        self.engine = engine
        self.n = n
        self.k = k
        self.packed = packed
        dense = nil
        residentBytes = bytes
        self.gatesSwiGLU = gatesSwiGLU
    }

    /// Whether this is an interleaved SwiGLU weight (``init(interleavingValue:gate:n:k:engine:)``): its
    /// products gate in the epilogue and have `n / 2` output columns.
    public let gatesSwiGLU: Bool

    /// Output columns of a product with this weight.
    public var outputColumns: Int { gatesSwiGLU ? n / 2 : n }

    deinit { packed?.deallocate() }

    /// Panels of the packed layout (columns per panel: ``panelColumns``).
    var panelCount: Int { (n + panelColumns - 1) / panelColumns }
    var panelColumns: Int { engine.path.map { Int(vtp_panel_columns($0)) } ?? n }

    /// Rows per chunk when a product is split by rows: the kernel's row block (a chunk reuses each
    /// panel of B as often as one call over all rows would), or 128 rows on OpenBLAS.
    public var rowChunk: Int { engine.path.map { Int(vtp_block_rows($0)) } ?? 128 }

    /// Rows chunks of a row split come in multiples of (the tile's rows; 8 on OpenBLAS), so no
    /// chunk computes a part-empty tile it need not.
    public var rowGranule: Int { engine.path.map { Int(vtp_tile_rows($0)) } ?? 8 }

    /// Whether products with this weight apply RoPE over heads of `headDim` values in their tiles
    /// (``Matmul/RoPE``); elsewhere ``Matmul/apply(_:_:rows:lda:into:ldc:epilogue:pool:)`` rotates
    /// each chunk's rows after its product, with the same bits.
    public func fusesRoPE(headDim: Int) -> Bool {
        guard let path = engine.path, !gatesSwiGLU else { return false }
        return vtp_gemm_fuses_rope(path, Int32(headDim)) != 0
    }

    /// `C = epilogue(A · Wᵀ)` for `rows` rows, on the calling thread.
    fileprivate func multiply(_ a: UnsafePointer<Float>, rows: Int, lda: Int, into c: UnsafeMutablePointer<Float>, ldc: Int,
                              panels: Range<Int>, epilogue: Matmul.Epilogue) {
        if let path = engine.path, let packed {
            precondition(!gatesSwiGLU || epilogue.residual == nil, "a SwiGLU product takes no residual")
            var ep = vtp_epilogue()
            ep.alpha = epilogue.alpha
            ep.bias = epilogue.bias
            ep.residual = epilogue.residual
            ep.ldr = epilogue.residualStride ?? ldc
            ep.scale = epilogue.scale
            ep.swiglu = gatesSwiGLU ? 1 : 0
            ep.gate_bias = epilogue.gateBias
            let fusedRoPE = epilogue.rope.flatMap { fusesRoPE(headDim: $0.headDim) ? $0 : nil }
            if let rope = fusedRoPE {
                ep.rope_sin = rope.sin
                ep.rope_cos = rope.cos
                ep.rope_columns = Int32(rope.columns)
                ep.rope_head = Int32(rope.headDim)
                ep.rope_tokens = Int32(rope.tokens)
                ep.rope_prefix = Int32(rope.prefix)
                ep.rope_row0 = rope.firstRow
            }
            let status = vtp_gemm(path, Int32(rows), Int32(n), Int32(k), a, lda, packed, c, ldc,
                                  Int32(panels.lowerBound), Int32(panels.upperBound), &ep)
            // Both are broken invariants, not bad input: memory ran out, or a caller asked for an
            // epilogue (SwiGLU gating, RoPE) this weight and panel range cannot take.
            if status == -1 { fatalError("vtp_gemm could not allocate its packing buffer") }
            if status != 0 { fatalError("vtp_gemm refused the SwiGLU or RoPE epilogue for this weight and panel range") }
            if fusedRoPE == nil, let rope = epilogue.rope { rope.apply(c, rows: rows, ldc: ldc) }
            return
        }
        // On OpenBLAS one "panel" is all n columns (panelCount is 1), so `panels` is always 0..<1.
        let weight = dense!
        var source = a, sourceStride = lda
        var rounded: UnsafeMutablePointer<Float>?
        if engine.precision == .bf16 {
            let copy = UnsafeMutablePointer<Float>.allocate(capacity: rows * k)
            for r in 0..<rows { (copy + r * k).update(from: a + r * lda, count: k) }
            vtp_round_bf16_inplace(copy, rows * k)
            rounded = copy
            source = UnsafePointer(copy)
            sourceStride = k
        }
        defer { rounded?.deallocate(); withExtendedLifetime(weight) {} }
        BLAS.gemm(m: rows, n: n, k: k, a: source, lda: sourceStride, b: weight.pointer, ldb: k, transposeB: true,
                  c: c, ldc: ldc, alpha: epilogue.alpha)
        for r in 0..<rows {
            let row = c + r * ldc
            if let bias = epilogue.bias { Kernels.addBias(row, rows: 1, n: n, bias: bias) }
            if let residual = epilogue.residual {
                let res = residual + r * (epilogue.residualStride ?? ldc)
                if let scale = epilogue.scale {
                    for j in 0..<n { row[j] = res[j] + scale[j] * row[j] }
                } else {
                    for j in 0..<n { row[j] = res[j] + row[j] }
                }
            }
        }
        epilogue.rope?.apply(c, rows: rows, ldc: ldc)
    }
}

/// The one entry point for matrix products with a weight: every layer calls this, and the engine
/// behind the weight decides the kernel and precision.
public enum Matmul {
    /// What is applied to each output element: `v = alpha·acc + bias[j]`, then, with a residual,
    /// `v = residual[i, j] + scale[j]·v` (LayerScale) or `residual[i, j] + v`.
    public struct Epilogue {
        public var alpha: Float
        public var bias: UnsafePointer<Float>?
        public var residual: UnsafePointer<Float>?
        public var residualStride: Int?
        public var scale: UnsafePointer<Float>?
        /// The gate weight's biases, for an interleaved SwiGLU weight (``PackedWeight/gatesSwiGLU``),
        /// whose product writes `v · sigmoid(v) · (gate + gateBias)` with `v` the value plus `bias`.
        public var gateBias: UnsafePointer<Float>?

        public init(alpha: Float = 1, bias: UnsafePointer<Float>? = nil, residual: UnsafePointer<Float>? = nil,
                    residualStride: Int? = nil, scale: UnsafePointer<Float>? = nil, gateBias: UnsafePointer<Float>? = nil) {
            self.alpha = alpha
            self.bias = bias
            self.residual = residual
            self.residualStride = residualStride
            self.scale = scale
            self.gateBias = gateBias
        }

        /// The reference's bfloat16 RoPE on the product's queries and keys, after the bias.
        public var rope: RoPE?

        public static var none: Epilogue { Epilogue() }
    }

    /// The reference's bfloat16 rotary embedding (``Kernels/ropeBFloat16(_:stride:count:headDim:sin:cos:)``)
    /// on columns `0..<columns` of a product (queries then keys, in heads of `headDim`): output row
    /// i is token `(firstRow + i) % tokens` of its sequence; the first `prefix` tokens are only
    /// rounded to bfloat16 (as the reference casts them), token t after them rotated with the
    /// `headDim` values of `sin` and `cos` at `(t - prefix) · headDim`.
    public struct RoPE {
        public var sin: UnsafePointer<Float>
        public var cos: UnsafePointer<Float>
        public var columns: Int
        public var headDim: Int
        public var tokens: Int
        public var prefix: Int
        public var firstRow: Int

        public init(sin: UnsafePointer<Float>, cos: UnsafePointer<Float>, columns: Int, headDim: Int, tokens: Int,
                    prefix: Int, firstRow: Int) {
            (self.sin, self.cos, self.columns, self.headDim) = (sin, cos, columns, headDim)
            (self.tokens, self.prefix, self.firstRow) = (tokens, prefix, firstRow)
        }

        /// Rotates `rows` finished rows of a product in place, `ldc` floats apart (where the
        /// kernel does not in its tiles, or after a step that must come between, as QK-norm).
        public func apply(_ c: UnsafeMutablePointer<Float>, rows: Int, ldc: Int) {
            for r in 0..<rows {
                let token = (firstRow + r) % tokens, row = c + r * ldc
                if token < prefix {
                    Kernels.roundToBFloat16(row, count: columns)
                } else {
                    let at = (token - prefix) * headDim
                    Kernels.ropeBFloat16(row, stride: headDim, count: columns / headDim, headDim: headDim, sin: sin + at, cos: cos + at)
                }
            }
        }
    }

    /// `out[rows × n] = epilogue(x[rows × k] · Wᵀ)`, split over `pool` by rows (or, for few rows,
    /// by column panels). The residual must not alias `out`: partial sums are stored in `out`
    /// between depth blocks.
    public static func apply(_ weight: PackedWeight, _ x: UnsafePointer<Float>, rows: Int, lda: Int? = nil,
                             into out: UnsafeMutablePointer<Float>, ldc: Int? = nil,
                             epilogue: Epilogue = .none, pool: ComputePool) {
        let lda = lda ?? weight.k, ldc = ldc ?? weight.outputColumns
        let rowGrain = 64
        let panels = weight.panelCount
        let ropeInTiles = epilogue.rope.map { weight.fusesRoPE(headDim: $0.headDim) } ?? true
        if weight.engine.path != nil, rows < rowGrain * pool.threads, panels >= 2 * pool.threads, ropeInTiles {
            // Few rows (pooled features, logits): split the columns so every core still has work;
            // a SwiGLU weight's value and gate panels stay together, and so do a head's panels.
            let unit = weight.gatesSwiGLU ? 2 : epilogue.rope.map { $0.headDim / weight.panelColumns } ?? 1
            pool.parallelFor((panels + unit - 1) / unit) { range in
                weight.multiply(x, rows: rows, lda: lda, into: out, ldc: ldc,
                                panels: range.lowerBound * unit..<min(panels, range.upperBound * unit), epilogue: epilogue)
            }
            return
        }
        pool.dynamicChunks(rows, chunk: weight.rowChunk, granule: weight.rowGranule) { _, r in
            var ep = epilogue
            ep.residual = epilogue.residual.map { $0 + r.lowerBound * (epilogue.residualStride ?? ldc) }
            ep.rope?.firstRow += r.lowerBound
            weight.multiply(x + r.lowerBound * lda, rows: r.count, lda: lda, into: out + r.lowerBound * ldc, ldc: ldc,
                            panels: 0..<panels, epilogue: ep)
        }
    }
}

/// Fused scaled dot-product attention on the engine's kernels: one tile of scores per task,
/// online softmax, no n × n matrix.
public enum FusedAttention {
    /// Attention over a packed `qkv` buffer (B·N, 3·D), rows [q heads | k heads | v heads], into
    /// `out` (B·N, D). Returns false when the engine has no kernel path (the caller uses OpenBLAS).
    public static func run(engine: MatmulEngine, qkv: UnsafePointer<Float>, batch: Int, tokens n: Int, dim: Int, heads: Int,
                           causal: Bool, into out: UnsafeMutablePointer<Float>, pool: ComputePool) -> Bool {
        guard let path = engine.path else { return false }
        let hd = dim / heads
        let scale = 1 / Float(hd).squareRoot()
        pool.dynamicChunks(batch * heads, chunk: 1) { _, pairs in
            for pair in pairs {
                let (b, h) = pair.quotientAndRemainder(dividingBy: heads)
                let base = qkv + b * n * 3 * dim
                let status = vtp_attention(path, base + h * hd, base + dim + h * hd, base + 2 * dim + h * hd, 3 * dim,
                                           Int32(n), Int32(hd), scale, causal ? 1 : 0, out + b * n * dim + h * hd, dim)
                if status != 0 { fatalError("vtp_attention could not allocate its scratch") }
            }
        }
        return true
    }
}
