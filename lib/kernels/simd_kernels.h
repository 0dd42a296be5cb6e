/* The SIMD kernel table, written once against vec.h and compiled once per instruction set: avx2.c
 * and avx512.c each name the ISA and the table, then include this file, and CMake compiles each with
 * its own -m flags. Not a header of declarations: include it only from those two files.
 *
 * Every loop runs a vector at a time and ends with a partial vector through vf_load_n / vf_store_n,
 * so it has one body. The transcendentals are vectorised (vec_math.h), not libm calls, and long sums
 * accumulate in double lanes as the reference does, so the result does not depend on the width.
 * GEMM goes to OpenBLAS, or to the register-blocked kernels below where they measured faster. */
#ifdef KDI_SIMD_KERNELS_H
#error "simd_kernels.h defines a kernel table: include it once, from avx2.c or avx512.c"
#endif
#define KDI_SIMD_KERNELS_H

#if !defined(KDI_SIMD_TABLE) || !defined(KDI_SIMD_NAME)
#error "define KDI_SIMD_TABLE and KDI_SIMD_NAME before including simd_kernels.h"
#endif

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/vec.h"
#include "kernels/vec_math.h"

#define W VEC_W

/* gemm's choice of gemm_small over cblas_sgemm (see gemm_is_small). */
#define KDI_GEMM_SMALL_ROWS 2
/* A layer's weights (B transposed) against a few rows, with AVX2: the dot form up to this many
 * rows, the packed kernel up to KDI_GEMM_FEW_ROWS (see gemm_route). */
#if VEC_W == 8
#define KDI_GEMM_DOT_ROWS 6
#else
#define KDI_GEMM_DOT_ROWS KDI_GEMM_SMALL_ROWS
#endif
#define KDI_GEMM_FEW_ROWS 16
#define KDI_GEMM_SMALL_MNK 2097152.0

/* ---------------------------------------------------------------- GEMM */

/* cblas_sgemm takes int sizes and reports bad arguments by printing (xerbla); what it would not
 * take, and the empty sum k == 0, goes to the reference loop, which never prints. */
static int cblas_takes(int ta, int tb, int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb,
                       int64_t ldc)
{
    int64_t need_a = ta ? m : k, need_b = tb ? k : n;
    return k > 0 && m <= INT_MAX && n <= INT_MAX && k <= INT_MAX && lda <= INT_MAX &&
           ldb <= INT_MAX && ldc <= INT_MAX && lda >= need_a && ldb >= need_b && ldc >= n;
}

/* ---------------------------------------------------------------- small GEMM

 * Register-blocked GEMM for the shapes where a cblas_sgemm call costs more than its arithmetic
 * (batch-1 inference, small layers): no packing, no threads, C's tile held in registers. Two tile
 * forms, each an always-inlined body specialised by the switch below for every tile size:
 *   dot (B transposed, A not): C[i, j] = A's row i . B's row j, MR x NR dot products along k, W
 *       lanes at a time, summed across lanes at the end (the dense layer's forward, a GEMV at m 1);
 *   axpy (B not transposed): C's rows i..i+MR, NV vectors of columns, += A[i, p] B[p, :] for each
 *       p (dense backward, conv's im2col product; A transposed or not, read through its strides).
 * Every tile fits the register file (AXPY_MR below). Sums are in float, W partial sums a
 * dot, so results differ from the reference's double sums by rounding only (tests: 1e-5 of
 * sum |a b|). */
#ifdef KDI_SANITIZE /* forced inlining of every tile shape made clang take tens of minutes */
#define GEMM_ALWAYS_INLINE inline
#else
#define GEMM_ALWAYS_INLINE inline __attribute__((always_inline))
#endif

static float gemm_put(float alpha, float s, float beta, const float *c)
{
    return alpha * s + (beta == 0.0f ? 0.0f : beta * *c);
}

static GEMM_ALWAYS_INLINE void dot_tile(int mr, int nr, int64_t k, const float *a, int64_t lda,
                                        const float *b, int64_t ldb, float alpha, float beta,
                                        float *c, int64_t ldc)
{
    vf acc[2][8];
#pragma GCC unroll 8
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 8
        for (int j = 0; j < nr; j++) acc[i][j] = vf_zero();
    int64_t p = 0;
    /* full vectors, then one masked step (the same body, its loads cut at k) */
#define DOT_STEP(LOAD)                                                                             \
    do {                                                                                           \
        vf av[2];                                                                                  \
        _Pragma("GCC unroll 8") for (int i = 0; i < mr; i++) av[i] = LOAD(a + i * lda + p);        \
        _Pragma("GCC unroll 8") for (int j = 0; j < nr; j++)                                       \
        {                                                                                          \
            vf bv = LOAD(b + j * ldb + p);                                                         \
            _Pragma("GCC unroll 8") for (int i = 0; i < mr; i++) acc[i][j] =                       \
                vf_fmadd(av[i], bv, acc[i][j]);                                                    \
        }                                                                                          \
    } while (0)
#define DOT_LOAD_TAIL(q) vf_load_n((q), k - p)
    for (; p + W <= k; p += W) DOT_STEP(vf_load);
    if (p < k) DOT_STEP(DOT_LOAD_TAIL);
#undef DOT_LOAD_TAIL
#undef DOT_STEP
#pragma GCC unroll 8
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 8
        for (int j = 0; j < nr; j++)
            c[i * ldc + j] = gemm_put(alpha, vf_hsum(acc[i][j]), beta, c + i * ldc + j);
}

/* C = alpha A B^T + beta C, A [m, k], B [n, k]: tiles of 1 x 8 (a GEMV streams 8 rows of B past
 * one row of A) or 2 x 4, and their edges. */
static void gemm_dot(int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                     const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    for (int64_t i = 0; i < m;) {
        int mr = m - i >= 2 ? 2 : 1, full = mr == 1 ? 8 : 4;
        const float *ai = a + i * lda;
        float *ci = c + i * ldc;
        for (int64_t j = 0; j < n;) {
            int nr = n - j >= full ? full : (int)(n - j);
            const float *bj = b + j * ldb;
#define DOT_CASE(MR, NR)                                                                           \
    case (MR)*16 + (NR): dot_tile(MR, NR, k, ai, lda, bj, ldb, alpha, beta, ci + j, ldc); break;
            /* clang-format off */
            switch (mr * 16 + nr) {
            DOT_CASE(1, 1) DOT_CASE(1, 2) DOT_CASE(1, 3) DOT_CASE(1, 4)
            DOT_CASE(1, 5) DOT_CASE(1, 6) DOT_CASE(1, 7) DOT_CASE(1, 8)
            DOT_CASE(2, 1) DOT_CASE(2, 2) DOT_CASE(2, 3) DOT_CASE(2, 4)
            default: break;
            }
            /* clang-format on */
#undef DOT_CASE
            j += nr;
        }
        i += mr;
    }
}

