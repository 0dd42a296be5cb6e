/* bench_gemm_small: the kernel table's register-blocked gemm_small against cblas_sgemm on the
 * shapes where gemm chooses between them (KDI_GEMM_SMALL_ROWS, KDI_GEMM_SMALL_MNK in
 * lib/kernels/simd_kernels.h), and the batch-1 latency of kd_model_predict on the 784-256-10
 * student and the small CNN of bench_conv.
 *
 * Each row times the two calls interleaved (best of several rounds, so another process on the
 * machine costs both alike) and prints microseconds per call and cblas / small: above 1,
 * gemm_small wins. Run under both OpenBLAS cores:
 *   OPENBLAS_CORETYPE=Haswell OPENBLAS_NUM_THREADS=1 build/bench/bench_gemm_small
 *   env -u OPENBLAS_CORETYPE OPENBLAS_NUM_THREADS=1 build/bench/bench_gemm_small
 * With the argument `predict`, only the latencies (for callgrind, --toggle-collect=kd_model_predict).
 * Not a test: no pass or fail. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kd.h"
#include "kernels/kernels.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void check(kd_status st, const char *what)
{
    if (st == KD_OK) return;
    fprintf(stderr, "bench: %s: %s\n", what, kd_last_error());
    exit(1);
}

static float *filled(size_t n)
{
    float *p = malloc(sizeof(float) * n);
    if (p == NULL) exit(1);
    for (size_t i = 0; i < n; i++) p[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    return p;
}

typedef struct shape {
    const char *what;
    int ta, tb, m, n, k;
} shape;

static const shape shapes[] = {
    {"dense 784->256 fwd", 0, 1, 1, 256, 784},
    {"dense 784->256 fwd", 0, 1, 2, 256, 784},
    {"dense 784->256 fwd", 0, 1, 4, 256, 784},
    {"dense 784->256 fwd", 0, 1, 8, 256, 784},
    {"dense 784->256 fwd", 0, 1, 16, 256, 784},
    {"dense 784->256 fwd", 0, 1, 32, 256, 784},
    {"dense 256->10 fwd", 0, 1, 1, 10, 256},
    {"dense 256->10 fwd", 0, 1, 32, 10, 256},
    {"dense 256->10 fwd", 0, 1, 128, 10, 256},
    {"dense 784->800 fwd", 0, 1, 1, 800, 784},
    {"dense 784->800 fwd", 0, 1, 8, 800, 784},
    {"dense 800->10 fwd", 0, 1, 128, 10, 800},
    {"dense 784->256 dW", 1, 0, 256, 784, 1},
    {"dense 784->256 dW", 1, 0, 256, 784, 8},
    {"dense 784->256 dW", 1, 0, 256, 784, 32},
    {"dense 256->10 dW", 1, 0, 10, 256, 32},
    {"dense 256->10 dW", 1, 0, 10, 256, 128},
    {"dense 784->256 dx", 0, 0, 1, 784, 256},
    {"dense 784->256 dx", 0, 0, 8, 784, 256},
    {"dense 256->10 dx", 0, 0, 32, 256, 10},
    {"dense 256->10 dx", 0, 0, 128, 256, 10},
    {"conv 1->16 3x3 @28", 0, 0, 16, 784, 9},
    {"conv 16->32 3x3 @14", 0, 0, 32, 196, 144},
    {"conv 1->32 3x3 @28", 0, 0, 32, 784, 9},
    {"conv 32->32 3x3 @14", 0, 0, 32, 196, 288},
    {"conv 64->64 3x3 @7", 0, 0, 64, 49, 576},
    {"cube 32", 0, 0, 32, 32, 32},
    {"cube 48", 0, 1, 48, 48, 48},
    {"cube 64", 0, 0, 64, 64, 64},
    {"cube 64", 0, 1, 64, 64, 64},
    {"cube 96", 0, 0, 96, 96, 96},
    /* bench_lm's transformer (width 128, batch 16 x 64 tokens): the big products */
    {"lm qkv fwd", 0, 1, 1024, 384, 128},
    {"lm mlp up fwd", 0, 1, 1024, 512, 128},
    {"lm mlp down fwd", 0, 1, 1024, 128, 512},
    {"lm head fwd", 0, 1, 1024, 256, 128},
    {"lm qkv dW", 1, 0, 384, 128, 1024},
    {"lm mlp up dW", 1, 0, 512, 128, 1024},
    {"lm mlp down dW", 1, 0, 128, 512, 1024},
    {"lm qkv dx", 0, 0, 1024, 128, 384},
    {"lm mlp up dx", 0, 0, 1024, 128, 512},
    {"lm mlp down dx", 0, 0, 1024, 512, 128},
    {"lm scores QK^T", 0, 1, 64, 64, 32},
    {"lm PV", 0, 0, 64, 32, 64},
};

