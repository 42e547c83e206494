#pragma once
/// vtp's own GEMM and attention kernels: register-tiled float32 FMA tiles for AVX2 and AVX-512F,
/// bfloat16 tiles that widen to float32 on those, AVX512_BF16 (`vdpbf16ps`) tiles, and AMX-BF16
/// (`tdpbf16ps`) tiles.
///
/// Each kernel is compiled for its instruction set with a per-function target attribute, so the
/// package needs no global -m flags; callers pick a path from vtp_cpu_isa() at run time and must
/// never run a path the CPU lacks. The "check" paths are the AVX-512 tile geometry and code compiled
/// for AVX2: slower, they let machines without AVX-512 test the packing, tiling and epilogues that
/// the AVX-512 paths run. All matrices are row-major float32.
///
/// Reduction order: every output element is one chain of multiply-adds over k in increasing order
/// (pairs of k for vdpbf16ps, 32 depths per tdpbf16ps), whatever the m/n tiling and whatever rows
/// share a call, so results do not depend on how a batch was formed or how work was split over
/// threads (K is never split). tdpbf16ps sums its 32 products in an order and precision of its own
/// (measured: neither order of fused multiply-adds), so the AMX path has bits of its own; they too
/// depend on nothing but the row, the column and the path.
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// What the CPU offers, best last.
typedef enum {
    VTP_ISA_NONE = 0,        ///< none of the below: the caller uses OpenBLAS
    VTP_ISA_AVX2 = 1,        ///< AVX2 + FMA
    VTP_ISA_AVX512 = 2,      ///< AVX-512F
    VTP_ISA_AVX512BF16 = 3,  ///< AVX-512F + AVX512_BF16
    VTP_ISA_AMX = 4,         ///< the above + AMX-TILE and AMX-BF16, with the OS's leave to use tile data
} vtp_isa;

/// The best ISA this CPU and OS support (CPUID, and XGETBV for the register state the OS saves).
/// On Linux, AMX needs the process's permission for the tile data state: this asks for it
/// (arch_prctl ARCH_REQ_XCOMP_PERM, once per process) and reports AMX only when it is granted.
int vtp_cpu_isa(void);

/// Whether vdpbf16ps outpaces float32 FMA on this CPU, so that bf16 products should run on it
/// rather than on bf16 weights widened to float32. AMD's Zen 4 and Zen 5 run it at twice the FMA
/// rate in flops; the Intel Xeons measured here at half (0.5 instructions per cycle against two
/// FMAs), so on GenuineIntel CPUs this is 0. Decided from CPUID alone, never by timing, so a machine
/// always picks the same path and its outputs keep the same bits.
int vtp_cpu_dpbf16_is_fast(void);

/// A kernel path: instruction set, tile geometry, and the formats of packed A and B.
typedef enum {
    VTP_PATH_CHECK_F32 = 0,      ///< the AVX-512 28×16 float32 tiles, compiled for AVX2
    VTP_PATH_CHECK_BF16 = 1,     ///< the AVX-512 28×16 widening bf16 tiles, compiled for AVX2
    VTP_PATH_AVX2_F32 = 2,       ///< 6×16 float32 FMA tiles
    VTP_PATH_AVX2_BF16 = 3,      ///< 6×16 tiles, bf16 weights widened to float32
    VTP_PATH_AVX512_F32 = 4,     ///< 28×16 float32 FMA tiles
    VTP_PATH_AVX512_BF16 = 5,    ///< 28×16 tiles, bf16 weights widened to float32 in registers
    VTP_PATH_AVX512BF16 = 6,     ///< 14×32 vdpbf16ps tiles
    VTP_PATH_CHECK_DPBF16 = 7,   ///< the vdpbf16ps path's pair packing in 28×16 tiles, the instruction emulated on AVX2
    VTP_PATH_AMX_BF16 = 8,       ///< 32×32 tdpbf16ps tiles (four 16×16 accumulator tiles), depths padded to 32
    VTP_PATH_AVX512_F32_WIDE = 9,  ///< 14×32 float32 FMA tiles: AVX-512 float32 on AMD CPUs (the same bits as 28×16)
} vtp_path;

/// `a[i] = silu(a[i]) · b[i]` (SwiGLU's gate: `a / (1 + e^-a) · b`) on the widest vectors this CPU
/// has; the same bits for the same inputs on a given CPU, whatever the batch.
void vtp_silu_multiply(float *a, const float *b, long count);
/// GELU in place on the widest vectors this CPU has: exact GELU (`quick` 0) with erf computed as
/// PyTorch's vectorized CPU kernel does (|erf error| < 1.5e-7), or QuickGELU `x · sigmoid(1.702 x)`
/// (`quick` 1); an element's bits depend only on its value, on a given CPU.
void vtp_gelu(float *x, long count, int quick);

/// LayerNorm (`center` 1: `(x - mean) · rstd`) or RMSNorm (`center` 0: `x · rstd`) of each of
/// `rows` rows of width n, then `· weight` and `+ bias` where given; the moments are summed in
/// float64 in a fixed order, so a row's output depends only on the row.
void vtp_norm_rows(const float *x, float *out, long rows, int n, const float *weight, const float *bias, float eps,
                   int center);

/// The reference's bfloat16 rotary embedding of `count` head vectors of `hd` values (`stride`
/// floats apart) at one position: `bf(bf(x·cos) + bf(rotate_half(x)·sin))` with x rounded to
/// bfloat16 first, `rotate_half(x) = [-x₂, x₁]`; `sin` and `cos` hold that position's hd values.
void vtp_rope_bf16(float *v, long stride, int count, int hd, const float *sin, const float *cos);

