/* kdi_gemm: one GEMM split over libkd's threads (see gemm.h). */
#include "nn/gemm.h"

#include "core/helper.h"
#include "core/threads.h"
#include "kernels/kernels.h"

/* A GEMV (one or two rows of A against B's rows) in KDI_GEMV_PARTS parts of whole 16-row blocks of
 * B, shared with libkd's helper thread. Few parts: taking one moves a cache line between the cores
 * (0.1-0.2 us on the host of bench/RESULTS.md), and 16-row parts made a 384 x 128 GEMV 2x slower
 * on 2 threads than on 1. The dispatch table's gemm routes these shapes to gemm_small's dot form
 * (or the reference's double sums), where each element of C is its own sum: parts change no bit. */
#define KDI_GEMV_PARTS 4
typedef struct {
    const kdi_kernels *kn;
    int64_t m, n, k, lda, ldb, ldc;
    float alpha, beta;
    const float *a, *b;
    float *c;
} gemv_job;

static void gemv_part(void *arg, int64_t p)
{
    const gemv_job *g = arg;
    int64_t blocks = (g->n + 15) / 16;
    int64_t j = blocks * p / KDI_GEMV_PARTS * 16, end = blocks * (p + 1) / KDI_GEMV_PARTS * 16;
    if (end > g->n) end = g->n;
    if (j >= end) return;
    g->kn->gemm(0, 1, g->m, end - j, g->k, g->alpha, g->a, g->lda, g->b + j * g->ldb, g->ldb,
                g->beta, g->c + j, g->ldc);
}

/* Part p of `parts` of whole KDI_BLOCK blocks of C's rows or columns, by `fn`. op(A)[i, p] is
 * a[i * lda + p] or a[p * lda + i]; op(B)[p, j] is b[p * ldb + j] or b[j * ldb + p]: a slice of
 * C's rows takes A's rows from i0, a slice of columns B's from j0. */
static void gemm_part(kdi_gemm_fn *fn, int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
                      const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                      float *c, int64_t ldc, int by_rows, int64_t p, int64_t parts)
{
    int64_t lo, hi;
    kdi_part(by_rows ? m : n, p, parts, &lo, &hi);
    if (lo >= hi) return;
    if (by_rows)
        fn(ta, tb, hi - lo, n, k, alpha, a + (ta ? lo : lo * lda), lda, b, ldb, beta, c + lo * ldc,
           ldc);
    else
        fn(ta, tb, m, hi - lo, k, alpha, a, lda, b + (tb ? lo * ldb : lo), ldb, beta, c + lo, ldc);
}

void kdi_gemm(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
              int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    const kdi_kernels *kn = kdi_kernels_get();
    double macs = (double)m * (double)n * (double)k;
    /* slices of columns unless too few for the threads: a slice of rows packs all of B again (a
     * weight gradient's x), and with several parts a thread that was 5% of the GEMM */
    int by_rows = m > n && (n + KDI_BLOCK - 1) / KDI_BLOCK < 2 * (int64_t)kdi_threads();
    int64_t len = by_rows ? m : n;
    /* OpenBLAS as the host left it (1 with kd_set_threads(1)); below KDI_BLAS_THREADED_MIN it
     * would not wake its pool anyway, and setting its count costs microseconds (batch 1) */
    int threads = macs <= KDI_BLAS_THREADED_MIN || kdi_in_parallel() ? 1 : kdi_threads();
    if (!ta && tb && m <= KDI_GEMV_ROWS && macs >= KDI_GEMV_HELPER_MIN &&
        macs < KDI_GEMM_PARALLEL_MIN && n >= 16 * KDI_GEMV_PARTS && !kdi_in_parallel() &&
        kdi_threads() > 1) {
        gemv_job g = {kn, m, n, k, lda, ldb, ldc, alpha, beta, a, b, c};
        kdi_helper_parts(KDI_GEMV_PARTS, gemv_part, &g);
        return;
    }
    if (threads <= 1) {
        kn->gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    /* several threads: OpenBLAS's own pool stays asleep even for a GEMM too small to split */
    int nt = macs < KDI_GEMM_PARALLEL_MIN || len <= KDI_BLOCK ? 1 : threads;
    if (nt <= 1) {
        kdi_blas_serial_begin();
        kn->gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        kdi_blas_serial_end();
        return;
    }
    /* every slice on the whole product's kernel (see kdi_kernels.gemm_route); parts taken by work
     * stealing (threads.h): a slower core's left parts go to the other */
    int route = kn->gemm_route(ta, tb, m, n, k);
    kdi_gemm_fn *fn = kdi_gemm_by(kn, route);
    kdi_blas_serial_begin();
    KDI_STEAL(
        nt, (len + KDI_BLOCK - 1) / KDI_BLOCK, parts, p,
        gemm_part(fn, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, by_rows, p, parts));
    kdi_blas_serial_end();
}
