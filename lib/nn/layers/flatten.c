/* Flatten: C x H x W (or T x d) becomes C*H*W values, as nn.Flatten; the data is already in that
 * order. */
#include <string.h>

#include "core/error.h"
#include "nn/layers/layers.h"

static kd_status flatten_forward(kdi_layer *l, const float *x, float *y, int64_t batch, int train)
{
    (void)train;
    memcpy(y, x, sizeof(float) * (size_t)(batch * kdi_shape_size(l->in)));
    return KD_OK;
}

static kd_status flatten_backward(kdi_layer *l, const float *x, const float *y, const float *dy,
                                  float *dx, int64_t batch)
{
    (void)x;
    (void)y;
    if (dx != NULL) memcpy(dx, dy, sizeof(float) * (size_t)(batch * kdi_shape_size(l->in)));
    return KD_OK;
}

static const kdi_layer_ops flatten_ops = {
    .kind = "flatten", .forward = flatten_forward, .backward = flatten_backward};

kd_status kdi_flatten_create(const kdi_args *a, kdi_shape in, uint64_t seed, kdi_layer *l)
{
    (void)seed;
    KDI_TRY(kdi_args_check(a, 0, NULL, 0));
    l->ops = &flatten_ops;
    l->in = in;
    l->out = kdi_shape_flat(kdi_shape_size(in));
    l->seq = -1; /* a sequence [T, d] becomes one vector of T*d values */
    return kdi_layer_set_spec(l, "flatten");
}
