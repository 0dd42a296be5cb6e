/* Synchronised batch norm: hands every bn layer of a model (inside residual blocks too) the
 * data-parallel job's all-reduce (KD_TRAINER_SYNC_BATCHNORM). */
#include "core/error.h"
#include "nn/layers/layers.h"
#include "nn/model.h"

static kd_status walk(kdi_seq *s, const kdi_sync *sync)
{
    for (int32_t i = 0; i < s->n; i++) {
        kdi_layer *l = &s->layers[i];
        if (kdi_is_bn(l)) KDI_TRY(kdi_bn_set_sync(l, sync));
        const char *name;
        kdi_seq *c;
        for (int32_t k = 0; l->ops->child != NULL && (c = l->ops->child(l, k, &name)) != NULL; k++)
            KDI_TRY(walk(c, sync));
    }
    return KD_OK;
}

static kd_status failed(kd_status st, const char *what, int64_t n)
{
    if (st == KD_OK) return KD_OK;
    return kdi_fail(st > KD_OK && st <= KD_ERR_UNSUPPORTED ? st : KD_ERR_IO,
                    "the all-reduce of %s (%lld values) failed with status %d", what, (long long)n,
                    (int)st);
}

kd_status kdi_sync_sum(const kdi_sync *s, float *v, int64_t n, const char *what)
{
    return failed(s->fn(v, n, s->user), what, n);
}

kd_status kdi_sync_now(float *data, int64_t count, void *user)
{
    const kdi_sync *s = user;
    kd_status st = s->start(data, count, KD_ALLREDUCE_TAG_NOW, s->host);
    return st == KD_OK ? s->wait(KD_ALLREDUCE_TAG_NOW, s->host) : st;
}

kd_status kdi_sync_start(const kdi_sync *s, float *v, int64_t n, int32_t tag, const char *what)
{
    return failed(s->start != NULL ? s->start(v, n, tag, s->host) : s->fn(v, n, s->user), what, n);
}

kd_status kdi_sync_wait(const kdi_sync *s, int32_t tag, const char *what, int64_t n)
{
    return failed(s->wait != NULL ? s->wait(tag, s->host) : KD_OK, what, n);
}

kd_status kdi_model_set_sync(kd_model *m, const kdi_sync *s)
{
    kd_status st = walk(&m->seq, s);
    if (st != KD_OK) walk(&m->seq, NULL); /* cannot fail: allocates nothing */
    return st;
}
