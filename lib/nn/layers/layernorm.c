/* LayerNorm (Ba, Kiros and Hinton 2016) over all C*H*W values of each example, with an elementwise
 * affine transform: PyTorch's nn.LayerNorm([C, H, W]) (or [N] on flat input). On a sequence
 * [T, d] it normalises each token over its d values, as nn.LayerNorm(d). Spec: layernorm
 * [eps=E]. Parameters weight and bias, shaped like one example (one token: [d]). */
#include <math.h>
#include <stdlib.h>

#include "core/alloc.h"
#include "core/error.h"
#include "kernels/kernels.h"
#include "nn/layers/layers.h"

typedef struct ln {
    float eps;
    kdi_buf xhat, inv_std;
    kdi_buf u; /* backward: one row of gamma * dy */
} ln;

static kd_status ln_reserve(kdi_layer *l, int64_t batch)
{
    ln *p = l->priv;
    KDI_TRY(kdi_buf_reserve(&p->xhat, batch * kdi_shape_size(l->in)));
    KDI_TRY(kdi_buf_reserve(&p->u, kdi_seq_width(l->in, l->seq > 0)));
    return kdi_buf_reserve(&p->inv_std, batch * kdi_seq_rows(l->in, l->seq > 0));
}

/* Two passes, as PyTorch: the mean, then the mean of (x - mean)^2, both summed in double by the
 * kernel. */
static kd_status ln_forward(kdi_layer *l, const float *x, float *y, int64_t batch, int train)
{
    (void)train;
    ln *p = l->priv;
    int64_t n = kdi_seq_width(l->in, l->seq > 0);
    batch *= kdi_seq_rows(l->in, l->seq > 0);
    kdi_kernels_get()->layernorm_fwd(y, p->xhat.data, p->inv_std.data, x, l->params[0].value,
                                     l->params[1].value, batch, n, p->eps);
    return KD_OK;
}

/* With u = gamma * dy: dx = inv_std / N * (N u - sum u - xhat * sum(u xhat)), per example. */
static kd_status ln_backward(kdi_layer *l, const float *x, const float *y, const float *dy,
                             float *dx, int64_t batch)
{
    (void)x;
    (void)y;
    ln *p = l->priv;
    int64_t n = kdi_seq_width(l->in, l->seq > 0);
    batch *= kdi_seq_rows(l->in, l->seq > 0);
    kdi_kernels_get()->layernorm_bwd(dx, l->params[0].grad, l->params[1].grad, p->u.data,
                                     p->xhat.data, p->inv_std.data, l->params[0].value, dy, batch,
                                     n);
    return KD_OK;
}

static void ln_destroy(kdi_layer *l)
{
    ln *p = l->priv;
    if (p == NULL) return;
    kdi_buf_free(&p->xhat);
    kdi_buf_free(&p->inv_std);
    kdi_buf_free(&p->u);
    kdi_free(p);
}

static const kdi_layer_ops ln_ops = {.kind = "layernorm",
                                     .forward = ln_forward,
                                     .backward = ln_backward,
                                     .reserve = ln_reserve,
                                     .destroy = ln_destroy};

kd_status kdi_layernorm_create(const kdi_args *a, kdi_shape in, uint64_t seed, kdi_layer *l)
{
    (void)seed;
    static const char *const keys[] = {"eps", NULL};
    ln *p = kdi_calloc(1, sizeof *p);
    if (p == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot allocate a layernorm layer");
    l->ops = &ln_ops;
    l->priv = p;
    KDI_TRY(kdi_args_check(a, 0, keys, 0));
    KDI_TRY(kdi_args_float(a, -1, "eps", 1, 1e-5f, 1e-12f, 1.0f, &p->eps));
    l->in = l->out = in;
    l->seq = a->seq ? 1 : -1;
    int64_t dims[3] = {in.c, in.h, in.w};
    int32_t ndim = in.h == 1 && in.w == 1 ? 1 : 3;
    if (a->seq) {
        dims[0] = kdi_seq_width(in, 1);
        ndim = 1;
    }
    KDI_TRY(kdi_layer_add_param(l, "weight", 1, ndim, dims));
    KDI_TRY(kdi_layer_add_param(l, "bias", 1, ndim, dims));
    for (int64_t i = 0; i < l->params[0].count; i++) l->params[0].value[i] = 1.0f;
    if (p->eps == 1e-5f) return kdi_layer_set_spec(l, "layernorm");
    return kdi_layer_set_spec(l, "layernorm eps=%g", (double)p->eps);
}
