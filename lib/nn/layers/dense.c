/* Dense (PyTorch's nn.Linear): y = x W^T + b, W is [out, in]. Any input shape is read flat, except
 * a sequence [T, d], where every token is a row of d (nn.Linear on the last axis). */
#include "core/error.h"
#include "core/rng.h"
#include "kernels/kernels.h"
#include "nn/gemm.h"
#include "nn/layers/layers.h"

/* The rows a batch makes (batch, or batch * T) and the width of a row, in and out. */
static void dims(const kdi_layer *l, int64_t batch, int64_t *rows, int64_t *in, int64_t *out)
{
    int seq = l->seq > 0;
    *rows = batch * kdi_seq_rows(l->in, seq);
    *in = kdi_seq_width(l->in, seq);
    *out = kdi_seq_width(l->out, seq);
}

static kd_status dense_forward(kdi_layer *l, const float *x, float *y, int64_t batch, int train)
{
    (void)train;
    const kdi_kernels *k = kdi_kernels_get();
    int64_t in, out;
    dims(l, batch, &batch, &in, &out);
    kdi_gemm_rows(0, 1, batch, out, in, 1.0f, x, in, l->params[0].value, in, 0.0f, y, out);
    k->bias_add(y, l->params[1].value, batch, out);
    return KD_OK;
}

static kd_status dense_backward(kdi_layer *l, const float *x, const float *y, const float *dy,
                                float *dx, int64_t batch)
{
    (void)y;
    const kdi_kernels *k = kdi_kernels_get();
    int64_t in, out;
    dims(l, batch, &batch, &in, &out);
    kdi_gemm_rows(1, 0, out, in, batch, 1.0f, dy, out, x, in, 1.0f, l->params[0].grad, in);
    k->bias_grad(l->params[1].grad, dy, batch, out);
    if (dx != NULL)
        kdi_gemm_rows(0, 0, batch, in, out, 1.0f, dy, out, l->params[0].value, in, 0.0f, dx, in);
    return KD_OK;
}

static const kdi_layer_ops dense_ops = {
    .kind = "dense", .forward = dense_forward, .backward = dense_backward};

kd_status kdi_dense_create(const kdi_args *a, kdi_shape in, uint64_t seed, kdi_layer *l)
{
    static const char *const keys[] = {"out", NULL};
    int64_t out;
    KDI_TRY(kdi_args_check(a, 1, keys, 0));
    KDI_TRY(kdi_args_int(a, 0, "out", 0, 0, 1, 1 << 24, &out));
    int64_t fan_in = kdi_seq_width(in, a->seq);
    l->ops = &dense_ops;
    l->in = in;
    l->out = a->seq ? (kdi_shape){in.c, out, 1} : kdi_shape_flat(out);
    l->seq = a->seq ? 1 : -1;
    int64_t wdims[2] = {out, fan_in}, bdims[1] = {out};
    KDI_TRY(kdi_layer_add_param(l, "weight", 1, 2, wdims));
    KDI_TRY(kdi_layer_add_param(l, "bias", 1, 1, bdims));
    kdi_init_uniform(l->params[0].value, out * fan_in, fan_in, kdi_rng_derive(seed, 0));
    kdi_init_uniform(l->params[1].value, out, fan_in, kdi_rng_derive(seed, 1));
    return kdi_layer_set_spec(l, "dense %lld", (long long)out);
}
