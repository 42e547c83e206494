import VTPTensor

/// A PyTorch `nn.Linear` (or a 1×1 convolution): `y = x · Wᵀ + b` with `W` of shape (out, in),
/// packed for the model's engine.
struct Linear {
    let weight: PackedWeight
    let bias: Tensor?
    var inFeatures: Int { weight.k }
    var outFeatures: Int { weight.n }

    /// `engine` overrides the store's (the CLIP heads keep float32, see ``WeightStore/headEngine``).
    init(_ store: WeightStore, _ prefix: String, in inFeatures: Int, out outFeatures: Int, bias hasBias: Bool = true,
         kernel1x1: Bool = false, engine: MatmulEngine? = nil) throws {
        let shape = kernel1x1 ? [outFeatures, inFeatures, 1, 1] : [outFeatures, inFeatures]
        weight = try store.packedWeight(prefix + ".weight", shape, n: outFeatures, k: inFeatures, engine: engine ?? store.engine)
        bias = hasBias ? try store.tensor(prefix + ".bias", [outFeatures]) : nil
    }

    init(weight: PackedWeight, bias: Tensor?) {
        self.weight = weight
        self.bias = bias
    }

    /// Applies the layer to `rows` rows of `x` into `out` (rows × outFeatures), split by rows over
    /// `pool`; with `residual`, writes `residual + scale ⊙ (x · Wᵀ + b)` instead (`out` must be
    /// another buffer than `residual`).
    /// `lda` is the row stride of `x` (default: the input width).
    func callAsFunction(_ x: UnsafePointer<Float>, rows: Int, lda: Int? = nil, into out: UnsafeMutablePointer<Float>,
                        residual: UnsafePointer<Float>? = nil, scale: Tensor? = nil, rope: Matmul.RoPE? = nil, pool: ComputePool) {
        var epilogue = Matmul.Epilogue(bias: bias?.pointer, residual: residual, scale: residual == nil ? nil : scale?.pointer)
        epilogue.rope = rope
        Matmul.apply(weight, x, rows: rows, lda: lda, into: out, epilogue: epilogue, pool: pool)
        withExtendedLifetime((bias, scale)) {}
    }

    /// Applies the layer to a (rows × in) tensor, allocating the output.
    func callAsFunction(_ x: Tensor, pool: ComputePool) -> Tensor {
        let rows = x.count / inFeatures
        var shape = x.shape
        shape[shape.count - 1] = outFeatures
        let out = Tensor(uninitialized: shape)
        defer { withExtendedLifetime(x) {} }
        self(x.pointer, rows: rows, into: out.mutablePointer, pool: pool)
        return out
    }

    /// Multiply-accumulates per input row.
    var flopsPerRow: Double { 2 * Double(inFeatures * outFeatures) }
}

/// The normalization layers a VTP configuration can name.
struct Norm {
    enum Kind { case layerNorm, rmsNorm }
    let kind: Kind
    let weight: Tensor
    let bias: Tensor?
    let eps: Float
    let width: Int

    /// `layernorm` (eps 1e-6), `layernormbf16` (eps 1e-5) or `rmsnorm` (eps 1e-5), as the reference maps them.
    init(_ store: WeightStore, _ prefix: String, kind name: String, width: Int) throws {
        switch name {
        case "layernorm": (kind, eps) = (.layerNorm, 1e-6)
        case "layernormbf16": (kind, eps) = (.layerNorm, 1e-5)
        case "rmsnorm": (kind, eps) = (.rmsNorm, 1e-5)
        default: throw VTPModelError.unsupported("norm layer '\(name)'")
        }
        self.width = width
        weight = try store.tensor(prefix + ".weight", [width])
        bias = kind == .layerNorm ? try store.tensor(prefix + ".bias", [width]) : nil
    }

    /// The CLIP text tower's `LayerNorm` (PyTorch default eps 1e-5).
    init(textLayerNorm store: WeightStore, _ prefix: String, width: Int) throws {
        kind = .layerNorm
        eps = 1e-5
        self.width = width
        weight = try store.tensor(prefix + ".weight", [width])
        bias = try store.tensor(prefix + ".bias", [width])
    }

