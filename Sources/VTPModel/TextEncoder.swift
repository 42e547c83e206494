import VTPTensor

/// The CLIP text tower: token and positional embeddings, `ResidualAttentionBlock`s with
/// `nn.MultiheadAttention` under a causal mask, final LayerNorm, pooling and projection.
struct TextEncoder {
    struct Block {
        let ln1: Norm
        let inProj: Linear
        let outProj: Linear
        let ls1: Tensor?
        let ln2: Norm
        let fc: Linear
        let proj: Linear
        let ls2: Tensor?
    }

    enum Projection {
        case none
        case matrix(PackedWeight)    // (width, output) parameter: x @ P
        case linear(Linear)          // nn.Linear with bias
    }

    let tokenEmbedding: Tensor       // (vocab, width)
    let positional: Tensor           // (context, width)
    let blocks: [Block]
    let lnFinal: Norm
    let projection: Projection
    let width: Int
    let heads: Int
    let contextLength: Int
    let vocabSize: Int
    let causal: Bool
    let quickGelu: Bool
    let poolType: String

    init(_ store: WeightStore, config c: VTPConfig) throws {
        width = c.textEmbedDim
        heads = c.textNumHeads
        contextLength = c.textContextLength
        vocabSize = c.textVocabSize
        causal = !c.textNoCausalMask
        quickGelu = c.textQuickGelu
        poolType = c.textPoolType
        tokenEmbedding = try store.tensor("token_embedding.weight", [vocabSize, width])
        positional = try store.tensor("positional_embedding", [contextLength, width])
        let hidden = Int(Double(width) * c.textMlpRatio)
        let hasLS = c.textLsInitValue != nil
        blocks = try (0..<c.textDepth).map { i in
            let p = "text_transformer.resblocks.\(i)"
            let w = c.textEmbedDim
            return Block(
                ln1: try Norm(textLayerNorm: store, p + ".ln_1", width: w),
                inProj: Linear(weight: try store.packedWeight(p + ".attn.in_proj_weight", [3 * w, w], n: 3 * w, k: w,
                                                              engine: store.engine),
                               bias: try store.tensor(p + ".attn.in_proj_bias", [3 * w])),
                outProj: try Linear(store, p + ".attn.out_proj", in: w, out: w),
                ls1: hasLS ? try store.tensor(p + ".ls_1.gamma", [w]) : nil,
                ln2: try Norm(textLayerNorm: store, p + ".ln_2", width: w),
                fc: try Linear(store, p + ".mlp.c_fc", in: w, out: hidden),
                proj: try Linear(store, p + ".mlp.c_proj", in: hidden, out: w),
                ls2: hasLS ? try store.tensor(p + ".ls_2.gamma", [w]) : nil)
        }
        lnFinal = try Norm(textLayerNorm: store, "ln_final", width: width)
        // Only the string "none" disables the projection; a null proj_type builds one, as in the reference.
        if c.textProjType == "none" {
            projection = .none
        } else if c.textProjBias {
            projection = .linear(try Linear(store, "text_projection", in: width, out: width, engine: store.headEngine))
        } else {
            projection = .matrix(try store.packedWeight("text_projection", [width, width], n: width, k: width, transposed: false,
                                                        engine: store.headEngine))
        }
    }

