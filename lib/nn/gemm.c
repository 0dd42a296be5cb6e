/* kdi_gemm: one GEMM split over libkd's threads (see gemm.h). */
#include "nn/gemm.h"

#include "core/threads.h"
#include "kernels/kernels.h"

static int in_parallel(void)
{
#ifdef _OPENMP
    return omp_in_parallel();
#else
    return 0;
#endif
}

void kdi_gemm(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
              int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    const kdi_kernels *kn = kdi_kernels_get();
    double macs = (double)m * (double)n * (double)k;
    int by_rows = m > n;
    int64_t len = by_rows ? m : n;
    /* OpenBLAS as the host left it (1 with kd_set_threads(1)); below KDI_BLAS_THREADED_MIN it
     * would not wake its pool anyway, and setting its count costs microseconds (batch 1) */
    int threads = macs <= KDI_BLAS_THREADED_MIN || in_parallel() ? 1 : kdi_threads();
    if (threads <= 1) {
        kn->gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    /* several threads: OpenBLAS's own pool stays asleep even for a GEMM too small to split */
    int nt = macs < KDI_GEMM_PARALLEL_MIN || len <= KDI_BLOCK ? 1 : threads;
    /* op(A)[i, p] is a[i * lda + p] or a[p * lda + i]; op(B)[p, j] is b[p * ldb + j] or
     * b[j * ldb + p]: a slice of C's rows takes A's rows from i0, a slice of columns B's from j0 */
    kdi_blas_serial_begin();
    KDI_PARALLEL_FOR(nt)
    for (int t = 0; t < nt; t++) {
        int64_t lo, hi;
        kdi_part(len, t, nt, &lo, &hi);
        if (lo >= hi) continue;
        if (by_rows)
            kn->gemm(ta, tb, hi - lo, n, k, alpha, a + (ta ? lo : lo * lda), lda, b, ldb, beta,
                     c + lo * ldc, ldc);
        else
            kn->gemm(ta, tb, m, hi - lo, k, alpha, a, lda, b + (tb ? lo * ldb : lo), ldb, beta,
                     c + lo, ldc);
    }
    kdi_blas_serial_end();
}
