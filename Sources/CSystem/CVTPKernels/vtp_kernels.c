// vtp's GEMM and attention kernels. See include/vtp_kernels.h for the contract.
//
// Layouts, for a path with MR rows and NR columns per tile:
//   packed B, float32: panel p holds columns NR·p ..< NR·(p+1) as [k][NR] floats.
//   packed B, bf16:    panel p holds [k/2][NR] 32-bit words; word (kp, j) is depth 2kp of column j in
//                      its high half and depth 2kp+1 in its low half: what one vdpbf16ps lane takes.
//                      High first because Intel's vdpbf16ps adds the high halves' product first
//                      (checked against the instruction on a million random operands): so packed, its
//                      chain over k is the FMA tiles' and the paths give the same bits.
//   packed A (per call, per MC×KC block): micro-panels of MR rows, [k][MR] floats (bf16-rounded on
//                      the widening paths, depth padded to even), or [k/2][MR] words for vdpbf16ps.
// Each MR×NR tile keeps its accumulators in registers for one KC block and starts from zero (first
// block) or from the stored partial sums, so every element is one ordered chain over k. The tile
// bodies are written once with vector extensions and instantiated per instruction set.
#include "vtp_kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#if defined(__x86_64__)
#define VTP_X86 1
#include <cpuid.h>
#include <immintrin.h>
#endif

#if !defined(__clang__)
#error "vtp_kernels.c uses clang vector builtins (__builtin_elementwise_fma); build it with clang"
#endif

// Rows of A packed per block and queries per attention block, before rounding up to whole tiles.
enum { MAX_KEY_TILE = 512, QUERY_BLOCK = 48, MC = 240, PREFETCH_DEPTHS = 8 };

typedef struct {
    int mr, nr, kc;
    int b_bf16;        // packed B holds bf16 pair words
    int a_pairs;       // packed A holds bf16 pair words (vdpbf16ps, AMX); else floats
    int a_rounded;     // float A rounded to bf16 values
    int isa;
    int k_align;       // depths of packed A and B are padded to a multiple of this
} path_info;

// The AVX-512 tiles are 28 rows × 16 columns: 28 accumulators, one B vector per depth and every
// A value an embedded broadcast of the multiply-add ({1to16}), so a depth step is 28 fused
// multiply-adds and one load. Measured in L1 on a Xeon with two 512-bit FMA ports: 161 GFLOP/s of a
// 166 peak, where 12 × 32 (a broadcast register shared by two multiply-adds) reached 137. Depth
// blocks of 768 (all of a ViT-B product's depth, so C is written once) in blocks of 120 rows, with
// A and B prefetched 8 depths ahead, ran 5-15% faster in whole GEMMs than 256 × 240 without. On
// the Zen 5 VMs blocks of 240 rows (252 on 14-row tiles) run a bf16 ViT-B pass ~4% faster than
// 120: each row block streams every weight of a product from L3 or memory once, and a VM shares
// those with its neighbours.
//
// On AMD's Zen 5 the same tile is bound by its loads (two a cycle, 29 per 28 FMAs) and 14 × 32
// (a broadcast register shared by two multiply-adds, 16 loads per 28) runs 7% faster: float32 takes
// that geometry there (`VTP_PATH_AVX512_F32_WIDE`). Every output is the same chain of FMAs over k
// in either geometry, so the bits do not change.
//
// The AMX tiles are 32 × 32: four 16 × 16 accumulator tiles fed by two A tiles (16 rows × 32
// depths) and two B tiles (32 depths × 16 columns), each A and B tile used twice per load. A is
// packed row-major (the tile loads rows with a stride), B in the same pair words as vdpbf16ps.
static const path_info PATHS[] = {
    [VTP_PATH_CHECK_F32] = {28, 16, 768, 0, 0, 0, VTP_ISA_AVX2, 1},
    [VTP_PATH_CHECK_BF16] = {28, 16, 768, 1, 0, 1, VTP_ISA_AVX2, 2},
    [VTP_PATH_AVX2_F32] = {6, 16, 384, 0, 0, 0, VTP_ISA_AVX2, 1},
    [VTP_PATH_AVX2_BF16] = {6, 16, 384, 1, 0, 1, VTP_ISA_AVX2, 2},
    [VTP_PATH_AVX512_F32] = {28, 16, 768, 0, 0, 0, VTP_ISA_AVX512, 1},
    [VTP_PATH_AVX512_BF16] = {28, 16, 768, 1, 0, 1, VTP_ISA_AVX512, 2},
    [VTP_PATH_AVX512BF16] = {14, 32, 768, 1, 1, 0, VTP_ISA_AVX512BF16, 1},
    [VTP_PATH_CHECK_DPBF16] = {28, 16, 768, 1, 1, 0, VTP_ISA_AVX2, 1},
    [VTP_PATH_AMX_BF16] = {32, 16, 1536, 1, 1, 0, VTP_ISA_AMX, 32},
    [VTP_PATH_AVX512_F32_WIDE] = {14, 32, 768, 0, 0, 0, VTP_ISA_AVX512, 1},
};

/// Rows of A packed per block: about MC, in whole tiles.
static inline int block_rows(const path_info *P) { return (MC + P->mr - 1) / P->mr * P->mr; }
/// Queries per attention block: about QUERY_BLOCK, in whole tiles.
static inline int query_block(const path_info *P) { return (QUERY_BLOCK + P->mr - 1) / P->mr * P->mr; }

static inline int ceil_div(int a, int b) { return (a + b - 1) / b; }
static inline int round_up(int a, int b) { return ceil_div(a, b) * b; }

int vtp_path_is_bf16(int path) { return PATHS[path].b_bf16; }
int vtp_path_isa(int path) { return PATHS[path].isa; }
int vtp_panel_columns(int path) { return PATHS[path].nr; }
int vtp_block_rows(int path) { return block_rows(&PATHS[path]); }
int vtp_tile_rows(int path) { return PATHS[path].mr; }

static inline uint16_t bf16_bits(float f) {
    uint32_t b;
    memcpy(&b, &f, 4);
    if ((b & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((b >> 16) | 0x40);
    b += 0x7fffu + ((b >> 16) & 1u);
    return (uint16_t)(b >> 16);
}

static inline float bf16_value(float f) {
    uint32_t b = (uint32_t)bf16_bits(f) << 16;
    float r;
    memcpy(&r, &b, 4);
    return r;
}

void vtp_round_bf16(const float *src, uint16_t *dst, size_t count) {
    for (size_t i = 0; i < count; i++) dst[i] = bf16_bits(src[i]);
}

void vtp_round_bf16_inplace(float *values, size_t count) {
    for (size_t i = 0; i < count; i++) values[i] = bf16_value(values[i]);
}

/// Asks Linux for this process's leave to use AMX tile data (granted once, for every thread).
static int amx_permitted(void) {
#if defined(__linux__) && defined(SYS_arch_prctl)
    enum { ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18 };
    return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
#else
    return 0;
#endif
}

int vtp_cpu_isa(void) {
#ifdef VTP_X86
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return VTP_ISA_NONE;
    int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1;
    if (!osxsave || !fma) return VTP_ISA_NONE;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    (void)hi;
    if ((lo & 0x6u) != 0x6u) return VTP_ISA_NONE;  // the OS saves XMM and YMM state
    if (__get_cpuid_max(0, 0) < 7) return VTP_ISA_NONE;
    __cpuid_count(7, 0, a, b, c, d);
    if (!((b >> 5) & 1)) return VTP_ISA_NONE;  // AVX2
    // AVX-512F, with opmask, ZMM_Hi256 and Hi16_ZMM state saved by the OS.
    if (!((b >> 16) & 1) || (lo & 0xe0u) != 0xe0u) return VTP_ISA_AVX2;
    unsigned amx = d;  // leaf 7.0 EDX: AMX-BF16 bit 22, AMX-TILE bit 24
    __cpuid_count(7, 1, a, b, c, d);
    if (!((a >> 5) & 1)) return VTP_ISA_AVX512;
    // AMX: both features, the tile state enabled in XCR0 (bits 17, 18), and Linux's per-process
    // leave to use tile data, which a first tile instruction without it would die on (SIGILL).
    if (((amx >> 22) & 1) && ((amx >> 24) & 1) && (lo & 0x60000u) == 0x60000u && amx_permitted())
        return VTP_ISA_AMX;
    return VTP_ISA_AVX512BF16;
#else
    return VTP_ISA_NONE;
#endif
}

int vtp_cpu_dpbf16_is_fast(void) {
#ifdef VTP_X86
    unsigned a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d)) return 0;
    // "GenuineIntel" in EBX, EDX, ECX.
    return !(b == 0x756e6547u && d == 0x49656e69u && c == 0x6c65746eu);
#else
    return 0;
#endif
}

// MARK: Packing

/// How a packed B stores its values.
enum { B_FLOATS = 0, B_ROUNDED_FLOATS = 1, B_PAIRS = 2 };

static size_t b_bytes(int format, int nr, int n, int k_padded) {
    size_t panels = (size_t)ceil_div(n, nr);
    if (format != B_PAIRS) return panels * (size_t)k_padded * nr * sizeof(float);
    return panels * (size_t)ceil_div(k_padded, 2) * nr * sizeof(uint32_t);
}

/// Depth of packed A and B for `k` depths: padded to the path's multiple (zeros past k).
static inline int padded_depth(const path_info *P, int k) { return round_up(k, P->k_align); }

size_t vtp_packed_bytes(int path, int n, int k_padded) {
    const path_info *P = &PATHS[path];
    return b_bytes(P->b_bf16 ? B_PAIRS : B_FLOATS, P->nr, n, padded_depth(P, k_padded));
}

#ifdef VTP_X86
__attribute__((target("avx512f"))) static inline __m512i bf16_round16(__m512 x);

/// pack_b for panels of 16 or 32 columns with AVX-512: per depth (or depth pair), 16 columns of a panel
/// as one vector, loaded from a row of B or gathered down its columns (a transposed B: a Linear
/// weight, the keys of attention), rounded in registers. The same bytes as the scalar loop, which
/// took 6% of a bf16 forward pass packing K and V. Returns 0 when it does not apply.
/// Stores columns c0..c0+15 of B at depth d of the packed layout: `x` (and, for pairs, `next`, the
/// depth after it) rounded as the format asks; they are lanes c0 % nr onwards of panel c0 / nr.
__attribute__((target("avx512f"))) static inline void put_depth(int format, int nr, void *dst, int k_padded, int c0,
                                                                int d, __m512 x, __m512 next) {
    if (format == B_PAIRS) {
        uint32_t *panel = (uint32_t *)dst + (size_t)(c0 / nr) * ceil_div(k_padded, 2) * nr + c0 % nr;
        __m512i words = _mm512_or_si512(bf16_round16(x), _mm512_srli_epi32(bf16_round16(next), 16));
        _mm512_storeu_si512((void *)(panel + (size_t)(d / 2) * nr), words);
    } else {
        float *panel = (float *)dst + (size_t)(c0 / nr) * k_padded * nr + c0 % nr;
        if (format == B_ROUNDED_FLOATS) x = _mm512_castsi512_ps(bf16_round16(x));
        _mm512_storeu_ps(panel + (size_t)d * nr, x);
    }
}