    func callAsFunction(_ x: UnsafePointer<Float>, rows: Int, into out: UnsafeMutablePointer<Float>, pool: ComputePool) {
        let n = width
        pool.parallelFor(rows, grain: 16) { r in
            let (src, dst) = (x + r.lowerBound * n, out + r.lowerBound * n)
            switch kind {
            case .layerNorm:
                Kernels.layerNorm(src, dst, rows: r.count, n: n, weight: weight.pointer, bias: bias?.pointer, eps: eps)
            case .rmsNorm:
                Kernels.rmsNorm(src, dst, rows: r.count, n: n, weight: weight.pointer, eps: eps)
            }
        }
    }

    func callAsFunction(_ x: Tensor, pool: ComputePool) -> Tensor {
        let out = Tensor(uninitialized: x.shape)
        defer { withExtendedLifetime(x) {} }
        self(x.pointer, rows: x.count / width, into: out.mutablePointer, pool: pool)
        return out
    }
}

/// The DINO-style feed-forward layers: `mlp` (fc1 → GELU → fc2) or SwiGLU (`silu(w1 x) * w2 x → w3`).
struct FeedForward {
    enum Kind {
        case mlp(fc1: Linear, fc2: Linear)
        /// SwiGLU gated in the product's epilogue: `w1` and `w2` interleaved into one weight
        /// (``PackedWeight/init(interleavingValue:gate:n:k:engine:)``), writing `silu(x·w1ᵀ + b1) · (x·w2ᵀ + b2)`.
        case swigluFused(gateUp: PackedWeight, valueBias: Tensor?, gateBias: Tensor?, w3: Linear)
        /// SwiGLU with `w1` and `w2` stacked into one product (`gateUp`: the w1 outputs, then w2's).
        case swiglu(gateUp: Linear, w3: Linear)
        /// SwiGLU as three products, where the engine cannot stack w1 and w2 (OpenBLAS).
        case swigluSeparate(w1: Linear, w2: Linear, w3: Linear)
    }
    let kind: Kind

    /// Hidden width of SwiGLU: two thirds of the MLP width, rounded up to `alignTo`.
    static func swigluHidden(dim: Int, ratio: Double, alignTo: Int) -> Int {
        let hidden = Int(Double(dim) * ratio)
        let d = Int(Double(hidden) * 2 / 3)
        return d + ((alignTo - d % alignTo) % alignTo)
    }

    init(_ store: WeightStore, _ prefix: String, type: String, dim: Int, ratio: Double) throws {
        let hidden = Int(Double(dim) * ratio)
        switch type {
        case "mlp":
            kind = .mlp(fc1: try Linear(store, prefix + ".fc1", in: dim, out: hidden),
                        fc2: try Linear(store, prefix + ".fc2", in: hidden, out: dim))
        case "swiglu", "swiglu32", "swiglu64", "swiglu128":
            let align = type == "swiglu" ? 8 : Int(type.dropFirst(6))!
            let h = Self.swigluHidden(dim: dim, ratio: ratio, alignTo: align)
            let w3 = try Linear(store, prefix + ".w3", in: h, out: dim)
            let names = [prefix + ".w1.weight", prefix + ".w2.weight"]
            let (b1, b2) = (try store.tensor(prefix + ".w1.bias", [h]), try store.tensor(prefix + ".w2.bias", [h]))
            if let fused = try store.combinedWeight(names, n: h, k: dim, interleaved: true, engine: store.engine) {
                kind = .swigluFused(gateUp: fused, valueBias: b1, gateBias: b2, w3: w3)
            } else if let stacked = try store.combinedWeight(names, n: h, k: dim, interleaved: false, engine: store.engine) {
                kind = .swiglu(gateUp: Linear(weight: stacked, bias: Tensor(concatenating: [b1, b2])), w3: w3)
            } else {
                kind = .swigluSeparate(w1: try Linear(store, prefix + ".w1", in: dim, out: h),
                                       w2: try Linear(store, prefix + ".w2", in: dim, out: h), w3: w3)
            }
        default:
            throw VTPModelError.unsupported("ffn layer '\(type)'")
        }
    }