typedef void gemm_fn(int, int, int64_t, int64_t, int64_t, float, const float *, int64_t,
                     const float *, int64_t, float, float *, int64_t);

static void via_cblas(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                      int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                (int)m, (int)n, (int)k, alpha, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

static double time_one(gemm_fn *f, const shape *s, const float *a, const float *b, float *c,
                       int reps)
{
    int64_t lda = s->ta ? s->m : s->k, ldb = s->tb ? s->k : s->n;
    double t0 = now();
    for (int r = 0; r < reps; r++)
        f(s->ta, s->tb, s->m, s->n, s->k, 1.0f, a, lda, b, ldb, s->ta ? 1.0f : 0.0f, c, s->n);
    return (now() - t0) / reps;
}

static double predict_us(const char *spec, int64_t in, int reps)
{
    kd_model *m;
    check(kd_model_create(spec, 1, &m), spec);
    float *x = filled((size_t)in), logits[10];
    for (int r = 0; r < 100; r++) check(kd_model_predict(m, x, 1, logits), "predict");
    double best = 1e9;
    for (int round = 0; round < 7; round++) {
        double t0 = now();
        for (int r = 0; r < reps; r++) check(kd_model_predict(m, x, 1, logits), "predict");
        double t = (now() - t0) / reps;
        if (t < best) best = t;
    }
    kd_model_destroy(m);
    free(x);
    return best * 1e6;
}

int main(int argc, char **argv)
{
    const kdi_kernels *kt = kdi_kernels_get();
    printf("libkd %s, kernels %s, OpenBLAS core %s, OPENBLAS_CORETYPE=%s\n", kd_version(), kt->name,
           openblas_get_corename(),
           getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "(unset)");
    printf("%-24s %2s %2s %5s %5s %5s %10s %10s %7s %10s %7s %6s\n", "shape", "ta", "tb", "m", "n",
           "k", "cblas us", "small us", "ratio", "packed us", "ratio", "route");
    /* "predict": the latencies alone (for callgrind: --toggle-collect=kd_model_predict) */
    int gemms = !(argc > 1 && strcmp(argv[1], "predict") == 0);
    for (size_t i = 0; gemms && i < sizeof shapes / sizeof shapes[0]; i++) {
        const shape *s = &shapes[i];
        size_t na = (size_t)s->m * (size_t)s->k, nb = (size_t)s->k * (size_t)s->n;
        float *a = filled(na), *b = filled(nb), *c = filled((size_t)s->m * (size_t)s->n);
        double flops = 2.0 * s->m * s->n * s->k;
        int reps = (int)(2e7 / (flops + 2e4)) + 1;
        double best_b = 1e9, best_s = 1e9, best_p = 1e9;
        for (int round = 0; round < 7; round++) {
            double tb = time_one(via_cblas, s, a, b, c, reps);
            double ts = time_one(kt->gemm_small, s, a, b, c, reps);
            double tp = time_one(kt->gemm_packed, s, a, b, c, reps);
            best_b = tb < best_b ? tb : best_b;
            best_s = ts < best_s ? ts : best_s;
            best_p = tp < best_p ? tp : best_p;
        }
        double tg = time_one(kt->gemm, s, a, b, c, reps);
        /* which one gemm takes: the one of the three timings closest to gemm's own */
        double best = best_b < best_s ? best_b : best_s;
        best = best_p < best ? best_p : best;
        printf("%-24s %2d %2d %5d %5d %5d %10.2f %10.2f %7.2f %10.2f %7.2f %6s\n", s->what, s->ta,
               s->tb, s->m, s->n, s->k, best_b * 1e6, best_s * 1e6, best_b / best_s, best_p * 1e6,
               best_b / best_p, tg < 1.25 * best ? "ok" : "?");
        free(a), free(b), free(c);
    }
    int reps = gemms ? 20000 : 200;
    printf("\nkd_model_predict at batch 1 (best of 7 rounds):\n");
    printf("  784-256-10 student  %8.2f us\n",
           predict_us("input 784 | dense 256 | relu | dense 10", 784, reps));
    printf("  small CNN           %8.2f us\n",
           predict_us("input 1x28x28 | conv 16 3 pad=1 | relu | maxpool 2 | conv 32 3 pad=1 | relu "
                      "| maxpool 2 | flatten | dense 10",
                      784, reps / 10));
    return 0;
}