__attribute__((target("avx512f"))) static int pack_b_avx512(int format, int nr, const float *src, long ld, int transposed,
                                                            int n, int k, int k_padded, void *dst) {
    if (nr % 16 != 0 || ld > INT32_MAX / 16) return 0;
    int step = format == B_PAIRS ? 2 : 1;
    if (!transposed) {
        // Depth by depth, every column of a row at once (attention's values: rows of a wide qkv
        // buffer, each a few lines long and pages apart), with the rows a few depths on asked for:
        // column block by column block, each pass over the rows missed on every line.
        for (int d = 0; d < k; d += step) {
            for (int ahead = d + 8; ahead < d + 8 + step && ahead < k; ahead++)
                for (int c0 = 0; c0 < n; c0 += 16) __builtin_prefetch(src + (long)ahead * ld + c0);
            for (int c0 = 0; c0 < n; c0 += 16) {
                __mmask16 m = (__mmask16)((1u << (n - c0 < 16 ? n - c0 : 16)) - 1);
                const float *row = src + (long)d * ld + c0;
                __m512 next = step == 2 && d + 1 < k ? _mm512_maskz_loadu_ps(m, row + ld) : _mm512_setzero_ps();
                put_depth(format, nr, dst, k_padded, c0, d, _mm512_maskz_loadu_ps(m, row), next);
            }
        }
        return 1;
    }
    // Transposed (a Linear weight's rows): each column's depths are a row of src, gathered 16 columns at a time.
    const __m512i index = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                             _mm512_set1_epi32((int)ld));
    for (int c0 = 0; c0 < n; c0 += 16) {
        __mmask16 m = (__mmask16)((1u << (n - c0 < 16 ? n - c0 : 16)) - 1);
        const float *base = src + (long)c0 * ld;
        for (int d = 0; d < k; d += step) {
            __m512 x = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, index, base + d, 4);
            __m512 next = step == 2 && d + 1 < k ? _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, index, base + d + 1, 4)
                                                 : _mm512_setzero_ps();
            put_depth(format, nr, dst, k_padded, c0, d, x, next);
        }
    }
    return 1;
}
#endif

/// `query()` the first time, its answer after (`*slot` starts at -1): the CPU does not change, and
/// vtp_cpu_isa asks the kernel for AMX. A race only asks twice.
static int cached(int *slot, int (*query)(void)) {
    int value = __atomic_load_n(slot, __ATOMIC_RELAXED);
    if (value < 0) {
        value = query();
        __atomic_store_n(slot, value, __ATOMIC_RELAXED);
    }
    return value;
}

/// vtp_cpu_isa(), asked once.
static int cpu_isa(void) {
    static int isa = -1;
    return cached(&isa, vtp_cpu_isa);
}

/// Whether this CPU runs AVX-512F.
static int cpu_has_avx512(void) { return cpu_isa() >= VTP_ISA_AVX512; }

static void pack_b(int format, int nr, const float *src, long ld, int transposed, int n, int k, int k_padded, void *dst) {
    memset(dst, 0, b_bytes(format, nr, n, k_padded));
#ifdef VTP_X86
    if (cpu_has_avx512() && pack_b_avx512(format, nr, src, ld, transposed, n, k, k_padded, dst)) return;
#endif
    if (format != B_PAIRS) {
        float *out = (float *)dst;
        for (int col = 0; col < n; col++) {
            float *panel = out + (size_t)(col / nr) * k_padded * nr + col % nr;
            for (int kk = 0; kk < k; kk++) {
                float v = transposed ? src[(long)col * ld + kk] : src[(long)kk * ld + col];
                panel[(size_t)kk * nr] = format == B_ROUNDED_FLOATS ? bf16_value(v) : v;
            }
        }
        return;
    }
    uint16_t *out = (uint16_t *)dst;
    int pairs = ceil_div(k_padded, 2);
    for (int col = 0; col < n; col++) {
        uint16_t *panel = out + (size_t)(col / nr) * pairs * nr * 2 + (col % nr) * 2;
        for (int kk = 0; kk < k; kk++) {
            float v = transposed ? src[(long)col * ld + kk] : src[(long)kk * ld + col];
            panel[(size_t)(kk / 2) * nr * 2 + 1 - (kk & 1)] = bf16_bits(v);
        }
    }
}

void vtp_pack_b_f32(int path, const float *src, long ld, int transposed, int n, int k, int k_padded, void *dst) {
    const path_info *P = &PATHS[path];
    pack_b(P->b_bf16 ? B_PAIRS : B_FLOATS, P->nr, src, ld, transposed, n, k, padded_depth(P, k_padded), dst);
}

void vtp_pack_b_bf16(int path, const uint16_t *src, long ld, int transposed, int n, int k, int k_padded, void *dst) {
    const path_info *P = &PATHS[path];
    int nr = P->nr, pairs = ceil_div(padded_depth(P, k_padded), 2);
    uint16_t *out = (uint16_t *)dst;
    memset(out, 0, vtp_packed_bytes(path, n, k_padded));
    for (int col = 0; col < n; col++) {
        uint16_t *panel = out + (size_t)(col / nr) * pairs * nr * 2 + (col % nr) * 2;
        for (int kk = 0; kk < k; kk++)
            panel[(size_t)(kk / 2) * nr * 2 + 1 - (kk & 1)] = transposed ? src[(long)col * ld + kk] : src[(long)kk * ld + col];
    }
}

/// Depth of packed A for `kc` depths: widening paths read depths in pairs, AMX in 32s.
static inline int a_depth(const path_info *P, int kc) { return padded_depth(P, kc); }

/// Bytes of one packed A micro-panel of depth kc.
static inline size_t a_panel_bytes(const path_info *P, int kc) {
    return P->a_pairs ? (size_t)ceil_div(a_depth(P, kc), 2) * P->mr * 4 : (size_t)a_depth(P, kc) * P->mr * 4;
}

#ifdef VTP_X86
/// Rounds 16 floats to bfloat16 (nearest-even; NaN stays a quiet NaN), as bf16_bits: the bf16 bits
/// in the high half of each lane, the low half zero.
__attribute__((target("avx512f"))) static inline __m512i bf16_round16(__m512 x) {
    __m512i bits = _mm512_castps_si512(x);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
    __m512i rounded = _mm512_add_epi32(bits, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
    __mmask16 nan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(bits, _mm512_set1_epi32(0x7fffffff)),
                                            _mm512_set1_epi32(0x7f800000));
    rounded = _mm512_mask_mov_epi32(rounded, nan, _mm512_or_si512(bits, _mm512_set1_epi32(0x400000)));
    return _mm512_and_si512(rounded, _mm512_set1_epi32((int)0xffff0000u));
}

/// Transposes a 16×16 block of 32-bit elements held as 16 rows: afterwards r[c] holds column c.
__attribute__((target("avx512f"))) static inline void transpose16(__m512i r[16]) {
    __m512i t[16], u[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    // u[4i + j], 128-bit lane L: rows 4i..4i+3 of column 4L + j.
    for (int i = 0; i < 4; i++) {
        u[4 * i + 0] = _mm512_unpacklo_epi64(t[4 * i + 0], t[4 * i + 2]);
        u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i + 0], t[4 * i + 2]);
        u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    for (int j = 0; j < 4; j++) {
        __m512i low01 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0x44), high01 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0xEE);
        __m512i low23 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0x44), high23 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0xEE);
        r[0 + j] = _mm512_shuffle_i32x4(low01, low23, 0x88);
        r[4 + j] = _mm512_shuffle_i32x4(low01, low23, 0xDD);
        r[8 + j] = _mm512_shuffle_i32x4(high01, high23, 0x88);
        r[12 + j] = _mm512_shuffle_i32x4(high01, high23, 0xDD);
    }
}

/// pack_a for the 28-row (or 14-row) AVX-512 tiles: [k][28] floats, or [k/2][28] bf16 pair words. Each row's
/// next 16 depths (or 16 depth pairs) are read with contiguous loads, rounded in registers where
/// the path asks, and two 16×16 transposes (rows 0-15, 16-27 and four zero rows) turn them into
/// the panel's order. Gathers down the rows, the version before, took 8% of a bf16 forward pass.
__attribute__((target("avx512f"))) static void pack_a_avx512(const path_info *P, const float *a, long lda, int rows,
                                                             int kc, void *out) {
    const int R = P->mr;  // 28, or 14 for the wide float32 tiles (rows past 16 never used then)
    int tiles = ceil_div(rows, R);
    int pairs = P->a_pairs, depth = pairs ? ceil_div(kc, 2) : a_depth(P, kc);  // panel rows: pairs or depths
    for (int t = 0; t < tiles; t++) {
        int valid = rows - t * R < R ? rows - t * R : R;
        const float *base = a + (long)t * R * lda;
        uint32_t *panel = (uint32_t *)out + (size_t)t * depth * R;
        for (int d0 = 0; d0 < depth; d0 += 16) {
            int steps = depth - d0 < 16 ? depth - d0 : 16;
            __m512i block[2][16];
            for (int r = 0; r < (R > 16 ? 32 : 16); r++) {
                __m512i v = _mm512_setzero_si512();
                if (r < valid) {
                    const float *src = base + (long)r * lda;
                    // Fourteen or twenty-eight short row streams at once are more than the
                    // hardware prefetchers follow: from memory this pass ran at a quarter of its
                    // speed from cache. So each row's next lines, and the next tile's rows at
                    // this depth, are asked for here.
                    int ahead = pairs ? 2 * d0 : d0;
                    if (t == 0) {
                        __builtin_prefetch(src + ahead + 128);
                        __builtin_prefetch(src + ahead + 144);
                    }
                    if (t + 1 < tiles) {
                        __builtin_prefetch(src + (long)R * lda + ahead);
                        if (pairs) __builtin_prefetch(src + (long)R * lda + ahead + 16);
                    }
                    if (pairs) {
                        int first = 2 * d0, left = kc - first;
                        __mmask16 m0 = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
                        __mmask16 m1 = left >= 32 ? (__mmask16)0xffff : left <= 16 ? 0 : (__mmask16)((1u << (left - 16)) - 1);
                        // Rounded bf16 bits in the high halves; per 64-bit lane (even, odd) becomes
                        // the word even << 16 | odd in its low half, then narrowed to 32 bits.
                        __m512i x0 = bf16_round16(_mm512_maskz_loadu_ps(m0, src + first));
                        __m512i x1 = bf16_round16(_mm512_maskz_loadu_ps(m1, src + first + 16));
                        __m256i w0 = _mm512_cvtepi64_epi32(_mm512_or_si512(x0, _mm512_srli_epi64(x0, 48)));
                        __m256i w1 = _mm512_cvtepi64_epi32(_mm512_or_si512(x1, _mm512_srli_epi64(x1, 48)));
                        v = _mm512_inserti64x4(_mm512_castsi256_si512(w0), w1, 1);
                    } else {
                        int left = kc - d0;
                        __mmask16 m = left >= 16 ? (__mmask16)0xffff : left <= 0 ? 0 : (__mmask16)((1u << left) - 1);
                        __m512 x = _mm512_maskz_loadu_ps(m, src + d0);
                        v = P->a_rounded ? bf16_round16(x) : _mm512_castps_si512(x);
                    }
                }
                block[r >> 4][r & 15] = v;
            }
            transpose16(block[0]);
            if (R > 16) transpose16(block[1]);
            __mmask16 first = R >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << R) - 1);
            __mmask16 second = R > 16 ? (__mmask16)((1u << (R - 16)) - 1) : 0;
            for (int j = 0; j < steps; j++) {
                _mm512_mask_storeu_epi32(panel + (size_t)(d0 + j) * R, first, block[0][j]);
                if (second) _mm512_mask_storeu_epi32(panel + (size_t)(d0 + j) * R + 16, second, block[1][j]);
            }
        }
    }
}
#endif

