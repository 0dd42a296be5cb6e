/* Data-parallel training without MPI (kd_trainer_set_allreduce): an all-reduce that stands for
 * identical processes (it multiplies by their number) must give a lone trainer's step; refusals
 * and a failing all-reduce leave the student as it was. The MPI runs are tests/mpi. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd.h"
#include "testutil.h"

#define B 12
#define IN 36
#define C 5
#define MLP "input 36 | dense 16 | relu | dense 5"
#define CNN                                                                                        \
    "input 1x6x6 | conv 4 3 pad=1 | bn | relu | maxpool 2 | flatten | dense 8 | bn | relu | "      \
    "dense 5"

/* world copies of this process: the sum is world times the values. */
static kd_status copies(float *data, int64_t count, void *user)
{
    int world = *(int *)user;
    for (int64_t i = 0; i < count; i++) data[i] *= (float)world;
    return KD_OK;
}

/* A non-blocking host for world copies: start records the bucket, wait multiplies it, so a bucket
 * read or written between the two would show. */
typedef struct pending {
    int world, fail_at, starts, waits, buckets;
    float *data[KD_ALLREDUCE_TAGS];
    int64_t count[KD_ALLREDUCE_TAGS];
} pending;

static kd_status start_sum(float *data, int64_t count, int32_t tag, void *user)
{
    pending *p = user;
    ck_assert_int_ge(tag, 0);
    ck_assert_int_lt(tag, KD_ALLREDUCE_TAGS);
    ck_assert_ptr_null(p->data[tag]); /* one sum in flight a tag */
    if (p->starts++ == p->fail_at) return KD_ERR_IO;
    p->data[tag] = data;
    p->count[tag] = count;
    if (tag < KD_ALLREDUCE_MAX_BUCKETS && tag + 1 > p->buckets) p->buckets = tag + 1;
    return KD_OK;
}

static kd_status wait_sum(int32_t tag, void *user)
{
    pending *p = user;
    ck_assert_ptr_nonnull(p->data[tag]);
    for (int64_t i = 0; i < p->count[tag]; i++) p->data[tag][i] *= (float)p->world;
    p->data[tag] = NULL;
    p->waits++;
    return KD_OK;
}

static kd_status broken(float *data, int64_t count, void *user)
{
    (void)data, (void)count, (void)user;
    return KD_ERR_IO;
}

typedef struct rig {
    kd_model *teacher, *student;
    kd_loss *loss;
    kd_optimizer *opt;
    kd_trainer *t;
} rig;

/* A rig around a student of `spec`, or around `student` when it is not NULL (the rig owns it). */
static rig make_from(const char *spec, kd_model *student)
{
    rig r;
    ck_assert_int_eq(kd_model_create(MLP, 3, &r.teacher), KD_OK);
    if (student != NULL)
        r.student = student;
    else
        ck_assert_int_eq(kd_model_create(spec, 5, &r.student), KD_OK);
    ck_assert_int_eq(kd_loss_create(KD_LOSS_HINTON, &r.loss), KD_OK);
    ck_assert_int_eq(kd_loss_set_float(r.loss, KD_LOSS_ALPHA, 0.5f), KD_OK);
    ck_assert_int_eq(kd_optimizer_create(KD_OPTIMIZER_SGD, r.student, &r.opt), KD_OK);
    ck_assert_int_eq(kd_optimizer_set_float(r.opt, KD_OPT_LEARNING_RATE, 0.1f), KD_OK);
    ck_assert_int_eq(kd_optimizer_set_float(r.opt, KD_OPT_MOMENTUM, 0.9f), KD_OK);
    ck_assert_int_eq(kd_trainer_create(r.student, r.loss, r.opt, &r.t), KD_OK);
    ck_assert_int_eq(kd_trainer_add_teacher(r.t, r.teacher, 1.0f), KD_OK);
    return r;
}

static rig make(const char *spec) { return make_from(spec, NULL); }

static void destroy(rig *r)
{
    kd_trainer_destroy(r->t);
    kd_optimizer_destroy(r->opt);
    kd_loss_destroy(r->loss);
    kd_model_destroy(r->student);
    kd_model_destroy(r->teacher);
}

