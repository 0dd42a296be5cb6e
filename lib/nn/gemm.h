/* The kernel table's GEMM split over libkd's threads for the layers' big products. */
#ifndef KDI_NN_GEMM_H
#define KDI_NN_GEMM_H

#include <stdint.h>

/* kdi_kernels_get()->gemm with the same arguments, C's rows split in blocks over kdi_threads()
 * threads (OpenBLAS held at one thread meanwhile) when each part is at least KDI_GEMM_SPLIT_MIN
 * multiply-adds: a transformer's projections and MLP, whose products the AVX-512 table does
 * without OpenBLAS's threads. Each entry of C is the same sum whatever the split (a thread's rows
 * run the routine the whole product would, parts being too big for gemm_small: with the AVX-512
 * table the same sum whatever the split). */
#define KDI_GEMM_SPLIT_MIN 8388608.0
void kdi_gemm_rows(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                   const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                   int64_t ldc);

#endif
