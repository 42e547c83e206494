import Synchronization
import VTPTensor

/// Options shared by the blocks of the vision encoder or the pixel decoder.
struct DinoBlockOptions {
    let dim: Int
    let heads: Int
    let mlpRatio: Double
    let ffn: String
    let norm: String
    let layerScale: Bool
    let qkNorm: Bool
}

/// The activation buffers of a block, kept from block to block and from pass to pass. Every block
/// needs the same sizes, and each fresh buffer of a mebibyte or more is a new mapping whose first
/// touch faults in and zeroes every page: 4-6% of a ViT-B pass. The set of buffers is the one a
/// block holds at once anyway, so keeping it does not raise peak memory.
///
/// `@unchecked Sendable`: one forward pass uses it at a time, handed out and taken back by
/// ``BlockScratchCache``.
final class BlockScratch: @unchecked Sendable {
    enum Role { case normed, qkv, midStream, hidden }
    private var buffers: [Role: Tensor] = [:]

    /// The buffer for `role`, of `count` floats; its contents are whatever the last block left. A
    /// buffer only grows, so passes of different sizes (encode, then decode) reuse it.
    func buffer(_ role: Role, count: Int) -> Tensor {
        if let kept = buffers[role], kept.storage.count >= count { return Tensor(shape: [count], storage: kept.storage) }
        let fresh = Tensor(uninitialized: [count])
        buffers[role] = fresh
        return fresh
    }
}

/// Block scratch for the forward passes of one model, reused from pass to pass; concurrent passes
/// each take their own.
final class BlockScratchCache: Sendable {
    private let idle = Mutex<[BlockScratch]>([])

    /// Runs `body` with a scratch no other pass holds meanwhile.
    func withScratch<R>(_ body: (BlockScratch) throws -> R) rethrows -> R {
        let scratch = idle.withLock { $0.popLast() } ?? BlockScratch()
        defer { idle.withLock { $0.append(scratch) } }
        return try body(scratch)
    }
}

/// DINOv3's `SelfAttentionBlock`: pre-norm attention with 2-D RoPE and optional QK-norm and
/// LayerScale, then a pre-norm feed-forward, each added back to the residual stream.
struct DinoBlock {
    let norm1: Norm
    let qkv: Linear
    let qNorm: Tensor?
    let kNorm: Tensor?
    let proj: Linear
    let ls1: Tensor?
    let norm2: Norm
    let mlp: FeedForward
    let ls2: Tensor?
    let dim: Int
    let heads: Int

    init(_ store: WeightStore, _ p: String, _ o: DinoBlockOptions) throws {
        dim = o.dim
        heads = o.heads
        let hd = o.dim / o.heads
        norm1 = try Norm(store, p + ".norm1", kind: o.norm, width: o.dim)
        qkv = try Linear(store, p + ".attn.qkv", in: o.dim, out: 3 * o.dim)
        qNorm = o.qkNorm ? try store.tensor(p + ".attn.q_norm.weight", [hd]) : nil
        kNorm = o.qkNorm ? try store.tensor(p + ".attn.k_norm.weight", [hd]) : nil
        proj = try Linear(store, p + ".attn.proj", in: o.dim, out: o.dim)
        ls1 = o.layerScale ? try store.tensor(p + ".ls1.gamma", [o.dim]) : nil
        norm2 = try Norm(store, p + ".norm2", kind: o.norm, width: o.dim)
        mlp = try FeedForward(store, p + ".mlp", type: o.ffn, dim: o.dim, ratio: o.mlpRatio)
        ls2 = o.layerScale ? try store.tensor(p + ".ls2.gamma", [o.dim]) : nil
    }