static void data(float *x, int32_t *y, uint64_t seed)
{
    kdt_fill(x, B * IN, seed, -1.0f, 1.0f);
    for (int i = 0; i < B; i++) y[i] = (int32_t)((seed + (uint64_t)i * 7) % C);
}

/* The two students' predictions on x agree to 1e-5 (relative to 1 + |logit|). */
static void predictions_agree(const rig *lone, const rig *par, const float *x)
{
    float a[B * C], b[B * C];
    ck_assert_int_eq(kd_model_predict(lone->student, x, B, a), KD_OK);
    ck_assert_int_eq(kd_model_predict(par->student, x, B, b), KD_OK);
    for (int i = 0; i < B * C; i++)
        ck_assert_float_eq_tol(b[i], a[i], 1e-5f * (1.0f + fabsf(a[i])));
}

/* world copies of a process with batch x equal one lone process with x repeated world times:
 * through a blocking all-reduce (bucket < 0: the default buckets) or a non-blocking one with
 * buckets of that many floats. */
static void equal_to_lone_in(const char *spec, int sync_bn, int64_t bucket)
{
    int world = 3;
    pending host = {.world = 3, .fail_at = -1};
    rig lone = make(spec), par = make(spec);
    if (bucket < 0) {
        ck_assert_int_eq(kd_trainer_set_allreduce(par.t, copies, &world, 1, world), KD_OK);
    } else {
        ck_assert_int_eq(
            kd_trainer_set_allreduce_async(par.t, start_sum, wait_sum, &host, 1, world), KD_OK);
        ck_assert_int_eq(kd_trainer_set_int(par.t, KD_TRAINER_BUCKET_FLOATS, bucket), KD_OK);
    }
    if (sync_bn) ck_assert_int_eq(kd_trainer_set_int(par.t, KD_TRAINER_SYNC_BATCHNORM, 1), KD_OK);
    float x[B * IN], x3[3 * B * IN];
    int32_t y[B], y3[3 * B];
    for (uint64_t s = 1; s <= 4; s++) {
        data(x, y, s);
        for (int k = 0; k < world; k++) {
            memcpy(x3 + k * B * IN, x, sizeof x);
            memcpy(y3 + k * B, y, sizeof y);
        }
        float la, lb;
        ck_assert_int_eq(kd_trainer_step(lone.t, x3, y3, NULL, 3 * B, &la), KD_OK);
        ck_assert_int_eq(kd_trainer_step(par.t, x, y, NULL, B, &lb), KD_OK);
        ck_assert_float_eq_tol(lb, la, 1e-5f * (1.0f + fabsf(la)));
        ck_assert_int_eq(host.waits, host.starts); /* every sum waited for */
    }
    /* Buckets of 1 float: one a parameter, and the last; 0: the last alone. */
    if (bucket == 0) ck_assert_int_eq(host.buckets, 1);
    if (bucket == 1) ck_assert_int_gt(host.buckets, 2);
    data(x, y, 99);
    predictions_agree(&lone, &par, x);
    destroy(&lone);
    destroy(&par);
}

static void equal_to_lone(const char *spec, int sync_bn)
{
    static const int64_t buckets[] = {-1, 0, 1, 7, 100, 262144};
    for (size_t i = 0; i < sizeof buckets / sizeof buckets[0]; i++)
        equal_to_lone_in(spec, sync_bn, buckets[i]);
}

START_TEST(identical_processes_take_the_lone_step) { equal_to_lone(MLP, 0); }
END_TEST

START_TEST(synchronised_batch_norm_takes_the_lone_step) { equal_to_lone(CNN, 1); }
END_TEST

typedef struct counted {
    int world, calls;
} counted;

static kd_status counted_copies(float *data, int64_t count, void *user)
{
    counted *c = user;
    c->calls++;
    return copies(data, count, &c->world);
}

/* Synchronised statistics are sent shifted by the running mean, in one sum a layer; a batch whose
 * mean is far from it (here: inputs moved by `shift`, the first step) takes a second sum of the
 * deviations from the job's mean, and both give the lone step (one: the shifted inputs' gradients
 * are large enough for the two runs' rounding to part after a few). Returns its all-reduce calls. */
