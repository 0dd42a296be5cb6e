/* bench_distill_step: time of one distillation step next to the GEMM bound.
 *
 * For the 784-1200-1200-10 teacher and 784-800-800-10 student, at batch 32, 128 and 256, it times
 * kd_trainer_step with a live teacher and with cached teacher logits, and in the same run the sum
 * of the very GEMMs such a step performs, on operands of their own a layer, through cblas_sgemm
 * alone: the GEMM bound. The ratio step / bound says how much the rest (activations, softmax,
 * loss, optimizer, copies) costs. It prints the BLAS core in use; run it under both
 * OPENBLAS_CORETYPE settings (bench/run.sh). Not a test: no pass or fail. */
#define _POSIX_C_SOURCE 200809L /* nanosleep */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kd.h"

static const int teacher_dims[] = {784, 1200, 1200, 10};
static const int student_dims[] = {784, 800, 800, 10};

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

static float *filled(size_t n, float scale)
{
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = scale * (float)((i * 2654435761u) % 1000) / 1000.0f;
    return p;
}

/* A net's GEMM operands, one set a layer as in the step: weights w[l] [d[l+1], d[l]], their
 * gradient g[l], activations a[l] [batch, d[l]] and their gradients da[l]. (Until 2026-11-30 the
 * bound ran every layer on one weight buffer and one input, which stayed in cache: 3.0 ms at
 * batch 32 where the same products on their own buffers take 5.8 ms on the Zen 3.) */
typedef struct {
    float *w[3], *g[3], *a[4], *da[4];
} net_bufs;

static void net_alloc(net_bufs *nb, const int *d, int batch)
{
    for (int l = 0; l < 3; l++) {
        nb->w[l] = filled((size_t)d[l] * (size_t)d[l + 1], 0.01f);
        nb->g[l] = filled((size_t)d[l] * (size_t)d[l + 1], 0.0f);
    }
    for (int l = 0; l < 4; l++) {
        nb->a[l] = filled((size_t)batch * (size_t)d[l], 1.0f);
        nb->da[l] = filled((size_t)batch * (size_t)d[l], 0.01f);
    }
}

static void net_free(net_bufs *nb)
{
    for (int l = 0; l < 3; l++) {
        free(nb->w[l]);
        free(nb->g[l]);
    }
    for (int l = 0; l < 4; l++) {
        free(nb->a[l]);
        free(nb->da[l]);
    }
}

/* The GEMMs of a dense MLP: forward a[l] w[l]^T, and in training the weight gradient da^T a
 * (accumulated, as the trainer does) and the input gradient da w (none for the first layer).
 * Returns their FLOPs. */
static double mlp_gemms(const int *d, int layers, int batch, int train, const net_bufs *nb)
{
    double flops = 0.0;
    for (int l = 0; l < layers; l++) {
        int in = d[l], out = d[l + 1];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, batch, out, in, 1.0f, nb->a[l], in,
                    nb->w[l], in, 0.0f, nb->a[l + 1], out);
        flops += 2.0 * batch * in * out;
    }
    for (int l = layers - 1; train && l >= 0; l--) {
        int in = d[l], out = d[l + 1];
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, batch, 1.0f, nb->da[l + 1],
                    out, nb->a[l], in, 1.0f, nb->g[l], in);
        flops += 2.0 * batch * in * out;
        if (l > 0) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, batch, in, out, 1.0f,
                        nb->da[l + 1], out, nb->w[l], in, 0.0f, nb->da[l], in);
            flops += 2.0 * batch * in * out;
        }
    }
    return flops;
}

static const char *spec_of(const int *d)
{
    static char s[128];
    snprintf(s, sizeof s, "input %d | dense %d | relu | dense %d | relu | dense %d", d[0], d[1],
             d[2], d[3]);
    return s;
}

int main(void)
{
    const int batches[] = {32, 128, 256};
    printf("libkd %s, kernels %s, OpenBLAS core %s, OPENBLAS_CORETYPE=%s\n", kd_version(),
           kd_kernels_name(), openblas_get_corename(),
           getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "(unset)");
    printf("%6s %-8s %10s %10s %10s %9s %8s\n", "batch", "teacher", "step ms", "bound ms", "img/s",
           "GFLOP/s", "ratio");
    float *x = filled((size_t)256 * 784, 1.0f);
    for (size_t bi = 0; bi < sizeof batches / sizeof batches[0]; bi++) {
        int batch = batches[bi];
        kd_model *teacher, *student;
        kd_loss *loss;
        kd_optimizer *opt;
        kd_trainer *tr;
        check(kd_model_create(spec_of(teacher_dims), 1, &teacher), "teacher");
        check(kd_model_create(spec_of(student_dims), 2, &student), "student");
        check(kd_loss_create(KD_LOSS_HINTON, &loss), "loss");
        check(kd_optimizer_create(KD_OPTIMIZER_SGD, student, &opt), "optimizer");
        check(kd_optimizer_set_float(opt, KD_OPT_MOMENTUM, 0.9f), "momentum");
        check(kd_trainer_create(student, loss, opt, &tr), "trainer");
        check(kd_trainer_add_teacher(tr, teacher, 1.0f), "teacher");
        int32_t *labels = malloc(sizeof(int32_t) * (size_t)batch);
        for (int i = 0; i < batch; i++) labels[i] = i % 10;
        float *logits = filled((size_t)batch * 10, 3.0f), value;
        net_bufs sb, tb;
        net_alloc(&sb, student_dims, batch);
        net_alloc(&tb, teacher_dims, batch);
        for (int live = 1; live >= 0; live--) {
            const float *cached = live ? NULL : logits;
            int reps = 4096 / batch + 5;
            /* OpenBLAS's threads spin for about 0.1 s after the bound's products before they
             * sleep: a step timed in that window ran beside them (steps of 5-6 ms instead of
             * 3.4-3.8 at batch 128, in about half the runs) */
            nanosleep(&(struct timespec){0, 300000000}, NULL);
            for (int i = 0; i < 3; i++)
                check(kd_trainer_step(tr, x, labels, cached, batch, &value), "step");
            double t0 = now();
            for (int i = 0; i < reps; i++)
                check(kd_trainer_step(tr, x, labels, cached, batch, &value), "step");
            double step = (now() - t0) / reps;
            double flops = 0.0;
            t0 = now();
            for (int i = 0; i < reps; i++) {
                flops = mlp_gemms(student_dims, 3, batch, 1, &sb);
                if (live) flops += mlp_gemms(teacher_dims, 3, batch, 0, &tb);
            }
            double bound = (now() - t0) / reps;
            printf("%6d %-8s %10.3f %10.3f %10.0f %9.1f %8.2f\n", batch, live ? "live" : "cached",
                   1e3 * step, 1e3 * bound, batch / step, flops / step * 1e-9, step / bound);
        }
        net_free(&sb);
        net_free(&tb);
        free(labels);
        free(logits);
        kd_trainer_destroy(tr);
        kd_optimizer_destroy(opt);
        kd_loss_destroy(loss);
        kd_model_destroy(student);
        kd_model_destroy(teacher);
    }
    free(x);
    return 0;
}
