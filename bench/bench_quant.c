/* Float against int8 (kd_model_quantize) on the same examples: batch-1 latency and throughput,
 * interleaved A/B rounds so that a shared machine's load falls on both alike; medians reported.
 *
 *   bench_quant FLOAT.safetensors INT8.safetensors IDX_PREFIX [ROUNDS] [BATCH]
 *   e.g. build/bench/bench_quant cnn.safetensors cnn-int8.safetensors \
 *            /usr/share/datasets/fashion-mnist/t10k 7 256
 * Under callgrind (deterministic instruction counts; valgrind runs the AVX2 kernels):
 *   KD_KERNELS=avx2 valgrind --tool=callgrind bench_quant F I DATA 1 64 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "kd.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* us per image over `images` batch-1 predictions, and images/s over `images` at batch. */
static void round_of(kd_model *m, const float *x, int64_t in, int64_t images, int64_t batch,
                     float *z, double *lat_us, double *thr)
{
    double t0 = now();
    for (int64_t i = 0; i < images; i++) kd_model_predict(m, x + i * in, 1, z);
    *lat_us = 1e6 * (now() - t0) / (double)images;
    t0 = now();
    for (int64_t i = 0; i + batch <= images; i += batch) kd_model_predict(m, x + i * in, batch, z);
    *thr = (double)(images / batch * batch) / (now() - t0);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: bench_quant FLOAT INT8 IDX_PREFIX [ROUNDS] [BATCH]\n");
        return 2;
    }
    int rounds = argc > 4 ? atoi(argv[4]) : 7;
    int64_t batch = argc > 5 ? atoll(argv[5]) : 256;
    kd_model *m[2];
    kd_dataset *d;
    if (kd_model_load(argv[1], &m[0]) != KD_OK || kd_model_load(argv[2], &m[1]) != KD_OK ||
        kd_dataset_load_idx_prefix(argv[3], &d) != KD_OK) {
        fprintf(stderr, "bench_quant: %s\n", kd_last_error());
        return 1;
    }
    int64_t n, in, out;
    kd_dataset_size(d, &n);
    kd_model_input_size(m[0], &in);
    kd_model_output_size(m[0], &out);
    int64_t images = n < 2048 ? n : 2048;
    if (batch > images) batch = images;
    float *z = malloc(sizeof(float) * (size_t)(batch * out));
    double *lat[2], *thr[2];
    for (int k = 0; k < 2; k++) {
        lat[k] = calloc((size_t)rounds, sizeof(double));
        thr[k] = calloc((size_t)rounds, sizeof(double));
    }
    if (z == NULL || lat[1] == NULL || thr[1] == NULL) return 1;
    const float *x = kd_dataset_images(d);
    for (int r = 0; r < rounds; r++)
        for (int k = 0; k < 2; k++) round_of(m[k], x, in, images, batch, z, &lat[k][r], &thr[k][r]);
    printf("kernels %s, %lld images a round, %d rounds (medians), throughput at batch %lld\n",
           kd_kernels_name(), (long long)images, rounds, (long long)batch);
    const char *names[2] = {"float", "int8"};
    for (int k = 0; k < 2; k++) {
        qsort(lat[k], (size_t)rounds, sizeof(double), cmp);
        qsort(thr[k], (size_t)rounds, sizeof(double), cmp);
        printf("%-6s batch-1 %8.1f us/image   throughput %10.0f images/s\n", names[k],
               lat[k][rounds / 2], thr[k][rounds / 2]);
    }
    printf("int8 / float: latency %.2fx lower, throughput %.2fx higher\n",
           lat[0][rounds / 2] / lat[1][rounds / 2], thr[1][rounds / 2] / thr[0][rounds / 2]);
    for (int k = 0; k < 2; k++) {
        free(lat[k]);
        free(thr[k]);
        kd_model_destroy(m[k]);
    }
    free(z);
    kd_dataset_destroy(d);
    return 0;
}