    /// Unnormalized text features (T, width) for token ids (T, contextLength).
    func features(tokens: [Int32], count t: Int, pool: ComputePool) throws -> Tensor {
        let l = contextLength
        guard t > 0, tokens.count == t * l else {
            throw VTPModelError.input("text tokens must have shape (T, \(l)), got \(tokens.count) ids for \(t) rows")
        }
        if let bad = tokens.firstIndex(where: { $0 < 0 || Int($0) >= vocabSize }) {
            throw VTPModelError.input("token id \(tokens[bad]) at row \(bad / l), position \(bad % l) is outside the vocabulary of \(vocabSize)")
        }
        let rows = t * l
        let x = Tensor(uninitialized: [rows, width])
        for r in 0..<rows {
            let dst = x.mutablePointer + r * width
            let emb = tokenEmbedding.pointer + Int(tokens[r]) * width
            let pos = positional.pointer + (r % l) * width
            for i in 0..<width { dst[i] = emb[i] + pos[i] }
        }
        let h = Tensor(uninitialized: [rows, width])
        let qkv = Tensor(uninitialized: [rows, 3 * width])
        let attn = Tensor(uninitialized: [rows, width])
        // One hidden buffer for every block: a fresh one per block spent 3% of a pass in page faults.
        let mid = Tensor(uninitialized: [rows, blocks.map(\.fc.outFeatures).max() ?? 0])
        let pooled = Tensor(uninitialized: [t, width])
        defer { withExtendedLifetime((x, h, qkv, attn, mid, pooled)) {} }
        func gelu(_ p: UnsafeMutablePointer<Float>, rows: Int, hidden: Int) {
            pool.parallelFor(rows, grain: 16) { r in
                let chunk = p + r.lowerBound * hidden
                if quickGelu { Kernels.quickGelu(chunk, count: r.count * hidden) } else { Kernels.gelu(chunk, count: r.count * hidden) }
            }
        }
        // The one position per text that is pooled; ln_final is applied to it alone (row-wise, so
        // equal to pooling after the norm).
        let pooledRows = (0..<t).map { ti -> Int in
            switch poolType {
            case "first": return ti * l
            case "last": return ti * l + l - 1
            default:
                // torch.argmax returns the first maximal index: the end-of-text token in CLIP.
                var best = 0
                for j in 1..<l where tokens[ti * l + j] > tokens[ti * l + best] { best = j }
                return ti * l + best
            }
        }
        func gather(_ source: Tensor, into destination: Tensor) {
            for (i, row) in pooledRows.enumerated() {
                (destination.mutablePointer + i * width).update(from: source.pointer + row * width, count: width)
            }
        }
        // A block after its attention, on `rows` rows: `attended` holds attention's output (and is
        // reused for ln2's), `stream` the residual stream, which ends the block updated.
        func finish(_ block: Block, attended: Tensor, stream: Tensor, rows: Int) {
            block.outProj(attended.pointer, rows: rows, into: attn.mutablePointer, residual: stream.pointer, scale: block.ls1, pool: pool)
            block.ln2(attn.pointer, rows: rows, into: attended.mutablePointer, pool: pool)
            block.fc(attended.pointer, rows: rows, into: mid.mutablePointer, pool: pool)
            gelu(mid.mutablePointer, rows: rows, hidden: block.fc.outFeatures)
            block.proj(mid.pointer, rows: rows, into: stream.mutablePointer, residual: attn.pointer, scale: block.ls2, pool: pool)
        }
        // The pooled rows of the residual stream after the last block.
        let stream = Tensor(uninitialized: [t, width])
        defer { withExtendedLifetime(stream) {} }
        for (index, block) in blocks.enumerated() {
            // Each residual add is fused into the product before it, alternating between x and attn
            // as the residual stream, so the block ends with the stream back in x.
            block.ln1(x.pointer, rows: rows, into: h.mutablePointer, pool: pool)
            block.inProj(h.pointer, rows: rows, into: qkv.mutablePointer, pool: pool)
            AttentionCore.run(engine: block.inProj.weight.engine, qkv: qkv.pointer, batch: t, tokens: l, dim: width, heads: heads,
                              causal: causal, into: h.mutablePointer, pool: pool)
            if index < blocks.count - 1 {
                finish(block, attended: h, stream: x, rows: rows)
            } else {
                // Only the pooled rows leave the last block: its attention reads every position,
                // everything after it (three quarters of the block's products) runs on one row per text.
                let attended = Tensor(uninitialized: [t, width])
                gather(h, into: attended)
                gather(x, into: stream)
                finish(block, attended: attended, stream: stream, rows: t)
                withExtendedLifetime(attended) {}
            }
        }
        if blocks.isEmpty { gather(x, into: stream) }
        lnFinal(stream.pointer, rows: t, into: pooled.mutablePointer, pool: .serial)
        switch projection {
        case .none: return pooled
        case let .linear(linear): return linear(pooled, pool: pool)
        case let .matrix(p):
            let out = Tensor(uninitialized: [t, width])
            Matmul.apply(p, pooled.pointer, rows: t, into: out.mutablePointer, pool: pool)
            return out
        }
    }

    func flops(texts t: Int) -> Double {
        let rows = Double(t * contextLength)
        let perBlock = blocks.first.map { rows * ($0.inProj.flopsPerRow + $0.outProj.flopsPerRow + $0.fc.flopsPerRow + $0.proj.flopsPerRow)
            + AttentionCore.flops(batch: t, tokens: contextLength, dim: width) } ?? 0
        return perBlock * Double(blocks.count)
    }
}