#ifdef VTP_X86
/// pack_a for AMX: row-major pair words (as B's: depth 2k in the high half), depth padded to 32
/// with zeros, so a tile load takes 16 rows of 32 depths with the row length as its stride.
__attribute__((target("avx512f"))) static void pack_a_amx(const path_info *P, const float *a, long lda, int rows,
                                                          int kc, uint32_t *out) {
    int depth = a_depth(P, kc), words = depth / 2, padded_rows = round_up(rows, P->mr);
    for (int r = 0; r < padded_rows; r++) {
        uint32_t *dst = out + (size_t)r * words;
        if (r >= rows) {
            memset(dst, 0, (size_t)words * 4);
            continue;
        }
        const float *src = a + (long)r * lda;
        for (int kk = 0; kk < depth; kk += 32) {
            int left = kc - kk;
            __mmask16 m0 = left >= 16 ? (__mmask16)0xffff : left <= 0 ? 0 : (__mmask16)((1u << left) - 1);
            __mmask16 m1 = left >= 32 ? (__mmask16)0xffff : left <= 16 ? 0 : (__mmask16)((1u << (left - 16)) - 1);
            __m512 x0 = _mm512_maskz_loadu_ps(m0, src + kk), x1 = _mm512_maskz_loadu_ps(m1, src + kk + 16);
            // bf16 bits to the low halves, narrowed to 32 words in depth order, then each pair's
            // halves swapped so the even depth sits high.
            __m256i h0 = _mm512_cvtepi32_epi16(_mm512_srli_epi32(bf16_round16(x0), 16));
            __m256i h1 = _mm512_cvtepi32_epi16(_mm512_srli_epi32(bf16_round16(x1), 16));
            __m512i natural = _mm512_inserti64x4(_mm512_castsi256_si512(h0), h1, 1);
            _mm512_storeu_si512((void *)(dst + kk / 2), _mm512_rol_epi32(natural, 16));
        }
    }
}
#endif

#ifdef VTP_X86
/// pack_a of attention's probabilities for the vdpbf16ps tiles, rounding with the instruction set's
/// own vcvtne2ps2bf16 (two vectors in one instruction, against eight integer steps each): it
/// rounds to nearest-even as bf16_round16 does but reads denormals as zero, which probabilities
/// never are (0, or at least 2^-125: exp16_nonpositive), so the bits are pack_a's.
__attribute__((target("avx512f,avx512bf16"))) static void pack_probabilities_dpbf16(const float *a, long lda, int rows,
                                                                                  int kc, uint32_t *out) {
    enum { R = 14 };
    int depth = ceil_div(kc, 2);
    for (int t = 0; t < ceil_div(rows, R); t++) {
        int valid = rows - t * R < R ? rows - t * R : R;
        uint32_t *panel = out + (size_t)t * depth * R;
        for (int d0 = 0; d0 < depth; d0 += 16) {
            int first = 2 * d0, left = kc - first;
            __mmask16 m0 = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
            __mmask16 m1 = left >= 32 ? (__mmask16)0xffff : left <= 16 ? 0 : (__mmask16)((1u << (left - 16)) - 1);
            __m512i block[16];
            for (int r = 0; r < 16; r++) {
                block[r] = _mm512_setzero_si512();
                if (r >= valid) continue;
                const float *src = a + (long)(t * R + r) * lda + first;
                __m512bh words = _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(m1, src + 16), _mm512_maskz_loadu_ps(m0, src));
                block[r] = _mm512_rol_epi32((__m512i)words, 16);  // the even depth to the high half
            }
            transpose16(block);
            int steps = depth - d0 < 16 ? depth - d0 : 16;
            for (int j = 0; j < steps; j++) _mm512_mask_storeu_epi32(panel + (size_t)(d0 + j) * R, (1u << R) - 1, block[j]);
        }
    }
}
#endif

/// Packs rows 0..<rows of A (whole tiles, zero rows past `rows`), depths 0..<kc.
static void pack_a(const path_info *P, const float *a, long lda, int rows, int kc, void *out) {
#ifdef VTP_X86
    if (P->isa == VTP_ISA_AMX) {
        pack_a_amx(P, a, lda, rows, kc, out);
        return;
    }
    if (P->isa >= VTP_ISA_AVX512 && (P->mr == 28 || P->mr == 14)) {
        pack_a_avx512(P, a, lda, rows, kc, out);
        return;
    }
#endif
    int mr = P->mr, tiles = ceil_div(rows, mr);
    if (P->a_pairs) {
        int pairs = ceil_div(kc, 2);
        for (int t = 0; t < tiles; t++) {
            uint32_t *panel = (uint32_t *)out + (size_t)t * pairs * mr;
            for (int r = 0; r < mr; r++) {
                int row = t * mr + r;
                const float *src = a + (long)row * lda;
                for (int kp = 0; kp < pairs; kp++) {
                    uint32_t word = 0;
                    if (row < rows) {
                        word = (uint32_t)bf16_bits(src[2 * kp]) << 16;
                        if (2 * kp + 1 < kc) word |= bf16_bits(src[2 * kp + 1]);
                    }
                    panel[(size_t)kp * mr + r] = word;
                }
            }
        }
        return;
    }
    int depth = a_depth(P, kc);
    for (int t = 0; t < tiles; t++) {
        float *panel = (float *)out + (size_t)t * depth * mr;
        for (int r = 0; r < mr; r++) {
            int row = t * mr + r;
            if (row >= rows) {
                for (int kk = 0; kk < depth; kk++) panel[(size_t)kk * mr + r] = 0.0f;
                continue;
            }
            const float *src = a + (long)row * lda;
            if (P->a_rounded)
                for (int kk = 0; kk < kc; kk++) panel[(size_t)kk * mr + r] = bf16_value(src[kk]);
            else
                for (int kk = 0; kk < kc; kk++) panel[(size_t)kk * mr + r] = src[kk];
            for (int kk = kc; kk < depth; kk++) panel[(size_t)kk * mr + r] = 0.0f;
        }
    }
}

// MARK: Tiles

/// Where one tile's finished values go and what is applied to them.
typedef struct {
    float *c;
    long ldc;
    int rows, cols;
    int first, last;
    float alpha;
    const float *bias, *residual, *scale;
    long ldr;
    int gate;  // SwiGLU's gate panel: C holds the value already; the result is silu(value) · this
    // RoPE: the tile holds the second half of a head whose first half is `rope_half` columns to the
    // left in C, and row i of the tile is global row rope_row + i (see vtp_epilogue).
    int rope, rope_half, rope_offset;  // rope_offset: the tile's first column within its half head
    const float *rope_sin, *rope_cos;
    int rope_head, rope_tokens, rope_prefix;
    long rope_row;
    // C's first row of the tile the same call runs next (NULL: none). Its rows are asked for, for
    // writing, during this tile's depth loop, so the next tile's stores find their lines in cache
    // instead of holding fill buffers the A and B streams need while they wait on memory.
    float *c_next;
} tile_out;

/// Fills the mr×nr tile buffer with the partial sums so far (zeros on a first block).
static inline void tile_begin(float *tile, int mr, int nr, const tile_out *o) {
    if (o->first || o->rows < mr || o->cols < nr) memset(tile, 0, sizeof(float) * mr * nr);
    if (o->first) return;
    for (int i = 0; i < o->rows; i++) memcpy(tile + i * nr, o->c + (long)i * o->ldc, sizeof(float) * o->cols);
}

/// Applies the epilogue (on the last block) and writes the valid part of the tile.
static inline void tile_finish(const float *tile, int nr, const tile_out *o) {
    for (int i = 0; i < o->rows; i++) {
        const float *src = tile + i * nr;
        float *dst = o->c + (long)i * o->ldc;
        if (!o->last) {
            memcpy(dst, src, sizeof(float) * o->cols);
            continue;
        }
        const float *res = o->residual ? o->residual + (long)i * o->ldr : NULL;
        for (int j = 0; j < o->cols; j++) {
            float v = src[j];
            if (o->alpha != 1.0f) v *= o->alpha;
            if (o->bias) v += o->bias[j];
            if (res) v = res[j] + (o->scale ? o->scale[j] * v : v);
            dst[j] = v;
        }
    }
}

typedef float vf8 __attribute__((vector_size(32)));
typedef float vf16 __attribute__((vector_size(64)));
typedef uint32_t vu8 __attribute__((vector_size(32)));
typedef uint32_t vu16 __attribute__((vector_size(64)));
typedef int32_t vi16 __attribute__((vector_size(64)));

#define PRAGMA_UNROLL _Pragma("clang loop unroll(full)")

/// e^x = y · 2^n for 16 lanes of x in range (Cephes: n = round(x / ln 2), y the polynomial of the
/// remainder, in [0.7, 1.42]): sets n and gives y (a statement expression, so it compiles inside
/// each target's function).
#define EXP16_MANTISSA(x, n)                                                                            \
    ({                                                                                                  \
        const vf16 magic_ = (vf16){} + 12582912.0f;  /* 1.5·2²³: adding it rounds to an integer in the low bits */ \
        vf16 t_ = (x) * 1.44269504088896341f + magic_;                                                  \
        vf16 nn_ = t_ - magic_;                                                                         \
        n = (vi16)t_ - 0x4B400000;                                                                      \
        vf16 r_ = (x) - nn_ * 0.693359375f + nn_ * 2.12194440e-4f;                                      \
        vf16 p_ = (vf16){} + 1.9875691500e-4f;                                                          \
        p_ = p_ * r_ + 1.3981999507e-3f;                                                                \
        p_ = p_ * r_ + 8.3334519073e-3f;                                                                \
        p_ = p_ * r_ + 4.1665795894e-2f;                                                                \
        p_ = p_ * r_ + 1.6666665459e-1f;                                                                \
        p_ = p_ * r_ + 5.0000001201e-1f;                                                                \
        p_ * r_ * r_ + r_ + 1.0f;                                                                       \
    })

/// e^x for 16 lanes (Cephes polynomial, a few ulp on [-87, 88]); below -87.3, -inf included, 0.
#define DEFINE_EXP16(SUFFIX, TARGET)                                                                    \
    TARGET __attribute__((always_inline)) static inline vf16 exp16_##SUFFIX(vf16 x) {                   \
        vi16 tiny = x < -87.33654f;                                                                     \
        x = __builtin_elementwise_min(__builtin_elementwise_max(x, (vf16){} - 87.33654f), (vf16){} + 88.72283f); \
        vi16 ni;                                                                                        \
        vf16 y = EXP16_MANTISSA(x, ni);                                                                 \
        vi16 half = ni >> 1;  /* 2^n as two factors keeps both in the normal range */                   \
        vf16 scaleA = (vf16)((half + 127) << 23), scaleB = (vf16)((ni - half + 127) << 23);             \
        vf16 result = y * scaleA * scaleB;                                                              \
        return (vf16)((vi16)result & ~tiny);                                                            \
    }

/// e^x for x ≤ 0 (the softmax's score minus its row maximum): exp16's polynomial, with 2^n added
/// straight to the exponent bits, which is exact while the result is normal, so the same bits as
/// exp16 from -86 up. Below -86, 0: those probabilities are under 2^-124 of the row's largest
/// (exp16 gives them up to -87.3). Without exp16's upper clamp and its two-factor scaling, the
/// softmax's exponentials take a third fewer instructions.
#define DEFINE_EXP16_NONPOSITIVE(SUFFIX, TARGET)                                                        \
    TARGET __attribute__((always_inline)) static inline vf16 exp16_nonpositive_##SUFFIX(vf16 x) {       \
        vi16 tiny = x < -86.0f;                                                                         \
        x = __builtin_elementwise_max(x, (vf16){} - 86.0f);                                             \
        vi16 ni;                                                                                        \
        vf16 y = EXP16_MANTISSA(x, ni);                                                                 \
        return (vf16)(((vi16)y + (ni << 23)) & ~tiny);                                                  \
    }