/* Rows of an axpy tile: MR x 2 accumulators, 2 vectors of B and a broadcast fit the register file
 * (16 vectors in AVX2, 32 in AVX-512). */
#if VEC_W == 16
#define AXPY_MR 8
#else
#define AXPY_MR 6
#endif

/* A[i, p] at a[i * ars + p * acs]: (lda, 1) untransposed, (1, lda) transposed. B's row p at
 * b + p * ldb, or at b + boff[p] when boff is not NULL (gemm_rows_b). */
static GEMM_ALWAYS_INLINE void axpy_tile(int mr, int nv, int64_t cols, int64_t k, const float *a,
                                         int64_t ars, int64_t acs, const float *b, int64_t ldb,
                                         const int64_t *boff, float alpha, float beta, float *c,
                                         int64_t ldc)
{
    vf acc[AXPY_MR][2];
#pragma GCC unroll 8
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 2
        for (int v = 0; v < nv; v++) acc[i][v] = vf_zero();
    for (int64_t p = 0; p < k; p++) {
        vf bv[2];
        const float *bp = boff != NULL ? b + boff[p] : b + p * ldb;
#pragma GCC unroll 2
        for (int v = 0; v < nv; v++) bv[v] = vf_load_n(bp + v * W, cols - v * W);
#pragma GCC unroll 8
        for (int i = 0; i < mr; i++) {
            vf ai = vf_set1(a[i * ars + p * acs]);
#pragma GCC unroll 2
            for (int v = 0; v < nv; v++) acc[i][v] = vf_fmadd(ai, bv[v], acc[i][v]);
        }
    }
    vf va = vf_set1(alpha), vb = vf_set1(beta);
#pragma GCC unroll 8
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 2
        for (int v = 0; v < nv; v++) {
            float *cp = c + i * ldc + v * W;
            int64_t left = cols - v * W;
            vf out = vf_mul(va, acc[i][v]);
            if (beta != 0.0f) out = vf_fmadd(vb, vf_load_n(cp, left), out);
            vf_store_n(cp, left, out);
        }
}

/* C = alpha op(A) B + beta C: tiles of AXPY_MR rows x 2 vectors and their edges, a strip of
 * 2 W columns at a time, so that the strip of B (k x 2 W) stays in L1 across every row of C. */
static GEMM_ALWAYS_INLINE void axpy_impl(int ta, int64_t m, int64_t n, int64_t k, float alpha,
                                         const float *a, int64_t lda, const float *b, int64_t ldb,
                                         const int64_t *boff, float beta, float *c, int64_t ldc)
{
    int64_t ars = ta ? 1 : lda, acs = ta ? lda : 1;
    for (int64_t j = 0; j < n;) {
        int64_t cols = n - j < 2 * W ? n - j : 2 * W;
        int nv = cols > W ? 2 : 1;
        for (int64_t i = 0; i < m;) {
            int mr = m - i >= AXPY_MR ? AXPY_MR : (int)(m - i);
            const float *ai = a + i * ars;
            float *ci = c + i * ldc;
#define AXPY_CASE(MR, NV)                                                                          \
    case (MR)*16 + (NV):                                                                           \
        axpy_tile(MR, NV, cols, k, ai, ars, acs, b + j, ldb, boff, alpha, beta, ci + j, ldc);      \
        break;
#define AXPY_ROWS(MR) AXPY_CASE(MR, 1) AXPY_CASE(MR, 2)
            /* clang-format off */
            switch (mr * 16 + nv) {
            AXPY_ROWS(1) AXPY_ROWS(2) AXPY_ROWS(3) AXPY_ROWS(4) AXPY_ROWS(5) AXPY_ROWS(6)
#if AXPY_MR > 6
            AXPY_ROWS(7) AXPY_ROWS(8)
#endif
            default: break;
            }
            /* clang-format on */
#undef AXPY_ROWS
#undef AXPY_CASE
            i += mr;
        }
        j += cols;
    }
}

static void gemm_axpy(int ta, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                      int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    axpy_impl(ta, m, n, k, alpha, a, lda, b, ldb, NULL, beta, c, ldc);
}

static void gemm_axpy_rows(int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                           int64_t lda, const float *b, const int64_t *boff, float beta, float *c,
                           int64_t ldc)
{
    axpy_impl(0, m, n, k, alpha, a, lda, b, 0, boff, beta, c, ldc);
}