    /// Runs `blocks` in order, in place on `x` of shape (batch, tokens, dim), whose last
    /// `sin.count / headDim` tokens of each image are rotated by RoPE (the tokens before them are
    /// not), calling `observe` with each block's index and `x` after it. `scratch` holds the
    /// activation buffers between the blocks.
    ///
    /// A block's first pass (norm, QKV, RoPE, all row-local) runs inside the previous block's last
    /// pass, chunk by chunk, right after the chunk's feed-forward: the chunk's residual rows are
    /// still in cache, and each block after the first takes one parallel pass fewer.
    ///
    /// With `firstTokensOnly`, only each sequence's first token (the class token) is wanted from
    /// the last block: its attention still reads every token's keys and values, but the projection
    /// and feed-forward after it run on those rows alone, and the other rows of `x` keep the
    /// previous block's values (a twelfth of a ViT-B pass for CLIP image features).
    static func run(_ blocks: [DinoBlock], on x: Tensor, batch: Int, tokens n: Int, sin: [Float], cos: [Float],
                    scratch: BlockScratch, pool: ComputePool, firstTokensOnly: Bool = false,
                    observe: (Int, Tensor) -> Void = { _, _ in }) {
        sin.withUnsafeBufferPointer { sinTable in
            cos.withUnsafeBufferPointer { cosTable in
                let tables = RotaryTables(sin: sinTable, cos: cosTable)
                var prepared = false
                for (i, block) in blocks.enumerated() {
                    let next = i + 1 < blocks.count && blocks[i + 1].dim == block.dim && blocks[i + 1].heads == block.heads
                        ? blocks[i + 1] : nil
                    block.forward(x, batch: batch, tokens: n, rope: tables, scratch: scratch, pool: pool, prepared: prepared,
                                  next: next, firstTokensOnly: firstTokensOnly && i == blocks.count - 1)
                    prepared = next != nil
                    observe(i, x)
                }
            }
        }
    }

    /// RoPE's sin and cos tables for one pass, `headDim` values per rotated token.
    struct RotaryTables {
        let sin: UnsafeBufferPointer<Float>
        let cos: UnsafeBufferPointer<Float>
    }

    /// One block on `x`. With `prepared`, the previous block already left this block's normed
    /// input and its rotated queries and keys in `scratch`; with `next`, this block's last pass
    /// does the same for `next`.
    private func forward(_ x: Tensor, batch: Int, tokens n: Int, rope: RotaryTables, scratch: BlockScratch, pool: ComputePool,
                         prepared: Bool, next: DinoBlock?, firstTokensOnly: Bool) {
        let rows = batch * n
        let h = scratch.buffer(.normed, count: rows * dim)
        let qkvOut = scratch.buffer(.qkv, count: rows * 3 * dim)
        if !prepared {
            pool.dynamicChunks(rows, chunk: qkv.weight.rowChunk, granule: qkv.weight.rowGranule) { _, r in
                prepare(x, rows: r, normed: h, qkv: qkvOut, tokens: n, rope: rope)
            }
        }
        AttentionCore.run(engine: qkv.weight.engine, qkv: qkvOut.pointer, batch: batch, tokens: n, dim: dim, heads: heads,
                          causal: false, into: h.mutablePointer, pool: pool)
        if firstTokensOnly {
            finishFirstTokens(x, attended: h, batch: batch, tokens: n)
            withExtendedLifetime((x, h, qkvOut)) {}
            return
        }
        // Everything after attention is row-local too, so one pass per chunk: the projection adds
        // itself to the residual stream into the chunk's `mid`, the norm overwrites the chunk's
        // attention output, and the feed-forward adds itself to `mid` back into `x` (the block
        // still updates `x` in place). `mid` and the hidden activations are per thread, a chunk
        // in size, and stay in cache between the products. No other chunk reads this chunk's rows
        // of `h` or of the qkv buffer after attention, so the next block's first pass can overwrite them.
        let chunk = mlp.rowChunk, width = mlp.hiddenWidth
        let workers = pool.workerCount(rows, chunk: chunk)
        let mid = scratch.buffer(.midStream, count: workers * chunk * dim)
        let hidden = scratch.buffer(.hidden, count: workers * chunk * width)
        pool.dynamicChunks(rows, chunk: chunk, granule: mlp.rowGranule) { worker, r in
            let offset = r.lowerBound * dim
            let m = mid.mutablePointer + worker * chunk * dim
            proj(h.pointer + offset, rows: r.count, into: m, residual: x.pointer + offset, scale: ls1, pool: .serial)
            norm2(m, rows: r.count, into: h.mutablePointer + offset, pool: .serial)
            mlp.run(h.pointer + offset, rows: r.count, into: x.mutablePointer + offset, residual: m, scale: ls2,
                    hidden: hidden.mutablePointer + worker * chunk * width)
            next?.prepare(x, rows: r, normed: h, qkv: qkvOut, tokens: n, rope: rope)
        }
        withExtendedLifetime((x, h, qkvOut, mid, hidden)) {}
    }