#define NO_TARGET
DEFINE_EXP16(generic, NO_TARGET)
DEFINE_EXP16_NONPOSITIVE(generic, NO_TARGET)
#ifdef VTP_X86
DEFINE_EXP16(avx2, __attribute__((target("avx2,fma"))))
DEFINE_EXP16(avx512, __attribute__((target("avx512f"))))
DEFINE_EXP16_NONPOSITIVE(avx2, __attribute__((target("avx2,fma"))))
DEFINE_EXP16_NONPOSITIVE(avx512, __attribute__((target("avx512f"))))
#endif
/// Where a tile's vectors are not sixteen floats, no SwiGLU epilogue (vtp_gemm_fuses_swiglu).
#define NO_GATE_EXP(x) (x)


/// Loads a tile's partial sums into registers: straight from C for a whole tile, through the tile
/// buffer for an edge tile (so rows and columns past the edge stay zero).
#define TILE_BEGIN(VF, MR_, NR_, NV, acc, tile, o)                                                        \
    do {                                                                                                  \
        if ((o)->rows == MR_ && (o)->cols == NR_) {                                                       \
            PRAGMA_UNROLL for (int i = 0; i < MR_; i++) PRAGMA_UNROLL for (int v = 0; v < NV; v++) {      \
                if ((o)->first) acc[i][v] = (VF){};                                                       \
                else memcpy(&acc[i][v], (o)->c + (long)i * (o)->ldc + v * (NR_ / NV), sizeof(VF));        \
            }                                                                                             \
        } else {                                                                                          \
            tile_begin(tile, MR_, NR_, o);                                                                \
            memcpy(acc, tile, sizeof acc);                                                                \
        }                                                                                                 \
    } while (0)

/// The epilogue of one vector of a tile's row i at column col, into x (see vtp_epilogue). A gate
/// tile's C holds the value already: x becomes silu(value) · x, with the exp of the target's
/// silu_multiply, so fused and separate gating give the same bits.
#define TILE_EPILOGUE(VF, EXP, x, o, i, col)                                                              \
    do {                                                                                                  \
        if ((o)->alpha != 1.0f) x = x * (o)->alpha;                                                       \
        if ((o)->bias) { VF b; memcpy(&b, (o)->bias + (col), sizeof b); x = x + b; }                      \
        if ((o)->gate) {                                                                                  \
            VF g;                                                                                         \
            memcpy(&g, (o)->c + (long)(i) * (o)->ldc + (col), sizeof g);                                  \
            x = g / (1.0f + EXP((VF){} - g)) * x;                                                         \
        }                                                                                                 \
        if ((o)->residual) {                                                                              \
            VF r;                                                                                         \
            memcpy(&r, (o)->residual + (long)(i) * (o)->ldr + (col), sizeof r);                           \
            if ((o)->scale) { VF g; memcpy(&g, (o)->scale + (col), sizeof g); x = g * x; }                \
            x = r + x;                                                                                    \
        }                                                                                                 \
    } while (0)

/// Rounds a vector of floats to bfloat16 values (nearest-even, NaN quiet), as bf16_bits.
#define BF16_ROUND_VECTOR(VF, VU, x)                                                                      \
    ({                                                                                                    \
        VF x_ = (x);                                                                                      \
        VU bits_ = (VU)x_;                                                                                \
        VU rounded_ = (bits_ + 0x7fffu + ((bits_ >> 16) & 1u)) & 0xffff0000u;                             \
        VU nan_ = (VU)(x_ != x_);                                                                         \
        (VF)((rounded_ & ~nan_) | (((bits_ | 0x400000u) & 0xffff0000u) & nan_));                        \
    })

/// The reference's bfloat16 rotation of one pair of vectors already rounded to bfloat16 (x1 from a
/// head's first half, x2 from its second, c and s the cos and sin of each half), in place:
/// x1 ← bf(bf(x1·c1) + bf(-x2·s1)), x2 ← bf(bf(x2·c2) + bf(x1·s2)).
#define ROPE_ROTATE(VF, VU, x1, x2, c1, s1, c2, s2)                                                      \
    do {                                                                                                  \
        VF p1_ = BF16_ROUND_VECTOR(VF, VU, (x1) * (c1)), q1_ = BF16_ROUND_VECTOR(VF, VU, ((VF){} - (x2)) * (s1)); \
        VF p2_ = BF16_ROUND_VECTOR(VF, VU, (x2) * (c2)), q2_ = BF16_ROUND_VECTOR(VF, VU, (x1) * (s2));   \
        x1 = BF16_ROUND_VECTOR(VF, VU, p1_ + q1_);                                                        \
        x2 = BF16_ROUND_VECTOR(VF, VU, p2_ + q2_);                                                        \
    } while (0)

/// RoPE of one vector of a second-half tile's row i at column col: x holds x₂ (after bias), C
/// `rope_half` columns left holds x₁; writes the first half's result there and leaves the second's
/// in x, with vtp_rope_bf16's roundings in its order.
#define TILE_ROPE(VF, x, o, i, col)                                                                       \
    do {                                                                                                  \
        typedef uint32_t VU __attribute__((vector_size(sizeof(VF))));                                     \
        float *first_ = (o)->c + (long)(i) * (o)->ldc + (col) - (o)->rope_half;                           \
        VF x1_, x2_ = BF16_ROUND_VECTOR(VF, VU, x);                                                       \
        memcpy(&x1_, first_, sizeof x1_);                                                                 \
        x1_ = BF16_ROUND_VECTOR(VF, VU, x1_);                                                             \
        long token_ = ((o)->rope_row + (i)) % (o)->rope_tokens;                                           \
        if (token_ >= (o)->rope_prefix) {                                                                 \
            long at_ = (token_ - (o)->rope_prefix) * (o)->rope_head + (o)->rope_offset + (col);           \
            VF c1_, s1_, c2_, s2_;                                                                        \
            memcpy(&c1_, (o)->rope_cos + at_, sizeof c1_);                                                \
            memcpy(&s1_, (o)->rope_sin + at_, sizeof s1_);                                                \
            memcpy(&c2_, (o)->rope_cos + at_ + (o)->rope_half, sizeof c2_);                               \
            memcpy(&s2_, (o)->rope_sin + at_ + (o)->rope_half, sizeof s2_);                               \
            ROPE_ROTATE(VF, VU, x1_, x2_, c1_, s1_, c2_, s2_);                                            \
        }                                                                                                 \
        memcpy(first_, &x1_, sizeof x1_);                                                                 \
        x = x2_;                                                                                          \
    } while (0)

/// Applies the epilogue and stores: in registers for a whole tile (and for a gate tile's rows,
/// whose columns are always whole), through the buffer at another edge.
#define TILE_FINISH(VF, MR_, NR_, NV, acc, tile, o, EXP)                                                  \
    do {                                                                                                  \
        if (((o)->rows == MR_ || (o)->gate || (o)->rope) && (o)->cols == NR_) {                           \
            PRAGMA_UNROLL for (int i = 0; i < MR_; i++) {                                                 \
                if (i >= (o)->rows) break;                                                                \
                PRAGMA_UNROLL for (int v = 0; v < NV; v++) {                                              \
                    VF x = acc[i][v];                                                                     \
                    int col = v * (NR_ / NV);                                                             \
                    if ((o)->last) TILE_EPILOGUE(VF, EXP, x, o, i, col);                                  \
                    if ((o)->last && (o)->rope) TILE_ROPE(VF, x, o, i, col);                              \
                    memcpy((o)->c + (long)i * (o)->ldc + col, &x, sizeof x);                              \
                }                                                                                         \
            }                                                                                             \
        } else {                                                                                          \
            memcpy(tile, acc, sizeof acc);                                                                \
            tile_finish(tile, NR_, o);                                                                    \
        }                                                                                                 \
    } while (0)

/// In a prefetching tile's depth loop, at depth step `step` (pairs count two): asks for one line
/// of the next tile's C rows for writing every 16 steps, MR_ lines in all (see tile_out.c_next).
#define PREFETCH_NEXT_C(o, step, MR_)                                                                     \
    do {                                                                                                  \
        if ((o)->c_next && ((step) & 15) == 0 && (step) < (MR_) * 16)                                    \
            __builtin_prefetch((o)->c_next + (long)((step) >> 4) * (o)->ldc, 1, 3);                       \
    } while (0)

/// The float32 tile body: MR_ rows of a packed A whose panel holds AS_ rows per depth (MR_ < AS_
/// for a block's last rows, fewer than a whole tile), NR_ columns.
#define DEFINE_F32_TILE(NAME, TARGET, MR_, NR_, AS_, VF, W, PF, EXP)                                    \
    TARGET static void NAME(int kc, const float *pa, const float *pb, const tile_out *o) {               \
        enum { NV = NR_ / W };                                                                          \
        float tile[MR_ * NR_] __attribute__((aligned(64)));                                             \
        VF acc[MR_][NV];                                                                                \
        TILE_BEGIN(VF, MR_, NR_, NV, acc, tile, o);                                                     \
        for (int kk = 0; kk < kc; kk++) {                                                               \
            VF b[NV];                                                                                   \
            memcpy(b, pb, sizeof b);                                                                    \
            if (PF) {                                                                                   \
                __builtin_prefetch(pb + NR_ * PREFETCH_DEPTHS);                                         \
                __builtin_prefetch(pa + AS_ * PREFETCH_DEPTHS);                                         \
                __builtin_prefetch(pa + AS_ * PREFETCH_DEPTHS + 16);                                    \
            }                                                                                           \
            if (PF) PREFETCH_NEXT_C(o, kk, MR_);                                                        \
            PRAGMA_UNROLL for (int i = 0; i < MR_; i++) {                                               \
                VF av = -(VF){} + pa[i];  /* -0 + x is x exactly, so this is a plain broadcast */       \
                PRAGMA_UNROLL for (int v = 0; v < NV; v++) acc[i][v] = __builtin_elementwise_fma(av, b[v], acc[i][v]); \
            }                                                                                           \
            pa += AS_;                                                                                  \
            pb += NR_;                                                                                  \
        }                                                                                               \
        TILE_FINISH(VF, MR_, NR_, NV, acc, tile, o, EXP);                                               \
    }

/// Instantiates the float32 and widening-bf16 tiles for one instruction set and geometry.
#define DEFINE_TILES(SUFFIX, TARGET, MR_, NR_, VF, VU, W, PF, EXP)                                           \
    DEFINE_F32_TILE(f32_tile_##SUFFIX, TARGET, MR_, NR_, MR_, VF, W, PF, EXP)                            \
    /* bf16 B read as stored (pair words) and widened in registers: two shifts per B vector and */    \
    /* pair of depths, no float32 copy of the panel. kc is even (a_depth pads the widening paths). */ \
    TARGET static void widen_tile_##SUFFIX(int kc, const float *pa, const uint32_t *pb, const tile_out *o) { \
        enum { NV = NR_ / W };                                                                          \
        float tile[MR_ * NR_] __attribute__((aligned(64)));                                             \
        VF acc[MR_][NV];                                                                                \
        TILE_BEGIN(VF, MR_, NR_, NV, acc, tile, o);                                                     \
        for (int kp = 0; kp < kc / 2; kp++) {                                                           \
            VU w[NV];                                                                                   \
            VF even[NV], odd[NV];                                                                       \
            memcpy(w, pb, sizeof w);                                                                    \
            if (PF) {                                                                                   \
                __builtin_prefetch(pb + NR_ * PREFETCH_DEPTHS / 2);                                     \
                __builtin_prefetch(pa + MR_ * PREFETCH_DEPTHS);                                         \
                __builtin_prefetch(pa + MR_ * PREFETCH_DEPTHS + 16);                                    \
            }                                                                                           \
            if (PF) PREFETCH_NEXT_C(o, 2 * kp, MR_);                                                    \
            PRAGMA_UNROLL for (int v = 0; v < NV; v++) {                                                \
                even[v] = (VF)(w[v] & 0xffff0000u);                                                     \
                odd[v] = (VF)(w[v] << 16);                                                              \
            }                                                                                           \
            PRAGMA_UNROLL for (int i = 0; i < MR_; i++) {                                               \
                VF av = -(VF){} + pa[i];                                                                \
                PRAGMA_UNROLL for (int v = 0; v < NV; v++) acc[i][v] = __builtin_elementwise_fma(av, even[v], acc[i][v]); \
            }                                                                                           \
            PRAGMA_UNROLL for (int i = 0; i < MR_; i++) {                                               \
                VF av = -(VF){} + pa[MR_ + i];                                                          \
                PRAGMA_UNROLL for (int v = 0; v < NV; v++) acc[i][v] = __builtin_elementwise_fma(av, odd[v], acc[i][v]); \
            }                                                                                           \
            pa += 2 * MR_;                                                                              \
            pb += NR_;                                                                                  \
        }                                                                                               \
        TILE_FINISH(VF, MR_, NR_, NV, acc, tile, o, EXP);                                               \
    }

