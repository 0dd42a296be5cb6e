/* Dense (PyTorch's nn.Linear): y = x W^T + b, W is [out, in]. Any input shape is read flat. */
#include "core/error.h"
#include "core/rng.h"
#include "kernels/kernels.h"
#include "nn/layers/layers.h"

static kd_status dense_forward(kdi_layer *l, const float *x, float *y, int64_t batch, int train)
{
    (void)train;
    const kdi_kernels *k = kdi_kernels_get();
    int64_t in = kdi_shape_size(l->in), out = l->out.c;
    k->gemm(0, 1, batch, out, in, 1.0f, x, in, l->params[0].value, in, 0.0f, y, out);
    k->bias_add(y, l->params[1].value, batch, out);
    return KD_OK;
}

static kd_status dense_backward(kdi_layer *l, const float *x, const float *y, const float *dy,
                                float *dx, int64_t batch)
{
    (void)y;
    const kdi_kernels *k = kdi_kernels_get();
    int64_t in = kdi_shape_size(l->in), out = l->out.c;
    k->gemm(1, 0, out, in, batch, 1.0f, dy, out, x, in, 1.0f, l->params[0].grad, in);
    k->bias_grad(l->params[1].grad, dy, batch, out);
    if (dx != NULL)
        k->gemm(0, 0, batch, in, out, 1.0f, dy, out, l->params[0].value, in, 0.0f, dx, in);
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
    int64_t fan_in = kdi_shape_size(in);
    l->ops = &dense_ops;
    l->in = in;
    l->out = kdi_shape_flat(out);
    int64_t wdims[2] = {out, fan_in}, bdims[1] = {out};
    KDI_TRY(kdi_layer_add_param(l, "weight", 1, 2, wdims));
    KDI_TRY(kdi_layer_add_param(l, "bias", 1, 1, bdims));
    kdi_init_uniform(l->params[0].value, out * fan_in, fan_in, kdi_rng_derive(seed, 0));
    kdi_init_uniform(l->params[1].value, out, fan_in, kdi_rng_derive(seed, 1));
    return kdi_layer_set_spec(l, "dense %lld", (long long)out);
}
