/* bench_kernels: speed of the kernel tables.
 *
 * GEMM: GFLOP/s of every supported table's gemm on the shapes of a 784-1200-1200-10 MLP at batch
 * 128, as lib/nn/layers/dense.c calls them: forward y = x W^T, weight gradient dW += dy^T x, input
 * gradient dx = dy W. Elementwise, row and optimizer kernels: GB/s (bytes read + written) per
 * table and the speed-up over "ref", on sizes a training step sees (an activation of 128 x 1200,
 * logits of 128 x 10 and 128 x 1000, the 940800 weights of a 784 x 1200 layer). It prints the
 * OpenBLAS core in use; run it under both OPENBLAS_CORETYPE settings (bench/run.sh).
 * Not a test: no pass or fail. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kd.h"
#include "kernels/kernels.h"

#define MIN_SECONDS 0.15
#define NVAR 3
#define ACT (128 * 1200)
#define WEIGHTS (784 * 1200)

static const char *names[NVAR] = {"ref", "avx2", "avx512"};
static const kdi_kernels *tables[NVAR];

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static float *filled(size_t n, float lo, float hi)
{
    float *p = malloc(n * sizeof *p);
    if (p == NULL) {
        fprintf(stderr, "bench_kernels: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++)
        p[i] = lo + (hi - lo) * (float)((i * 2654435761u) % 1000) / 1000.0f;
    return p;
}

/* One benchmarked call: the table, and buffers the call may read and write. */
typedef struct job {
    const kdi_kernels *k;
    float *a, *b, *c, *d, *e;
    int64_t n, rows, cols;
} job;

typedef void (*job_fn)(const job *j);

/* Seconds per call: the best of many short rounds (each at least 3 calls and 2 ms) within
 * MIN_SECONDS, so a neighbour's burst on the shared machine does not count. A call slower than
 * MIN_SECONDS (the naive reference GEMM) is timed once. */
static double seconds_per_call(job_fn f, const job *j)
{
    double start = now();
    f(j);
    double best = now() - start;
    if (best > MIN_SECONDS) return best;
    while (now() - start < MIN_SECONDS) {
        int calls = 0;
        double t0 = now(), t;
        do {
            f(j);
            calls++;
            t = now() - t0;
        } while (t < 2e-3 || calls < 3);
        if (t / calls < best) best = t / calls;
    }
    return best;
}

/* ---------------------------------------------------------------- GEMM */

typedef struct shape {
    const char *what;
    int ta, tb;
    int64_t m, n, k;
} shape;

static const shape shapes[] = {
    {"fwd   x W1^T  128x1200x784 ", 0, 1, 128, 1200, 784},
    {"fwd   h W2^T  128x1200x1200", 0, 1, 128, 1200, 1200},
    {"fwd   h W3^T  128x10x1200  ", 0, 1, 128, 10, 1200},
    {"bwd  dW1 dy^T x 1200x784x128", 1, 0, 1200, 784, 128},
    {"bwd  dW2      1200x1200x128", 1, 0, 1200, 1200, 128},
    {"bwd  dW3      10x1200x128  ", 1, 0, 10, 1200, 128},
    {"bwd  dx2 dy W 128x1200x1200", 0, 0, 128, 1200, 1200},
    {"bwd  dx3      128x1200x10  ", 0, 0, 128, 1200, 10},
};

static const shape *cur_shape;

static void run_gemm(const job *j)
{
    const shape *s = cur_shape;
    int64_t lda = s->ta ? s->m : s->k, ldb = s->tb ? s->k : s->n;
    j->k->gemm(s->ta, s->tb, s->m, s->n, s->k, 1.0f, j->a, lda, j->b, ldb, s->tb ? 0.0f : 1.0f,
               j->c, s->n);
}