#ifdef VTP_X86
DEFINE_TILES(check, __attribute__((target("avx2,fma"))), 28, 16, vf16, vu16, 16, 1, exp16_avx2)
DEFINE_TILES(avx2, __attribute__((target("avx2,fma"))), 6, 16, vf8, vu8, 8, 1, NO_GATE_EXP)
DEFINE_TILES(avx512, __attribute__((target("avx512f,prfchw"))), 28, 16, vf16, vu16, 16, 1, exp16_avx512)
// A block's last rows, when fewer than 28, on 7, 14 or 21-row tiles: M = 2048 (a batch of 8
// 16 × 16 latents) leaves 4, which a whole tile computes 28 of. Each row is the same chain.
DEFINE_F32_TILE(f32_rows7_avx512, __attribute__((target("avx512f,prfchw"))), 7, 16, 28, vf16, 16, 1, exp16_avx512)
DEFINE_F32_TILE(f32_rows14_avx512, __attribute__((target("avx512f,prfchw"))), 14, 16, 28, vf16, 16, 1, exp16_avx512)
DEFINE_F32_TILE(f32_rows21_avx512, __attribute__((target("avx512f,prfchw"))), 21, 16, 28, vf16, 16, 1, exp16_avx512)
// Without the software prefetches: on Zen 5 they take load slots the tile's 29 loads per 28
// FMAs need (4.5% of a float32 GEMM); the Xeons the prefetching versions were tuned on keep them.
DEFINE_TILES(avx512_np, __attribute__((target("avx512f"))), 28, 16, vf16, vu16, 16, 0, exp16_avx512)
DEFINE_TILES(avx512_wide, __attribute__((target("avx512f"))), 14, 32, vf16, vu16, 16, 0, exp16_avx512)

/// The vdpbf16ps tile: 14 rows × 32 columns (two B vectors per depth pair, each A word broadcast
/// once for both), 16 loads per 28 instructions; the 28 × 16 tile, one broadcast per instruction,
/// was bound by Zen 5's two loads a cycle and ran 5% slower. Each output is the same chain of
/// vdpbf16ps over the depth pairs in either geometry.
__attribute__((target("avx512f,avx512bf16"))) static void dpbf16_tile(int kc, const uint32_t *pa, const uint32_t *pb,
                                                                     const tile_out *o) {
    float tile[14 * 32] __attribute__((aligned(64)));
    __m512 acc[14][2];
    TILE_BEGIN(__m512, 14, 32, 2, acc, tile, o);
    int pairs = ceil_div(kc, 2);
    for (int kp = 0; kp < pairs; kp++) {
        __m512bh b0 = (__m512bh)_mm512_loadu_si512((const void *)pb);
        __m512bh b1 = (__m512bh)_mm512_loadu_si512((const void *)(pb + 16));
        PRAGMA_UNROLL for (int i = 0; i < 14; i++) {
            __m512bh w = (__m512bh)_mm512_set1_epi32((int)pa[i]);
            acc[i][0] = _mm512_dpbf16_ps(acc[i][0], w, b0);
            acc[i][1] = _mm512_dpbf16_ps(acc[i][1], w, b1);
        }
        pa += 14;
        pb += 32;
    }
    TILE_FINISH(__m512, 14, 32, 2, acc, tile, o, exp16_avx512);
}
#else
DEFINE_TILES(check, NO_TARGET, 28, 16, vf16, vu16, 16, 1, exp16_generic)
#endif

#ifdef VTP_X86
/// The vdpbf16ps tile's inputs and order, with the instruction emulated on AVX2: each lane adds
/// the high half's product (depth 2kp), then the low half's (2kp+1), both exact in float32 and each
/// added with one rounding, as Intel's instruction does (denormal inputs aside, which it reads as zero).
__attribute__((target("avx2,fma"))) static void dpbf16_check_tile(int kc, const uint32_t *pa, const uint32_t *pb,
                                                                  const tile_out *o) {
    enum { NV = 1 };
    float tile[28 * 16] __attribute__((aligned(64)));
    vf16 acc[28][NV];
    TILE_BEGIN(vf16, 28, 16, NV, acc, tile, o);
    int pairs = ceil_div(kc, 2);
    for (int kp = 0; kp < pairs; kp++) {
        vu16 w[NV];
        memcpy(w, pb, sizeof w);
        PRAGMA_UNROLL for (int i = 0; i < 28; i++) {
            uint32_t evenBits = pa[i] & 0xffff0000u, oddBits = pa[i] << 16;
            float ae, ao;
            memcpy(&ae, &evenBits, 4);
            memcpy(&ao, &oddBits, 4);
            PRAGMA_UNROLL for (int v = 0; v < NV; v++) {
                acc[i][v] = __builtin_elementwise_fma(-(vf16){} + ae, (vf16)(w[v] & 0xffff0000u), acc[i][v]);
                acc[i][v] = __builtin_elementwise_fma(-(vf16){} + ao, (vf16)(w[v] << 16), acc[i][v]);
            }
        }
        pa += 28;
        pb += 16;
    }
    TILE_FINISH(vf16, 28, 16, NV, acc, tile, o, exp16_avx2);
}
#endif

#ifdef VTP_X86
/// The tile configuration every AMX tile function runs under (see PATHS): eight tiles of 16 rows
/// of 64 bytes. Tile state is per thread, so each call that runs AMX tiles loads it first.
typedef struct __attribute__((packed)) {
    uint8_t palette, start_row, reserved[14];
    uint16_t bytes_per_row[16];
    uint8_t rows[16];
} amx_config;

__attribute__((target("amx-tile"))) static void amx_configure(void) {
    amx_config config;
    memset(&config, 0, sizeof config);
    config.palette = 1;
    for (int t = 0; t < 8; t++) {
        config.rows[t] = 16;
        config.bytes_per_row[t] = 64;
    }
    _tile_loadconfig(&config);
}

/// Loads one 32 × 16 output's partial sums into accumulator tiles T0 (rows 0-15) and T1 (16-31):
/// zeros on a first block, straight from C for a whole tile, through `buf` at an edge.
#define AMX_LOAD_C(T0, T1, o, buf)                                                                      \
    do {                                                                                                \
        if ((o)->first) {                                                                               \
            _tile_zero(T0);                                                                             \
            _tile_zero(T1);                                                                             \
        } else if ((o)->rows == 32 && (o)->cols == 16) {                                                \
            _tile_loadd(T0, (o)->c, (o)->ldc * 4);                                                      \
            _tile_loadd(T1, (o)->c + 16 * (o)->ldc, (o)->ldc * 4);                                      \
        } else {                                                                                        \
            tile_begin(buf, 32, 16, o);                                                                 \
            _tile_loadd(T0, buf, 64);                                                                   \
            _tile_loadd(T1, buf + 256, 64);                                                             \
        }                                                                                               \
    } while (0)

/// Stores accumulator tiles T0, T1 through `buf` and applies the epilogue in registers.
#define AMX_FINISH(T0, T1, o, buf)                                                                      \
    do {                                                                                                \
        _tile_stored(T0, buf, 64);                                                                      \
        _tile_stored(T1, buf + 256, 64);                                                                \
        vf16 acc[32][1];                                                                                \
        memcpy(acc, buf, sizeof acc);                                                                   \
        TILE_FINISH(vf16, 32, 16, 1, acc, buf, o, NO_GATE_EXP);                                         \
    } while (0)

/// One or two 32 × 16 outputs (columns of B panels pb0 and, when not NULL, pb1) over `kc` depths
/// (a multiple of 32) of a row-major pair-packed A. With two panels every A tile load feeds two
/// tdpbf16ps and every B tile load two.
__attribute__((target("avx512f,amx-tile,amx-bf16"))) static void amx_tiles(int kc, const uint32_t *pa,
                                                                          const uint32_t *pb0, const uint32_t *pb1,
                                                                          const tile_out *o0, const tile_out *o1) {
    float buf[32 * 16] __attribute__((aligned(64)));
    long stride = (long)kc * 2;  // bytes of one packed A row: kc / 2 words
    const uint32_t *pa16 = pa + (size_t)16 * (kc / 2);  // rows 16-31
    AMX_LOAD_C(0, 1, o0, buf);
    if (pb1) {
        AMX_LOAD_C(2, 3, o1, buf);
        for (int k0 = 0; k0 < kc; k0 += 32) {
            _tile_loadd(4, pa + k0 / 2, stride);
            _tile_loadd(6, pb0 + (size_t)(k0 / 2) * 16, 64);
            _tile_loadd(7, pb1 + (size_t)(k0 / 2) * 16, 64);
            _tile_dpbf16ps(0, 4, 6);
            _tile_dpbf16ps(2, 4, 7);
            _tile_loadd(5, pa16 + k0 / 2, stride);
            _tile_dpbf16ps(1, 5, 6);
            _tile_dpbf16ps(3, 5, 7);
        }
        AMX_FINISH(2, 3, o1, buf);
    } else {
        for (int k0 = 0; k0 < kc; k0 += 32) {
            _tile_loadd(4, pa + k0 / 2, stride);
            _tile_loadd(6, pb0 + (size_t)(k0 / 2) * 16, 64);
            _tile_loadd(5, pa16 + k0 / 2, stride);
            _tile_dpbf16ps(0, 4, 6);
            _tile_dpbf16ps(1, 5, 6);
        }
    }
    AMX_FINISH(0, 1, o0, buf);
}
#endif

/// Whether the AVX-512 float32 and widening tiles prefetch A and B: on Intel CPUs (where they were
/// tuned), not on AMD's. From CPUID alone; prefetching changes no result.
static int cpu_prefetches_tiles(void) {
    static int fast = -1;  // vtp_cpu_dpbf16_is_fast: not GenuineIntel
    return !cached(&fast, vtp_cpu_dpbf16_is_fast);
}

