/* Dropout (Srivastava et al. 2014), inverted: training scales kept units by 1/(1-p) so evaluation is
 * the identity. The mask comes from the layer's own seeded stream. */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/rng.h"
#include "kernels/kernels.h"
#include "nn/layers/layers.h"

typedef struct dropout {
    float p;
    kdi_rng rng;
    kdi_buf mask;
} dropout;

static kd_status dropout_reserve(kdi_layer *l, int64_t batch)
{
    dropout *d = l->priv;
    return kdi_buf_reserve(&d->mask, batch * kdi_shape_size(l->in));
}

static kd_status dropout_forward(kdi_layer *l, const float *x, float *y, int64_t batch, int train)
{
    dropout *d = l->priv;
    int64_t n = batch * kdi_shape_size(l->in);
    if (!train || d->p == 0.0f) {
        if (y != x) memcpy(y, x, (size_t)n * sizeof *y);
        return KD_OK;
    }
    float *m = d->mask.data;
    for (int64_t i = 0; i < n; i++) m[i] = kdi_rng_uniform(&d->rng) >= d->p ? 1.0f : 0.0f;
    kdi_kernels_get()->mul(y, x, m, 1.0f / (1.0f - d->p), n);
    return KD_OK;
}

static kd_status dropout_backward(kdi_layer *l, const float *x, const float *y, const float *dy,
                                  float *dx, int64_t batch)
{
    (void)x;
    (void)y;
    dropout *d = l->priv;
    int64_t n = batch * kdi_shape_size(l->in);
    if (dx == NULL) return KD_OK;
    if (d->p == 0.0f) {
        memcpy(dx, dy, (size_t)n * sizeof *dx);
        return KD_OK;
    }
    kdi_kernels_get()->mul(dx, dy, d->mask.data, 1.0f / (1.0f - d->p), n);
    return KD_OK;
}

static void dropout_destroy(kdi_layer *l)
{
    dropout *d = l->priv;
    if (d != NULL) kdi_buf_free(&d->mask);
    kdi_free(d);
}

static const kdi_layer_ops dropout_ops = {.kind = "dropout",
                                          .forward = dropout_forward,
                                          .backward = dropout_backward,
                                          .reserve = dropout_reserve,
                                          .destroy = dropout_destroy};

kd_status kdi_dropout_create(const kdi_args *a, kdi_shape in, uint64_t seed, kdi_layer *l)
{
    static const char *const keys[] = {"p", NULL};
    float p;
    KDI_TRY(kdi_args_check(a, 1, keys, 0));
    KDI_TRY(kdi_args_float(a, 0, "p", 1, 0.5f, 0.0f, 0.99f, &p));
    dropout *d = kdi_calloc(1, sizeof *d);
    if (d == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot allocate a dropout layer");
    d->p = p;
    kdi_rng_seed(&d->rng, seed);
    l->ops = &dropout_ops;
    l->priv = d;
    l->rng = &d->rng;
    l->in = l->out = in;
    return kdi_layer_set_spec(l, "dropout %g", (double)p);
}