/// Whether `path` keeps its weights (packed B) in bfloat16.
int vtp_path_is_bf16(int path);
/// The minimum ISA `path` needs.
int vtp_path_isa(int path);
/// Columns per packed panel of `path`.
int vtp_panel_columns(int path);
/// Rows of A `vtp_gemm` packs and runs against each panel at a time on `path` (whole tiles): a
/// caller splitting rows across threads loses no reuse of B with chunks of this many rows.
int vtp_block_rows(int path);
/// Rows of one tile of `path`: a product over fewer rows still computes a whole tile.
int vtp_tile_rows(int path);

/// Bytes a packed B of n columns and depth k_padded takes for `path`.
size_t vtp_packed_bytes(int path, int n, int k_padded);

/// Packs B for `C = A · op(B)`. With `transposed` set, `src` is n × k (a PyTorch Linear weight,
/// row stride `ld`), else k × n (row stride `ld`). bf16 paths round to bfloat16 (nearest-even, as
/// PyTorch). Depths k..<k_padded and columns past n up to a whole panel are zero.
void vtp_pack_b_f32(int path, const float *src, long ld, int transposed, int n, int k, int k_padded, void *dst);

/// Like vtp_pack_b_f32 for a bf16 path, from bfloat16 bits (used as stored, no rounding).
void vtp_pack_b_bf16(int path, const uint16_t *src, long ld, int transposed, int n, int k, int k_padded, void *dst);

/// What is applied to each finished output element, in this order:
/// `v = alpha·acc; v += bias[j]; if residual: v = residual[i,j] + (scale ? scale[j] : 1)·v`.
typedef struct {
    float alpha;
    const float *bias;       ///< n values or NULL
    const float *residual;   ///< m × n with row stride ldr, or NULL; may be the output itself
    long ldr;
    const float *scale;      ///< n values or NULL (LayerScale); only used with residual
    /// SwiGLU gating: B's panels alternate value and gate (panel 2j holds columns nr·j.. of the
    /// value weight, 2j + 1 the same columns of the gate weight, each packed as vtp_pack_b_* packs
    /// nr columns), and C
    /// gets `value · sigmoid(value) · gate` in column nr·j + t: n/2 columns. `bias` then holds the
    /// value weight's n/2 biases and `gate_bias` the gate's (either may be NULL); no residual.
    /// Only where vtp_gemm_fuses_swiglu says so.
    int swiglu;
    const float *gate_bias;
    /// The reference's bfloat16 RoPE (vtp_rope_bf16) on columns 0..<rope_columns (queries and
    /// keys, in heads of rope_head values) after bias, when rope_sin is set: row i of the call is
    /// token (rope_row0 + i) % rope_tokens of its sequence; tokens before rope_prefix are only
    /// rounded to bfloat16, token t after them rotated with the rope_head values of rope_sin and
    /// rope_cos at (t - rope_prefix) · rope_head. The tile of each head's second half reads the
    /// first half its twin panel wrote and stores both. Only where vtp_gemm_fuses_rope says so,
    /// over whole heads of panels, without residual or SwiGLU.
    const float *rope_sin, *rope_cos;
    int rope_columns, rope_head, rope_tokens, rope_prefix;
    long rope_row0;
} vtp_epilogue;

/// Whether vtp_gemm applies the SwiGLU epilogue on `path` for depth k: in one depth block, on the
/// tiles of sixteen-float vectors, not on AMX (whose tile pairs finish out of order).
int vtp_gemm_fuses_swiglu(int path, int k);
/// Whether vtp_gemm applies RoPE in the epilogue on `path` for heads of `head` values: on the
/// tiles of sixteen-float vectors, not on AMX, with each half head whole panels.
int vtp_gemm_fuses_rope(int path, int head);


/// `C[m × cols] = epilogue(A[m × k] · op(B))` over the panels panel_begin..<panel_end of a B
/// packed for `path` with n columns and depth k (columns past n are not written). A is float32 and
/// is packed per call (rounded to bfloat16 on bf16 paths) into a per-thread buffer. `ep` may be NULL.
/// C, bias, residual and scale are indexed by the full column index. Returns 0, -1 when scratch
/// memory could not be allocated, or -2 when `ep` asks for SwiGLU gating or RoPE this call cannot apply.
int vtp_gemm(int path, int m, int n, int k, const float *a, long lda, const void *packed_b,
             float *c, long ldc, int panel_begin, int panel_end, const vtp_epilogue *ep);

/// Bytes of scratch one vtp_attention call needs for n tokens and head width hd.
size_t vtp_attention_scratch_bytes(int path, int n, int hd);

/// Scaled dot-product attention of one (sequence, head): q, k, v are n × hd with row stride ld
/// (views into a packed qkv buffer); out is n × hd with row stride ldo. Softmax runs online over
/// tiles of 64 keys, so no n × n score matrix exists; `causal` hides keys after each query. On bf16
/// paths q, k, v and the probabilities are rounded to bfloat16 at the products, accumulation and
/// softmax stay float32. Scratch (vtp_attention_scratch_bytes) is kept per thread. Returns 0, or -1
/// when the scratch could not be allocated.
int vtp_attention(int path, const float *q, const float *k, const float *v, long ld, int n, int hd,
                  float scale, int causal, float *out, long ldo);

/// Rounds float32 to bfloat16 bits (nearest-even; NaN stays a quiet NaN), as PyTorch does.
void vtp_round_bf16(const float *src, uint16_t *dst, size_t count);

/// Rounds float32 to the nearest bfloat16 value in place, keeping float32 storage.
void vtp_round_bf16_inplace(float *values, size_t count);

#ifdef __cplusplus
}
#endif