/// Runs one tile of `path` over `kc` depths of a B stored as `b_format`: the vdpbf16ps tile on
/// pair-packed A and B, the widening tile on float A and pair-packed B, else the float32 tile.
static void run_tile(int path, int b_format, int kc, const void *pa, const void *pb, const tile_out *o) {
    int pairs = b_format == B_PAIRS;
    switch (path) {
    case VTP_PATH_CHECK_F32:
    case VTP_PATH_CHECK_BF16:
        if (pairs) widen_tile_check(kc, pa, pb, o);
        else f32_tile_check(kc, pa, pb, o);
        return;
#ifdef VTP_X86
    case VTP_PATH_AVX2_F32:
    case VTP_PATH_AVX2_BF16:
        if (pairs) widen_tile_avx2(kc, pa, pb, o);
        else f32_tile_avx2(kc, pa, pb, o);
        return;
    case VTP_PATH_AVX512_F32:
    case VTP_PATH_AVX512_BF16:
        if (cpu_prefetches_tiles()) {
            if (pairs) widen_tile_avx512(kc, pa, pb, o);
            else if (o->rows <= 7) f32_rows7_avx512(kc, pa, pb, o);
            else if (o->rows <= 14) f32_rows14_avx512(kc, pa, pb, o);
            else if (o->rows <= 21) f32_rows21_avx512(kc, pa, pb, o);
            else f32_tile_avx512(kc, pa, pb, o);
        } else {
            if (pairs) widen_tile_avx512_np(kc, pa, pb, o);
            else f32_tile_avx512_np(kc, pa, pb, o);
        }
        return;
    case VTP_PATH_AVX512_F32_WIDE: f32_tile_avx512_wide(kc, pa, pb, o); return;
    case VTP_PATH_AVX512BF16: dpbf16_tile(kc, pa, pb, o); return;
    case VTP_PATH_CHECK_DPBF16: dpbf16_check_tile(kc, pa, pb, o); return;
    case VTP_PATH_AMX_BF16: amx_tiles(kc, pa, pb, NULL, o, NULL); return;
#endif
    default: abort();
    }
}

/// Whether `path` runs tiles of fewer rows for a block's last rows (see f32_rows7_avx512).
static int has_row_tiles(int path) { return path == VTP_PATH_AVX512_F32 && cpu_prefetches_tiles(); }

/// Runs the tile at `o[0]` (B panel `pb`) and, with `pair` (AMX only: its tiles take two panels),
/// the one at `o[1]` on the next panel, `panel_stride` bytes on, in the same call.
static void run_tiles(int path, int b_format, int kc, const void *pa, const char *pb, size_t panel_stride,
                      const tile_out *o, int pair) {
#ifdef VTP_X86
    if (pair) {
        amx_tiles(kc, pa, (const uint32_t *)pb, (const uint32_t *)(pb + panel_stride), &o[0], &o[1]);
        return;
    }
#endif
    run_tile(path, b_format, kc, pa, pb, &o[0]);
}

/// Byte offset of depth k0 (even on bf16 paths) inside a B panel.
static inline size_t b_depth_offset(const path_info *P, int k0) {
    return P->b_bf16 ? (size_t)(k0 / 2) * P->nr * 4 : (size_t)k0 * P->nr * 4;
}

// MARK: Scratch

/// Per-thread, grow-only scratch buffers. Packing buffers are needed for every product; taking
/// them from malloc each time left freed blocks in every worker thread's arena, and resident memory
/// grew by tens of megabytes per forward pass.
typedef struct { void *pointer; size_t bytes; } scratch_buffer;
static _Thread_local scratch_buffer scratch_a, scratch_attention;

static void *scratch(scratch_buffer *s, size_t bytes) {
    if (s->bytes >= bytes) return s->pointer;
    free(s->pointer);
    size_t rounded = (bytes + 4095) & ~(size_t)4095;
    s->pointer = aligned_alloc(64, rounded);
    s->bytes = s->pointer ? rounded : 0;
    return s->pointer;
}

// MARK: GEMM

int vtp_gemm_fuses_swiglu(int path, int k) {
    const path_info *P = &PATHS[path];
    return k > 0 && k <= P->kc && P->isa != VTP_ISA_AMX && path != VTP_PATH_AVX2_F32 && path != VTP_PATH_AVX2_BF16;
}

int vtp_gemm_fuses_rope(int path, int head) {
    const path_info *P = &PATHS[path];
    return head > 0 && head % 2 == 0 && (head / 2) % P->nr == 0 && P->isa != VTP_ISA_AMX && path != VTP_PATH_AVX2_F32 &&
           path != VTP_PATH_AVX2_BF16;
}

int vtp_gemm(int path, int m, int n, int k, const float *a, long lda, const void *packed_b,
             float *c, long ldc, int panel_begin, int panel_end, const vtp_epilogue *ep) {
    const path_info *P = &PATHS[path];
    vtp_epilogue plain = {.alpha = 1.0f};
    if (!ep) ep = &plain;
    if (m <= 0) return 0;
    int nr = P->nr;
    // SwiGLU: whole value-gate panel pairs, in one depth block, without a residual.
    int swiglu = ep->swiglu;
    if (swiglu && (!vtp_gemm_fuses_swiglu(path, k) || n % (2 * nr) || panel_begin % 2 || ep->residual)) return -2;
    // RoPE: whole heads of whole panels, twins in this call, no other epilogue that moves columns.
    int rope = ep->rope_sin != NULL, head = ep->rope_head;
    if (rope && (!vtp_gemm_fuses_rope(path, head) || !ep->rope_cos || swiglu || ep->residual || ep->rope_tokens <= 0 ||
                 ep->rope_columns % head || ep->rope_columns > n || (panel_begin * nr) % head)) return -2;
    if (k <= 0) {
        int col_end = panel_end * nr < n ? panel_end * nr : n;
        for (int i = 0; i < m; i++)
            for (int j = panel_begin * nr; j < col_end; j++) {
                float v = ep->bias ? ep->bias[j] : 0.0f;
                if (ep->residual) v = ep->residual[(long)i * ep->ldr + j] + (ep->scale ? ep->scale[j] : 1.0f) * v;
                c[(long)i * ldc + j] = v;
            }
        return 0;
    }
    size_t panel_stride = vtp_packed_bytes(path, nr, k);
    int mcmax = block_rows(P), b_format = P->b_bf16 ? B_PAIRS : B_FLOATS;
    // AMX tiles take two panels at once (see amx_tiles); every other path one.
    int amx = P->isa == VTP_ISA_AMX, step = amx ? 2 : 1;
    void *abuf = scratch(&scratch_a, (size_t)(mcmax / P->mr) * a_panel_bytes(P, P->kc));
    if (!abuf) return -1;
#ifdef VTP_X86
    if (amx) amx_configure();
#endif
    for (int k0 = 0; k0 < k; k0 += P->kc) {
        int kc = k - k0 < P->kc ? k - k0 : P->kc;
        size_t apanel = a_panel_bytes(P, kc);
        int depth = a_depth(P, kc);
        for (int m0 = 0; m0 < m; m0 += mcmax) {
            int mc = m - m0 < mcmax ? m - m0 : mcmax;
            pack_a(P, a + (long)m0 * lda + k0, lda, mc, kc, abuf);
            for (int p = panel_begin; p < panel_end; p += step) {
                int col0 = p * nr;
                if (col0 >= n) break;
                int pair = amx && p + 1 < panel_end && col0 + nr < n;
                const char *bp = (const char *)packed_b + (size_t)p * panel_stride + b_depth_offset(P, k0);
                for (int r = 0; r < mc; r += P->mr) {
                    int row = m0 + r;
                    // The residual rows the epilogue reads at the tile's end, asked for at its start.
                    if (ep->residual && k0 + kc >= k) {
                        int rows_here = mc - r < P->mr ? mc - r : P->mr;
                        for (int i = 0; i < rows_here; i++) {
                            const float *line = ep->residual + (long)(row + i) * ep->ldr + col0;
                            for (int j = 0; j < nr * step; j += 16) __builtin_prefetch(line + j, 0, 3);
                        }
                    }
                    tile_out o[2];
                    for (int h = 0; h <= pair; h++) {
                        int col = col0 + h * nr;
                        // A SwiGLU pair's value and gate panels both finish in output column nr·(p/2).
                        int out = swiglu ? (p / 2) * nr : col;
                        const float *bias = swiglu && (p & 1) ? ep->gate_bias : ep->bias;
                        o[h] = (tile_out){
                            .c = c + (long)row * ldc + out, .ldc = ldc,
                            .rows = mc - r < P->mr ? mc - r : P->mr, .cols = n - col < nr ? n - col : nr,
                            .first = k0 == 0, .last = k0 + kc >= k, .alpha = ep->alpha,
                            .bias = bias ? bias + out : NULL,
                            .residual = ep->residual ? ep->residual + (long)row * ep->ldr + col : NULL,
                            .scale = ep->scale ? ep->scale + col : NULL, .ldr = ep->ldr, .gate = swiglu && (p & 1),
                        };
                        if (rope && col < ep->rope_columns && col % head >= head / 2) {
                            o[h].rope = 1;
                            o[h].rope_half = head / 2;
                            o[h].rope_offset = col % head - head / 2;
                            o[h].rope_sin = ep->rope_sin;
                            o[h].rope_cos = ep->rope_cos;
                            o[h].rope_head = head;
                            o[h].rope_tokens = ep->rope_tokens;
                            o[h].rope_prefix = ep->rope_prefix;
                            o[h].rope_row = ep->rope_row0 + row;
                        }
                    }
                    // The next tile: the next rows of this panel, else this block's rows of the next panel.
                    if (r + P->mr < mc) o[0].c_next = o[0].c + (long)P->mr * ldc;
                    else if (!pair && p + 1 < panel_end && col0 + nr < n)
                        o[0].c_next = c + (long)m0 * ldc + (swiglu ? ((p + 1) / 2) * nr : col0 + nr);
                    run_tiles(path, b_format, depth, (const char *)abuf + (size_t)(r / P->mr) * apanel, bp,
                              panel_stride, o, pair);
                }
            }
        }
    }
    return 0;
}

// MARK: Attention

/// The regions of the attention scratch, each 64-byte aligned.
typedef struct {
    void *kpack, *vpack, *qpack, *ppack;
    float *scores, *acc, *rowmax, *rowsum;
    size_t total;
} attention_layout;

/// Attention packs K and V per call in the format its tile reads: pairs for vdpbf16ps, else floats
/// (rounded to bfloat16 on the widening paths, so no widening step is needed).
static int attention_b_format(const path_info *P) {
    return P->a_pairs ? B_PAIRS : (P->a_rounded ? B_ROUNDED_FLOATS : B_FLOATS);
}

/// Keys per score tile: all of them (in whole 64s) up to MAX_KEY_TILE, so a ViT's sequence takes one
/// pass with no rescaling (64-key tiles spent 9% of a bf16 ViT-B pass in the softmax and the
/// packing around it); longer sequences go through tiles of MAX_KEY_TILE with the online softmax.
/// Depends on n alone, so an image's result does not depend on its batch.
static int key_tile(int n) { return round_up(n, 64) < MAX_KEY_TILE ? round_up(n, 64) : MAX_KEY_TILE; }

static attention_layout attention_regions(int path, int n, int hd, char *base) {
    const path_info *P = &PATHS[path];
    int KEY_TILE = key_tile(n);
    int npad = round_up(n, KEY_TILE), hdp = round_up(hd, P->nr);
    int qtiles = query_block(P) / P->mr;
    int format = attention_b_format(P);
    size_t sizes[8] = {
        b_bytes(format, P->nr, npad, a_depth(P, hd)),   // K as B: keys are the columns
        b_bytes(format, P->nr, hd, npad),               // V as B: keys are the depth
        (size_t)qtiles * a_panel_bytes(P, hd),
        (size_t)qtiles * a_panel_bytes(P, KEY_TILE),
        (size_t)qtiles * P->mr * KEY_TILE * 4,
        (size_t)qtiles * P->mr * hdp * 4,
        (size_t)qtiles * P->mr * 4,
        (size_t)qtiles * P->mr * 4,
    };
    void *ptrs[8];
    size_t offset = 0;
    for (int i = 0; i < 8; i++) {
        ptrs[i] = base ? base + offset : NULL;
        offset += (sizes[i] + 63) & ~(size_t)63;
    }
    attention_layout l = {ptrs[0], ptrs[1], ptrs[2], ptrs[3], (float *)ptrs[4], (float *)ptrs[5],
                          (float *)ptrs[6], (float *)ptrs[7], offset};
    return l;
}

