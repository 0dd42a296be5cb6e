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

kd_status kdi_sync_sum(const kdi_sync *s, float *v, int64_t n, const char *what)
{
    kd_status st = s->fn(v, n, s->user);
    if (st == KD_OK) return KD_OK;
    return kdi_fail(st > KD_OK && st <= KD_ERR_UNSUPPORTED ? st : KD_ERR_IO,
                    "the all-reduce of %s (%lld values) failed with status %d", what, (long long)n,
                    (int)st);
}

kd_status kdi_model_set_sync(kd_model *m, const kdi_sync *s)
{
    kd_status st = walk(&m->seq, s);
    if (st != KD_OK) walk(&m->seq, NULL); /* cannot fail: allocates nothing */
    return st;
}