static void bench_gemm(void)
{
    float *a = filled(1200 * 1200, -1, 1), *b = filled(1200 * 1200, -1, 1);
    float *c = filled(1200 * 1200, -1, 1);
    printf("\nGEMM, GFLOP/s (dispatch table: %s)\n%-30s", kd_kernels_name(), "shape");
    for (int v = 0; v < NVAR; v++)
        if (tables[v] != NULL) printf("%10s", names[v]);
    printf("\n");
    double flops_total = 0, time_total[NVAR] = {0};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        cur_shape = &shapes[s];
        double flops = 2.0 * (double)shapes[s].m * (double)shapes[s].n * (double)shapes[s].k;
        flops_total += flops;
        printf("%-30s", shapes[s].what);
        for (int v = 0; v < NVAR; v++) {
            if (tables[v] == NULL) continue;
            job j = {.k = tables[v], .a = a, .b = b, .c = c};
            double t = seconds_per_call(run_gemm, &j);
            time_total[v] += t;
            printf("%10.1f", flops / t * 1e-9);
        }
        printf("\n");
    }
    printf("%-30s", "one training step, all shapes");
    for (int v = 0; v < NVAR; v++)
        if (tables[v] != NULL) printf("%10.1f", flops_total / time_total[v] * 1e-9);
    printf("\n");
    free(a), free(b), free(c);
}

/* ---------------------------------------------------------------- the other kernels */

static void k_bias_add(const job *j) { j->k->bias_add(j->a, j->b, j->rows, j->cols); }
static void k_bias_grad(const job *j) { j->k->bias_grad(j->a, j->b, j->rows, j->cols); }
static void k_relu_fwd(const job *j) { j->k->relu_fwd(j->a, j->b, j->n); }
static void k_relu_bwd(const job *j) { j->k->relu_bwd(j->a, j->b, j->c, j->n); }
static void k_leaky_fwd(const job *j) { j->k->leaky_relu_fwd(j->a, j->b, j->n, 0.01f); }
static void k_leaky_bwd(const job *j) { j->k->leaky_relu_bwd(j->a, j->b, j->c, j->n, 0.01f); }
static void k_gelu_fwd(const job *j) { j->k->gelu_fwd(j->a, j->b, j->n); }
static void k_gelu_bwd(const job *j) { j->k->gelu_bwd(j->a, j->b, j->c, j->n); }
static void k_tanh_fwd(const job *j) { j->k->tanh_fwd(j->a, j->b, j->n); }
static void k_tanh_bwd(const job *j) { j->k->tanh_bwd(j->a, j->b, j->c, j->n); }
static void k_sigmoid_fwd(const job *j) { j->k->sigmoid_fwd(j->a, j->b, j->n); }
static void k_sigmoid_bwd(const job *j) { j->k->sigmoid_bwd(j->a, j->b, j->c, j->n); }
static void k_softmax(const job *j) { j->k->softmax_rows(j->a, j->b, j->rows, j->cols, 0.25f); }
static void k_log_softmax(const job *j)
{
    j->k->log_softmax_rows(j->a, j->b, j->rows, j->cols, 0.25f);
}
static void k_axpy(const job *j) { j->k->axpy(j->a, 1e-3f, j->b, j->n); }
static void k_scale(const job *j) { j->k->scale(j->a, 0.999f, j->n); }
static void k_mul(const job *j) { j->k->mul(j->a, j->b, j->c, 2.0f, j->n); }
static volatile double sink;
static void k_sum_sq(const job *j) { sink = j->k->sum_sq(j->b, j->n); }
static void k_dot(const job *j) { sink = j->k->dot(j->b, j->c, j->n); }
static void k_sgd(const job *j) { j->k->sgd_update(j->a, j->d, j->c, j->n, 1e-6f, 0.9f, 1e-4f, 0); }
static void k_sgd_nesterov(const job *j)
{
    j->k->sgd_update(j->a, j->d, j->c, j->n, 1e-6f, 0.9f, 1e-4f, 1);
}
static void k_adamw(const job *j)
{
    j->k->adam_update(j->a, j->d, j->e, j->c, j->n, 1e-6f, 0.9f, 0.999f, 1e-8f, 0.01f, 0.5f, 0.1f,
                      1);
}