size_t vtp_attention_scratch_bytes(int path, int n, int hd) { return attention_regions(path, n, hd, NULL).total; }

/// Horizontal maximum and sum of 16 lanes by halving: a fixed tree, the same on every target (a
/// statement expression, so it compiles inside each target's function).
typedef float vf8h __attribute__((vector_size(32)));
typedef float vf4h __attribute__((vector_size(16)));
#define REDUCE16(v, OP)                                                                                  \
    ({                                                                                                   \
        vf16 r16_ = (v);                                                                                 \
        vf8h r8_ = OP(__builtin_shufflevector(r16_, r16_, 0, 1, 2, 3, 4, 5, 6, 7),                       \
                      __builtin_shufflevector(r16_, r16_, 8, 9, 10, 11, 12, 13, 14, 15));                \
        vf4h r4_ = OP(__builtin_shufflevector(r8_, r8_, 0, 1, 2, 3), __builtin_shufflevector(r8_, r8_, 4, 5, 6, 7)); \
        float r0_ = OP(r4_[0], r4_[2]), r1_ = OP(r4_[1], r4_[3]);                                        \
        OP(r0_, r1_);                                                                                    \
    })
#define ADD_OP(x, y) ((x) + (y))
#define MAX_OP(x, y) __builtin_elementwise_max((x), (y))

/// One online-softmax step for a tile of scores (rows `width` floats apart; the first `cols`
/// computed, a multiple of 16 or not): scales and masks the scores, turns them into probabilities
/// against the running row maximum, rescales running sums and accumulators, and leaves the
/// probabilities in the tile for the P·V product, zeros past the visible keys.
#define DEFINE_SOFTMAX(SUFFIX, TARGET)                                                                  \
    TARGET static void softmax_tile_##SUFFIX(float *scores, int width, int cols, int rows, int q0, int key0, int n, \
                                             int causal, float scale, float *rowmax, float *rowsum, float *acc, int hdp) { \
        const vi16 lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};                       \
        int vectors = ceil_div(cols, 16);                                                               \
        for (int i = 0; i < rows; i++) {                                                                \
            float *row = scores + (size_t)i * width;                                                    \
            int limit = n;                                                                              \
            if (causal && q0 + i + 1 < limit) limit = q0 + i + 1;                                       \
            vf16 mx = (vf16){} - INFINITY;                                                              \
            for (int v = 0; v < vectors; v++) {                                                         \
                vf16 x;                                                                                 \
                memcpy(&x, row + 16 * v, sizeof x);                                                     \
                vi16 hidden = (lane + (key0 + 16 * v)) >= limit;                                        \
                x = x * scale;                                                                          \
                x = (vf16)(((vi16)x & ~hidden) | ((vi16)((vf16){} - INFINITY) & hidden));               \
                memcpy(row + 16 * v, &x, sizeof x);                                                     \
                mx = __builtin_elementwise_max(mx, x);                                                  \
            }                                                                                           \
            float tile_max = REDUCE16(mx, MAX_OP);                                                      \
            float new_max = rowmax[i] > tile_max ? rowmax[i] : tile_max;                                \
            if (new_max == -INFINITY) {                                                                 \
                memset(row, 0, sizeof(float) * 16 * vectors);                                           \
                continue;                                                                               \
            }                                                                                           \
            int rescale = rowmax[i] != -INFINITY && rowmax[i] != new_max;  /* acc is zero before a row's first keys */ \
            float correction = rowmax[i] == -INFINITY ? 0.0f : expf(rowmax[i] - new_max);               \
            vf16 sum = (vf16){};                                                                        \
            for (int v = 0; v < vectors; v++) {                                                         \
                vf16 x;                                                                                 \
                memcpy(&x, row + 16 * v, sizeof x);                                                     \
                vf16 e = exp16_nonpositive_##SUFFIX(x - new_max);                                       \
                sum += e;                                                                               \
                memcpy(row + 16 * v, &e, sizeof e);                                                     \
            }                                                                                           \
            float total = REDUCE16(sum, ADD_OP);                                                        \
            rowsum[i] = rowsum[i] * correction + total;                                                 \
            rowmax[i] = new_max;                                                                        \
            if (rescale) {                                                                              \
                float *o = acc + (size_t)i * hdp;                                                       \
                for (int d = 0; d < hdp; d++) o[d] *= correction;                                       \
            }                                                                                           \
        }                                                                                               \
    }

DEFINE_SOFTMAX(generic, NO_TARGET)
#ifdef VTP_X86
DEFINE_SOFTMAX(avx2, __attribute__((target("avx2,fma"))))
DEFINE_SOFTMAX(avx512, __attribute__((target("avx512f"))))
#endif

/// a ← a · sigmoid(a) · b (SwiGLU's gate), 16 lanes at a time.
#define DEFINE_SILU(SUFFIX, TARGET)                                                                     \
    TARGET static void silu_multiply_##SUFFIX(float *a, const float *b, long count) {                   \
        long i = 0;                                                                                     \
        for (; i + 16 <= count; i += 16) {                                                              \
            vf16 x, y;                                                                                  \
            memcpy(&x, a + i, sizeof x);                                                                \
            memcpy(&y, b + i, sizeof y);                                                                \
            vf16 r = x / (1.0f + exp16_##SUFFIX((vf16){} - x)) * y;                                     \
            memcpy(a + i, &r, sizeof r);                                                                \
        }                                                                                               \
        for (; i < count; i++) a[i] = a[i] / (1.0f + expf(-a[i])) * b[i];                               \
    }

DEFINE_SILU(generic, NO_TARGET)
#ifdef VTP_X86
DEFINE_SILU(avx2, __attribute__((target("avx2,fma"))))
DEFINE_SILU(avx512, __attribute__((target("avx512f"))))
#endif

/// GELU on 16 lanes: exact GELU, `x/2 · (1 + erf(x/√2))`, with erf as PyTorch's vectorized CPU
/// kernel computes it (Abramowitz-Stegun 7.1.26: |error| < 1.5e-7, its constants and order of
/// multiply-adds), or QuickGELU, `x · sigmoid(1.702 x)`. A tail shorter than a vector goes through
/// a padded vector, so each element's bits depend only on its value, never on where it sits.
#define DEFINE_GELU(SUFFIX, TARGET)                                                                     \
    TARGET __attribute__((always_inline)) static inline vf16 gelu16_##SUFFIX(vf16 x, int quick) {       \
        if (quick) return x * (1.0f / (1.0f + exp16_##SUFFIX(x * -1.702f)));                            \
        vf16 z = x * 0.70710678118654752440f;                                                           \
        vu16 sign = (vu16)z & 0x80000000u;                                                              \
        vf16 a = (vf16)((vu16)z & 0x7fffffffu);                                                         \
        vf16 t = 1.0f / __builtin_elementwise_fma((vf16){} + 0.3275911f, a, (vf16){} + 1.0f);           \
        vf16 r = __builtin_elementwise_fma((vf16){} + 1.061405429f, t, (vf16){} - 1.453152027f);        \
        r = __builtin_elementwise_fma(r, t, (vf16){} + 1.421413741f);                                   \
        r = __builtin_elementwise_fma(r, t, (vf16){} - 0.284496736f);                                   \
        r = __builtin_elementwise_fma(r, t, (vf16){} + 0.254829592f);                                   \
        vf16 e = (vf16){} - exp16_##SUFFIX((vf16){} - z * z);                                           \
        vf16 erf = (vf16)((vu16)__builtin_elementwise_fma(e * t, r, (vf16){} + 1.0f) ^ sign);           \
        return x * 0.5f * (1.0f + erf);                                                                 \
    }                                                                                                   \
    TARGET static void gelu_##SUFFIX(float *x, long count, int quick) {                                 \
        long i = 0;                                                                                     \
        for (; i + 16 <= count; i += 16) {                                                              \
            vf16 v;                                                                                     \
            memcpy(&v, x + i, sizeof v);                                                                \
            v = gelu16_##SUFFIX(v, quick);                                                              \
            memcpy(x + i, &v, sizeof v);                                                                \
        }                                                                                               \
        if (i < count) {                                                                                \
            float lanes[16] = {0};                                                                      \
            memcpy(lanes, x + i, (size_t)(count - i) * sizeof(float));                                  \
            vf16 v;                                                                                     \
            memcpy(&v, lanes, sizeof v);                                                                \
            v = gelu16_##SUFFIX(v, quick);                                                              \
            memcpy(lanes, &v, sizeof v);                                                                \
            memcpy(x + i, lanes, (size_t)(count - i) * sizeof(float));                                  \
        }                                                                                               \
    }

DEFINE_GELU(generic, NO_TARGET)
#ifdef VTP_X86
DEFINE_GELU(avx2, __attribute__((target("avx2,fma"))))
DEFINE_GELU(avx512, __attribute__((target("avx512f"))))
#endif

/// One row's LayerNorm (with `center`) or RMSNorm: the moments in float64 over eight lanes at a
/// time (two accumulators, a fixed order, so a row's result depends on nothing but the row), then
/// `(x - mean) · rstd · weight + bias` in float32.
#define DEFINE_NORM(SUFFIX, TARGET)                                                                     \
    TARGET static void norm_rows_##SUFFIX(const float *x, float *out, long rows, int n, const float *weight, \
                                          const float *bias, float eps, int center) {                   \
        typedef double vd8 __attribute__((vector_size(64)));                                            \
        typedef float vf8_ __attribute__((vector_size(32)));                                            \
        for (long r = 0; r < rows; r++) {                                                               \
            const float *xr = x + r * n;                                                                \
            float *o = out + r * n;                                                                     \
            double mean = 0.0;                                                                          \
            int vec = n & ~15;                                                                          \
            if (center) {                                                                               \
                vd8 s0 = {}, s1 = {};                                                                   \
                for (int i = 0; i < vec; i += 16) {                                                     \
                    vf8_ a, b;                                                                          \
                    memcpy(&a, xr + i, sizeof a);                                                       \
                    memcpy(&b, xr + i + 8, sizeof b);                                                   \
                    s0 += __builtin_convertvector(a, vd8);                                              \
                    s1 += __builtin_convertvector(b, vd8);                                              \
                }                                                                                       \
                vd8 s = s0 + s1;                                                                        \
                double sum = 0.0;                                                                       \
                for (int j = 0; j < 8; j++) sum += s[j];                                                \
                for (int i = vec; i < n; i++) sum += xr[i];                                             \
                mean = sum / n;                                                                         \
            }                                                                                           \
            vd8 q0 = {}, q1 = {};                                                                       \
            for (int i = 0; i < vec; i += 16) {                                                         \
                vf8_ a, b;                                                                              \
                memcpy(&a, xr + i, sizeof a);                                                           \
                memcpy(&b, xr + i + 8, sizeof b);                                                       \
                vd8 da = __builtin_convertvector(a, vd8) - mean, db = __builtin_convertvector(b, vd8) - mean; \
                q0 += da * da;                                                                          \
                q1 += db * db;                                                                          \
            }                                                                                           \
            vd8 q = q0 + q1;                                                                            \
            double sq = 0.0;                                                                            \
            for (int j = 0; j < 8; j++) sq += q[j];                                                     \
            for (int i = vec; i < n; i++) { double d = xr[i] - mean; sq += d * d; }                     \
            float rstd = (float)(1.0 / sqrt(sq / n + (double)eps)), m = center ? (float)mean : 0.0f;   \
            /* One loop per case: a masked-off vector load from a null weight or bias takes a slow */ \
            /* microcode path on AMD, which made the branchy loop 10% of a forward pass. */            \
            if (weight && bias)                                                                         \
                for (int i = 0; i < n; i++) o[i] = (xr[i] - m) * rstd * weight[i] + bias[i];            \
            else if (weight)                                                                            \
                for (int i = 0; i < n; i++) o[i] = (xr[i] - m) * rstd * weight[i];                      \
            else if (bias)                                                                              \
                for (int i = 0; i < n; i++) o[i] = (xr[i] - m) * rstd + bias[i];                        \
            else                                                                                        \
                for (int i = 0; i < n; i++) o[i] = (xr[i] - m) * rstd;                                  \
        }                                                                                               \
    }

