/* kd_set_threads: its arguments, and results that hardly depend on the thread count. A network
 * with every layer that runs parallel loops (convolution through im2col in chunks, grouped and
 * 1x1, depthwise stride 1 and 2, batch norm, pooling, activations, a residual) trains with SGD and
 * with Adam on 1 and on 2 threads. kd.h's promises:
 * - a given thread count gives bitwise the same results run after run;
 * - on 1 and 2 threads, with OpenBLAS held at one thread (only libkd's loops and its split
 *   convolution GEMMs change) or following the knob, predictions agree within 1e-4 after SGD and
 *   1e-3 after Adam (whose first steps move each weight by about lr * sign(g), so a gradient near
 *   0 rounded apart moves its weight apart), relative to the largest logit. (libkd's elementwise,
 *   per-channel and per-image loops are bitwise independent of the count; OpenBLAS's threaded
 *   GEMM, and in some shapes its GEMM on a slice of columns, round differently.)
 * The shapes are large enough to pass KDI_PARALLEL_MIN. */
#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/helper.h"
#include "core/threads.h"
#include "faults.h"
#include "kd.h"
#include "kernels/kernels.h"
#include "nn/gemm.h"
#include "optim/optim.h"
#include "testutil.h"

#define BATCH 40
#define STEPS 2

/* Convolutions through im2col run a chunk of images at a time (one image of the 16 x 3x3 convs
 * on 28x28), and split dW by input channels, or by output channels after a 1-channel input (the
 * 1x1 conv to one channel, then 3x3 from it). */
static const char *const spec =
    "input 3x28x28 | conv 1 1 | conv 16 3 pad=1 | bn | relu | conv 16 3 pad=1 bias=0 | gelu"
    " | conv 16 3 pad=1 groups=16 | tanh | conv 16 3 stride=2 pad=1 groups=16 | maxpool 2"
    " | residual(conv 16 1 groups=2 | bn | sigmoid) | avgpool 2 | leakyrelu | flatten | dense 10";

/* blas_threads 0: OpenBLAS follows the knob (kd_set_threads sets it). */
static unsigned char *train(int32_t threads, int blas_threads, kd_optimizer_kind kind, float *pred,
                            size_t *size)
{
    ck_assert_int_eq(kd_set_threads(threads), KD_OK);
    int32_t got;
    ck_assert_int_eq(kd_get_threads(&got), KD_OK);
    ck_assert_int_eq(got, threads);
    if (blas_threads > 0) openblas_set_num_threads(blas_threads);
    kd_model *m;
    kd_loss *loss;
    kd_optimizer *opt;
    kd_trainer *t;
    ck_assert_msg(kd_model_create(spec, 7, &m) == KD_OK, "%s", kd_last_error());
    ck_assert_int_eq(kd_loss_create(KD_LOSS_HINTON, &loss), KD_OK);
    ck_assert_int_eq(kd_loss_set_float(loss, KD_LOSS_ALPHA, 0.0f), KD_OK);
    ck_assert_int_eq(kd_optimizer_create(kind, m, &opt), KD_OK);
    if (kind == KD_OPTIMIZER_SGD)
        ck_assert_int_eq(kd_optimizer_set_float(opt, KD_OPT_MOMENTUM, 0.9f), KD_OK);
    ck_assert_int_eq(kd_trainer_create(m, loss, opt, &t), KD_OK);
    float *x = malloc(sizeof(float) * BATCH * 3 * 28 * 28);
    int32_t labels[BATCH];
    ck_assert_ptr_nonnull(x);
    for (int i = 0; i < BATCH; i++) labels[i] = i % 10;
    for (int s = 0; s < STEPS; s++) {
        kdt_fill(x, BATCH * 3 * 28 * 28, (uint64_t)s + 1, -1.0f, 1.0f);
        float value;
        ck_assert_msg(kd_trainer_step(t, x, labels, NULL, BATCH, &value) == KD_OK, "%s",
                      kd_last_error());
    }
    ck_assert_int_eq(kd_model_predict(m, x, BATCH, pred), KD_OK);
    unsigned char *state = kdt_trainer_state(t, size);
    free(x);
    kd_trainer_destroy(t);
    kd_optimizer_destroy(opt);
    kd_loss_destroy(loss);
    kd_model_destroy(m);
    return state;
}

