/* Data-parallel training (kd_trainer_set_allreduce): each process steps on its slice of a global
 * batch; the gradients, weighted by the slices' shares, are summed through the host's all-reduce
 * before the optimizer step, so every process takes the global batch's step. libkd knows no
 * transport: kd_mpi (lib/mpi/) is one host of this interface. */
#include <string.h>

#include "core/error.h"
#include "distill/trainer.h"
#include "nn/layers/layers.h"
#include "optim/optim.h"

static kd_status reduce(kd_trainer *t, float *v, int64_t n, const char *what)
{
    return kdi_sync_sum(&t->sync, v, n, what);
}

kd_status kd_trainer_set_allreduce(kd_trainer *t, kd_allreduce_fn fn, void *user, int32_t rank,
                                   int32_t world)
{
    KDI_CHECK_NULL(t);
    if (world < 1) return kdi_fail(KD_ERR_ARGUMENT, "world %d must be 1 or more", (int)world);
    if (rank < 0 || rank >= world)
        return kdi_fail(KD_ERR_ARGUMENT, "rank %d is not in 0..%d", (int)rank, (int)world - 1);
    if (fn == NULL && world > 1)
        return kdi_fail(KD_ERR_ARGUMENT, "a job of %d processes needs an all-reduce (fn is NULL)",
                        (int)world);
    t->par.rank = rank;
    t->par.world = world;
    t->sync.fn = fn;
    t->sync.user = user;
    if (fn == NULL && t->sync_bn) {
        kdi_model_set_sync(t->student, NULL);
        t->sync_bn = 0;
    }
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
}

/* Every model whose gradients are summed: the student, then the regressors in term order. */
static kd_model *model_at(const kd_trainer *t, int32_t k)
{
    kd_model *m = NULL;
    kd_optimizer *o;
    if (k < 0) return t->student;
    return kdi_trainer_regressor(t, k, &m, &o) ? m : NULL;
}

static int64_t grad_count(const kd_trainer *t)
{
    int64_t n = 0;
    for (int32_t k = -1; k < t->nterms; k++) {
        kd_model *m = model_at(t, k);
        if (m == NULL) continue;
        const kdi_param_list *pl = kdi_model_params(m);
        for (int32_t i = 0; i < pl->n; i++)
            if (pl->items[i].p->grad != NULL) n += pl->items[i].p->count;
    }
    return n;
}

kd_status kdi_trainer_parallel_reserve(kd_trainer *t)
{
    return kdi_buf_reserve(&t->par.bucket, grad_count(t) + 2);
}

/* The global batch: sums (b_r, 1) over the job, so a process that is missing or counted twice is
 * caught before any gradient is summed. */
kd_status kdi_trainer_parallel_begin(kd_trainer *t, int64_t batch)
{
    float v[2] = {(float)batch, 1.0f};
    KDI_TRY(reduce(t, v, 2, "the slices' sizes"));
    if ((int32_t)v[1] != t->par.world)
        return kdi_fail(KD_ERR_STATE,
                        "the all-reduce summed %g processes but the trainer was told %d (rank %d)",
                        (double)v[1], (int)t->par.world, (int)t->par.rank);
    t->sync.batch = (int64_t)v[0];
    t->sync.share = (float)((double)batch / (double)v[0]);
    return KD_OK;
}

/* Packs share * every gradient and share * the loss into one bucket, sums it over the job and
 * unpacks it: one all-reduce a step. */
kd_status kdi_trainer_parallel_reduce(kd_trainer *t, float *loss)
{
    float *b = t->par.bucket.data, *p = b;
    float share = t->sync.share;
    for (int32_t k = -1; k < t->nterms; k++) {
        kd_model *m = model_at(t, k);
        if (m == NULL) continue;
        const kdi_param_list *pl = kdi_model_params(m);
        for (int32_t i = 0; i < pl->n; i++) {
            const kdi_param *q = pl->items[i].p;
            if (q->grad == NULL) continue;
            for (int64_t j = 0; j < q->count; j++) p[j] = share * q->grad[j];
            p += q->count;
        }
    }
    *p++ = share * *loss;
    KDI_TRY(reduce(t, b, p - b, "the gradients"));
    p = b;
    for (int32_t k = -1; k < t->nterms; k++) {
        kd_model *m = model_at(t, k);
        if (m == NULL) continue;
        const kdi_param_list *pl = kdi_model_params(m);
        for (int32_t i = 0; i < pl->n; i++) {
            const kdi_param *q = pl->items[i].p;
            if (q->grad == NULL) continue;
            memcpy(q->grad, p, (size_t)q->count * sizeof *p);
            p += q->count;
        }
    }
    *loss = *p;
    return KD_OK;
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