/* Every form; both operands transposed (no caller) and the empty sum go to the reference. */
static void gemm_small(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                       int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    if (m <= 0 || n <= 0) return;
    if (k <= 0 || (ta && tb)) {
        kdi_kernels_ref.gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    if (tb)
        gemm_dot(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    else
        gemm_axpy(ta, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/* ---------------------------------------------------------------- packed GEMM

 * The products too big for gemm_small (a transformer's projections and MLP over batch * T rows),
 * where OpenBLAS's Haswell core, the one it picks on AMD Zen, runs at AVX2 speed: B is copied a
 * block of PACK_KC rows by a strip of 2 W columns at a time into a contiguous block on the stack
 * (zero past n; B transposed or not, so both forms read it as whole vectors from L1), and every
 * tile of PACK_MR rows of C runs over that block with A read in place through its strides (one
 * broadcast a row and step). C's tile stays in registers for a block and is added into C, beta
 * applied by the first block. Sums in float, PACK_KC terms a block. */
#define PACK_KC 128
#if VEC_W == 16
#define PACK_MR 12
#else
#define PACK_MR 6
#endif

static GEMM_ALWAYS_INLINE void packed_tile(int mr, int nv, int64_t cols, int64_t kc, const float *a,
                                           int64_t ars, int64_t acs, const float *bp, float alpha,
                                           float beta, float *c, int64_t ldc)
{
    vf acc[PACK_MR][2];
    /* C's tile is read after the k loop, too late for the out-of-order window: fetched now, its
     * lines arrive under the tile's kc steps (a weight gradient, k = the batch, had stalled on
     * every tile of C) */
    if (beta != 0.0f)
        for (int i = 0; i < mr; i++) {
            __builtin_prefetch(c + i * ldc, 1, 3);
            __builtin_prefetch(c + i * ldc + cols - 1, 1, 3);
            if (cols > W) __builtin_prefetch(c + i * ldc + W, 1, 3);
        }
#pragma GCC unroll 16
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 2
        for (int v = 0; v < nv; v++) acc[i][v] = vf_zero();
    for (int64_t p = 0; p < kc; p++) {
        vf bv[2];
#pragma GCC unroll 2
        for (int v = 0; v < nv; v++) bv[v] = vf_load(bp + p * 2 * W + v * W);
#pragma GCC unroll 16
        for (int i = 0; i < mr; i++) {
            vf ai = vf_set1(a[i * ars + p * acs]);
#pragma GCC unroll 2
            for (int v = 0; v < nv; v++) acc[i][v] = vf_fmadd(ai, bv[v], acc[i][v]);
        }
    }
    vf va = vf_set1(alpha), vb = vf_set1(beta);
#pragma GCC unroll 16
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 2
        for (int v = 0; v < nv; v++) {
            float *cp = c + i * ldc + v * W;
            int64_t left = cols - v * W;
            vf out = vf_mul(va, acc[i][v]);
            if (beta != 0.0f) out = vf_fmadd(vb, vf_load_n(cp, left), out);
            vf_store_n(cp, left, out);
        }
}

/* bp[p, jj] = op(B)[p0 + p, j + jj] for p < kc, jj < 2 W (0 past cols). */
static void pack_strip(int tb, const float *b, int64_t ldb, const int64_t *boff, int64_t p0,
                       int64_t kc, int64_t j, int64_t cols, float *bp)
{
    if (!tb) {
        for (int64_t p = 0; p < kc; p++) {
            const float *src = (boff != NULL ? b + boff[p0 + p] : b + (p0 + p) * ldb) + j;
            float *dst = bp + p * 2 * W;
            vf_store_n(dst, W, vf_load_n(src, cols));
            vf_store_n(dst + W, W, cols > W ? vf_load_n(src + W, cols - W) : vf_zero());
        }
        return;
    }
    /* B transposed: W x W blocks (W of B's rows, W values along k) transposed in registers; an
     * element at a time, this packing was a fifth of the MLP's GEMM time (the dense forward packs
     * every weight each step, whatever the batch) */
    for (int64_t jj0 = 0; jj0 < 2 * W; jj0 += W)
        for (int64_t p = 0; p < kc; p += W) {
            vf r[W];
#pragma GCC unroll 16
            for (int q = 0; q < W; q++)
                r[q] = jj0 + q < cols ? vf_load_n(b + (j + jj0 + q) * ldb + p0 + p, kc - p)
                                      : vf_zero();
            vf_transpose(r);
            int64_t np = kc - p < W ? kc - p : W;
            for (int64_t q = 0; q < np; q++) vf_store_n(bp + (p + q) * 2 * W + jj0, W, r[q]);
        }
}

/* B's row p at b + boff[p] when boff is not NULL (tb 0, k > 0: gemm_rows_b). Not forced inline
 * into its callers: that made gemm_packed's dense-layer GEMMs 5-13% slower (bench of 784 x 800
 * to 1200 x 1200 at batch 128, one thread). */
static void packed_impl(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
                        const float *a, int64_t lda, const float *b, int64_t ldb,
                        const int64_t *boff, float beta, float *c, int64_t ldc)
{
    float bp[PACK_KC * 2 * W] __attribute__((aligned(64)));
    int64_t ars = ta ? 1 : lda, acs = ta ? lda : 1;
    for (int64_t p0 = 0; p0 < k; p0 += PACK_KC) {
        int64_t kc = k - p0 < PACK_KC ? k - p0 : PACK_KC;
        float bt = p0 == 0 ? beta : 1.0f;
        const float *ap = a + p0 * acs;
        for (int64_t j = 0; j < n; j += 2 * W) {
            int64_t cols = n - j < 2 * W ? n - j : 2 * W;
            int nv = cols > W ? 2 : 1;
            pack_strip(tb, b, ldb, boff, p0, kc, j, cols, bp);
            for (int64_t i = 0; i < m;) {
                int mr = m - i >= PACK_MR ? PACK_MR : (int)(m - i);
                const float *ai = ap + i * ars;
                float *ci = c + i * ldc + j;
#define PACK_CASE(MR, NV)                                                                          \
    case (MR)*16 + (NV):                                                                           \
        packed_tile(MR, NV, cols, kc, ai, ars, acs, bp, alpha, bt, ci, ldc);                       \
        break;
#define PACK_ROWS(MR) PACK_CASE(MR, 1) PACK_CASE(MR, 2)
                /* clang-format off */
                switch (mr * 16 + nv) {
                PACK_ROWS(1) PACK_ROWS(2) PACK_ROWS(3) PACK_ROWS(4) PACK_ROWS(5) PACK_ROWS(6)
#if PACK_MR > 6
                PACK_ROWS(7) PACK_ROWS(8) PACK_ROWS(9) PACK_ROWS(10) PACK_ROWS(11) PACK_ROWS(12)
#endif
                default: break;
                }
                /* clang-format on */
#undef PACK_ROWS
#undef PACK_CASE
                i += mr;
            }
        }
    }
}

static void gemm_packed(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
                        const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                        float *c, int64_t ldc)
{
    if (m <= 0 || n <= 0) return;
    if (k <= 0 || (ta && tb)) {
        kdi_kernels_ref.gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    packed_impl(ta, tb, m, n, k, alpha, a, lda, b, ldb, NULL, beta, c, ldc);
}

/* Whether gemm_small beats cblas_sgemm on this shape, measured by bench/bench_gemm_small.c on
 * Zen 5 under OpenBLAS's Haswell and Cooperlake (AVX-512) cores, one thread. The axpy form is 2x
 * the Haswell core and on par with the AVX-512 one up to about 2^21 multiply-adds (conv layers of
 * bench_conv at batch 1, dense layers' backward at small batches) unless k is short and C large
 * (an outer product, bound by C's traffic, where OpenBLAS is ahead); the dot form only wins as a
 * GEMV (1 or 2 rows of C: 12x the Haswell core, on par with AVX-512's), as it rereads B for
 * every pair of rows, and with AVX2 up to KDI_GEMM_DOT_ROWS (OpenBLAS's B-transposed path packs
 * all of B for a few rows). */
static int gemm_is_small(int ta, int tb, int64_t m, int64_t n, int64_t k)
{
    if (ta && tb) return 0;
    if (tb) return m <= KDI_GEMM_DOT_ROWS;
    double mn = (double)m * (double)n;
    return mn * (double)k <= KDI_GEMM_SMALL_MNK && (k >= 16 || mn <= 16384.0);
}

/* gemm's choice of kernel for a product (see kernels.h). */
static int gemm_route(int ta, int tb, int64_t m, int64_t n, int64_t k)
{
    if (m <= 0 || n <= 0 || k <= 0) return KDI_GEMM_BY_GEMM;
    if (gemm_is_small(ta, tb, m, n, k)) {
#if VEC_W == 8
        /* AVX2, measured on a Zen 3 (no AVX-512; bench/RESULTS.md, fourth session of 2026-11-30):
         * in the upper half of the small band (2^20 to 2^21 multiply-adds: the ResNet's 3x3 and
         * strided convolutions, one image a GEMM) the packed kernel took 0.6-1.0x the axpy form's
         * time, and 0.8-1.1x OpenBLAS's Zen core; below it they tie, and GEMVs (m <= 2) stay on
         * the dot form. */
        if (m > KDI_GEMM_SMALL_ROWS && (double)m * (double)n * (double)k > KDI_GEMM_SMALL_MNK / 2)
            return KDI_GEMM_BY_PACKED;
#endif
        return KDI_GEMM_BY_SMALL;
    }
#if VEC_W == 16
    /* AVX-512: the packed kernel is 2x OpenBLAS's Haswell core (its choice on AMD Zen) and on par
     * with its AVX-512 cores on every shape bench_gemm_small times; with AVX2 it only ties. */
    if (!(ta && tb)) return KDI_GEMM_BY_PACKED;
#else
    /* AVX2, a dense layer's forward at batch 3 to 16 (Zen 3, 784-256-10 student, one thread):
     * OpenBLAS took 78-165 us a prediction (it packs all of B for a few rows), against 17-20 us at
     * batch 2 on the dot form; the dot form (to 6 rows) 31-81 us, the packed kernel 67-106 us */
    if (!ta && tb && m <= KDI_GEMM_FEW_ROWS) return KDI_GEMM_BY_PACKED;
#endif
    return KDI_GEMM_BY_GEMM;
}

static void gemm(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                 int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    if (m <= 0 || n <= 0) return;
    switch (gemm_route(ta, tb, m, n, k)) {
    case KDI_GEMM_BY_SMALL:
        gemm_small(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    case KDI_GEMM_BY_PACKED:
        gemm_packed(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    default: break;
    }
    if (!cblas_takes(ta, tb, m, n, k, lda, ldb, ldc)) {
        kdi_kernels_ref.gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                (int)m, (int)n, (int)k, alpha, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

/* gemm's product with B's rows given by offsets (see kernels.h): its small shapes by the axpy
 * tiles, the others by the packed kernel (with AVX2 too: OpenBLAS cannot read such rows). */
static int gemm_rows_b_route(int64_t m, int64_t n, int64_t k)
{
    return gemm_is_small(0, 0, m, n, k) ? KDI_GEMM_BY_SMALL : KDI_GEMM_BY_PACKED;
}

static void gemm_rows_b(int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                        const float *b, const int64_t *b_rows, float beta, float *c, int64_t ldc)
{
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
        kdi_kernels_ref.gemm_rows_b(m, n, k, alpha, a, lda, b, b_rows, beta, c, ldc);
        return;
    }
    if (gemm_rows_b_route(m, n, k) == KDI_GEMM_BY_SMALL)
        gemm_axpy_rows(m, n, k, alpha, a, lda, b, b_rows, beta, c, ldc);
    else
        packed_impl(0, 0, m, n, k, alpha, a, lda, b, 0, b_rows, beta, c, ldc);
}

/* ---------------------------------------------------------------- sums in double */

/* acc[0..1] += v, the W values widened to double. */
static inline void acc_add(vd *acc, vf v)
{
    acc[0] = vd_add(acc[0], vd_lo(v));
    acc[1] = vd_add(acc[1], vd_hi(v));
}

/* acc[0..1] += a b, the W products in double, where they are exact. */
static inline void acc_fma(vd *acc, vf a, vf b)
{
    acc[0] = vd_fmadd(vd_lo(a), vd_lo(b), acc[0]);
    acc[1] = vd_fmadd(vd_hi(a), vd_hi(b), acc[1]);
}

/* ---------------------------------------------------------------- bias */

/* A row's last vector: whole when `whole` (the lanes past the row fall in the next row of src, y
 * and r, which the next row writes again), else masked. AVX2 has no cheap masked store (Zen 3:
 * VMASKMOVPS to memory is microcoded), and short rows (14, 28 values) are mostly tail. */
static inline void plane_out_tail(float *y, float *r, const float *src, int64_t left, vf vb,
                                  int whole)
{
    vf v = vf_add(whole ? vf_load(src) : vf_load_n(src, left), vb);
    if (whole) {
        if (y != NULL) vf_store(y, v);
        if (r != NULL) vf_store(r, vf_max(v, vf_zero()));
    } else {
        if (y != NULL) vf_store_n(y, left, v);
        if (r != NULL) vf_store_n(r, left, vf_max(v, vf_zero())); /* as relu_fwd */
    }
}

static void plane_out(float *y, float *r, const float *src, int64_t rows, int64_t cols, int64_t ld,
                      float b)
{
    vf vb = vf_set1(b);
    int64_t body = cols - cols % W;
    for (int64_t i = 0; i < rows; i++, src += ld) {
        for (int64_t j = 0; j < body; j += W) {
            vf v = vf_add(vf_load(src + j), vb);
            if (y != NULL) vf_store(y + j, v);
            if (r != NULL) vf_store(r + j, vf_max(v, vf_zero())); /* as relu_fwd */
        }
        /* whole: a next row, at least W values on (ld >= cols) */
        if (body < cols)
            plane_out_tail(y != NULL ? y + body : NULL, r != NULL ? r + body : NULL, src + body,
                           cols - body, vb, i + 1 < rows && (rows - i - 1) * cols >= W);
        if (y != NULL) y += cols;
        if (r != NULL) r += cols;
    }
}

static void plane_in(float *y, const float *x, int64_t rows, int64_t cols, int64_t ld)
{
    for (int64_t i = 0; i < rows; i++, y += ld, x += cols) {
        for (int64_t j = 0; j < cols; j += W)
            vf_store_n(y + j, cols - j, vf_load_n(x + j, cols - j));
        for (int64_t j = cols; i + 1 < rows && j < ld; j += W) vf_store_n(y + j, ld - j, vf_zero());
    }
}

static void bias_add(float *y, const float *bias, int64_t rows, int64_t cols)
{
    for (int64_t r = 0; r < rows; r++) {
        float *yr = y + r * cols;
        for (int64_t j = 0; j < cols; j += W)
            vf_store_n(yr + j, cols - j,
                       vf_add(vf_load_n(yr + j, cols - j), vf_load_n(bias + j, cols - j)));
    }
}

/* Each column summed over the rows in order, in double: the reference's sum, bit for bit. */
static void bias_grad(float *gbias, const float *dy, int64_t rows, int64_t cols)
{
    for (int64_t j = 0; j < cols; j += W) {
        vd acc[2] = {vd_zero(), vd_zero()};
        for (int64_t r = 0; r < rows; r++) acc_add(acc, vf_load_n(dy + r * cols + j, cols - j));
        vf sum = vf_from_vd(acc[0], acc[1]);
        vf_store_n(gbias + j, cols - j, vf_add(vf_load_n(gbias + j, cols - j), sum));
    }
}

/* ---------------------------------------------------------------- activations */

/* ---------------------------------------------------------------- 2x2 max pooling

 * W outputs a step: each row's 2 W inputs split into even and odd columns, then the reference's
 * comparisons lane by lane; the indices are floats from base + 2 ox + {0, 2, 4, ...}. */
static const float pool_twice_lane[16] = {0,  2,  4,  6,  8,  10, 12, 14,
                                          16, 18, 20, 22, 24, 26, 28, 30};

/* The 2 W values from p, of which `left` (<= 0: none) exist, as two vectors. */
static inline void pool_load2(const float *p, int64_t left, vf *a, vf *b)
{
    *a = vf_load_n(p, left);
    *b = left > W ? vf_load_n(p + W, left - W) : vf_zero();
}

static inline void pool_store2(float *p, int64_t left, vf a, vf b)
{
    vf_store_n(p, left, a);
    if (left > W) vf_store_n(p + W, left - W, b);
}

static void max_pool2_fwd(float *y, float *argmax, const float *x, int64_t oh, int64_t ow,
                          int64_t w)
{
    vf twice = vf_load(pool_twice_lane), one = vf_set1(1.0f), wv = vf_set1((float)w);
    for (int64_t oy = 0; oy < oh; oy++, y += ow, argmax += ow) {
        int64_t base = 2 * oy * w; /* rows 2 oy and 2 oy + 1 */
        const float *r0 = x + base, *r1 = r0 + w;
        /* A row's last vector whole (as plane_out's): its loads stay in rows 2 oy + 2 and 2 oy + 3
         * (w >= W), its stores in the output rows after it, which write those lanes again. */
        int whole = oy + 1 < oh && w >= W && (oh - oy - 1) * ow >= W;
        for (int64_t ox = 0; ox < ow; ox += W) {
            int64_t left = ow - ox, in = 2 * left;
            if (whole && left < W) left = W, in = 2 * W;
            vf a0, a1, b0, b1, lo, hi;
            pool_load2(r0 + 2 * ox, in, &lo, &hi);
            vf_deinterleave(lo, hi, &a0, &a1);
            pool_load2(r1 + 2 * ox, in, &lo, &hi);
            vf_deinterleave(lo, hi, &b0, &b1);
            vf at = vf_add(vf_set1((float)(base + 2 * ox)), twice), best = at, acc = a0;
            vmask m = vf_gt(a1, acc);
            acc = vf_select(m, a1, acc);
            best = vf_select(m, vf_add(at, one), best);
            m = vf_gt(b0, acc);
            acc = vf_select(m, b0, acc);
            best = vf_select(m, vf_add(at, wv), best);
            m = vf_gt(b1, acc);
            acc = vf_select(m, b1, acc);
            best = vf_select(m, vf_add(vf_add(at, wv), one), best);
            vf_store_n(y + ox, left, acc);
            vf_store_n(argmax + ox, left, best);
        }
    }
}

static void max_pool2_bwd(float *dx, const float *dy, const float *keep, const float *argmax,
                          int64_t oh, int64_t ow, int64_t w)
{
    vf twice = vf_load(pool_twice_lane), one = vf_set1(1.0f), wv = vf_set1((float)w);
    for (int64_t oy = 0; oy < oh; oy++, dy += ow, argmax += ow, keep = keep ? keep + ow : NULL) {
        int64_t base = 2 * oy * w; /* rows 2 oy and 2 oy + 1 */
        float *d0 = dx + base, *d1 = d0 + w;
        for (int64_t ox = 0; ox < ow; ox += W) {
            int64_t left = ow - ox, out = 2 * left;
            vf g = vf_load_n(dy + ox, left), best = vf_load_n(argmax + ox, left);
            if (keep != NULL) g = vf_keep(vf_gt(vf_load_n(keep + ox, left), vf_zero()), g);
            vf at = vf_add(vf_set1((float)(base + 2 * ox)), twice), atw = vf_add(at, wv), lo, hi;
            vf_interleave(vf_keep(vf_eq(best, at), g), vf_keep(vf_eq(best, vf_add(at, one)), g),
                          &lo, &hi);
            pool_store2(d0 + 2 * ox, out, lo, hi);
            vf_interleave(vf_keep(vf_eq(best, atw), g), vf_keep(vf_eq(best, vf_add(atw, one)), g),
                          &lo, &hi);
            pool_store2(d1 + 2 * ox, out, lo, hi);
        }
    }
}

static void relu_fwd(float *y, const float *x, int64_t n)
{
    /* max returns its second operand for NaN and for -0: 0, as the reference's x > 0 ? x : 0 */
    for (int64_t i = 0; i < n; i += W)
        vf_store_n(y + i, n - i, vf_max(vf_load_n(x + i, n - i), vf_zero()));
}

static void relu_bwd(float *dx, const float *x, const float *dy, int64_t n)
{
    for (int64_t i = 0; i < n; i += W) {
        vmask pos = vf_gt(vf_load_n(x + i, n - i), vf_zero());
        vf_store_n(dx + i, n - i, vf_keep(pos, vf_load_n(dy + i, n - i)));
    }
}

static void leaky_relu_fwd(float *y, const float *x, int64_t n, float slope)
{
    for (int64_t i = 0; i < n; i += W) {
        vf v = vf_load_n(x + i, n - i);
        vf_store_n(y + i, n - i, vf_select(vf_gt(v, vf_zero()), v, vf_mul(v, vf_set1(slope))));
    }
}

static void leaky_relu_bwd(float *dx, const float *x, const float *dy, int64_t n, float slope)
{
    for (int64_t i = 0; i < n; i += W) {
        vf g = vf_load_n(dy + i, n - i);
        vmask pos = vf_gt(vf_load_n(x + i, n - i), vf_zero());
        vf_store_n(dx + i, n - i, vf_select(pos, g, vf_mul(g, vf_set1(slope))));
    }
}

/* GELU(x) = x Phi(x) (Hendrycks and Gimpel 2016), exact erf form as the reference. */
static void gelu_fwd(float *y, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i += W) {
        vf v = vf_load_n(x + i, n - i);
        vf_store_n(y + i, n - i, vf_mul(v, v_norm_cdf(v)));
    }
}

/* d/dx x Phi(x) = Phi(x) + x exp(-x^2 / 2) / sqrt(2 pi). */
static void gelu_bwd(float *dx, const float *x, const float *dy, int64_t n)
{
    for (int64_t i = 0; i < n; i += W) {
        vf v = vf_load_n(x + i, n - i);
        vf pdf = vf_mul(vf_set1(0.3989422804014327f), v_exp(vf_mul(vf_set1(-0.5f), vf_mul(v, v))));
        vf d = vf_fmadd(v, pdf, v_norm_cdf(v));
        vf_store_n(dx + i, n - i, vf_mul(vf_load_n(dy + i, n - i), d));
    }
}

static void tanh_fwd(float *y, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i += W) vf_store_n(y + i, n - i, v_tanh(vf_load_n(x + i, n - i)));
}

static void tanh_bwd(float *dx, const float *y, const float *dy, int64_t n)
{
    for (int64_t i = 0; i < n; i += W) {
        vf v = vf_load_n(y + i, n - i);
        vf d = vf_fnmadd(v, v, vf_set1(1.0f));
        vf_store_n(dx + i, n - i, vf_mul(vf_load_n(dy + i, n - i), d));
    }
}

static void sigmoid_fwd(float *y, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i += W) {
        vf e = v_exp(vf_neg(vf_load_n(x + i, n - i)));
        vf_store_n(y + i, n - i, vf_div(vf_set1(1.0f), vf_add(vf_set1(1.0f), e)));
    }
}

static void sigmoid_bwd(float *dx, const float *y, const float *dy, int64_t n)
{
    for (int64_t i = 0; i < n; i += W) {
        vf v = vf_load_n(y + i, n - i);
        vf d = vf_mul(v, vf_sub(vf_set1(1.0f), v));
        vf_store_n(dx + i, n - i, vf_mul(vf_load_n(dy + i, n - i), d));
    }
}

/* ---------------------------------------------------------------- softmax rows */

/* The row's largest logit into *mx and its least other than -inf (a masked logit) into *mn, +inf
 * when there is none, as ref.c's row_max and row_min, in one pass. */
static void row_range(const float *z, int64_t cols, float *mx, float *mn)
{
    vf ninf = vf_set1(-INFINITY), pinf = vf_set1(INFINITY), hi = ninf, lo = pinf;
    for (int64_t j = 0; j < cols; j += W) {
        vf v = vf_load_n_or(z + j, cols - j, ninf); /* past the row: -inf, which wins neither */
        hi = vf_max(hi, v);
        lo = vf_min(lo, vf_select(vf_gt(v, ninf), v, pinf));
    }
    *mx = vf_hmax(hi);
    *mn = -vf_hmax(vf_neg(lo));
}

/* The sum in double of exp((z_j - m) inv_t) over a row; each exponential is also stored to p
 * unless p is NULL. */
static inline double exp_sum(float *p, const float *z, int64_t cols, vf m, vf inv_t)
{
    vd acc[2] = {vd_zero(), vd_zero()};
    for (int64_t j = 0; j < cols; j += W) {
        vf e = v_exp(vf_mul(vf_sub(vf_load_n(z + j, cols - j), m), inv_t));
        e = vf_keep_n(e, cols - j); /* past the row: 0, not exp(-m inv_t) */
        acc_add(acc, e);
        if (p != NULL) vf_store_n(p + j, cols - j, e);
    }
    return vd_hsum(vd_add(acc[0], acc[1]));
}

static void softmax_rows(float *p, const float *z, int64_t rows, int64_t cols, float inv_t)
{
    if (cols <= 0) return;
    for (int64_t r = 0; r < rows; r++) {
        const float *zr = z + r * cols;
        float *pr = p + r * cols, mx, mn;
        row_range(zr, cols, &mx, &mn);
        if (kdi_row_is_wide(mx, mn, inv_t)) {
            kdi_softmax_row_wide(pr, zr, cols, mx, inv_t, 0);
            continue;
        }
        vf m = vf_set1(mx), it = vf_set1(inv_t);
        vf inv = vf_set1((float)(1.0 / exp_sum(pr, zr, cols, m, it)));
        for (int64_t j = 0; j < cols; j += W)
            vf_store_n(pr + j, cols - j, vf_mul(vf_load_n(pr + j, cols - j), inv));
    }
}

static void log_softmax_rows(float *lp, const float *z, int64_t rows, int64_t cols, float inv_t)
{
    if (cols <= 0) return;
    for (int64_t r = 0; r < rows; r++) {
        const float *zr = z + r * cols;
        float *out = lp + r * cols, mx, mn;
        row_range(zr, cols, &mx, &mn);
        if (kdi_row_is_wide(mx, mn, inv_t)) {
            kdi_softmax_row_wide(out, zr, cols, mx, inv_t, 1);
            continue;
        }
        vf m = vf_set1(mx), it = vf_set1(inv_t);
        vf log_s = vf_set1((float)log(exp_sum(NULL, zr, cols, m, it)));
        for (int64_t j = 0; j < cols; j += W) {
            vf s = vf_mul(vf_sub(vf_load_n(zr + j, cols - j), m), it);
            vf_store_n(out + j, cols - j, vf_sub(s, log_s));
        }
    }
}

/* ---------------------------------------------------------------- vectors */

static void axpy(float *y, float a, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i += W)
        vf_store_n(y + i, n - i,
                   vf_fmadd(vf_set1(a), vf_load_n(x + i, n - i), vf_load_n(y + i, n - i)));
}

static void scale(float *x, float a, int64_t n)
{
    for (int64_t i = 0; i < n; i += W)
        vf_store_n(x + i, n - i, vf_mul(vf_load_n(x + i, n - i), vf_set1(a)));
}

static void mul(float *y, const float *x, const float *mask, float s, int64_t n)
{
    for (int64_t i = 0; i < n; i += W) {
        vf v = vf_mul(vf_load_n(x + i, n - i), vf_load_n(mask + i, n - i));
        vf_store_n(y + i, n - i, vf_mul(v, vf_set1(s)));
    }
}

/* Products of two floats are exact in double, so this differs from the reference's sequential
 * sum only by the order of the additions (four chains, to hide the adder's latency). */
static double dot(const float *x, const float *y, int64_t n)
{
    vd acc[4] = {vd_zero(), vd_zero(), vd_zero(), vd_zero()};
    int64_t i = 0;
    for (; i + 2 * W <= n; i += 2 * W) {
        acc_fma(acc, vf_load(x + i), vf_load(y + i));
        acc_fma(acc + 2, vf_load(x + i + W), vf_load(y + i + W));
    }
    for (; i < n; i += W) acc_fma(acc, vf_load_n(x + i, n - i), vf_load_n(y + i, n - i));
    return vd_hsum(vd_add(vd_add(acc[0], acc[1]), vd_add(acc[2], acc[3])));
}

static double sum(const float *x, int64_t n)
{
    vd acc[4] = {vd_zero(), vd_zero(), vd_zero(), vd_zero()};
    int64_t i = 0;
    for (; i + 2 * W <= n; i += 2 * W) {
        acc_add(acc, vf_load(x + i));
        acc_add(acc + 2, vf_load(x + i + W));
    }
    for (; i < n; i += W) acc_add(acc, vf_load_n(x + i, n - i));
    return vd_hsum(vd_add(vd_add(acc[0], acc[1]), vd_add(acc[2], acc[3])));
}

static double sum_sq(const float *x, int64_t n) { return dot(x, x, n); }

/* sum's and dot's loops in one, each sum in its own accumulators: the same values. */
static void sum_dot(const float *x, const float *y, int64_t n, double *sum_x, double *sum_xy)
{
    vd s[4] = {vd_zero(), vd_zero(), vd_zero(), vd_zero()};
    vd d[4] = {vd_zero(), vd_zero(), vd_zero(), vd_zero()};
    int64_t i = 0;
    for (; i + 2 * W <= n; i += 2 * W) {
        vf x0 = vf_load(x + i), x1 = vf_load(x + i + W);
        acc_add(s, x0);
        acc_add(s + 2, x1);
        acc_fma(d, x0, vf_load(y + i));
        acc_fma(d + 2, x1, vf_load(y + i + W));
    }
    for (; i < n; i += W) {
        vf xv = vf_load_n(x + i, n - i);
        acc_add(s, xv);
        acc_fma(d, xv, vf_load_n(y + i, n - i));
    }
    *sum_x = vd_hsum(vd_add(vd_add(s[0], s[1]), vd_add(s[2], s[3])));
    *sum_xy = vd_hsum(vd_add(vd_add(d[0], d[1]), vd_add(d[2], d[3])));
}

/* ---------------------------------------------------------------- batch norm

 * The reference's operations in its order, as separate multiplies and adds: equal to it unless the
 * compiler fuses a pair (tests/test_kernels.c allows that rounding). */
static void bn_apply(float *y, float *xhat, const float *x, int64_t n, float mean, float inv_std,
                     float gamma, float beta)
{
    vf m = vf_set1(mean), vi = vf_set1(inv_std), g = vf_set1(gamma), b = vf_set1(beta);
    for (int64_t i = 0; i < n; i += W) {
        int64_t left = n - i;
        vf h = vf_mul(vf_sub(vf_load_n(x + i, left), m), vi);
        if (xhat != NULL) vf_store_n(xhat + i, left, h);
        vf_store_n(y + i, left, vf_add(vf_mul(g, h), b));
    }
}

static void bn_input_grad(float *dx, const float *dy, const float *xhat, int64_t n, float k,
                          float count, float sum_dy, float sum_dy_xhat)
{
    vf vk = vf_set1(k), c = vf_set1(count), a = vf_set1(sum_dy), b = vf_set1(sum_dy_xhat);
    for (int64_t i = 0; i < n; i += W) {
        int64_t left = n - i;
        vf t = vf_sub(vf_mul(c, vf_load_n(dy + i, left)), a);
        t = vf_sub(t, vf_mul(vf_load_n(xhat + i, left), b));
        vf_store_n(dx + i, left, vf_mul(vk, t));
    }
}

/* ---------------------------------------------------------------- layer normalisation */

/* The reference's operations in its order (no fused multiply-adds), its sums by sum and dot above:
 * only the order of the double sums differs. */
static void layernorm_fwd(float *y, float *xhat, float *inv_std, const float *x, const float *gamma,
                          const float *beta, int64_t rows, int64_t n, float eps)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * n;
        float *h = xhat + r * n, *yr = y + r * n;
        vf m = vf_set1((float)(sum(xr, n) / (double)n));
        for (int64_t i = 0; i < n; i += W)
            vf_store_n(h + i, n - i, vf_sub(vf_load_n(xr + i, n - i), m));
        float inv = (float)(1.0 / sqrt(sum_sq(h, n) / (double)n + eps));
        inv_std[r] = inv;
        vf vi = vf_set1(inv);
        for (int64_t i = 0; i < n; i += W) {
            int64_t left = n - i;
            vf hv = vf_mul(vf_load_n(h + i, left), vi);
            vf_store_n(h + i, left, hv);
            vf_store_n(yr + i, left,
                       vf_add(vf_mul(vf_load_n(gamma + i, left), hv), vf_load_n(beta + i, left)));
        }
    }
}

static void layernorm_bwd(float *dx, float *ggamma, float *gbeta, float *u, const float *xhat,
                          const float *inv_std, const float *gamma, const float *dy, int64_t rows,
                          int64_t n)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *h = xhat + r * n, *d = dy + r * n;
        for (int64_t i = 0; i < n; i += W) {
            int64_t left = n - i;
            vf dv = vf_load_n(d + i, left);
            vf_store_n(ggamma + i, left,
                       vf_add(vf_load_n(ggamma + i, left), vf_mul(dv, vf_load_n(h + i, left))));
            vf_store_n(gbeta + i, left, vf_add(vf_load_n(gbeta + i, left), dv));
            vf_store_n(u + i, left, vf_mul(vf_load_n(gamma + i, left), dv));
        }
        if (dx == NULL) continue;
        float c = inv_std[r] / (float)n, a = (float)sum(u, n), b = (float)dot(u, h, n),
              fn = (float)n;
        vf vc = vf_set1(c), va = vf_set1(a), vb = vf_set1(b), vn = vf_set1(fn);
        float *dr = dx + r * n;
        for (int64_t i = 0; i < n; i += W) {
            int64_t left = n - i;
            vf t = vf_sub(vf_mul(vn, vf_load_n(u + i, left)), va);
            t = vf_sub(t, vf_mul(vf_load_n(h + i, left), vb));
            vf_store_n(dr + i, left, vf_mul(vc, t));
        }
    }
}

