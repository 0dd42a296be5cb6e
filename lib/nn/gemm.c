/* GEMM over libkd's threads: C's rows in blocks, one part a thread. */
#include "nn/gemm.h"

#include "core/threads.h"
#include "kernels/kernels.h"

/* Rows of C a part holds a multiple of: every tile height of the kernels (1, 2, 6, 8, 12). */
#define ROW_BLOCK 24

void kdi_gemm_rows(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                   const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                   int64_t ldc)
{
    const kdi_kernels *kt = kdi_kernels_get();
    double work = (double)m * (double)n * (double)k;
    int64_t blocks = (m + ROW_BLOCK - 1) / ROW_BLOCK;
    int nt = kdi_threads();
    while (nt > 1 && (work / nt < KDI_GEMM_SPLIT_MIN || blocks < nt)) nt--;
    if (nt == 1) {
        kt->gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    /* A's row i is at a + i * lda, or column i of a when A is transposed. */
    int64_t a_row = trans_a ? 1 : lda;
    kdi_blas_serial_begin();
    KDI_PARALLEL_FOR(nt)
    for (int t = 0; t < nt; t++) {
        int64_t lo = blocks * t / nt * ROW_BLOCK, hi = blocks * (t + 1) / nt * ROW_BLOCK;
        if (hi > m) hi = m;
        if (lo < hi)
            kt->gemm(trans_a, trans_b, hi - lo, n, k, alpha, a + lo * a_row, lda, b, ldb, beta,
                     c + lo * ldc, ldc);
    }
    kdi_blas_serial_end();
}
