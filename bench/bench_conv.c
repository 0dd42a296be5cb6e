/* bench_conv: convolution layers next to the GEMM bound, and whole CNN steps.
 *
 * For each conv layer of cnn_distill's ResNet teacher and small CNN (and a depthwise layer), at
 * batch 128, it times the layer's forward and forward + backward through the public API (a model
 * of a relu and that layer, so the input-gradient pass runs as it would inside a network), and in the
 * same run the GEMMs im2col + GEMM must do -- Y = W cols, dW = dY cols^T, dcols = W^T dY -- through
 * cblas_sgemm alone on buffers of the same sizes: the GEMM bound. The ratio layer / bound says
 * what im2col, col2im and the NCHW copies add. Depthwise layers run as direct loops; their bound is
 * the same FLOPs at the GEMM rate of the first row. Then one training step of each whole network.
 * Prints the BLAS core in use; run it under both OPENBLAS_CORETYPE settings (bench/run.sh).
 * Not a test: no pass or fail. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kd.h"

#define BATCH 128

typedef struct layer {
    const char *name;
    int cin, h, w, cout, k, stride, pad, groups;
} layer;

static const layer layers[] = {
    {"teacher stem 1->32 3x3 @28", 1, 28, 28, 32, 3, 1, 1, 1},
    {"teacher block 32->32 3x3 @14", 32, 14, 14, 32, 3, 1, 1, 1},
    {"teacher down 32->64 3x3 s2 @14", 32, 14, 14, 64, 3, 2, 1, 1},
    {"teacher block 64->64 3x3 @7", 64, 7, 7, 64, 3, 1, 1, 1},
    {"teacher shortcut 32->64 1x1 s2", 32, 14, 14, 64, 1, 2, 0, 1},
    {"student 16->32 3x3 @14", 16, 14, 14, 32, 3, 1, 1, 1},
    {"depthwise 64 3x3 @14", 64, 14, 14, 64, 3, 1, 1, 64},
};

static const char *const networks[][2] = {
    {"ResNet teacher",
     "input 1x28x28 | conv 32 3 pad=1 bias=0 | bn | relu | maxpool 2 | "
     "residual(conv 32 3 pad=1 bias=0 | bn | relu | conv 32 3 pad=1 bias=0 | bn) | relu | "
     "residual(conv 64 3 stride=2 pad=1 bias=0 | bn | relu | conv 64 3 pad=1 bias=0 | bn)"
     "(conv 64 1 stride=2 bias=0 | bn) | relu | gap | flatten | dense 10"},
    {"small CNN", "input 1x28x28 | conv 16 3 pad=1 | relu | maxpool 2 | conv 32 3 pad=1 | relu | "
                  "maxpool 2 | flatten | dense 10"},
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void check(kd_status st, const char *what)
{
    if (st == KD_OK) return;
    fprintf(stderr, "bench_conv: %s: %s\n", what, kd_last_error());
    exit(1);
}

static float *filled(size_t n, float scale)
{
    float *p = malloc(n * sizeof *p);
    if (p == NULL) exit(1);
    for (size_t i = 0; i < n; i++) p[i] = scale * (float)((i * 2654435761u) % 1000) / 1000.0f;
    return p;
}

/* Repetitions that take about 0.3 s, from one timed call. */
static int reps_for(double seconds) { return seconds > 0.3 ? 1 : (int)(0.3 / seconds) + 1; }

/* The im2col GEMMs of one layer; returns FLOPs, times them when run is set (seconds in *t). */
static double bound(const layer *c, int oh, int ow, int train, double *t)
{
    int m = c->cout / c->groups, k = c->cin / c->groups * c->k * c->k, n = BATCH * oh * ow;
    if (c->groups > 1) { /* depthwise: the same FLOPs as one dense GEMM of cout rows */
        m = c->cout;
        k = c->k * c->k;
    }
    float *w = filled((size_t)m * k, 0.01f), *cols = filled((size_t)k * n, 1.0f);
    float *y = filled((size_t)m * n, 0.01f);
    double flops = 2.0 * m * n * k * (train ? 3 : 1);
    int reps = 0;
    double t0 = now(), el;
    do {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, w, k, cols, n, 0.0f,
                    y, n);
        if (train) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, k, n, 1.0f, y, n, cols, n, 1.0f,
                        w, k);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k, n, m, 1.0f, w, k, y, n, 0.0f,
                        cols, n);
        }
        reps++;
        el = now() - t0;
    } while (el < 0.3);
    *t = el / reps;
    free(w);
    free(cols);
    free(y);
    return flops;
}

