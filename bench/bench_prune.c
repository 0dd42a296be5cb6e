/* Latency of models side by side (issue 14: is the channel-pruned student faster?), interleaved
 * A/B so a noisy machine slows both alike: ROUNDS rounds, each timing every model for ITERS
 * predictions of batch B in turn; prints each model's median time per example over the rounds.
 *   usage: bench_prune [--batch B] [--iters N] [--rounds R] MODEL.safetensors...
 * Deterministic alternative on a shared machine: instruction counts,
 *   valgrind --tool=callgrind bench_prune --rounds 1 --iters 200 MODEL   (one model a run). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kd.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    int64_t batch = 1, iters = 2000, rounds = 9;
    int first = 1;
    for (; first + 1 < argc && strncmp(argv[first], "--", 2) == 0; first += 2) {
        int64_t v = atoll(argv[first + 1]);
        if (strcmp(argv[first], "--batch") == 0)
            batch = v;
        else if (strcmp(argv[first], "--iters") == 0)
            iters = v;
        else if (strcmp(argv[first], "--rounds") == 0)
            rounds = v;
    }
    int n = argc - first;
    if (n < 1 || batch < 1 || iters < 1 || rounds < 1 || rounds > 99) {
        fprintf(stderr, "usage: bench_prune [--batch B] [--iters N] [--rounds R] MODEL...\n");
        return 2;
    }
    kd_model **m = calloc((size_t)n, sizeof *m);
    double *t = calloc((size_t)n * (size_t)rounds, sizeof *t);
    int64_t in_max = 0, out_max = 0;
    for (int i = 0; i < n; i++) {
        int64_t in, out;
        if (kd_model_load(argv[first + i], &m[i]) != KD_OK) {
            fprintf(stderr, "%s: %s\n", argv[first + i], kd_last_error());
            return 1;
        }
        kd_model_input_size(m[i], &in);
        kd_model_output_size(m[i], &out);
        if (in > in_max) in_max = in;
        if (out > out_max) out_max = out;
    }
    float *x = malloc(sizeof *x * (size_t)(batch * in_max)),
          *y = malloc(sizeof *y * (size_t)(batch * out_max));
    for (int64_t i = 0; i < batch * in_max; i++) x[i] = (float)(i % 255) / 255.0f;
    for (int i = 0; i < n; i++) kd_model_predict(m[i], x, batch, y); /* warm-up: workspaces */
    for (int64_t r = 0; r < rounds; r++)
        for (int i = 0; i < n; i++) {
            double start = now();
            for (int64_t k = 0; k < iters; k++) kd_model_predict(m[i], x, batch, y);
            t[i * rounds + r] = (now() - start) / (double)(iters * batch);
        }
    printf("%-40s %12s %12s   (batch %lld, %lld x %lld predictions)\n", "model", "median us/ex",
           "min us/ex", (long long)batch, (long long)rounds, (long long)iters);
    for (int i = 0; i < n; i++) {
        qsort(t + i * rounds, (size_t)rounds, sizeof *t, cmp);
        printf("%-40s %12.3f %12.3f\n", argv[first + i], 1e6 * t[i * rounds + rounds / 2],
               1e6 * t[i * rounds]);
        kd_model_destroy(m[i]);
    }
    free(m);
    free(t);
    free(x);
    free(y);
    return 0;
}
