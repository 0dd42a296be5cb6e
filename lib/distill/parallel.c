/* Data-parallel training (kd_trainer_set_allreduce): each process steps on its slice of a global
 * batch; the gradients, weighted by the slices' shares, are summed through the host's all-reduce
 * before the optimizer step, so every process takes the global batch's step. libkd knows no
 * transport: kd_mpi (lib/mpi/) is one host of this interface. */
#include <string.h>

#include <stdint.h>
#include <stdlib.h>

#include "core/alloc.h"
#include "core/error.h"
#include "distill/trainer.h"
#include "kernels/kernels.h"
#include "nn/layers/layers.h"
#include "nn/model.h"
#include "optim/optim.h"

static kd_status reduce(kd_trainer *t, float *v, int64_t n, const char *what)
{
    return kdi_sync_sum(&t->sync, v, n, what);
}

static kd_status set_allreduce(kd_trainer *t, int32_t rank, int32_t world, int lone)
{
    if (world < 1) return kdi_fail(KD_ERR_ARGUMENT, "world %d must be 1 or more", (int)world);
    if (rank < 0 || rank >= world)
        return kdi_fail(KD_ERR_ARGUMENT, "rank %d is not in 0..%d", (int)rank, (int)world - 1);
    if (lone && world > 1)
        return kdi_fail(KD_ERR_ARGUMENT, "a job of %d processes needs an all-reduce (fn is NULL)",
                        (int)world);
    t->par.rank = rank;
    t->par.world = world;
    if (lone && t->sync_bn) {
        kdi_model_set_sync(t->student, NULL);
        t->sync_bn = 0;
    }
    return KD_OK;
}

kd_status kd_trainer_set_allreduce(kd_trainer *t, kd_allreduce_fn fn, void *user, int32_t rank,
                                   int32_t world)
{
    KDI_CHECK_NULL(t);
    KDI_TRY(set_allreduce(t, rank, world, fn == NULL));
    t->sync.fn = fn;
    t->sync.user = user;
    t->sync.start = NULL;
    t->sync.wait = NULL;
    t->sync.host = NULL;
    return KD_OK;
}

kd_status kd_trainer_set_allreduce_async(kd_trainer *t, kd_allreduce_start_fn start,
                                         kd_allreduce_wait_fn wait, void *user, int32_t rank,
                                         int32_t world)
{
    KDI_CHECK_NULL(t);
    if ((start == NULL) != (wait == NULL))
        return kdi_fail(KD_ERR_ARGUMENT, "start and wait come together: %s is NULL",
                        start == NULL ? "start" : "wait");
    KDI_TRY(set_allreduce(t, rank, world, start == NULL));
    /* Batch norm and the trainer's own sums keep calling sync.fn: an adapter over start/wait. */
    t->sync.fn = start != NULL ? kdi_sync_now : NULL;
    t->sync.user = start != NULL ? &t->sync : NULL;
    t->sync.start = start;
    t->sync.wait = wait;
    t->sync.host = user;
    return KD_OK;
}

kd_status kdi_trainer_set_sync_bn(kd_trainer *t, int64_t value)
{
    if (value != 0 && value != 1)
        return kdi_fail(KD_ERR_ARGUMENT, "KD_TRAINER_SYNC_BATCHNORM is 0 or 1, not %lld",
                        (long long)value);
    if (value == 1 && t->sync.fn == NULL)
        return kdi_fail(KD_ERR_STATE, "KD_TRAINER_SYNC_BATCHNORM needs an all-reduce: call "
                                      "kd_trainer_set_allreduce first");
    KDI_TRY(kdi_model_set_sync(t->student, value ? &t->sync : NULL));
    t->sync_bn = (int32_t)value;
    return KD_OK;
}

void kdi_trainer_parallel_free(kd_trainer *t)
{
    if (t->sync_bn) kdi_model_set_sync(t->student, NULL);
    kdi_buf_free(&t->par.bucket);
    kdi_free(t->par.order);
    kdi_free(t->par.plan);
}

/* Every model whose gradients are summed: the student, then the regressors in term order. */
static kd_model *model_at(const kd_trainer *t, int32_t k)
{
    kd_model *m = NULL;
    kd_optimizer *o;
    if (k < 0) return t->student;
    return kdi_trainer_regressor(t, k, &m, &o) ? m : NULL;
}

/* A bucket: order[first .. first+n-1], started once the backward pass has done top-level layer
 * `layer` (-1: after the whole pass). Packed at offset of par.bucket, or, a lone parameter
 * (offset -1), summed in place. */
typedef struct kdi_grad_bucket {
    int32_t layer, first, n;
    int64_t offset, count;
} kdi_grad_bucket;

/* The top-level layer that writes a student parameter: the index its name starts with
 * ("3.weight", "4.body.0.bias"); -1 (after the pass) for a name that says nothing. */
static int32_t layer_of(const char *name)
{
    char *end;
    long i = strtol(name, &end, 10);
    return end != name && *end == '.' && i >= 0 && i < INT32_MAX ? (int32_t)i : -1;
}