/* ---------------------------------------------------------------- optimizer updates */

/* PyTorch's SGD, as the reference: g' = g + wd w; v = mu v + g'; w -= lr (nesterov ? g' + mu v : v). */
static void sgd_update(float *w, float *v, const float *g, int64_t n, float lr, float momentum,
                       float weight_decay, int nesterov)
{
    vf vlr = vf_set1(lr), mu = vf_set1(momentum), wd = vf_set1(weight_decay);
    for (int64_t i = 0; i < n; i += W) {
        int64_t left = n - i;
        vf wi = vf_load_n(w + i, left), d = vf_fmadd(wd, wi, vf_load_n(g + i, left));
        if (momentum != 0.0f) {
            vf vi = vf_fmadd(mu, vf_load_n(v + i, left), d);
            vf_store_n(v + i, left, vi);
            d = nesterov ? vf_fmadd(mu, vi, d) : vi;
        }
        vf_store_n(w + i, left, vf_fnmadd(vlr, d, wi));
    }
}

/* Adam(W) in torch.optim.Adam's order of operations, as the reference. */
static void adam_update(float *w, float *m, float *v, const float *g, int64_t n, float lr,
                        float beta1, float beta2, float eps, float weight_decay, float bias_corr1,
                        float bias_corr2, int decoupled)
{
    vf keep = vf_set1(decoupled ? 1.0f - lr * weight_decay : 1.0f);
    vf l2 = vf_set1(decoupled ? 0.0f : weight_decay);
    vf b1 = vf_set1(beta1), c1 = vf_set1(1.0f - beta1), b2 = vf_set1(beta2),
       c2 = vf_set1(1.0f - beta2);
    vf step = vf_set1(lr / bias_corr1), sqrt_bc2 = vf_set1(sqrtf(bias_corr2)), e = vf_set1(eps);
    for (int64_t i = 0; i < n; i += W) {
        int64_t left = n - i;
        vf wi = vf_load_n(w + i, left), d = vf_fmadd(l2, wi, vf_load_n(g + i, left));
        vf mi = vf_fmadd(b1, vf_load_n(m + i, left), vf_mul(c1, d));
        vf vi = vf_fmadd(b2, vf_load_n(v + i, left), vf_mul(vf_mul(c2, d), d));
        vf denom = vf_add(vf_div(vf_sqrt(vi), sqrt_bc2), e);
        vf upd = vf_div(vf_mul(step, mi), denom);
        vf_store_n(m + i, left, mi);
        vf_store_n(v + i, left, vi);
        vf_store_n(w + i, left, vf_sub(vf_mul(wi, keep), upd));
    }
}