DEFINE_NORM(generic, NO_TARGET)
#ifdef VTP_X86
DEFINE_NORM(avx512, __attribute__((target("avx512f"))))
#endif

void vtp_norm_rows(const float *x, float *out, long rows, int n, const float *weight, const float *bias, float eps,
                   int center) {
#ifdef VTP_X86
    if (cpu_has_avx512()) { norm_rows_avx512(x, out, rows, n, weight, bias, eps, center); return; }
#endif
    norm_rows_generic(x, out, rows, n, weight, bias, eps, center);
}

/// The reference's bfloat16 RoPE on `count` head vectors of `hd` (even) values, `stride` floats
/// apart, all at one position: each value rounded to bf16, then `bf(bf(x·cos) + bf(rotate_half(x)·sin))`
/// with every product and the sum rounded to bf16 (the products are rounded before the sum, so no
/// multiply-add can fuse them).
#define DEFINE_ROPE(SUFFIX, TARGET)                                                                     \
    TARGET static inline vf16 bf16_vector_##SUFFIX(vf16 x) { return BF16_ROUND_VECTOR(vf16, vu16, x); } \
    TARGET static void rope_bf16_##SUFFIX(float *v, long stride, int count, int hd, const float *sin,    \
                                          const float *cos) {                                           \
        int half = hd / 2;                                                                              \
        for (int h = 0; h < count; h++) {                                                               \
            float *x = v + (long)h * stride;                                                            \
            int i = 0;                                                                                  \
            for (; i + 16 <= half; i += 16) {                                                           \
                vf16 a, b, c1, s1, c2, s2;                                                              \
                memcpy(&a, x + i, 64); memcpy(&b, x + i + half, 64);                                    \
                memcpy(&c1, cos + i, 64); memcpy(&s1, sin + i, 64);                                     \
                memcpy(&c2, cos + i + half, 64); memcpy(&s2, sin + i + half, 64);                       \
                vf16 first = bf16_vector_##SUFFIX(a), second = bf16_vector_##SUFFIX(b);                 \
                ROPE_ROTATE(vf16, vu16, first, second, c1, s1, c2, s2);                                 \
                memcpy(x + i, &first, 64); memcpy(x + i + half, &second, 64);                           \
            }                                                                                           \
            for (; i < half; i++) {                                                                     \
                float x1 = bf16_value(x[i]), x2 = bf16_value(x[i + half]);                              \
                float p1 = bf16_value(x1 * cos[i]), q1 = bf16_value(-x2 * sin[i]);                      \
                float p2 = bf16_value(x2 * cos[i + half]), q2 = bf16_value(x1 * sin[i + half]);         \
                x[i] = bf16_value(p1 + q1);                                                             \
                x[i + half] = bf16_value(p2 + q2);                                                      \
            }                                                                                           \
        }                                                                                               \
    }

DEFINE_ROPE(generic, NO_TARGET)
#ifdef VTP_X86
DEFINE_ROPE(avx512, __attribute__((target("avx512f"))))
#endif

void vtp_rope_bf16(float *v, long stride, int count, int hd, const float *sin, const float *cos) {
#ifdef VTP_X86
    if (cpu_has_avx512()) { rope_bf16_avx512(v, stride, count, hd, sin, cos); return; }
#endif
    rope_bf16_generic(v, stride, count, hd, sin, cos);
}

void vtp_silu_multiply(float *a, const float *b, long count) {
#ifdef VTP_X86
    if (cpu_isa() >= VTP_ISA_AVX512) { silu_multiply_avx512(a, b, count); return; }
    if (cpu_isa() >= VTP_ISA_AVX2) { silu_multiply_avx2(a, b, count); return; }
#endif
    silu_multiply_generic(a, b, count);
}

void vtp_gelu(float *x, long count, int quick) {
#ifdef VTP_X86
    if (cpu_isa() >= VTP_ISA_AVX512) { gelu_avx512(x, count, quick); return; }
    if (cpu_isa() >= VTP_ISA_AVX2) { gelu_avx2(x, count, quick); return; }
#endif
    gelu_generic(x, count, quick);
}

static void softmax_tile(int path, float *scores, int width, int cols, int rows, int q0, int key0, int n, int causal,
                         float scale, float *rowmax, float *rowsum, float *acc, int hdp) {
    switch (PATHS[path].isa) {
#ifdef VTP_X86
    case VTP_ISA_AVX2:
        softmax_tile_avx2(scores, width, cols, rows, q0, key0, n, causal, scale, rowmax, rowsum, acc, hdp);
        return;
    case VTP_ISA_AVX512:
    case VTP_ISA_AVX512BF16:
    case VTP_ISA_AMX:
        softmax_tile_avx512(scores, width, cols, rows, q0, key0, n, causal, scale, rowmax, rowsum, acc, hdp);
        return;
#endif
    default: softmax_tile_generic(scores, width, cols, rows, q0, key0, n, causal, scale, rowmax, rowsum, acc, hdp); return;
    }
}

/// One row tile of an attention product against `panels` B panels `stride` bytes apart: the
/// outputs go to `c` (row stride ldc), panel h at columns h·nr. AMX tiles take panels in twos.
static void attention_row(int path, int format, int depth, const void *pa, const char *pb, size_t stride, int panels,
                          float *c, int ldc, int first, int rows) {
    const path_info *P = &PATHS[path];
    int amx = P->isa == VTP_ISA_AMX;
    for (int h = 0; h < panels; h += amx ? 2 : 1) {
        tile_out o[2];
        int pair = amx && h + 1 < panels;
        for (int i = 0; i <= pair; i++)
            o[i] = (tile_out){.c = c + (h + i) * P->nr, .ldc = ldc, .rows = rows, .cols = P->nr, .first = first,
                              .last = 1, .alpha = 1.0f};
        run_tiles(path, format, depth, pa, pb + (size_t)h * stride, stride, o, pair);
    }
}

/// Packs one head's keys as B (keys are its columns). With AVX-512 they go through pack_a: a panel
/// of B is a micro-panel of nr keys in A's word order, so each key's depths are row loads and
/// 16×16 transposes instead of pack_b's gathers down the columns (2% of a bf16 ViT-B pass).
static void pack_keys(const path_info *P, int format, const float *k, long ld, int n, int hd, int kd, void *dst) {
#ifdef VTP_X86
    if (cpu_has_avx512() && (P->nr == 16 || P->nr == 32) && kd == (format == B_PAIRS ? round_up(hd, 2) : hd)) {
        path_info keys = *P;
        keys.mr = P->nr;
        keys.a_pairs = format == B_PAIRS;
        keys.a_rounded = format == B_ROUNDED_FLOATS;
        keys.k_align = 1;
        pack_a_avx512(&keys, k, ld, n, hd, dst);
        return;
    }
#endif
    pack_b(format, P->nr, k, ld, 1, n, hd, kd, dst);
}

int vtp_attention(int path, const float *q, const float *k, const float *v, long ld, int n, int hd,
                  float scale, int causal, float *out, long ldo) {
    const path_info *P = &PATHS[path];
    const int KEY_TILE = key_tile(n);
    char *base = scratch(&scratch_attention, vtp_attention_scratch_bytes(path, n, hd));
    if (!base) return -1;
    attention_layout L = attention_regions(path, n, hd, base);
    int npad = round_up(n, KEY_TILE), hdp = round_up(hd, P->nr), mr = P->mr, nr = P->nr;
    int format = attention_b_format(P), kd = a_depth(P, hd);
    size_t kstride = b_bytes(format, nr, nr, kd), vstride = b_bytes(format, nr, nr, npad);
    size_t kreal = (size_t)ceil_div(n, nr), kpanels = (size_t)npad / nr;
#ifdef VTP_X86
    if (P->isa == VTP_ISA_AMX) amx_configure();
#endif
    pack_keys(P, format, k, ld, n, hd, kd, L.kpack);
    memset((char *)L.kpack + kreal * kstride, 0, (kpanels - kreal) * kstride);
    pack_b(format, nr, v, ld, 0, hd, n, npad, L.vpack);
    size_t qpanel = a_panel_bytes(P, hd);
    size_t key_offset = format == B_PAIRS ? (size_t)(KEY_TILE / 2) * nr * 4 : (size_t)KEY_TILE * nr * 4;
    int qblock = query_block(P), row_edges = has_row_tiles(path);
    for (int q0 = 0; q0 < n; q0 += qblock) {
        int qb = n - q0 < qblock ? n - q0 : qblock;
        int tiles = ceil_div(qb, mr), rows = tiles * mr;
        // Where a path has tiles for fewer rows, the last tile computes only the block's queries;
        // its other rows (probabilities of stale scores) are never stored.
        int last_rows = row_edges ? qb - (tiles - 1) * mr : mr;
        pack_a(P, q + (long)q0 * ld, ld, qb, hd, L.qpack);
        for (int i = 0; i < rows; i++) { L.rowmax[i] = -INFINITY; L.rowsum[i] = 0.0f; }
        memset(L.acc, 0, (size_t)rows * hdp * 4);
        int visible = causal ? (q0 + qb < n ? q0 + qb : n) : n;
        int key_tiles = ceil_div(visible, KEY_TILE);
        for (int t = 0; t < key_tiles; t++) {
            // The last tile computes only the panels and depths that hold keys (n = 257 leaves one
            // key in it); the softmax masks the rest, so the skipped terms were zeros.
            int keys = visible - t * KEY_TILE < KEY_TILE ? visible - t * KEY_TILE : KEY_TILE;
            int depth = a_depth(P, round_up(keys, 2));  // at most KEY_TILE: every k_align divides it
            for (int r = 0; r < tiles; r++)
                attention_row(path, format, kd, (const char *)L.qpack + (size_t)r * qpanel,
                              (const char *)L.kpack + (size_t)t * (KEY_TILE / nr) * kstride, kstride, ceil_div(keys, nr),
                              L.scores + (size_t)r * mr * KEY_TILE, KEY_TILE, 1, r + 1 < tiles ? mr : last_rows);
            softmax_tile(path, L.scores, KEY_TILE, depth, rows, q0, t * KEY_TILE, n, causal, scale, L.rowmax, L.rowsum,
                         L.acc, hdp);
#ifdef VTP_X86
            if (path == VTP_PATH_AVX512BF16) pack_probabilities_dpbf16(L.scores, KEY_TILE, rows, depth, L.ppack);
            else
#endif
                pack_a(P, L.scores, KEY_TILE, rows, depth, L.ppack);
            for (int r = 0; r < tiles; r++)
                attention_row(path, format, depth, (const char *)L.ppack + (size_t)r * a_panel_bytes(P, depth),
                              (const char *)L.vpack + (size_t)t * key_offset, vstride, hdp / nr,
                              L.acc + (size_t)r * mr * hdp, hdp, 0, r + 1 < tiles ? mr : last_rows);
        }
        for (int i = 0; i < qb; i++) {
            float inv = 1.0f / L.rowsum[i];
            const float *o = L.acc + (size_t)i * hdp;
            float *dst = out + (long)(q0 + i) * ldo;
            for (int d = 0; d < hd; d++) dst[d] = o[d] * inv;
        }
    }
    return 0;
}