/* A kernel, the sizes it runs on, and the bytes one call moves. */
typedef struct item {
    const char *what;
    job_fn f;
    int64_t rows, cols;
    int bytes_per_value;
} item;

static const item items[] = {
    {"bias_add 128x1200", k_bias_add, 128, 1200, 8},
    {"bias_grad 128x1200", k_bias_grad, 128, 1200, 4},
    {"relu_fwd", k_relu_fwd, 1, ACT, 8},
    {"relu_bwd", k_relu_bwd, 1, ACT, 12},
    {"leaky_relu_fwd", k_leaky_fwd, 1, ACT, 8},
    {"leaky_relu_bwd", k_leaky_bwd, 1, ACT, 12},
    {"gelu_fwd", k_gelu_fwd, 1, ACT, 8},
    {"gelu_bwd", k_gelu_bwd, 1, ACT, 12},
    {"tanh_fwd", k_tanh_fwd, 1, ACT, 8},
    {"tanh_bwd", k_tanh_bwd, 1, ACT, 12},
    {"sigmoid_fwd", k_sigmoid_fwd, 1, ACT, 8},
    {"sigmoid_bwd", k_sigmoid_bwd, 1, ACT, 12},
    {"softmax_rows 128x10", k_softmax, 128, 10, 8},
    {"softmax_rows 128x1000", k_softmax, 128, 1000, 8},
    {"log_softmax_rows 128x10", k_log_softmax, 128, 10, 8},
    {"log_softmax_rows 128x1000", k_log_softmax, 128, 1000, 8},
    {"axpy", k_axpy, 1, ACT, 12},
    {"scale", k_scale, 1, ACT, 8},
    {"mul (dropout)", k_mul, 1, ACT, 12},
    {"sum_sq", k_sum_sq, 1, ACT, 4},
    {"dot", k_dot, 1, ACT, 8},
    {"sgd_update 784x1200", k_sgd, 1, WEIGHTS, 16},
    {"sgd_update nesterov", k_sgd_nesterov, 1, WEIGHTS, 16},
    {"adam_update (AdamW)", k_adamw, 1, WEIGHTS, 24},
};

static void bench_items(void)
{
    float *a = filled(WEIGHTS, -3, 3), *b = filled(WEIGHTS, -3, 3), *c = filled(WEIGHTS, 0, 1);
    float *d = filled(WEIGHTS, 0, 0), *e = filled(WEIGHTS, 0, 0);
    printf("\nOther kernels, GB/s (bytes read + written) and speed-up over ref\n%-28s", "kernel");
    for (int v = 0; v < NVAR; v++)
        if (tables[v] != NULL) printf("%10s%8s", names[v], v == 0 ? "" : "x");
    printf("\n");
    for (size_t i = 0; i < sizeof items / sizeof items[0]; i++) {
        const item *it = &items[i];
        double bytes = (double)it->rows * (double)it->cols * it->bytes_per_value, t_ref = 0;
        printf("%-28s", it->what);
        for (int v = 0; v < NVAR; v++) {
            if (tables[v] == NULL) continue;
            job j = {tables[v], a, b, c, d, e, it->rows * it->cols, it->rows, it->cols};
            double t = seconds_per_call(it->f, &j);
            if (v == 0) t_ref = t;
            printf("%10.1f", bytes / t * 1e-9);
            if (v > 0)
                printf("%8.1f", t_ref / t);
            else
                printf("%8s", "");
        }
        printf("\n");
    }
    free(a), free(b), free(c), free(d), free(e);
}

int main(void)
{
    for (int v = 0; v < NVAR; v++) tables[v] = kdi_kernels_variant(names[v]);
    printf("bench_kernels: libkd %s, dispatch table %s, OpenBLAS core %s, %d BLAS threads\n",
           kd_version(), kd_kernels_name(), openblas_get_corename(), openblas_get_num_threads());
    bench_gemm();
    bench_items();
    return 0;
}
