/* bench_lm: a GPT-2 style byte-level language model in libkd -- one training step (forward,
 * cross-entropy over batch * T tokens, backward, AdamW with clipping, through kd_trainer_step) and
 * batch-1 generation with the key/value cache (kd_model_generate, greedy) -- for comparison with
 * the same shapes in PyTorch (bench/bench_lm.py runs both and prints the ratio).
 *
 *   bench_lm [--width D] [--layers L] [--heads H] [--context T] [--batch B] [--steps N]
 *
 * Threads: OPENBLAS_NUM_THREADS. Prints one line "libkd step_ms X gen_tok_s Y params P step_cpu_ms
 * C" (medians over N steps and 3 generations, after one warm-up each; C is the process's CPU time
 * a step, all threads, steadier than X on a loaded machine). Not a test; no pass or fail.
 * Timings on a shared machine are noisy. */
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

static void check(kd_status st, const char *what)
{
    if (st == KD_OK) return;
    fprintf(stderr, "bench_lm: %s: %s\n", what, kd_last_error());
    exit(1);
}

/* CPU time of the process, every thread: under load on a shared machine, steadier than wall time
 * (equal to it on a quiet machine at one thread). */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    long long d = 128, layers = 4, heads = 4, T = 64, B = 16, steps = 10;
    for (int i = 1; i + 1 < argc; i += 2) {
        long long v = atoll(argv[i + 1]);
        if (strcmp(argv[i], "--width") == 0)
            d = v;
        else if (strcmp(argv[i], "--layers") == 0)
            layers = v;
        else if (strcmp(argv[i], "--heads") == 0)
            heads = v;
        else if (strcmp(argv[i], "--context") == 0)
            T = v;
        else if (strcmp(argv[i], "--batch") == 0)
            B = v;
        else if (strcmp(argv[i], "--steps") == 0)
            steps = v;
        else {
            fprintf(stderr, "bench_lm: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (steps < 1 || steps > 1000) steps = 10;
    char spec[8192];
    int n = snprintf(spec, sizeof spec, "tokens 256 %lld | embed %lld | posembed", T, d);
    for (long long l = 0; l < layers; l++)
        n += snprintf(spec + n, sizeof spec - (size_t)n,
                      " | residual(layernorm | attention %lld causal) | residual(layernorm | "
                      "dense %lld | gelu | dense %lld)",
                      heads, 4 * d, d);
    snprintf(spec + n, sizeof spec - (size_t)n, " | layernorm | lmhead 256");
    kd_model *m;
    kd_loss *loss;
    kd_optimizer *opt;
    kd_trainer *tr;
    int64_t params;
    check(kd_model_create(spec, 1, &m), "model");
    check(kd_model_param_count(m, &params), "params");
    check(kd_loss_create(KD_LOSS_HINTON, &loss), "loss");
    check(kd_loss_set_float(loss, KD_LOSS_ALPHA, 0.0f), "alpha");
    check(kd_optimizer_create(KD_OPTIMIZER_ADAMW, m, &opt), "optimizer");
    check(kd_optimizer_set_float(opt, KD_OPT_LEARNING_RATE, 1e-3f), "lr");
    check(kd_optimizer_set_float(opt, KD_OPT_CLIP_NORM, 1.0f), "clip");
    check(kd_trainer_create(m, loss, opt, &tr), "trainer");
    float *x = malloc(sizeof *x * (size_t)(B * T)), v;
    int32_t *y = malloc(sizeof *y * (size_t)(B * T));
    srand(1);
    for (long long i = 0; i < B * T; i++) {
        x[i] = (float)(rand() % 256);
        y[i] = rand() % 256;
    }
    double *t = malloc(sizeof *t * (size_t)steps), *tc = malloc(sizeof *tc * (size_t)steps);
    check(kd_trainer_step(tr, x, y, NULL, B, &v), "warm-up step");
    for (long long s = 0; s < steps; s++) {
        double t0 = now(), c0 = cpu_now();
        check(kd_trainer_step(tr, x, y, NULL, B, &v), "step");
        t[s] = now() - t0;
        tc[s] = cpu_now() - c0;
    }
    qsort(t, (size_t)steps, sizeof *t, cmp);
    qsort(tc, (size_t)steps, sizeof *tc, cmp);
    double step_ms = 1e3 * t[steps / 2], step_cpu_ms = 1e3 * tc[steps / 2];

    int32_t prompt[1] = {'T'}, *out = malloc(sizeof *out * (size_t)T);
    double g[3];
    check(kd_model_generate(m, prompt, 1, T - 1, 0.0f, 0, 1.0f, 1, out), "warm-up generation");
    for (int r = 0; r < 3; r++) {
        double t0 = now();
        check(kd_model_generate(m, prompt, 1, T - 1, 0.0f, 0, 1.0f, 1, out), "generation");
        g[r] = (double)(T - 1) / (now() - t0);
    }
    qsort(g, 3, sizeof *g, cmp);
    printf("libkd step_ms %.3f gen_tok_s %.1f params %lld step_cpu_ms %.3f\n", step_ms, g[1],
           (long long)params, step_cpu_ms);
    free(out);
    free(t);
    free(tc);
    free(x);
    free(y);
    kd_trainer_destroy(tr);
    kd_optimizer_destroy(opt);
    kd_loss_destroy(loss);
    kd_model_destroy(m);
    return 0;
}