    /// Floats of hidden activations per row that ``run(_:rows:into:residual:scale:hidden:)`` needs.
    var hiddenWidth: Int {
        switch kind {
        case let .mlp(fc1, _): fc1.outFeatures
        case let .swigluFused(_, _, _, w3): w3.inFeatures
        case let .swiglu(gateUp, _): gateUp.outFeatures
        case let .swigluSeparate(w1, w2, _): w1.outFeatures + w2.outFeatures
        }
    }

    /// Rows a caller should hand ``run(_:rows:into:residual:scale:hidden:)`` at a time: the
    /// kernel's row block, so the hidden activations are a block of rows, not the whole batch.
    var rowChunk: Int { last.weight.rowChunk }
    /// What chunks of rows come in multiples of (see ``PackedWeight/rowGranule``).
    var rowGranule: Int { last.weight.rowGranule }

    private var last: Linear {
        switch kind {
        case let .mlp(_, fc2): fc2
        case let .swigluFused(_, _, _, w3), let .swiglu(_, w3), let .swigluSeparate(_, _, w3): w3
        }
    }

    /// Runs the feed-forward on `rows` rows of `x` into `out` on the calling thread, with `hidden`
    /// holding `rows × hiddenWidth` floats of scratch; with `residual`, the last product writes
    /// `residual + scale ⊙ ffn(x)` (`out` must be another buffer than `residual`).
    func run(_ x: UnsafePointer<Float>, rows n: Int, into out: UnsafeMutablePointer<Float>, residual: UnsafePointer<Float>?,
             scale: Tensor?, hidden h: UnsafeMutablePointer<Float>) {
        switch kind {
        case let .mlp(fc1, fc2):
            fc1(x, rows: n, into: h, pool: .serial)
            Kernels.gelu(h, count: n * fc1.outFeatures)
            fc2(h, rows: n, into: out, residual: residual, scale: scale, pool: .serial)
        case let .swigluFused(gateUp, valueBias, gateBias, w3):
            let epilogue = Matmul.Epilogue(bias: valueBias?.pointer, gateBias: gateBias?.pointer)
            Matmul.apply(gateUp, x, rows: n, into: h, epilogue: epilogue, pool: .serial)
            withExtendedLifetime((valueBias, gateBias)) {}
            w3(h, rows: n, into: out, residual: residual, scale: scale, pool: .serial)
        case let .swiglu(gateUp, w3):
            // Each row holds [x·w1ᵀ | x·w2ᵀ]; the gate overwrites its first half, which w3 reads.
            let width = w3.inFeatures, stride = gateUp.outFeatures
            gateUp(x, rows: n, into: h, pool: .serial)
            for r in 0..<n { Kernels.siluMultiply(h + r * stride, h + r * stride + width, count: width) }
            w3(h, rows: n, lda: stride, into: out, residual: residual, scale: scale, pool: .serial)
        case let .swigluSeparate(w1, w2, w3):
            let width = w1.outFeatures, g = h + n * width
            w1(x, rows: n, into: h, pool: .serial)
            w2(x, rows: n, into: g, pool: .serial)
            Kernels.siluMultiply(h, g, count: n * width)
            w3(h, rows: n, into: out, residual: residual, scale: scale, pool: .serial)
        }
    }

    /// Input width.
    var inFeatures: Int {
        switch kind {
        case let .mlp(fc1, _): fc1.inFeatures
        case let .swigluFused(gateUp, _, _, _): gateUp.k
        case let .swiglu(gateUp, _): gateUp.inFeatures
        case let .swigluSeparate(w1, _, _): w1.inFeatures
        }
    }

    var flopsPerRow: Double {
        switch kind {
        case let .mlp(fc1, fc2): fc1.flopsPerRow + fc2.flopsPerRow
        case let .swigluFused(gateUp, _, _, w3): 2 * Double(gateUp.n * gateUp.k) + w3.flopsPerRow
        case let .swiglu(gateUp, w3): gateUp.flopsPerRow + w3.flopsPerRow
        case let .swigluSeparate(w1, w2, w3): w1.flopsPerRow + w2.flopsPerRow + w3.flopsPerRow
        }
    }
}