static int sync_bn_first_step(float shift)
{
    counted host = {.world = 2};
    rig lone = make(CNN), par = make(CNN);
    ck_assert_int_eq(kd_trainer_set_allreduce(par.t, counted_copies, &host, 0, 2), KD_OK);
    ck_assert_int_eq(kd_trainer_set_int(par.t, KD_TRAINER_SYNC_BATCHNORM, 1), KD_OK);
    float x[B * IN], x2[2 * B * IN];
    int32_t y[B], y2[2 * B];
    {
        data(x, y, 1);
        for (int i = 0; i < B * IN; i++) x[i] += shift;
        memcpy(x2, x, sizeof x);
        memcpy(x2 + B * IN, x, sizeof x);
        memcpy(y2, y, sizeof y);
        memcpy(y2 + B, y, sizeof y);
        float la, lb;
        ck_assert_int_eq(kd_trainer_step(lone.t, x2, y2, NULL, 2 * B, &la), KD_OK);
        ck_assert_int_eq(kd_trainer_step(par.t, x, y, NULL, B, &lb), KD_OK);
        ck_assert_float_eq_tol(lb, la, 1e-5f * (1.0f + fabsf(la)));
    }
    predictions_agree(&lone, &par, x);
    destroy(&lone);
    destroy(&par);
    return host.calls;
}

/* Two processes as two threads: each sum waits for both, then both get buf0 + buf1. */
typedef struct two {
    pthread_barrier_t bar;
    float *data[2], *sum;
    int64_t count[2];
} two;

typedef struct rank_ctx {
    two *w;
    int rank;
    rig r;
    int64_t lo, hi; /* its rows of each batch */
    const float *x;
    const int32_t *y;
    float loss;
} rank_ctx;

static kd_status two_sum(float *data, int64_t count, void *user)
{
    rank_ctx *c = user;
    two *w = c->w;
    w->data[c->rank] = data;
    w->count[c->rank] = count;
    pthread_barrier_wait(&w->bar);
    if (c->rank == 0) {
        ck_assert_int_eq(w->count[0], w->count[1]); /* the same sums in the same order */
        w->sum = malloc(sizeof(float) * (size_t)count);
        ck_assert_ptr_nonnull(w->sum);
        for (int64_t i = 0; i < count; i++) w->sum[i] = w->data[0][i] + w->data[1][i];
    }
    pthread_barrier_wait(&w->bar);
    memcpy(data, w->sum, sizeof(float) * (size_t)count);
    pthread_barrier_wait(&w->bar);
    if (c->rank == 0) free(w->sum);
    return KD_OK;
}

static void *rank_step(void *arg)
{
    rank_ctx *c = arg;
    ck_assert_int_eq(
        kd_trainer_step(c->r.t, c->x + c->lo * IN, c->y + c->lo, NULL, c->hi - c->lo, &c->loss),
        KD_OK);
    return NULL;
}

static void both_step(rank_ctx *c, const float *x, const int32_t *y)
{
    pthread_t th[2];
    for (int k = 0; k < 2; k++) {
        c[k].x = x;
        c[k].y = y;
        ck_assert_int_eq(pthread_create(&th[k], NULL, rank_step, &c[k]), 0);
    }
    for (int k = 0; k < 2; k++) pthread_join(th[k], NULL);
}

/* Two processes on uneven slices (rows [0, split) and [split, B)), after `before` steps with
 * batch norm on each slice (their running statistics differ), then synchronised: their step takes
 * the job's statistics, as a lone trainer with the same weights does on the whole batch. */
