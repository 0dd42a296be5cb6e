/* Speed measurements (latency at batch 1, throughput at a large batch) and the comparison table. */
#include <stdlib.h>
#include <string.h>

#include "common.h"

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median, not the mean: a shared machine adds long outliers that say nothing of the model. */
int measure_latency(kd_model *m, const kd_dataset *d, double seconds, double *us)
{
    enum { MAX_RUNS = 20000, MIN_RUNS = 20, WARMUP = 5 };
    int64_t in, classes, n;
    kd_model_input_size(m, &in);
    kd_model_output_size(m, &classes);
    kd_dataset_size(d, &n);
    const float *x = kd_dataset_images(d);
    float *z = malloc(sizeof(float) * (size_t)classes);
    double *times = malloc(sizeof(double) * MAX_RUNS);
    if (z == NULL || times == NULL) {
        free(z);
        free(times);
        fail_msg("out of memory");
        return EXIT_RUNTIME;
    }
    kd_status st = KD_OK;
    for (int i = 0; i < WARMUP && st == KD_OK; i++) st = kd_model_predict(m, x, 1, z);
    int runs = 0;
    double start = now_seconds();
    while (st == KD_OK && runs < MAX_RUNS && (runs < MIN_RUNS || now_seconds() - start < seconds)) {
        double t0 = now_seconds();
        st = kd_model_predict(m, x + (runs % n) * in, 1, z);
        times[runs++] = now_seconds() - t0;
    }
    if (st == KD_OK) {
        qsort(times, (size_t)runs, sizeof *times, compare_doubles);
        *us = 1e6 * times[runs / 2];
    }
    free(z);
    free(times);
    return st == KD_OK ? EXIT_OK : fail_kd("latency", st);
}

int measure_throughput(kd_model *m, const kd_dataset *d, int64_t batch, double seconds,
                       double *images_per_s)
{
    int64_t classes, n;
    kd_model_output_size(m, &classes);
    kd_dataset_size(d, &n);
    if (batch > n) batch = n;
    float *z = malloc(sizeof(float) * (size_t)(batch * classes));
    if (z == NULL) {
        fail_msg("out of memory");
        return EXIT_RUNTIME;
    }
    const float *x = kd_dataset_images(d);
    kd_status st = kd_model_predict(m, x, batch, z); /* warm-up: workspaces, caches */
    int64_t reps = 0;
    double start = now_seconds(), elapsed = 0.0;
    while (st == KD_OK && (reps < 3 || elapsed < seconds)) {
        st = kd_model_predict(m, x, batch, z);
        reps++;
        elapsed = now_seconds() - start;
    }
    free(z);
    if (st != KD_OK) return fail_kd("throughput", st);
    *images_per_s = (double)(reps * batch) / elapsed;
    return EXIT_OK;
}

int measure_models(kd_model **m, int n, const kd_dataset *d, int64_t batch, double seconds,
                   double *us, double *images_per_s)
{
    enum { ROUNDS = 5, MAX_MODELS = 32 };
    if (n > MAX_MODELS) n = MAX_MODELS;
    double lat[MAX_MODELS][ROUNDS], thr[MAX_MODELS][ROUNDS];
    int rc = EXIT_OK;
    for (int r = 0; r < ROUNDS && rc == EXIT_OK; r++)
        for (int i = 0; i < n && rc == EXIT_OK; i++) {
            rc = measure_latency(m[i], d, seconds / ROUNDS, &lat[i][r]);
            if (rc == EXIT_OK)
                rc = measure_throughput(m[i], d, batch, seconds / ROUNDS, &thr[i][r]);
        }
    for (int i = 0; i < n && rc == EXIT_OK; i++) {
        qsort(lat[i], ROUNDS, sizeof lat[i][0], compare_doubles);
        qsort(thr[i], ROUNDS, sizeof thr[i][0], compare_doubles);
        us[i] = lat[i][ROUNDS / 2];
        images_per_s[i] = thr[i][ROUNDS / 2];
    }
    return rc;
}

void print_comparison(FILE *f, const model_stats *s, int n, int baseline)
{
    int thr = 0; /* the throughput column when it was measured (kd eval) */
    for (int i = 0; i < n; i++) thr |= s[i].throughput > 0;
    int wn = 20, ws = 18; /* columns as wide as the longest name (kd eval's file names) */
    for (int i = 0; i < n; i++) {
        wn = (int)strlen(s[i].name) > wn ? (int)strlen(s[i].name) : wn;
        ws = (int)strlen(s[i].shape) > ws ? (int)strlen(s[i].shape) : ws;
    }
    fprintf(f, "%-*s %-*s %9s %11s %10s %14s %9s", wn, "model", ws, "architecture", "test acc",
            "params", "file size", "latency/image", "speed-up");
    fprintf(f, thr ? " %12s %9s\n" : "\n", "images/s", "vs first");
    for (int i = 0; i < n; i++) {
        char params[32], size[32], lat[32], speed[32], ips[32];
        format_count(s[i].params, params, sizeof params);
        if (s[i].bytes >= 0)
            format_bytes((double)s[i].bytes, size, sizeof size);
        else
            snprintf(size, sizeof size, "-");
        snprintf(lat, sizeof lat, "%.1f us", s[i].latency_us);
        snprintf(speed, sizeof speed, "%.1fx", s[baseline].latency_us / s[i].latency_us);
        fprintf(f, "%-*s %-*s %8.2f%% %11s %10s %14s %9s", wn, s[i].name, ws, s[i].shape,
                s[i].accuracy, params, size, lat, speed);
        if (!thr) {
            fprintf(f, "\n");
            continue;
        }
        format_count((int64_t)(s[i].throughput + 0.5), ips, sizeof ips);
        fprintf(f, " %12s %8.1fx\n", ips,
                s[baseline].throughput > 0 ? s[i].throughput / s[baseline].throughput : 0.0);
    }
}

int fill_stats(model_stats *s, const char *name, kd_model *m, const char *path,
               const kd_dataset *test, double accuracy)
{
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    model_shape_name(m, s->shape, sizeof s->shape);
    kd_model_param_count(m, &s->params);
    s->bytes = path != NULL ? file_size(path) : -1;
    s->accuracy = accuracy;
    return measure_latency(m, test, 0.5, &s->latency_us);
}