/* ---------------------------------------------------------------- int8 */

#define QH (64 / VEC_B) /* vectors in a block of 16 int32 columns: 1 (AVX-512) or 2 (AVX2) */

/* Bytes 4 g .. 4 g + 3 of a row, as one int32 to broadcast. */
static inline int32_t group_at(const uint8_t *row, int64_t g)
{
    int32_t v;
    memcpy(&v, row + 4 * g, 4); /* one load */
    return v;
}

/* The last, partial group of a row of k bytes (k % 4 != 0), zeros past k. */
static inline int32_t group_tail(const uint8_t *row, int64_t g, int64_t k)
{
    int32_t v = 0;
    memcpy(&v, row + 4 * g, (size_t)(k - 4 * g));
    return v;
}

/* Rows and 16-column blocks of C a register tile holds: 8 x 32 on AVX-512 (16 accumulators, and
 * vpdpbusd's latency of several cycles hidden behind 16 independent chains), 4 x 16 on AVX2 (whose
 * 16 registers also hold the widened operands of its emulated dot). */
#if VEC_B == 64
#define QR 8
#define QNB 2
#else
#define QR 4
#define QNB 1
#endif

/* R rows of C by NB blocks of 16 columns (R and NB constants after inlining, so the sums stay in
 * registers). `full` groups are read whole; `groups` > full adds the partial last one. */
