import VTPTensor

/// Scaled dot-product attention over a packed `qkv` buffer of shape (B·N, 3·D), rows laid
/// out as [q heads | k heads | v heads], as both the DINO blocks and `nn.MultiheadAttention` produce.
///
/// On a kernel path this is ``FusedAttention`` (online softmax over key tiles, in the engine's
/// precision). On OpenBLAS it works one (image, head) pair at a time, so only one N×N score matrix
/// exists per task; the GEMMs read q, k and v in place through their row stride.
enum AttentionCore {
    static func run(engine: MatmulEngine, qkv: UnsafePointer<Float>, batch: Int, tokens n: Int, dim: Int, heads: Int, causal: Bool,
                    into out: UnsafeMutablePointer<Float>, pool: ComputePool) {
        if FusedAttention.run(engine: engine, qkv: qkv, batch: batch, tokens: n, dim: dim, heads: heads, causal: causal,
                              into: out, pool: pool) { return }
        let hd = dim / heads
        let scale = 1 / Float(hd).squareRoot()
        pool.parallelFor(batch * heads) { pairs in
            // One score matrix per task, reused for each (image, head) pair the task owns.
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: n * n)
            defer { scores.deallocate() }
            for pair in pairs {
                let (b, h) = pair.quotientAndRemainder(dividingBy: heads)
                let base = qkv + b * n * 3 * dim
                let q = base + h * hd, k = base + dim + h * hd, v = base + 2 * dim + h * hd
                BLAS.gemm(m: n, n: n, k: hd, a: q, lda: 3 * dim, b: k, ldb: 3 * dim, transposeB: true,
                          c: scores, alpha: scale)
                if causal {
                    for i in 0..<n {
                        let row = scores + i * n
                        for j in (i + 1)..<max(n, i + 1) { row[j] = -.infinity }
                    }
                }
                Kernels.softmaxRows(scores, rows: n, n: n)
                BLAS.gemm(m: n, n: hd, k: n, a: scores, b: v, ldb: 3 * dim, transposeB: false,
                          c: out + b * n * dim + h * hd, ldc: dim)
            }
        }
    }

    /// FLOPs of the two attention GEMMs for `batch` sequences of `n` tokens.
    static func flops(batch: Int, tokens n: Int, dim: Int) -> Double {
        4 * Double(batch) * Double(n) * Double(n) * Double(dim)
    }
}