/* The largest difference of two predictions, relative to the largest logit. */
static double apart(const float *a, const float *b, int n)
{
    double top = 0.0, diff = 0.0;
    for (int i = 0; i < n; i++) {
        top = fmax(top, fabs(a[i]));
        diff = fmax(diff, fabs(a[i] - b[i]));
    }
    return diff / top;
}

static void same_on_1_and_2(kd_optimizer_kind kind, double tolerance)
{
    float p1[BATCH * 10], p2[BATCH * 10], q2[BATCH * 10];
    size_t n1, n2, m2;
    /* OpenBLAS held at one thread: only libkd's loops and the conv GEMM slices change */
    unsigned char *s1 = train(1, 1, kind, p1, &n1), *s2 = train(2, 1, kind, p2, &n2);
    ck_assert_uint_eq(n1, n2);
    ck_assert_msg(apart(p1, p2, BATCH * 10) <= tolerance, "libkd on 1 and 2 threads: %g apart",
                  apart(p1, p2, BATCH * 10));
    free(s2);
    /* OpenBLAS on 2 threads too: twice the same bits, and near 1 thread's */
    s2 = train(2, 0, kind, p2, &n2);
    unsigned char *t2 = train(2, 0, kind, q2, &m2);
    ck_assert_uint_eq(n2, m2);
    ck_assert_msg(memcmp(s2, t2, n2) == 0, "two runs on 2 threads differ");
    ck_assert_msg(memcmp(p2, q2, sizeof p2) == 0, "two runs on 2 threads predict differently");
    /* 2 threads' parts run by a team of 1 (a busy machine, kdi_team_for): the same bits */
    free(t2);
    kdi_team_force(1);
    t2 = train(2, 0, kind, q2, &m2);
    kdi_team_force(0);
    ck_assert_uint_eq(n2, m2);
    ck_assert_msg(memcmp(s2, t2, n2) == 0, "2 threads on a team of 1 differ");
    ck_assert_msg(memcmp(p2, q2, sizeof p2) == 0, "2 threads on a team of 1 predict differently");
    ck_assert_msg(apart(p1, p2, BATCH * 10) <= tolerance, "1 and 2 threads: %g apart",
                  apart(p1, p2, BATCH * 10));
    free(s1);
    free(s2);
    free(t2);
}

START_TEST(sgd_same_results) { same_on_1_and_2(KD_OPTIMIZER_SGD, 1e-4); }
END_TEST

START_TEST(adam_same_results) { same_on_1_and_2(KD_OPTIMIZER_ADAM, 1e-3); }
END_TEST

/* The step's gradient norm (the clip coefficient and the finiteness check) sums a large
 * parameter's gradient in fixed slices on the threads: bitwise the same on 1 and 2 threads, and
 * the exact sum to double rounding. */
static double grad_norm_on(int32_t threads, int64_t *count)
{
    ck_assert_int_eq(kd_set_threads(threads), KD_OK);
    kd_model *m;
    kd_optimizer *o;
    ck_assert_int_eq(kd_model_create("input 300 | dense 211 | relu | dense 7", 3, &m), KD_OK);
    ck_assert_int_eq(kd_optimizer_create(KD_OPTIMIZER_SGD, m, &o), KD_OK);
    const kdi_param_list *pl = kdi_model_params(m);
    *count = 0;
    for (int32_t i = 0; i < pl->n; i++) {
        kdi_param *p = pl->items[i].p;
        kdt_fill(p->grad, p->count, 11 + (uint64_t)i, -2.0f, 2.0f);
        *count += p->count;
    }
    ck_assert_msg(kd_optimizer_step(o) == KD_OK, "%s", kd_last_error());
    double norm = o->grad_norm;
    kd_optimizer_destroy(o);
    kd_model_destroy(m);
    return norm;
}

