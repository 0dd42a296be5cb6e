/* bench_compare: the libkd side of bench/compare.sh, one workload a run, timed after a warm-up.
 *   bench_compare WORKLOAD SECONDS THREADS      (without arguments: every workload, 0.3 s, 1 thread)
 * WORKLOAD: resnet | cnn (a training step of bench_conv's networks, batch 128, cross-entropy
 * through Hinton's loss at alpha 0, SGD with momentum 0.9), mlp_live | mlp_cached (the
 * 784-1200-1200-10 -> 784-800-800-10 distillation step at batch 128, teacher run or its logits
 * given), eval (kd_model_evaluate of the 784-256-10 student, batch 256, 10240 examples a call),
 * lat_mlp | lat_cnn (kd_model_predict at batch 1 of the 784-256-10 student and the small CNN).
 *   bench_compare peak    one core's FP32 FMA peak, measured: `peak GFLOPS ISA`
 * THREADS goes to kd_set_threads when this build has it (KD_HAVE_SET_THREADS, set by CMake) and to
 * OpenBLAS. Prints one line, `WORKLOAD seconds_per_call examples_per_call`, to stdout; FLOPs and
 * ratios are compare.py's. Not a test: no pass or fail. */
#include <cblas.h>
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
    fprintf(stderr, "bench_compare: %s: %s\n", what, kd_last_error());
    exit(1);
}