static inline __attribute__((always_inline)) void
qblock(int R, int NB, const uint8_t *a, int64_t lda, const int8_t *bb, int64_t bstride,
       int64_t full, int64_t groups, int64_t k, int32_t *c, int64_t ldc, int64_t left)
{
    vq acc[QR][QNB * QH];
    for (int r = 0; r < R; r++)
        for (int h = 0; h < NB * QH; h++) acc[r][h] = vq_zero();
            /* The whole groups in a loop of their own: a choice per group kept GCC from holding the sums
     * in registers (it copied and spilled them every group). */
#define QSTEP(GROUP)                                                                               \
    do {                                                                                           \
        vq bv[QNB * QH];                                                                           \
        for (int nb = 0; nb < NB; nb++)                                                            \
            for (int h = 0; h < QH; h++)                                                           \
                bv[nb * QH + h] = vq_load(bb + nb * bstride + g * 64 + h * VEC_B);                 \
        for (int r = 0; r < R; r++) {                                                              \
            vq av = vq_set1_i32(GROUP);                                                            \
            for (int h = 0; h < NB * QH; h++) acc[r][h] = vq_dot_u8s8(acc[r][h], av, bv[h]);       \
        }                                                                                          \
    } while (0)
    int64_t g = 0;
    for (; g < full; g++) QSTEP(group_at(a + r * lda, g));
    for (; g < groups; g++) QSTEP(group_tail(a + r * lda, g, k));
#undef QSTEP
    for (int r = 0; r < R; r++)
        for (int h = 0; h < NB * QH; h++)
            vq_store_i32_n(c + r * ldc + h * W, left - h * W, acc[r][h]);
}