START_TEST(grad_norm_same_on_1_and_2)
{
    int64_t n1, n2;
    double g1 = grad_norm_on(1, &n1), g2 = grad_norm_on(2, &n2);
    ck_assert_int_ge(n1, KDI_PARALLEL_MIN); /* the first layer's weights take the sliced sum */
    ck_assert_msg(memcmp(&g1, &g2, sizeof g1) == 0, "grad norm %.17g on 1 thread, %.17g on 2", g1,
                  g2);
    long double acc = 0.0L; /* the same fills, summed one value at a time in long double */
    float *g = malloc(sizeof(float) * 300 * 211);
    ck_assert_ptr_nonnull(g);
    int64_t sizes[] = {300 * 211, 211, 211 * 7, 7};
    for (int i = 0; i < 4; i++) {
        kdt_fill(g, sizes[i], 11 + (uint64_t)i, -2.0f, 2.0f);
        for (int64_t j = 0; j < sizes[i]; j++) acc += (long double)g[j] * g[j];
    }
    double ref = (double)sqrtl(acc);
    free(g);
    ck_assert_msg(fabs(g1 - ref) <= 1e-12 * ref, "grad norm %.17g, exact %.17g", g1, ref);
}
END_TEST

/* kdi_gemm split over 2 threads by C's columns and by its rows, each transposition, against the
 * reference loop: within 1e-5 of sum |a b| an element; bitwise the same run after run and on a
 * team of 1 (kdi_team_force); and bitwise one thread's whenever the product's kernel is libkd's
 * (gemm_route): 128 x 1024 x 256 takes the packed kernel whole, and its 64-column slices, 2^21
 * multiply-adds each, would have taken gemm_small, which sums k in another order. */
START_TEST(split_gemm)
{
    static const int64_t shapes[][3] = {
        {130, 300, 100}, {300, 130, 100}, {128, 1024, 256}, {1024, 128, 256}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int form = 0; form < 3; form++) {
            int ta = form == 1, tb = form == 0;
            int64_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
            int64_t lda = ta ? m : k, ldb = tb ? k : n;
            float *a = malloc(sizeof(float) * (size_t)(m * k));
            float *b = malloc(sizeof(float) * (size_t)(k * n));
            float *c[3], *ref = malloc(sizeof(float) * (size_t)(m * n));
            ck_assert_ptr_nonnull(a);
            ck_assert_ptr_nonnull(b);
            ck_assert_ptr_nonnull(ref);
            kdt_fill(a, m * k, 3, -1.0f, 1.0f);
            kdt_fill(b, k * n, 4, -1.0f, 1.0f);
            kdt_fill(ref, m * n, 5, -1.0f, 1.0f);
            for (int r = 0; r < 3; r++) {
                c[r] = malloc(sizeof(float) * (size_t)(m * n));
                ck_assert_ptr_nonnull(c[r]);
                memcpy(c[r], ref, sizeof(float) * (size_t)(m * n));
                ck_assert_int_eq(kd_set_threads(r == 0 ? 1 : 2), KD_OK);
                kdi_team_force(r == 2 ? 1 : 0); /* the third: 2 threads' parts on one */
                kdi_gemm(ta, tb, m, n, k, 0.5f, a, lda, b, ldb, 0.25f, c[r], n);
                kdi_team_force(0);
            }
            kdi_kernels_ref.gemm(ta, tb, m, n, k, 0.5f, a, lda, b, ldb, 0.25f, ref, n);
            ck_assert_msg(memcmp(c[1], c[2], sizeof(float) * (size_t)(m * n)) == 0,
                          "two runs on 2 threads differ");
            const kdi_kernels *kn = kdi_kernels_get();
            if (kn->gemm_route(ta, tb, m, n, k) != KDI_GEMM_BY_GEMM || strcmp(kn->name, "ref") == 0)
                ck_assert_msg(memcmp(c[0], c[1], sizeof(float) * (size_t)(m * n)) == 0,
                              "%s: shape %d form %d differs on 1 and 2 threads", kn->name, (int)s,
                              form);
            for (int64_t i = 0; i < m; i++)
                for (int64_t j = 0; j < n; j++) {
                    double bound = 0.25 * fabs(ref[i * n + j]);
                    for (int64_t p = 0; p < k; p++)
                        bound += 0.5 * fabs((double)a[ta ? p * lda + i : i * lda + p] *
                                            (double)b[tb ? j * ldb + p : p * ldb + j]);
                    for (int r = 0; r < 2; r++)
                        ck_assert_msg(
                            fabs(c[r][i * n + j] - ref[i * n + j]) <= 1e-5 * bound + 1e-30,
                            "shape %d form %d threads %d at (%d, %d): %g, expected %g", (int)s,
                            form, r + 1, (int)i, (int)j, c[r][i * n + j], ref[i * n + j]);
                }
            free(a), free(b), free(ref), free(c[0]), free(c[1]), free(c[2]);
        }
    ck_assert_int_eq(kd_set_threads(1), KD_OK);
}
END_TEST