static void bench_layer(const layer *c)
{
    char spec[160];
    snprintf(spec, sizeof spec,
             "input %dx%dx%d | relu | conv %d %d stride=%d pad=%d groups=%d bias=0", c->cin, c->h,
             c->w, c->cout, c->k, c->stride, c->pad, c->groups);
    kd_model *m;
    check(kd_model_create(spec, 1, &m), spec);
    int64_t in, out;
    check(kd_model_input_size(m, &in), "input size");
    check(kd_model_output_size(m, &out), "output size");
    int oh = (c->h + 2 * c->pad - c->k) / c->stride + 1,
        ow = (c->w + 2 * c->pad - c->k) / c->stride + 1;
    float *x = filled((size_t)(BATCH * in), 1.0f), *y = filled((size_t)(BATCH * out), 0.0f);
    float *g = filled((size_t)(BATCH * out), 0.01f);
    double times[2];
    for (int train = 0; train <= 1; train++) {
        check(kd_model_forward(m, x, BATCH, y), "warm-up"); /* workspaces */
        double t0 = now();
        check(kd_model_forward(m, x, BATCH, y), "forward");
        if (train) check(kd_model_backward(m, g), "backward");
        int reps = reps_for(now() - t0);
        t0 = now();
        for (int r = 0; r < reps; r++) {
            if (train) {
                check(kd_model_forward(m, x, BATCH, y), "forward");
                check(kd_model_backward(m, g), "backward");
            } else {
                check(kd_model_predict(m, x, BATCH, y), "predict");
            }
        }
        times[train] = (now() - t0) / reps;
    }
    check(kd_model_zero_grad(m), "zero_grad");
    double tb[2], f[2];
    for (int train = 0; train <= 1; train++) f[train] = bound(c, oh, ow, train, &tb[train]);
    printf("%-32s %9.3f %8.1f %6.2f %9.3f %8.1f %6.2f\n", c->name, 1e3 * times[0],
           f[0] / times[0] * 1e-9, times[0] / tb[0], 1e3 * times[1], f[1] / times[1] * 1e-9,
           times[1] / tb[1]);
    free(x);
    free(y);
    free(g);
    kd_model_destroy(m);
}

static void bench_network(const char *name, const char *spec)
{
    kd_model *m;
    kd_loss *loss;
    kd_optimizer *opt;
    kd_trainer *t;
    check(kd_model_create(spec, 1, &m), name);
    check(kd_loss_create(KD_LOSS_HINTON, &loss), "loss");
    check(kd_loss_set_float(loss, KD_LOSS_ALPHA, 0.0f), "alpha");
    check(kd_optimizer_create(KD_OPTIMIZER_SGD, m, &opt), "optimizer");
    check(kd_optimizer_set_float(opt, KD_OPT_MOMENTUM, 0.9f), "momentum");
    check(kd_trainer_create(m, loss, opt, &t), "trainer");
    float *x = filled((size_t)BATCH * 784, 1.0f), value;
    int32_t labels[BATCH];
    for (int i = 0; i < BATCH; i++) labels[i] = i % 10;
    check(kd_trainer_step(t, x, labels, NULL, BATCH, &value), "step");
    double t0 = now();
    check(kd_trainer_step(t, x, labels, NULL, BATCH, &value), "step");
    int reps = reps_for(now() - t0);
    t0 = now();
    for (int r = 0; r < reps; r++)
        check(kd_trainer_step(t, x, labels, NULL, BATCH, &value), "step");
    double step = (now() - t0) / reps;
    printf("%-16s %9.2f ms a step, %8.0f images/s, %5.1f s an epoch of 60000\n", name, 1e3 * step,
           BATCH / step, 60000.0 / BATCH * step);
    free(x);
    kd_trainer_destroy(t);
    kd_optimizer_destroy(opt);
    kd_loss_destroy(loss);
    kd_model_destroy(m);
}

/* usage: bench_conv [layers|networks]   (default both; threads from KD_THREADS) */
int main(int argc, char **argv)
{
    const char *only = argc > 1 ? argv[1] : "";
    int32_t threads;
    check(kd_get_threads(&threads), "threads");
    printf("libkd %s, kernels %s, OpenBLAS core %s, OPENBLAS_CORETYPE=%s, batch %d, %d threads\n",
           kd_version(), kd_kernels_name(), openblas_get_corename(),
           getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "(unset)", BATCH,
           (int)threads);
    if (strcmp(only, "networks") != 0) {
        printf("%-32s %9s %8s %6s %9s %8s %6s\n", "layer", "fwd ms", "GFLOP/s", "ratio", "train ms",
               "GFLOP/s", "ratio");
        for (size_t i = 0; i < sizeof layers / sizeof layers[0]; i++) bench_layer(&layers[i]);
    }
    if (strcmp(only, "layers") != 0)
        for (size_t i = 0; i < sizeof networks / sizeof networks[0]; i++)
            bench_network(networks[i][0], networks[i][1]);
    return 0;
}