    /// The projection, norm and feed-forward for each sequence's first row alone (gathered into
    /// `batch` rows, then written back to those rows of `x`). The kernels give a row the same bits
    /// whatever rows share its product.
    private func finishFirstTokens(_ x: Tensor, attended h: Tensor, batch: Int, tokens n: Int) {
        let rows = Tensor(uninitialized: [batch, dim]), attended = Tensor(uninitialized: [batch, dim])
        let mid = Tensor(uninitialized: [batch, dim]), normed = Tensor(uninitialized: [batch, dim])
        let hidden = Tensor(uninitialized: [batch, mlp.hiddenWidth])
        for b in 0..<batch {
            (rows.mutablePointer + b * dim).update(from: x.pointer + b * n * dim, count: dim)
            (attended.mutablePointer + b * dim).update(from: h.pointer + b * n * dim, count: dim)
        }
        proj(attended.pointer, rows: batch, into: mid.mutablePointer, residual: rows.pointer, scale: ls1, pool: .serial)
        norm2(mid.pointer, rows: batch, into: normed.mutablePointer, pool: .serial)
        mlp.run(normed.pointer, rows: batch, into: rows.mutablePointer, residual: mid.pointer, scale: ls2, hidden: hidden.mutablePointer)
        for b in 0..<batch { (x.mutablePointer + b * n * dim).update(from: rows.pointer + b * dim, count: dim) }
        withExtendedLifetime((rows, attended, mid, normed, hidden)) {}
    }

    /// The block's first pass on rows `r` of `x`: norm into `normed`, the QKV product into `qkv`,
    /// then QK-norm and RoPE (in the product's epilogue where there is no QK-norm).
    private func prepare(_ x: Tensor, rows r: Range<Int>, normed h: Tensor, qkv qkvOut: Tensor, tokens n: Int, rope: RotaryTables) {
        let hd = dim / heads
        let hBlock = h.mutablePointer + r.lowerBound * dim, qkvBlock = qkvOut.mutablePointer + r.lowerBound * 3 * dim
        norm1(x.pointer + r.lowerBound * dim, rows: r.count, into: hBlock, pool: .serial)
        // Empty tables: no token is rotated, and q and k are only cast to bfloat16 and back.
        let rotation = rope.sin.baseAddress.map { sin in
            Matmul.RoPE(sin: sin, cos: rope.cos.baseAddress!, columns: 2 * dim, headDim: hd, tokens: n,
                        prefix: n - rope.sin.count / hd, firstRow: r.lowerBound)
        }
        if qNorm == nil, kNorm == nil, let rotation {
            qkv(hBlock, rows: r.count, into: qkvBlock, rope: rotation, pool: .serial)
            return
        }
        qkv(hBlock, rows: r.count, into: qkvBlock, pool: .serial)
        normalizeQueriesAndKeys(qkvBlock, rows: r.count, headDim: hd)
        if let rotation {
            rotation.apply(qkvBlock, rows: r.count, ldc: 3 * dim)
        } else {
            for i in 0..<r.count { Kernels.roundToBFloat16(qkvBlock + i * 3 * dim, count: 2 * dim) }
        }
    }

    /// QK-norm (RMSNorm over each head) on the q and k of `rows` rows in place, before RoPE.
    private func normalizeQueriesAndKeys(_ qkv: UnsafeMutablePointer<Float>, rows: Int, headDim hd: Int) {
        for r in 0..<rows {
            let row = qkv + r * 3 * dim
            for part in 0..<2 {
                guard let normWeight = part == 0 ? qNorm : kNorm else { continue }
                for head in 0..<heads {
                    let v = row + part * dim + head * hd
                    Kernels.rmsNorm(v, v, rows: 1, n: hd, weight: normWeight.pointer, eps: 1e-5)
                }
            }
        }
    }

    /// FLOPs of one forward over `rows` tokens in sequences of `n` (GEMMs only).
    func flops(batch: Int, tokens n: Int) -> Double {
        let rows = Double(batch * n)
        return rows * (qkv.flopsPerRow + proj.flopsPerRow + mlp.flopsPerRow) + AttentionCore.flops(batch: batch, tokens: n, dim: dim)
    }
}