/* kdi_helper_parts: every part runs exactly once, whoever takes it; with the helper made to join,
 * it takes some (from the top) in most calls; two host threads calling at once both finish (one of them alone). */
enum { HP_PARTS = 37 };
typedef struct {
    _Atomic int runs[HP_PARTS];
    _Atomic int by_helper;
    int calls_shared; /* calls in which the helper ran a part */
    pthread_t caller;
    int ok; /* hp_call: every part ran exactly once in every call */
} hp_job;

static void hp_part(void *arg, int64_t p)
{
    hp_job *j = arg;
    int helper = !pthread_equal(pthread_self(), j->caller);
    /* a few microseconds, so both threads find parts left; longer on the helper, whose last part
     * then ends after the caller's: the caller must wait for it before it returns */
    volatile double x = 0;
    for (int i = 0; i < (helper ? 20000 : 2000); i++) x += i * 1e-9;
    (void)x;
    atomic_fetch_add(&j->runs[p], 1);
    if (helper) atomic_fetch_add(&j->by_helper, 1);
}

static void hp_count(void *arg, int64_t p) { atomic_fetch_add(&((hp_job *)arg)->runs[p], 1); }

static void *hp_call(void *arg)
{
    hp_job *j = arg;
    for (int it = 0; it < 200; it++) {
        hp_job one = {.caller = pthread_self()};
        kdi_helper_parts(HP_PARTS, hp_part, &one);
        for (int p = 0; p < HP_PARTS; p++)
            if (atomic_load(&one.runs[p]) != 1) return NULL;
        atomic_fetch_add(&j->by_helper, atomic_load(&one.by_helper));
        j->calls_shared += atomic_load(&one.by_helper) > 0;
    }
    j->ok = 1;
    return NULL;
}