static void two_ranks_like_lone(int64_t split, int before)
{
    two w;
    pthread_barrier_init(&w.bar, NULL, 2);
    rank_ctx c[2] = {{.w = &w, .rank = 0, .lo = 0, .hi = split},
                     {.w = &w, .rank = 1, .lo = split, .hi = B}};
    for (int k = 0; k < 2; k++) {
        c[k].r = make(CNN);
        ck_assert_int_eq(kd_trainer_set_allreduce(c[k].r.t, two_sum, &c[k], k, 2), KD_OK);
    }
    float x[B * IN];
    int32_t y[B];
    for (uint64_t s = 1; s <= (uint64_t)before; s++) { /* gradients summed, bn on each slice */
        data(x, y, s);
        for (int i = 0; i < B * IN; i++) x[i] += (float)s; /* slices far from each other */
        both_step(c, x, y);
    }
    char path[512];
    snprintf(path, sizeof path, "%s/parallel_rank0.safetensors", kdt_tmpdir());
    ck_assert_int_eq(kd_model_save(c[0].r.student, path), KD_OK);
    kd_model *copy;
    ck_assert_int_eq(kd_model_load(path, &copy), KD_OK);
    remove(path);
    rig lone = make_from(CNN, copy);
    for (int k = 0; k < 2; k++)
        ck_assert_int_eq(kd_trainer_set_int(c[k].r.t, KD_TRAINER_SYNC_BATCHNORM, 1), KD_OK);
    /* one step: the lone trainer's momentum starts here, the processes' earlier */
    data(x, y, 3);
    float la;
    ck_assert_int_eq(kd_trainer_step(lone.t, x, y, NULL, B, &la), KD_OK);
    both_step(c, x, y);
    for (int k = 0; k < 2; k++)
        ck_assert_msg(fabsf(c[k].loss - la) <= 1e-5f * (1.0f + fabsf(la)),
                      "rank %d: loss %.9g, lone %.9g", k, (double)c[k].loss, (double)la);
    destroy(&lone);
    for (int k = 0; k < 2; k++) destroy(&c[k].r);
    pthread_barrier_destroy(&w.bar);
}

START_TEST(synchronised_statistics_whatever_the_running_mean) { two_ranks_like_lone(5, 2); }
END_TEST

/* A slice of one image: the flat bn layer has one value a channel there, the job has 12. */
START_TEST(synchronised_statistics_of_a_slice_of_one) { two_ranks_like_lone(1, 0); }
END_TEST

/* One process refuses its slice (NaN in x, a bad label, an empty slice) while the other's is
 * fine: both steps fail, neither student moves, and no process is left waiting in a sum of a step
 * the other never takes (before, the good process hung in the step's first all-reduce, or paired
 * it with the refusing process's next step). The next step of both is taken together. */
typedef struct refusal {
    rank_ctx *c;
    const float *x;
    const int32_t *y;
    int64_t batch;
    kd_status st;
    char msg[512];
} refusal;

static void *refusal_step(void *arg)
{
    refusal *f = arg;
    f->st = kd_trainer_step(f->c->r.t, f->x, f->y, NULL, f->batch, &f->c->loss);
    snprintf(f->msg, sizeof f->msg, "%s", kd_last_error());
    return NULL;
}

static void refused_by_one(int how)
{
    two w;
    pthread_barrier_init(&w.bar, NULL, 2);
    rank_ctx c[2] = {{.w = &w, .rank = 0}, {.w = &w, .rank = 1}};
    for (int k = 0; k < 2; k++) {
        c[k].r = make(CNN);
        ck_assert_int_eq(kd_trainer_set_allreduce(c[k].r.t, two_sum, &c[k], k, 2), KD_OK);
        ck_assert_int_eq(kd_trainer_set_int(c[k].r.t, KD_TRAINER_SYNC_BATCHNORM, 1), KD_OK);
    }
    float x[B * IN], bad[B * IN], before[2][B * C], after[B * C];
    int32_t y[B], bad_y[B];
    data(x, y, 5);
    memcpy(bad, x, sizeof x);
    memcpy(bad_y, y, sizeof y);
    if (how == 0) bad[B / 2 * IN + 3] = NAN;
    if (how == 1) bad_y[B / 2 + 1] = C;
    for (int k = 0; k < 2; k++)
        ck_assert_int_eq(kd_model_predict(c[k].r.student, x, B, before[k]), KD_OK);
    refusal f[2] = {
        {.c = &c[0], .x = x, .y = y, .batch = B / 2},
        {.c = &c[1], .x = bad + B / 2 * IN, .y = bad_y + B / 2, .batch = how == 2 ? 0 : B / 2}};
    pthread_t th[2];
    for (int k = 0; k < 2; k++)
        ck_assert_int_eq(pthread_create(&th[k], NULL, refusal_step, &f[k]), 0);
    for (int k = 0; k < 2; k++) pthread_join(th[k], NULL);
    ck_assert_int_eq(f[1].st, how == 0 ? KD_ERR_NUMERIC : KD_ERR_ARGUMENT);
    ck_assert_int_eq(f[0].st, KD_ERR_STATE);
    ck_assert_msg(strstr(f[0].msg, "1 of the job's 2 processes refused") != NULL, "%s", f[0].msg);
    for (int k = 0; k < 2; k++) {
        ck_assert_int_eq(kd_model_predict(c[k].r.student, x, B, after), KD_OK);
        ck_assert_mem_eq(before[k], after, sizeof after);
    }
    /* the next step pairs up */
    for (int k = 0; k < 2; k++) {
        c[k].lo = k * B / 2;
        c[k].hi = (k + 1) * B / 2;
    }
    both_step(c, x, y);
    ck_assert_float_eq(c[0].loss, c[1].loss);
    for (int k = 0; k < 2; k++) destroy(&c[k].r);
    pthread_barrier_destroy(&w.bar);
}