/* One band of NB column blocks over every row: QR rows at a time, then the rest one by one. */
static inline __attribute__((always_inline)) void
qband(int NB, int64_t m, const uint8_t *a, int64_t lda, const int8_t *bb, int64_t bstride,
      int64_t full, int64_t groups, int64_t k, int32_t *c, int64_t ldc, int64_t left)
{
    int64_t i = 0;
    for (; i + QR <= m; i += QR)
        qblock(QR, NB, a + i * lda, lda, bb, bstride, full, groups, k, c + i * ldc, ldc, left);
    for (; i < m; i++)
        qblock(1, NB, a + i * lda, lda, bb, bstride, full, groups, k, c + i * ldc, ldc, left);
}

static void qgemm_u8s8(int64_t m, int64_t n, int64_t k, const uint8_t *a, int64_t lda,
                       const int8_t *bp, int32_t *c, int64_t ldc)
{
    int64_t groups = (k + 3) / 4, bstride = groups * 64;
    /* Rows padded to whole groups (lda >= 4 groups) are read whole: the bytes past k meet the
     * zeros kdi_qpack put past k in B. */
    int64_t full = lda >= 4 * groups ? groups : k / 4;
    int64_t jb = 0, nblocks = (n + 15) / 16;
    for (; jb + QNB <= nblocks; jb += QNB)
        qband(QNB, m, a, lda, bp + jb * bstride, bstride, full, groups, k, c + jb * 16, ldc,
              n - jb * 16);
    for (; jb < nblocks; jb++)
        qband(1, m, a, lda, bp + jb * bstride, bstride, full, groups, k, c + jb * 16, ldc,
              n - jb * 16);
}

