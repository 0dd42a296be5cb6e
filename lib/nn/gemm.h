/* kdi_gemm: the dispatch table's GEMM split over libkd's threads, each part a single-threaded BLAS
 * call inside one OpenMP region. libkd's layers call it rather than letting OpenBLAS thread the
 * product itself: two thread pools on the same cores (libgomp's, which spins a while after each of
 * libkd's loops, and OpenBLAS's) took turns on a 2-core machine and made 2 threads 4x slower than 1
 * (issue 11, mlp_cached); with one pool, a GEMM starts on threads that are already awake. */
#ifndef KDI_NN_GEMM_H
#define KDI_NN_GEMM_H

#include <stdint.h>

/* Below this many multiply-adds a GEMM stays on the calling thread (a part must pay for waking a
 * thread, a few microseconds). */
#define KDI_GEMM_PARALLEL_MIN (1 << 20)
/* OpenBLAS 0.3 runs a product of at most this many multiply-adds on the calling thread
 * (SMP_THRESHOLD_MIN * GEMM_MULTITHREAD_THRESHOLD in its interface/gemm.c). */
#define KDI_BLAS_THREADED_MIN 262144

/* A GEMV, at most KDI_GEMV_ROWS rows of A against B transposed (a layer's weights), of at least
 * KDI_GEMV_HELPER_MIN (but fewer than KDI_GEMM_PARALLEL_MIN) multiply-adds goes half to libkd's
 * helper thread (core/helper.h) when there are 2 or more threads: batch-1 inference and token by
 * token decoding, too short for an OpenMP region (2.8-3.1 us on the host of bench/RESULTS.md).
 * Below 64k (each side's half streaming 128 KB of weights, about 1 us from L2) the handshake
 * measured slower than one thread. */
#define KDI_GEMV_ROWS 2
#define KDI_GEMV_HELPER_MIN 65536.0

/* C[m,n] = alpha op(A) op(B) + beta C, as kdi_kernels's gemm: on kdi_threads() threads when the
 * product is large enough and the caller is not already inside a parallel region, in up to
 * KDI_STEAL_PARTS parts a thread of whole 64-column (or, when C has more rows than columns and
 * fewer than 2 such blocks a thread, 64-row) blocks of C, which idle threads take from a slower
 * one (KDI_STEAL). Each element of C is the same sum as in one call, so results agree with 1
 * thread's to rounding (BLAS may round a slice's edge tile apart), and a given thread count gives
 * the same bits run after run. With more than one thread, OpenBLAS runs on one thread
 * (kdi_blas_serial_begin) even for a product too small to split, so that its pool never wakes
 * beside libgomp's. The GEMVs above go to the helper instead, in 4 parts of whole 16-row blocks of
 * B, through gemm_small's dot form (no BLAS): bitwise one thread's values. */
void kdi_gemm(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
              const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
              int64_t ldc);

#endif