START_TEST(a_refusal_fails_every_process_alike)
{
    refused_by_one(0); /* NaN in its slice */
    refused_by_one(1); /* a label out of range */
    refused_by_one(2); /* an empty slice */
}
END_TEST

START_TEST(synchronised_statistics_far_from_the_running_mean)
{
    int far = sync_bn_first_step(10.0f), near = sync_bn_first_step(0.0f);
    /* the batch's size, 2 bn layers forward and backward, the gradients' bucket */
    ck_assert_int_eq(near, 6);
    /* one more sum a bn layer whose mean is far from its running mean */
    ck_assert_int_gt(far, near);
    ck_assert_int_le(far, near + 2);
}
END_TEST

/* A language model whose head is tied to its embedding: the tied weight's gradient is complete only
 * after the embedding's backward, so its bucket must wait for it. */
#define LM                                                                                         \
    "tokens 7 4 | embed 8 | posembed | residual(layernorm | attention 2 causal) | layernorm | "    \
    "lmhead 7 tied"
START_TEST(tied_weights_are_summed_once_complete)
{
    kd_model *lone_m, *par_m;
    kd_loss *loss;
    kd_optimizer *lo, *po;
    kd_trainer *lone, *par;
    pending host = {.world = 2, .fail_at = -1};
    ck_assert_int_eq(kd_model_create(LM, 4, &lone_m), KD_OK);
    ck_assert_int_eq(kd_model_create(LM, 4, &par_m), KD_OK);
    ck_assert_int_eq(kd_loss_create(KD_LOSS_HINTON, &loss), KD_OK);
    ck_assert_int_eq(kd_loss_set_float(loss, KD_LOSS_ALPHA, 0.0f), KD_OK);
    ck_assert_int_eq(kd_optimizer_create(KD_OPTIMIZER_SGD, lone_m, &lo), KD_OK);
    ck_assert_int_eq(kd_optimizer_create(KD_OPTIMIZER_SGD, par_m, &po), KD_OK);
    ck_assert_int_eq(kd_trainer_create(lone_m, loss, lo, &lone), KD_OK);
    ck_assert_int_eq(kd_trainer_create(par_m, loss, po, &par), KD_OK);
    ck_assert_int_eq(kd_trainer_set_allreduce_async(par, start_sum, wait_sum, &host, 0, 2), KD_OK);
    ck_assert_int_eq(kd_trainer_set_int(par, KD_TRAINER_BUCKET_FLOATS, 1), KD_OK);
    float x[2 * 3 * 4], a[3 * 4 * 7], b[3 * 4 * 7], la, lb;
    int32_t y[2 * 3 * 4];
    for (int s = 0; s < 3; s++) {
        for (int i = 0; i < 12; i++) {
            x[i] = x[12 + i] = (float)((i * 5 + s) % 7);
            y[i] = y[12 + i] = (i * 3 + s) % 7;
        }
        ck_assert_int_eq(kd_trainer_step(lone, x, y, NULL, 6, &la), KD_OK);
        ck_assert_int_eq(kd_trainer_step(par, x, y, NULL, 3, &lb), KD_OK);
        ck_assert_float_eq_tol(lb, la, 1e-5f * (1.0f + fabsf(la)));
    }
    ck_assert_int_eq(kd_model_predict(lone_m, x, 3, a), KD_OK);
    ck_assert_int_eq(kd_model_predict(par_m, x, 3, b), KD_OK);
    for (int i = 0; i < 3 * 4 * 7; i++)
        ck_assert_float_eq_tol(b[i], a[i], 1e-5f * (1.0f + fabsf(a[i])));
    kd_trainer_destroy(lone);
    kd_trainer_destroy(par);
    kd_optimizer_destroy(lo);
    kd_optimizer_destroy(po);
    kd_loss_destroy(loss);
    kd_model_destroy(lone_m);
    kd_model_destroy(par_m);
}
END_TEST

