import VTPTensor

/// The VTP pixel decoder: 1×1 projection in, DINOv3 blocks with RoPE, norm, 1×1 projection out
/// and a 16× pixel shuffle back to an RGB image.
struct PixelDecoder {
    static let upscale = 16
    let projIn: Linear
    let blocks: [DinoBlock]
    let norm: Norm
    let projOut: Linear
    let rope: RopeEmbedding
    let dim: Int
    let inChannels: Int

    init(_ store: WeightStore, config c: VTPConfig) throws {
        dim = c.decoderEmbedDim
        inChannels = c.latentChannels
        let r = Self.upscale
        projIn = try Linear(store, "pixel_decoder.proj_in", in: inChannels, out: dim, kernel1x1: true)
        rope = try RopeEmbedding(store, "pixel_decoder.rope_embed", embedDim: dim, numHeads: c.decoderNumHeads)
        let options = DinoBlockOptions(dim: dim, heads: c.decoderNumHeads, mlpRatio: 4.0, ffn: c.decoderFfnLayer,
                                       norm: c.decoderNormLayer, layerScale: (c.decoderInitValues ?? 0) != 0,
                                       qkNorm: c.decoderUseQkNorm)
        blocks = try (0..<c.decoderDepth).map { try DinoBlock(store, "pixel_decoder.blocks.\($0)", options) }
        norm = try Norm(store, "pixel_decoder.norm", kind: c.decoderNormLayer, width: dim)
        projOut = try Linear(store, "pixel_decoder.proj_out", in: dim, out: 3 * r * r, kernel1x1: true)
    }

    /// Decodes latents (B, C, H, W) to images (B, 3, 16·H, 16·W).
    func decode(_ latents: Tensor, pool: ComputePool, scratch cache: BlockScratchCache) throws -> Tensor {
        guard latents.shape.count == 4, latents.shape[1] == inChannels else {
            throw VTPModelError.input("latents must have shape (B, \(inChannels), H, W), got \(latents.shape)")
        }
        let (b, c, h, w) = (latents.shape[0], latents.shape[1], latents.shape[2], latents.shape[3])
        guard b > 0, h > 0, w > 0 else { throw VTPModelError.input("latents have an empty dimension: \(latents.shape)") }
        let hw = h * w
        let tokensIn = Tensor(uninitialized: [b, hw, c])
        defer { withExtendedLifetime((latents, tokensIn)) {} }
        transposeLast2(latents.pointer, tokensIn.mutablePointer, batch: b, rows: c, cols: hw)
        let x = Tensor(uninitialized: [b, hw, dim])
        projIn(tokensIn.pointer, rows: b * hw, into: x.mutablePointer, pool: pool)
        let (sin, cos) = rope.tables(height: h, width: w)
        cache.withScratch { scratch in
            DinoBlock.run(blocks, on: x, batch: b, tokens: hw, sin: sin, cos: cos, scratch: scratch, pool: pool)
        }
        let normed = norm(x, pool: pool)
        let r = Self.upscale
        let channels = projOut.outFeatures
        let proj = Tensor(uninitialized: [b * hw, channels])
        defer { withExtendedLifetime((x, normed, proj)) {} }
        projOut(normed.pointer, rows: b * hw, into: proj.mutablePointer, pool: pool)
        // PixelShuffle: out[b, c, y·r + i, x·r + j] = in[b, c·r² + i·r + j, y, x].
        let out = Tensor(uninitialized: [b, 3, h * r, w * r])
        let o = out.mutablePointer, s = proj.pointer
        let outW = w * r
        for bi in 0..<b {
            for y in 0..<h {
                for xx in 0..<w {
                    let src = s + (bi * hw + y * w + xx) * channels
                    for ch in 0..<3 {
                        for i in 0..<r {
                            let dst = o + ((bi * 3 + ch) * h * r + y * r + i) * outW + xx * r
                            dst.update(from: src + ch * r * r + i * r, count: r)
                        }
                    }
                }
            }
        }
        return out
    }

    func flops(batch: Int, gridH: Int, gridW: Int) -> Double {
        let rows = Double(batch * gridH * gridW)
        return rows * (projIn.flopsPerRow + projOut.flopsPerRow)
            + blocks.reduce(0) { $0 + $1.flops(batch: batch, tokens: gridH * gridW) }
    }
}

/// Transposes `batch` row-major (rows × cols) matrices into (cols × rows).
func transposeLast2(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, batch: Int, rows: Int, cols: Int) {
    let tile = 32
    for b in 0..<batch {
        let s = src + b * rows * cols, d = dst + b * rows * cols
        var r0 = 0
        while r0 < rows {
            var c0 = 0
            while c0 < cols {
                for r in r0..<min(r0 + tile, rows) {
                    for c in c0..<min(c0 + tile, cols) { d[c * rows + r] = s[r * cols + c] }
                }
                c0 += tile
            }
            r0 += tile
        }
    }
}
