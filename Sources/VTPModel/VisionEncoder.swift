import VTPTensor

/// The VTP vision encoder: DINOv3 ViT (`trunk`) with a linear feature bottleneck.
struct VisionEncoder {
    let patchSize: Int
    let dim: Int
    let patchEmbed: Linear    // the stride-p convolution as a product over im2col rows: (D, 3·p·p)
    let clsToken: Tensor      // (D)
    let blocks: [DinoBlock]
    let norm: Norm
    let bottleneck: Linear?
    let rope: RopeEmbedding

    init(_ store: WeightStore, config c: VTPConfig) throws {
        patchSize = c.visionPatchSize
        dim = c.visionEmbedDim
        let p = patchSize
        patchEmbed = Linear(weight: try store.packedWeight("trunk.patch_embed.proj.weight", [dim, 3, p, p], n: dim, k: 3 * p * p,
                                                           engine: store.engine),
                            bias: try store.tensor("trunk.patch_embed.proj.bias", [dim]))
        let cls = try store.tensor("trunk.cls_token", [1, 1, dim])
        // The reference adds 0 · mask_token to the class token; only a NaN/inf mask token changes it.
        if let mask = try store.optionalTensor("trunk.mask_token", [1, dim]) {
            let sum = Tensor(uninitialized: [dim])
            defer { withExtendedLifetime((sum, cls, mask)) {} }
            for i in 0..<dim { sum.mutablePointer[i] = cls.pointer[i] + 0 * mask.pointer[i] }
            clsToken = sum
        } else {
            clsToken = cls.reshaped([dim])
        }
        rope = try RopeEmbedding(store, "trunk.rope_embed", embedDim: dim, numHeads: c.visionNumHeads)
        let options = DinoBlockOptions(dim: dim, heads: c.visionNumHeads, mlpRatio: c.visionMlpRatio, ffn: c.visionFfnLayer,
                                       norm: c.visionNormLayer, layerScale: (c.visionInitValues ?? 0) != 0,
                                       qkNorm: c.visionUseQkNorm)
        blocks = try (0..<c.visionDepth).map { try DinoBlock(store, "trunk.blocks.\($0)", options) }
        norm = try Norm(store, "trunk.norm", kind: c.visionNormLayer, width: dim)
        let width = c.visionFeatureBottleneck ?? dim
        // The bottleneck (width → latent channels) is a head like the CLIP projections: float32.
        bottleneck = width != dim ? try Linear(store, "trunk.feature_bottleneck", in: dim, out: width, bias: false,
                                               engine: store.headEngine) : nil
    }

    /// Output width of the bottleneck (the latent channels).
    var bottleneckWidth: Int { bottleneck?.outFeatures ?? dim }

    /// Patch embedding plus class token: (B, 1 + H'·W', D).
    func embed(_ images: Tensor, pool: ComputePool) throws -> (tokens: Tensor, gridH: Int, gridW: Int) {
        guard images.shape.count == 4, images.shape[1] == 3 else {
            throw VTPModelError.input("pixel_values must have shape (B, 3, H, W), got \(images.shape)")
        }
        let (b, h, w) = (images.shape[0], images.shape[2], images.shape[3])
        let p = patchSize
        guard b > 0, h > 0, w > 0, h % p == 0, w % p == 0 else {
            throw VTPModelError.input("image height and width must be positive multiples of the patch size \(p), got \(h)×\(w)")
        }
        let gh = h / p, gw = w / p, hw = gh * gw, n = hw + 1
        let k = 3 * p * p
        // im2col: one row per patch, columns ordered (channel, ky, kx) like the conv weight.
        let cols = Tensor(uninitialized: [b * hw, k])
        defer { withExtendedLifetime((images, cols)) {} }
        let src = images.pointer, dst = cols.mutablePointer
        for bi in 0..<b {
            for py in 0..<gh {
                for px in 0..<gw {
                    let row = dst + ((bi * gh + py) * gw + px) * k
                    for c in 0..<3 {
                        for ky in 0..<p {
                            let s = src + ((bi * 3 + c) * h + py * p + ky) * w + px * p
                            (row + (c * p + ky) * p).update(from: s, count: p)
                        }
                    }
                }
            }
        }
        let tokens = Tensor(uninitialized: [b, n, dim])
        for bi in 0..<b {
            let t = tokens.mutablePointer + bi * n * dim
            t.update(from: clsToken.pointer, count: dim)
            patchEmbed(cols.pointer + bi * hw * k, rows: hw, into: t + dim, pool: pool)
        }
        return (tokens, gh, gw)
    }

    /// Runs the blocks, handing the residual stream after each block index to `observe`.
    func runBlocks(_ images: Tensor, pool: ComputePool, scratch cache: BlockScratchCache, classTokenOnly: Bool = false,
                   observe: (Int, Tensor) -> Void = { _, _ in }) throws -> (Tensor, Int, Int) {
        let (x, gh, gw) = try embed(images, pool: pool)
        let (sin, cos) = rope.tables(height: gh, width: gw)
        let b = images.shape[0], n = gh * gw + 1
        cache.withScratch { scratch in
            DinoBlock.run(blocks, on: x, batch: b, tokens: n, sin: sin, cos: cos, scratch: scratch, pool: pool,
                          firstTokensOnly: classTokenOnly, observe: observe)
        }
        return (x, gh, gw)
    }

    func flops(batch: Int, gridH: Int, gridW: Int) -> Double {
        let n = gridH * gridW + 1
        let patch = 2 * Double(batch * gridH * gridW) * Double(3 * patchSize * patchSize * dim)
        let bneck = bottleneck.map { Double(batch * n) * $0.flopsPerRow } ?? 0
        return patch + blocks.reduce(0) { $0 + $1.flops(batch: batch, tokens: n) } + bneck
    }
}