/* CLOCK_MONOTONIC in seconds, for the busy waits below. */
static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Calls about as far apart as the helper spins before it sleeps (busy-waited, 150-260 us), the
 * helper made to join: a caller that found it awake must wake it if it falls asleep before joining
 * (both had waited forever within a few calls; the old code hangs here under CK_FORK=no, while
 * Check's forked children happened to miss the window). */
START_TEST(helper_forced_join_wakes)
{
    kdi_helper_force_join(1);
    for (int i = 0; i < 600; i++) {
        hp_job one = {.caller = pthread_self()};
        kdi_helper_parts(4, hp_count, &one);
        for (int p = 0; p < 4; p++) ck_assert(atomic_load(&one.runs[p]) == 1);
        double t0 = seconds(), gap = (150 + (i * 7) % 110) * 1e-6;
        while (seconds() - t0 < gap) {
        }
    }
    kdi_helper_force_join(0);
}
END_TEST

START_TEST(helper_parts)
{
    hp_job total = {0};
    kdi_helper_force_join(1);
    hp_call(&total);
    kdi_helper_force_join(0);
    ck_assert_msg(total.ok, "a part did not run exactly once (the helper joining)");
    ck_assert_int_ge(total.calls_shared, 100); /* it joins every call, from the top */
    ck_assert_int_lt(atomic_load(&total.by_helper), 200 * HP_PARTS);
    hp_job a = {0}, b = {0};
    pthread_t ta, tb;
    ck_assert_int_eq(pthread_create(&ta, NULL, hp_call, &a), 0);
    ck_assert_int_eq(pthread_create(&tb, NULL, hp_call, &b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    ck_assert_msg(a.ok && b.ok, "a part did not run exactly once (two callers)");
}
END_TEST

/* A dense layer at batch 1 and 2 (a GEMV of 1 or 2 rows, 100 outputs of 700 inputs: 70k and 140k
 * multiply-adds, past KDI_GEMV_HELPER_MIN; parts of 16, 32, 32 and 20 outputs) shared with the
 * helper equals one thread's bitwise; so does a fork's child, which starts its own helper. */
static void gemv_rows(int64_t m, float *c, int threads)
{
    enum { N = 100, K = 700 };
    float a[2 * K], *b = malloc(sizeof(float) * N * K);
    ck_assert_ptr_nonnull(b);
    kdt_fill(a, m * K, 8, -1.0f, 1.0f);
    kdt_fill(b, N * K, 9, -1.0f, 1.0f);
    ck_assert_int_eq(kd_set_threads(threads), KD_OK);
    kdi_gemm(0, 1, m, N, K, 1.0f, a, K, b, K, 0.0f, c, N);
    ck_assert_int_eq(kd_set_threads(1), KD_OK);
    free(b);
}

START_TEST(gemv_on_the_helper)
{
    for (int64_t m = 1; m <= 2; m++) {
        float one[200], two[200];
        gemv_rows(m, one, 1);
        kdi_helper_force_join(1);
        for (int rep = 0; rep < 3; rep++) {
            memset(two, 0, sizeof two);
            gemv_rows(m, two, 2);
            ck_assert_msg(memcmp(one, two, sizeof(float) * (size_t)(m * 100)) == 0,
                          "rows %d: 2 threads differ from 1", (int)m);
        }
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            alarm(20); /* a helper the child waits for in vain ends the child, not the suite */
            gemv_rows(m, two, 2);
            _exit(memcmp(one, two, sizeof(float) * (size_t)(m * 100)) == 0 ? 0 : 1);
        }
        int status;
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the fork's child failed");
        kdi_helper_force_join(0);
    }
}
END_TEST

/* A convolution of one image shares its output channels with the helper (parts of 8 channels):
 * through im2col and implicitly (padded planes), grouped, with a fused ReLU, pooling and batch
 * norm's plane sums (a training forward), bitwise one thread's values. */
static void conv_one_image(float *pred, float *fwd, int threads)
{
    static const char *const cspec =
        "input 3x28x28 | conv 16 3 pad=1 | relu | maxpool 2 | conv 32 3 pad=1 | bn | relu | "
        "conv 24 3 stride=2 pad=1 groups=2 | relu | flatten | dense 10";
    float x[3 * 28 * 28];
    kdt_fill(x, 3 * 28 * 28, 4, -1.0f, 1.0f);
    kd_model *m;
    ck_assert_int_eq(kd_model_create(cspec, 3, &m), KD_OK);
    ck_assert_int_eq(kd_set_threads(threads), KD_OK);
    ck_assert_int_eq(kd_model_predict(m, x, 1, pred), KD_OK);
    ck_assert_int_eq(kd_model_forward(m, x, 1, fwd), KD_OK);
    ck_assert_int_eq(kd_set_threads(1), KD_OK);
    kd_model_destroy(m);
}

START_TEST(conv_on_the_helper)
{
    float p1[10], f1[10], p2[10], f2[10];
    conv_one_image(p1, f1, 1);
    kdi_helper_force_join(1);
    for (int rep = 0; rep < 3; rep++) {
        conv_one_image(p2, f2, 2);
        ck_assert_msg(memcmp(p1, p2, sizeof p1) == 0, "predict: 2 threads differ from 1");
        ck_assert_msg(memcmp(f1, f2, sizeof f1) == 0, "forward: 2 threads differ from 1");
    }
    kdi_helper_force_join(0);
}
END_TEST

START_TEST(arguments)
{
    int32_t n = -5;
    ck_assert_int_eq(kd_set_threads(-1), KD_ERR_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(kd_last_error(), "kd_set_threads"));
    ck_assert_int_eq(kd_set_threads(1025), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_get_threads(NULL), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_set_threads(0), KD_OK); /* every core */
    ck_assert_int_eq(kd_get_threads(&n), KD_OK);
    ck_assert_int_ge(n, 1);
    ck_assert_int_eq(kd_set_threads(3), KD_OK);
    ck_assert_int_eq(kd_get_threads(&n), KD_OK);
    ck_assert_int_eq(n, 3);
}
END_TEST

/* Attention's loop over (example, head) pairs on 2 threads: each pair runs the same calls, so the
 * output equals one thread's bitwise (64 x 2 pairs of 20 x 20 scores pass KDI_PARALLEL_MIN). */
START_TEST(attention_pairs)
{
    enum { B = 64, T = 20, D = 8 };
    kd_model *m;
    ck_assert_int_eq(kd_model_create("sequence 20 8 | attention 2 causal", 3, &m), KD_OK);
    float *x = malloc(sizeof(float) * B * T * D), *y1 = malloc(sizeof(float) * B * T * D),
          *y2 = malloc(sizeof(float) * B * T * D);
    kdt_fill(x, B * T * D, 4, -1, 1);
    /* 2 threads first: the workspaces are sized at the first forward of a batch size */
    ck_assert_int_eq(kd_set_threads(2), KD_OK);
    ck_assert_int_eq(kd_model_predict(m, x, B, y2), KD_OK);
    ck_assert_int_eq(kd_set_threads(1), KD_OK);
    ck_assert_int_eq(kd_model_predict(m, x, B, y1), KD_OK);
    ck_assert(memcmp(y1, y2, sizeof(float) * B * T * D) == 0);
    ck_assert_int_eq(kd_set_threads(1), KD_OK);
    kd_model_destroy(m);
    free(x), free(y1), free(y2);
}
END_TEST

/* KDI_FOR's work stealing (core/threads.h): every iteration runs exactly once, for sizes around the
 * part count and in a region nested in another (a team of one); and when thread 0 is held inside
 * its first part, thread 1 runs its own parts and then takes thread 0's. Thread 0 waits at most
 * 2 s for that; on a machine too busy to run thread 1 by then, only the counts are checked. */
static _Atomic int runs[4096];
static _Atomic int64_t stolen;
static _Atomic int team;

static void run_once(int64_t i, int64_t n)
{
    if (i == 0 && kdi_thread_id() == 0 && kdi_team_size() == 2) {
        atomic_store(&team, 2);
        for (double t0 = seconds(); atomic_load(&stolen) == 0 && seconds() - t0 < 2.0;) {
        }
    }
    if (i > 0 && i < n / 2 && kdi_thread_id() == 1) atomic_fetch_add(&stolen, 1);
    atomic_fetch_add(&runs[i], 1);
}

START_TEST(steal_runs_every_part_once)
{
    static const int64_t sizes[] = {0, 1, 2, 3, 15, 16, 17, 31, 33, 100, 4096};
    ck_assert_int_eq(kd_set_threads(2), KD_OK);
    kdi_team_force(2);
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        int64_t n = sizes[s];
        for (int64_t i = 0; i < n; i++) atomic_store(&runs[i], 0);
        atomic_store(&stolen, 0);
        atomic_store(&team, 0);
        KDI_FOR(2, i, n, run_once(i, n));
        for (int64_t i = 0; i < n; i++) ck_assert_int_eq(atomic_load(&runs[i]), 1);
        if (n == 4096 && atomic_load(&team) == 2)
            ck_assert_msg(atomic_load(&stolen) > 0, "thread 1 took none of thread 0's parts");
        /* nested: the inner regions run on teams of one, and still run every iteration once */
        for (int64_t i = 0; i < n; i++) atomic_store(&runs[i], 0);
        KDI_FOR(2, o, 4, {
            int64_t lo = n * o / 4, hi = n * (o + 1) / 4;
            KDI_FOR(2, i, hi - lo, atomic_fetch_add(&runs[lo + i], 1));
        });
        for (int64_t i = 0; i < n; i++) ck_assert_int_eq(atomic_load(&runs[i]), 1);
    }
    kdi_team_force(0);
    ck_assert_int_eq(kd_set_threads(1), KD_OK);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("thread_count");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, arguments);
    tcase_add_test(tc, split_gemm);
    tcase_add_test(tc, helper_forced_join_wakes);
    tcase_add_test(tc, helper_parts);
    tcase_add_test(tc, gemv_on_the_helper);
    tcase_add_test(tc, conv_on_the_helper);
    tcase_add_test(tc, sgd_same_results);
    tcase_add_test(tc, adam_same_results);
    tcase_add_test(tc, grad_norm_same_on_1_and_2);
    tcase_add_test(tc, attention_pairs);
    tcase_add_test(tc, steal_runs_every_part_once);
    suite_add_tcase(s, tc);
    return kdt_run(s);
}