/* A bucket that fails to start fails the step: the buckets already started are waited for, and the
 * student is as it was. */
START_TEST(failed_bucket_waits_for_the_others)
{
    rig r = make(MLP);
    float x[B * IN], before[B * C], after[B * C], loss;
    int32_t y[B];
    data(x, y, 5);
    ck_assert_int_eq(kd_model_predict(r.student, x, B, before), KD_OK);
    for (int fail_at = 1; fail_at <= 4; fail_at++) { /* 0 is the global batch's sum */
        pending host = {.world = 2, .fail_at = fail_at};
        ck_assert_int_eq(kd_trainer_set_allreduce_async(r.t, start_sum, wait_sum, &host, 0, 2),
                         KD_OK);
        ck_assert_int_eq(kd_trainer_set_int(r.t, KD_TRAINER_BUCKET_FLOATS, 1), KD_OK);
        ck_assert_int_eq(kd_trainer_step(r.t, x, y, NULL, B, &loss), KD_ERR_IO);
        ck_assert_ptr_nonnull(strstr(kd_last_error(), "all-reduce of the gradients"));
        ck_assert_int_eq(host.waits, host.starts - 1);
        ck_assert_int_eq(kd_model_predict(r.student, x, B, after), KD_OK);
        ck_assert_mem_eq(before, after, sizeof before);
    }
    destroy(&r);
}
END_TEST

START_TEST(bad_arguments)
{
    rig r = make(CNN);
    int world = 2;
    ck_assert_int_eq(kd_trainer_set_allreduce(NULL, copies, &world, 0, 2), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_trainer_set_allreduce(r.t, copies, &world, 0, 0), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_trainer_set_allreduce(r.t, copies, &world, 2, 2), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_trainer_set_allreduce(r.t, copies, &world, -1, 2), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_trainer_set_allreduce(r.t, NULL, NULL, 0, 2), KD_ERR_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(kd_last_error(), "needs an all-reduce"));
    pending host = {.world = 2, .fail_at = -1};
    ck_assert_int_eq(kd_trainer_set_allreduce_async(NULL, start_sum, wait_sum, &host, 0, 2),
                     KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_trainer_set_allreduce_async(r.t, start_sum, NULL, &host, 0, 2),
                     KD_ERR_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(kd_last_error(), "wait is NULL"));
    ck_assert_int_eq(kd_trainer_set_allreduce_async(r.t, NULL, NULL, NULL, 0, 2), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_trainer_set_allreduce_async(r.t, start_sum, wait_sum, &host, 3, 2),
                     KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_trainer_set_int(r.t, KD_TRAINER_BUCKET_FLOATS, -1), KD_ERR_ARGUMENT);
    int64_t cap = 0;
    ck_assert_int_eq(kd_trainer_get_int(r.t, KD_TRAINER_BUCKET_FLOATS, &cap), KD_OK);
    ck_assert_int_eq(cap, 262144);
    ck_assert_int_eq(kd_trainer_set_int(r.t, KD_TRAINER_SYNC_BATCHNORM, 1), KD_ERR_STATE);
    ck_assert_int_eq(kd_trainer_set_allreduce(r.t, copies, &world, 0, 2), KD_OK);
    ck_assert_int_eq(kd_trainer_set_int(r.t, KD_TRAINER_SYNC_BATCHNORM, 2), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_trainer_set_int(r.t, KD_TRAINER_SYNC_BATCHNORM, 1), KD_OK);
    int64_t v = 0;
    ck_assert_int_eq(kd_trainer_get_int(r.t, KD_TRAINER_SYNC_BATCHNORM, &v), KD_OK);
    ck_assert_int_eq(v, 1);
    /* Lone again: synchronisation ends with it. */
    ck_assert_int_eq(kd_trainer_set_allreduce(r.t, NULL, NULL, 0, 1), KD_OK);
    ck_assert_int_eq(kd_trainer_get_int(r.t, KD_TRAINER_SYNC_BATCHNORM, &v), KD_OK);
    ck_assert_int_eq(v, 0);
    destroy(&r);
}
END_TEST