static kd_status push_param(kd_trainer *t, kdi_param *p)
{
    for (int32_t i = 0; i < t->par.norder; i++)
        if (t->par.order[i] == p) return KD_OK; /* tied: written by the lower layer, seen first */
    if (t->par.norder == t->par.order_cap) {
        int32_t cap = t->par.order_cap ? 2 * t->par.order_cap : 32;
        kdi_param **o = kdi_realloc(t->par.order, (size_t)cap * sizeof *o);
        if (o == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot allocate the gradient buckets");
        t->par.order = o;
        t->par.order_cap = cap;
    }
    t->par.order[t->par.norder++] = p;
    return KD_OK;
}

static kd_status push_bucket(kd_trainer *t, int32_t layer, int32_t first, int64_t offset,
                             int64_t count)
{
    if (t->par.nplan == t->par.plan_cap) {
        int32_t cap = t->par.plan_cap ? 2 * t->par.plan_cap : 8;
        kdi_grad_bucket *b = kdi_realloc(t->par.plan, (size_t)cap * sizeof *b);
        if (b == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot allocate the gradient buckets");
        t->par.plan = b;
        t->par.plan_cap = cap;
    }
    t->par.plan[t->par.nplan++] =
        (kdi_grad_bucket){layer, first, t->par.norder - first, offset, count};
    return KD_OK;
}

/* The plan, made again every step (the models may have changed between steps; allocates only when
 * it grows): the student's parameters from its last top-level layer down, then the regressors'.
 * Each process makes the same plan from the same models, so their sums match. */
kd_status kdi_trainer_parallel_reserve(kd_trainer *t)
{
    const kdi_param_list *pl = kdi_model_params(t->student);
    int32_t top = -1;
    for (int32_t i = 0; i < pl->n; i++) {
        int32_t l = layer_of(pl->items[i].name);
        if (l > top) top = l;
    }
    t->par.norder = t->par.nplan = 0;
    t->par.next = t->par.started = 0;
    int64_t cap = t->par.bucket_floats, packed = 0, open = 0;
    int32_t first = 0;
    for (int32_t l = top; l >= -1; l--) {
        for (int32_t i = 0; i < pl->n; i++) {
            kdi_param *p = pl->items[i].p;
            if (p->grad == NULL || layer_of(pl->items[i].name) != l) continue;
            int32_t at = t->par.norder;
            KDI_TRY(push_param(t, p));
            if (t->par.norder == at || l < 0) continue; /* seen, or left for the last bucket */
            int room = t->par.nplan < KD_ALLREDUCE_MAX_BUCKETS - 2;  /* two, and the last */
            if (cap > 0 && room && p->count >= cap && at == first) { /* alone, in place */
                KDI_TRY(push_bucket(t, l, first, -1, p->count));
                first = t->par.norder;
            } else if (cap > 0 && room && p->count >= cap) { /* in place, after the open bucket */
                t->par.norder--;
                KDI_TRY(push_bucket(t, l, first, packed, open));
                packed += open;
                open = 0;
                first = t->par.norder;
                t->par.order[t->par.norder++] = p;
                KDI_TRY(push_bucket(t, l, first, -1, p->count));
                first = t->par.norder;
            } else {
                open += p->count;
                if (cap > 0 && room && open >= cap) {
                    KDI_TRY(push_bucket(t, l, first, packed, open));
                    packed += open;
                    open = 0;
                    first = t->par.norder;
                }
            }
        }
    }
    for (int32_t k = 0; k < t->nterms; k++) {
        kd_model *m = model_at(t, k);
        if (m == NULL) continue;
        const kdi_param_list *rl = kdi_model_params(m);
        for (int32_t i = 0; i < rl->n; i++)
            if (rl->items[i].p->grad != NULL) KDI_TRY(push_param(t, rl->items[i].p));
    }
    for (int32_t i = first; i < t->par.norder; i++) open += t->par.order[i]->count;
    KDI_TRY(push_bucket(t, -1, first, packed, open + 1)); /* the last one carries the loss */
    return kdi_buf_reserve(&t->par.bucket, packed + open + 1);
}

/* The global batch: sums (b_r, 1, refused) over the job, so a process that is missing or counted
 * twice is caught before any gradient is summed, and a process that refused its step (`refused`,
 * its own status: bad input, no memory) still takes this first sum: every process's step then
 * fails before anything changes, rather than the others waiting in the sums of a step it never
 * takes (or pairing them with its next step's). */
kd_status kdi_trainer_parallel_begin(kd_trainer *t, int64_t batch, kd_status refused)
{
    float v[3] = {refused == KD_OK ? (float)batch : 0.0f, 1.0f, refused == KD_OK ? 0.0f : 1.0f};
    if (refused != KD_OK) {
        /* its own error stands, whatever the sum returns (it would overwrite the message) */
        (void)t->sync.fn(v, 3, t->sync.user);
        return refused;
    }
    KDI_TRY(reduce(t, v, 3, "the slices' sizes"));
    if (v[2] > 0.0f)
        return kdi_fail(KD_ERR_STATE,
                        "%g of the job's %d processes refused their slices of this step (their own "
                        "errors say why), so no process stepped (rank %d)",
                        (double)v[2], (int)t->par.world, (int)t->par.rank);
    if ((int32_t)v[1] != t->par.world)
        return kdi_fail(KD_ERR_STATE,
                        "the all-reduce summed %g processes but the trainer was told %d (rank %d)",
                        (double)v[1], (int)t->par.world, (int)t->par.rank);
    t->sync.batch = (int64_t)v[0];
    t->sync.share = (float)((double)batch / (double)v[0]);
    return KD_OK;
}

static kd_status start(kd_trainer *t, int32_t b, const float *loss)
{
    const kdi_grad_bucket *k = &t->par.plan[b];
    float share = t->sync.share, *data;
    const kdi_kernels *kern = kdi_kernels_get();
    if (k->offset < 0) { /* one parameter, weighted and summed where it is */
        data = t->par.order[k->first]->grad;
        if (share != 1.0f) kern->scale(data, share, k->count); /* 1: a job of one */
    } else {
        data = t->par.bucket.data + k->offset;
        float *p = data;
        for (int32_t i = k->first; i < k->first + k->n; i++) {
            const kdi_param *q = t->par.order[i];
            for (int64_t j = 0; j < q->count; j++) p[j] = share * q->grad[j];
            p += q->count;
        }
        if (loss != NULL) *p = share * *loss;
    }
    KDI_TRY(kdi_sync_start(&t->sync, data, k->count, b, "the gradients"));
    t->par.started = b + 1;
    return KD_OK;
}

static kd_status finish(kd_trainer *t, int32_t b, float *loss)
{
    const kdi_grad_bucket *k = &t->par.plan[b];
    KDI_TRY(kdi_sync_wait(&t->sync, b, "the gradients", k->count));
    if (k->offset < 0) return KD_OK;
    const float *p = t->par.bucket.data + k->offset;
    for (int32_t i = k->first; i < k->first + k->n; i++) {
        const kdi_param *q = t->par.order[i];
        memcpy(q->grad, p, (size_t)q->count * sizeof *p);
        p += q->count;
    }
    if (loss != NULL) *loss = *p;
    return KD_OK;
}

/* After layer `layer`'s backward: every bucket whose layers are all done is started. */
static kd_status after_layer(void *ctx, int32_t layer)
{
    kd_trainer *t = ctx;
    while (t->par.next < t->par.nplan - 1 && t->par.plan[t->par.next].layer >= layer)
        KDI_TRY(start(t, t->par.next++, NULL));
    return KD_OK;
}

kd_status kdi_trainer_parallel_backward(kd_trainer *t, const float *grad, float *loss)
{
    kd_status st = kdi_model_backward_each(t->student, grad, after_layer, t);
    while (st == KD_OK && t->par.next < t->par.nplan - 1) st = start(t, t->par.next++, NULL);
    if (st == KD_OK) st = start(t, t->par.next++, loss);
    for (int32_t b = 0; b < t->par.started; b++) {
        if (st == KD_OK) {
            st = finish(t, b, b == t->par.nplan - 1 ? loss : NULL);
        } else if (t->sync.wait != NULL) {
            t->sync.wait(b, t->sync.host); /* the first failure is the one reported */
        }
    }
    t->par.started = 0;
    return st;
}

/* Process 0's values to every process: the others send zeros, so the sum is process 0's. */
static kd_status broadcast(kd_trainer *t, float *v, int64_t n, const char *what)
{
    if (t->par.rank != 0) memset(v, 0, (size_t)n * sizeof *v);
    return reduce(t, v, n, what);
}

static kd_status broadcast_model(kd_trainer *t, kd_model *m, kd_optimizer *o)
{
    const kdi_param_list *pl = kdi_model_params(m);
    for (int32_t i = 0; i < pl->n; i++) {
        kdi_param *q = pl->items[i].p;
        if (q->value != NULL) KDI_TRY(broadcast(t, q->value, q->count, "the parameters"));
    }
    if (o == NULL) return KD_OK;
    for (int32_t i = 0; i < o->nparams * o->ops->nstate; i++)
        if (o->state[i] != NULL) {
            int32_t param = i / o->ops->nstate;
            KDI_TRY(broadcast(t, o->state[i], pl->items[param].p->count, "the optimizer state"));
        }
    return KD_OK;
}

kd_status kd_trainer_broadcast(kd_trainer *t)
{
    KDI_CHECK_NULL(t);
    if (t->sync.fn == NULL) return KD_OK;
    KDI_TRY(broadcast_model(t, t->student, t->opt));
    for (int32_t k = 0; k < t->nterms; k++) {
        kd_model *m;
        kd_optimizer *o;
        if (kdi_trainer_regressor(t, k, &m, &o)) KDI_TRY(broadcast_model(t, m, o));
    }
    return KD_OK;
}