static float *filled(size_t n, float scale)
{
    float *p = malloc(sizeof(float) * n);
    if (p == NULL) exit(1);
    for (size_t i = 0; i < n; i++)
        p[i] = scale * ((float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f);
    return p;
}

static const char *const resnet =
    "input 1x28x28 | conv 32 3 pad=1 bias=0 | bn | relu | maxpool 2 | "
    "residual(conv 32 3 pad=1 bias=0 | bn | relu | conv 32 3 pad=1 bias=0 | bn) | relu | "
    "residual(conv 64 3 stride=2 pad=1 bias=0 | bn | relu | conv 64 3 pad=1 bias=0 | bn)"
    "(conv 64 1 stride=2 bias=0 | bn) | relu | gap | flatten | dense 10";
static const char *const cnn = "input 1x28x28 | conv 16 3 pad=1 | relu | maxpool 2 | conv 32 3 "
                               "pad=1 | relu | maxpool 2 | flatten | dense 10";
static const char *const mlp_teacher =
    "input 784 | dense 1200 | relu | dense 1200 | relu | dense 10";
static const char *const mlp_student = "input 784 | dense 800 | relu | dense 800 | relu | dense 10";
static const char *const small_student = "input 784 | dense 256 | relu | dense 10";

typedef struct work {
    kd_model *m, *teacher;
    kd_loss *loss;
    kd_optimizer *opt;
    kd_trainer *tr;
    float *x, *logits;
    int32_t *labels;
    int64_t batch, n;
    int kind; /* 0 train step, 1 evaluate, 2 predict */
} work;

static void run(work *w)
{
    float value;
    int64_t correct;
    if (w->kind == 0)
        check(kd_trainer_step(w->tr, w->x, w->labels, w->teacher == NULL ? w->logits : NULL,
                              w->batch, &value),
              "step");
    else if (w->kind == 1)
        check(kd_model_evaluate(w->m, w->x, w->labels, w->n, w->batch, &correct, NULL), "evaluate");
    else
        check(kd_model_predict(w->m, w->x, 1, w->logits), "predict");
}

static int measure(const char *name, double seconds, int threads)
{
    openblas_set_num_threads(threads);
#ifdef KD_HAVE_SET_THREADS
    check(kd_set_threads(threads), "threads");
#endif
    work w = {0};
    w.batch = 128;
    const char *spec = NULL;
    int with_cached_teacher = 0;
    if (strcmp(name, "resnet") == 0) spec = resnet;
    if (strcmp(name, "cnn") == 0) spec = cnn;
    if (strcmp(name, "mlp_live") == 0 || strcmp(name, "mlp_cached") == 0) {
        spec = mlp_student;
        with_cached_teacher = strcmp(name, "mlp_cached") == 0 ? 1 : 2;
    }
    if (strcmp(name, "eval") == 0) spec = small_student, w.kind = 1, w.batch = 256, w.n = 10240;
    if (strcmp(name, "lat_mlp") == 0) spec = small_student, w.kind = 2, w.batch = 1;
    if (strcmp(name, "lat_cnn") == 0) spec = cnn, w.kind = 2, w.batch = 1;
    if (spec == NULL) {
        fprintf(stderr, "bench_compare: unknown workload %s\n", name);
        return 2;
    }
    check(kd_model_create(spec, 1, &w.m), name);
    int64_t rows = w.kind == 1 ? w.n : w.batch;
    w.x = filled((size_t)rows * 784, 1.0f);
    w.logits = filled((size_t)rows * 10, 3.0f);
    w.labels = malloc(sizeof(int32_t) * (size_t)rows);
    for (int64_t i = 0; i < rows; i++) w.labels[i] = (int32_t)(i % 10);
    if (w.kind == 0) {
        check(kd_loss_create(KD_LOSS_HINTON, &w.loss), "loss");
        if (with_cached_teacher == 0)
            check(kd_loss_set_float(w.loss, KD_LOSS_ALPHA, 0.0f), "alpha");
        check(kd_optimizer_create(KD_OPTIMIZER_SGD, w.m, &w.opt), "optimizer");
        check(kd_optimizer_set_float(w.opt, KD_OPT_MOMENTUM, 0.9f), "momentum");
        check(kd_trainer_create(w.m, w.loss, w.opt, &w.tr), "trainer");
        if (with_cached_teacher == 2) {
            check(kd_model_create(mlp_teacher, 2, &w.teacher), "teacher");
            check(kd_trainer_add_teacher(w.tr, w.teacher, 1.0f), "add teacher");
        }
    }
    for (int i = 0; i < 3; i++) run(&w);
    /* calls for about `seconds`, in rounds of about 2 ms (or one call): the best round's mean,
     * so that a short call is timed between two preemptions on a loaded machine */
    double t0 = now();
    run(&w);
    double one = now() - t0;
    int per_round = (int)(0.002 / (one + 1e-9)) + 1;
    int rounds = (int)(seconds / (one * per_round + 1e-9));
    rounds = rounds < 5 ? 5 : rounds > 10000 ? 10000 : rounds;
    double best = 1e30;
    for (int r = 0; r < rounds; r++) {
        t0 = now();
        for (int i = 0; i < per_round; i++) run(&w);
        double t = (now() - t0) / per_round;
        if (t < best) best = t;
    }
    printf("%s %.9g %lld\n", name, best, (long long)(w.kind == 1 ? w.n : w.batch));
    free(w.x), free(w.logits), free(w.labels);
    if (w.tr) kd_trainer_destroy(w.tr);
    if (w.opt) kd_optimizer_destroy(w.opt);
    if (w.loss) kd_loss_destroy(w.loss);
    if (w.teacher) kd_model_destroy(w.teacher);
    kd_model_destroy(w.m);
    return 0;
}

/* One core's FP32 FMA peak, measured: 12 independent chains of vector FMAs (enough to cover
 * 2 FMA pipes of latency 4-6), the widest ISA this CPU has. compare.py divides by it (the share of
 * the peak) rather than assume one machine's figure. */
#define PEAK_CHAINS(F) F(0) F(1) F(2) F(3) F(4) F(5) F(6) F(7) F(8) F(9) F(10) F(11)

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

/* One body, two ISAs: NAME(n, seed) runs 12 chains of n FMAs (FMADD, defined before each use) on
 * LANES-wide vectors of type V. */
#define FMA_LOOP(NAME, TARGET, V, LANES, SET1, STORE)                                              \
    __attribute__((target(TARGET))) static float NAME(long n, float seed)                          \
    {                                                                                              \
        V acc[12], b = SET1(0.999999f), c = SET1(1e-7f);                                           \
        for (int i = 0; i < 12; i++) acc[i] = SET1(seed + (float)i);                               \
        for (long it = 0; it < n; it++) {                                                          \
            PEAK_CHAINS(FMA_STEP)                                                                  \
        }                                                                                          \
        float s = 0.0f, v[LANES];                                                                  \
        for (int i = 0; i < 12; i++) {                                                             \
            STORE(v, acc[i]);                                                                      \
            for (int j = 0; j < LANES; j++) s += v[j];                                             \
        }                                                                                          \
        return s;                                                                                  \
    }
#define FMA_STEP(i) acc[i] = FMADD(acc[i], b, c);

#define FMADD _mm512_fmadd_ps
FMA_LOOP(fma_loop_avx512, "avx512f", __m512, 16, _mm512_set1_ps, _mm512_storeu_ps)
#undef FMADD
#define FMADD _mm256_fmadd_ps
FMA_LOOP(fma_loop_avx2, "avx2,fma", __m256, 8, _mm256_set1_ps, _mm256_storeu_ps)
#undef FMADD

static int peak(void)
{
    __builtin_cpu_init();
    int wide = __builtin_cpu_supports("avx512f");
    if (!wide && !(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) {
        fprintf(stderr, "bench_compare peak: this CPU has neither AVX-512 nor AVX2 with FMA\n");
        return 2;
    }
    double flops_per_it = 12.0 * 2.0 * (wide ? 16 : 8), best = 0.0;
    volatile float sink = 0.0f;
    long n = 10000000; /* 20-60 ms a call; 3 rounds of at least 0.2 s (the clock ramps up) */
    for (int round = 0; round < 3; round++) {
        double t0 = now(), t;
        long calls = 0;
        do {
            float seed = sink; /* a new argument each call: no call is hoisted out of the loop */
            sink = seed + (wide ? fma_loop_avx512(n, seed) : fma_loop_avx2(n, seed)) * 1e-30f;
            calls++;
        } while ((t = now() - t0) < 0.2);
        double gf = flops_per_it * (double)n * (double)calls / t * 1e-9;
        if (gf > best) best = gf;
    }
    (void)sink;
    printf("peak %.1f %s\n", best, wide ? "avx512" : "avx2");
    return 0;
}
#else
static int peak(void)
{
    fprintf(stderr, "bench_compare peak: measured on x86-64 only\n");
    return 2;
}
#endif

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "peak") == 0) return peak();
    if (argc >= 4) return measure(argv[1], atof(argv[2]), atoi(argv[3]));
    /* no arguments (bench/run.sh): every workload briefly, one thread */
    static const char *const all[] = {"resnet", "cnn",     "mlp_live", "mlp_cached",
                                      "eval",   "lat_mlp", "lat_cnn"};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (measure(all[i], 0.3, 1) != 0) return 2;
    return 0;
}