/* A failing all-reduce, or one that counts another number of processes, fails the step and
 * leaves the student's outputs (running statistics included) as they were. */
START_TEST(failed_sums_change_nothing)
{
    rig r = make(CNN);
    int one = 1;
    float x[B * IN], before[B * C], after[B * C], loss;
    int32_t y[B];
    data(x, y, 7);
    ck_assert_int_eq(kd_model_predict(r.student, x, B, before), KD_OK);
    ck_assert_int_eq(kd_trainer_set_allreduce(r.t, broken, NULL, 0, 2), KD_OK);
    ck_assert_int_eq(kd_trainer_step(r.t, x, y, NULL, B, &loss), KD_ERR_IO);
    ck_assert_ptr_nonnull(strstr(kd_last_error(), "all-reduce"));
    /* told 2 processes, the sum counts 1 */
    ck_assert_int_eq(kd_trainer_set_allreduce(r.t, copies, &one, 0, 2), KD_OK);
    ck_assert_int_eq(kd_trainer_step(r.t, x, y, NULL, B, &loss), KD_ERR_STATE);
    ck_assert_ptr_nonnull(strstr(kd_last_error(), "summed 1 processes"));
    /* batch norm's sums failing inside the forward */
    int two = 2;
    ck_assert_int_eq(kd_trainer_set_allreduce(r.t, copies, &two, 0, 2), KD_OK);
    ck_assert_int_eq(kd_trainer_set_int(r.t, KD_TRAINER_SYNC_BATCHNORM, 1), KD_OK);
    ck_assert_int_eq(kd_trainer_set_allreduce(r.t, broken, NULL, 0, 2), KD_OK);
    ck_assert_int_eq(kd_trainer_step(r.t, x, y, NULL, B, &loss), KD_ERR_IO);
    ck_assert_int_eq(kd_model_predict(r.student, x, B, after), KD_OK);
    ck_assert_mem_eq(before, after, sizeof before);
    destroy(&r);
}
END_TEST

/* Broadcast: process 0 keeps its values; another process gets process 0's (here: only zeros
 * arrive, as no process 0 sends). */
START_TEST(broadcast_from_process_zero)
{
    rig r = make(MLP);
    int one = 1;
    float x[B * IN], before[B * C], after[B * C];
    int32_t y[B];
    data(x, y, 3);
    ck_assert_int_eq(kd_trainer_broadcast(r.t), KD_OK); /* lone: nothing to do */
    ck_assert_int_eq(kd_model_predict(r.student, x, B, before), KD_OK);
    ck_assert_int_eq(kd_trainer_set_allreduce(r.t, copies, &one, 0, 1), KD_OK);
    ck_assert_int_eq(kd_trainer_broadcast(r.t), KD_OK);
    ck_assert_int_eq(kd_model_predict(r.student, x, B, after), KD_OK);
    ck_assert_mem_eq(before, after, sizeof before);
    ck_assert_int_eq(kd_trainer_set_allreduce(r.t, copies, &one, 1, 2), KD_OK);
    ck_assert_int_eq(kd_trainer_broadcast(r.t), KD_OK);
    ck_assert_int_eq(kd_model_predict(r.student, x, B, after), KD_OK);
    for (int i = 0; i < B * C; i++) ck_assert_float_eq(after[i], 0.0f);
    destroy(&r);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("parallel");
    TCase *t = tcase_create("core");
    tcase_add_test(t, identical_processes_take_the_lone_step);
    tcase_add_test(t, synchronised_batch_norm_takes_the_lone_step);
    tcase_add_test(t, synchronised_statistics_far_from_the_running_mean);
    tcase_add_test(t, synchronised_statistics_whatever_the_running_mean);
    tcase_add_test(t, synchronised_statistics_of_a_slice_of_one);
    tcase_add_test(t, tied_weights_are_summed_once_complete);
    tcase_add_test(t, failed_bucket_waits_for_the_others);
    tcase_add_test(t, bad_arguments);
    tcase_add_test(t, failed_sums_change_nothing);
    tcase_add_test(t, a_refusal_fails_every_process_alike);
    tcase_add_test(t, broadcast_from_process_zero);
    suite_add_tcase(s, t);
    return kdt_run(s);
}
