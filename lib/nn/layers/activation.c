/* Elementwise activations: ReLU, LeakyReLU, GELU (erf form), Tanh, Sigmoid. Shape-preserving and
 * parameter-free, so they share one create path. */
#include <stdlib.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/threads.h"
#include "kernels/kernels.h"
#include "nn/layers/layers.h"

static int64_t count(const kdi_layer *l, int64_t batch) { return batch * kdi_shape_size(l->in); }

static kd_status relu_fwd(kdi_layer *l, const float *x, float *y, int64_t b, int t)
{
    (void)t;
    KDI_PARTS(count(l, b), kdi_kernels_get()->relu_fwd(y + lo, x + lo, hi - lo));
    return KD_OK;
}
static kd_status relu_bwd(kdi_layer *l, const float *x, const float *y, const float *dy, float *dx,
                          int64_t b)
{
    (void)y;
    if (dx != NULL)
        KDI_PARTS(count(l, b), kdi_kernels_get()->relu_bwd(dx + lo, x + lo, dy + lo, hi - lo));
    return KD_OK;
}

/* LeakyReLU keeps its slope in priv. */
static float slope_of(const kdi_layer *l) { return *(const float *)l->priv; }
static kd_status leaky_fwd(kdi_layer *l, const float *x, float *y, int64_t b, int t)
{
    (void)t;
    KDI_PARTS(count(l, b), kdi_kernels_get()->leaky_relu_fwd(y + lo, x + lo, hi - lo, slope_of(l)));
    return KD_OK;
}
static kd_status leaky_bwd(kdi_layer *l, const float *x, const float *y, const float *dy, float *dx,
                           int64_t b)
{
    (void)y;
    if (dx != NULL)
        KDI_PARTS(count(l, b), kdi_kernels_get()->leaky_relu_bwd(dx + lo, x + lo, dy + lo, hi - lo,
                                                                 slope_of(l)));
    return KD_OK;
}
static void leaky_destroy(kdi_layer *l) { kdi_free(l->priv); }

static kd_status gelu_fwd(kdi_layer *l, const float *x, float *y, int64_t b, int t)
{
    (void)t;
    KDI_PARTS(count(l, b), kdi_kernels_get()->gelu_fwd(y + lo, x + lo, hi - lo));
    return KD_OK;
}
static kd_status gelu_bwd(kdi_layer *l, const float *x, const float *y, const float *dy, float *dx,
                          int64_t b)
{
    (void)y;
    if (dx != NULL)
        KDI_PARTS(count(l, b), kdi_kernels_get()->gelu_bwd(dx + lo, x + lo, dy + lo, hi - lo));
    return KD_OK;
}

static kd_status tanh_fwd(kdi_layer *l, const float *x, float *y, int64_t b, int t)
{
    (void)t;
    KDI_PARTS(count(l, b), kdi_kernels_get()->tanh_fwd(y + lo, x + lo, hi - lo));
    return KD_OK;
}
static kd_status tanh_bwd(kdi_layer *l, const float *x, const float *y, const float *dy, float *dx,
                          int64_t b)
{
    (void)x;
    if (dx != NULL)
        KDI_PARTS(count(l, b), kdi_kernels_get()->tanh_bwd(dx + lo, y + lo, dy + lo, hi - lo));
    return KD_OK;
}

static kd_status sigmoid_fwd(kdi_layer *l, const float *x, float *y, int64_t b, int t)
{
    (void)t;
    KDI_PARTS(count(l, b), kdi_kernels_get()->sigmoid_fwd(y + lo, x + lo, hi - lo));
    return KD_OK;
}
static kd_status sigmoid_bwd(kdi_layer *l, const float *x, const float *y, const float *dy,
                             float *dx, int64_t b)
{
    (void)x;
    if (dx != NULL)
        KDI_PARTS(count(l, b), kdi_kernels_get()->sigmoid_bwd(dx + lo, y + lo, dy + lo, hi - lo));
    return KD_OK;
}

static const kdi_layer_ops relu_ops = {.kind = "relu", .forward = relu_fwd, .backward = relu_bwd};
static const kdi_layer_ops leaky_ops = {
    .kind = "leakyrelu", .forward = leaky_fwd, .backward = leaky_bwd, .destroy = leaky_destroy};
static const kdi_layer_ops gelu_ops = {.kind = "gelu", .forward = gelu_fwd, .backward = gelu_bwd};
static const kdi_layer_ops tanh_ops = {.kind = "tanh", .forward = tanh_fwd, .backward = tanh_bwd};
static const kdi_layer_ops sigmoid_ops = {
    .kind = "sigmoid", .forward = sigmoid_fwd, .backward = sigmoid_bwd};

static kd_status plain(const kdi_args *a, kdi_shape in, kdi_layer *l, const kdi_layer_ops *ops)
{
    KDI_TRY(kdi_args_check(a, 0, NULL, 0));
    l->ops = ops;
    l->in = l->out = in;
    return kdi_layer_set_spec(l, "%s", ops->kind);
}

kd_status kdi_relu_create(const kdi_args *a, kdi_shape in, uint64_t seed, kdi_layer *l)
{
    (void)seed;
    return plain(a, in, l, &relu_ops);
}
kd_status kdi_gelu_create(const kdi_args *a, kdi_shape in, uint64_t seed, kdi_layer *l)
{
    (void)seed;
    return plain(a, in, l, &gelu_ops);
}
kd_status kdi_tanh_create(const kdi_args *a, kdi_shape in, uint64_t seed, kdi_layer *l)
{
    (void)seed;
    return plain(a, in, l, &tanh_ops);
}
kd_status kdi_sigmoid_create(const kdi_args *a, kdi_shape in, uint64_t seed, kdi_layer *l)
{
    (void)seed;
    return plain(a, in, l, &sigmoid_ops);
}

kd_status kdi_leakyrelu_create(const kdi_args *a, kdi_shape in, uint64_t seed, kdi_layer *l)
{
    (void)seed;
    static const char *const keys[] = {"slope", NULL};
    float slope;
    KDI_TRY(kdi_args_check(a, 1, keys, 0));
    KDI_TRY(kdi_args_float(a, 0, "slope", 1, 0.01f, -1e3f, 1e3f, &slope));
    float *p = kdi_malloc(sizeof *p);
    if (p == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot allocate a leakyrelu layer");
    *p = slope;
    l->ops = &leaky_ops;
    l->priv = p;
    l->in = l->out = in;
    return kdi_layer_set_spec(l, "leakyrelu %g", (double)slope);
}