static void quantize_u8(uint8_t *q, const float *x, int64_t n, float scale, int32_t zp)
{
    vf s = vf_set1(scale), z = vf_set1((float)zp), lo = vf_zero(), hi = vf_set1(255.0f);
    for (int64_t i = 0; i < n; i += W) {
        vf v = vf_add(vf_round(vf_div(vf_load_n(x + i, n - i), s)), z);
        vf_store_u8_n(q + i, n - i, vf_min(vf_max(v, lo), hi));
    }
}

static void requant_u8(uint8_t *y, const int32_t *acc, int64_t rows, int64_t cols,
                       const int32_t *corr, const float *mult, int32_t zp, int32_t lo)
{
    vf z = vf_set1((float)zp), l = vf_set1((float)lo), hi = vf_set1(255.0f);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j += W) {
            int64_t left = cols - j;
            vf v = vf_from_i32_plus_n(acc + r * cols + j, corr + j, left);
            v = vf_add(vf_round(vf_mul(v, vf_load_n(mult + j, left))), z);
            vf_store_u8_n(y + r * cols + j, left, vf_min(vf_max(v, l), hi));
        }
}

static void dequant_i32(float *y, const int32_t *acc, int64_t rows, int64_t cols,
                        const int32_t *corr, const float *scale)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j += W) {
            int64_t left = cols - j;
            vf v = vf_from_i32_plus_n(acc + r * cols + j, corr + j, left);
            vf_store_n(y + r * cols + j, left, vf_mul(v, vf_load_n(scale + j, left)));
        }
}

KDI_KERNEL_TABLE(KDI_SIMD_TABLE, KDI_SIMD_NAME);
