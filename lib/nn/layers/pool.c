/* Pooling over each channel: maxpool K [stride=S] and avgpool K [stride=S] (no padding; stride
 * defaults to K, as PyTorch), and gap, global average pooling to C x 1 x 1. */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/threads.h"
#include "kernels/kernels.h"
#include "nn/layers/layers.h"

typedef struct pool {
    int64_t k, kw, stride; /* window k x kw (kw == k but for gap over a non-square input) */
    int max;
    int max2;       /* max pooling 2x2, stride 2: through the kernels max_pool2_fwd/bwd */
    kdi_buf argmax; /* max pooling: the winning input offset of each output, as floats */
} pool;

static kd_status pool_reserve(kdi_layer *l, int64_t batch)
{
    pool *p = l->priv;
    return p->max ? kdi_buf_reserve(&p->argmax, batch * kdi_shape_size(l->out)) : KD_OK;
}

/* Output plane c of the forward, from its input plane xp. */
static void pool_plane(const pool *p, const kdi_layer *l, const float *xp, float *y, int64_t c)
{
    const kdi_kernels *kn = kdi_kernels_get();
    int64_t w = l->in.w, oh = l->out.h, ow = l->out.w;
    float inv = 1.0f / (float)(p->k * p->kw);
    if (p->max2) { /* through the SIMD kernel: the general loop's comparisons in its order */
        kn->max_pool2_fwd(y + c * oh * ow, p->argmax.data + c * oh * ow, xp, oh, ow, w);
        return;
    }
    if (p->k == 2 && p->kw == 2 && p->stride == 2) {
        /* the usual 2x2 window, unrolled: the general loop's sums in its order */
        for (int64_t oy = 0; oy < oh; oy++) {
            const float *r0 = xp + 2 * oy * w, *r1 = r0 + w;
            float *yo = y + (c * oh + oy) * ow;
            for (int64_t ox = 0; ox < ow; ox++)
                yo[ox] =
                    (((0.0f + r0[2 * ox]) + r0[2 * ox + 1]) + r1[2 * ox] + r1[2 * ox + 1]) * inv;
        }
        return;
    }
    for (int64_t oy = 0; oy < oh; oy++)
        for (int64_t ox = 0; ox < ow; ox++) {
            int64_t o = (c * oh + oy) * ow + ox, best = (oy * p->stride) * w + ox * p->stride;
            float acc = p->max ? xp[best] : 0.0f;
            for (int64_t i = 0; i < p->k; i++)
                for (int64_t j = 0; j < p->kw; j++) {
                    int64_t at = (oy * p->stride + i) * w + ox * p->stride + j;
                    if (!p->max)
                        acc += xp[at];
                    else if (xp[at] > acc) {
                        acc = xp[at];
                        best = at;
                    }
                }
            y[o] = p->max ? acc : acc * inv;
            if (p->max) p->argmax.data[o] = (float)best;
        }
}

static kd_status pool_forward(kdi_layer *l, const float *x, float *y, int64_t batch, int train)
{
    (void)train;
    const pool *p = l->priv;
    int64_t planes = batch * l->in.c;
    int nt = kdi_threads_for(planes * l->in.h * l->in.w);
    KDI_FOR(nt, c, planes, pool_plane(p, l, x + c * l->in.h * l->in.w, y, c)); /* independent */
    return KD_OK;
}

/* Plane c of a 2x2 max pooling's dx through the SIMD kernel (the windows tile the plane but for an
 * odd last row or column); keep as below. */
static void max2_backward_plane(const kdi_layer *l, const float *keep, const float *dy, int64_t c,
                                float *dp)
{
    const pool *p = l->priv;
    int64_t h = l->in.h, w = l->in.w, oh = l->out.h, ow = l->out.w;
    if (h % 2 != 0 || w % 2 != 0) memset(dp, 0, sizeof(float) * (size_t)(h * w));
    kdi_kernels_get()->max_pool2_bwd(dp, dy + c * oh * ow, keep != NULL ? keep + c * oh * ow : NULL,
                                     p->argmax.data + c * oh * ow, oh, ow, w);
}

/* keep: NULL, or the outputs (max pooling after a ReLU, fused): dy counts only where they are > 0.
 * The ReLU's output is >= 0, so a winner > 0 is where the ReLU passed its input: masking dy by
 * the winners gives what masking dx by the ReLU's input would, with zeros that are +0 alike. */
static void backward_impl(kdi_layer *l, const float *keep, const float *dy, float *dx,
                          int64_t batch)
{
    pool *p = l->priv;
    int64_t h = l->in.h, w = l->in.w, oh = l->out.h, ow = l->out.w, planes = batch * l->in.c;
    float inv = 1.0f / (float)(p->k * p->kw);
    int nt = kdi_threads_for(planes * h * w);
    /* each plane of dx gets only its own plane's gradients */
    KDI_FOR(nt, c, planes, {
        float *dp = dx + c * h * w;
        if (p->max2) {
            max2_backward_plane(l, keep, dy, c, dp);
            continue;
        }
        memset(dp, 0, sizeof(float) * (size_t)(h * w));
        for (int64_t oy = 0; oy < oh; oy++)
            for (int64_t ox = 0; ox < ow; ox++) {
                int64_t o = (c * oh + oy) * ow + ox;
                if (p->max) {
                    dp[(int64_t)p->argmax.data[o]] += keep == NULL || keep[o] > 0.0f ? dy[o] : 0.0f;
                    continue;
                }
                for (int64_t i = 0; i < p->k; i++)
                    for (int64_t j = 0; j < p->kw; j++)
                        dp[(oy * p->stride + i) * w + ox * p->stride + j] += dy[o] * inv;
            }
    });
}

/* max2 only (KDI_FUSE_GRAD_PLANES): backward_thru_relu's plane c, the outputs y its mask */
static void pool_backward_plane(kdi_layer *l, const float *y, const float *dy, int64_t c, float *dp)
{
    max2_backward_plane(l, y, dy, c, dp);
}

static void pool_forward_plane(kdi_layer *l, const float *xp, float *y, int64_t c)
{
    pool_plane(l->priv, l, xp, y, c);
}

static kd_status pool_backward(kdi_layer *l, const float *x, const float *y, const float *dy,
                               float *dx, int64_t batch)
{
    (void)x;
    (void)y;
    if (dx != NULL) backward_impl(l, NULL, dy, dx, batch);
    return KD_OK;
}

static kd_status pool_backward_thru_relu(kdi_layer *l, const float *x, const float *y,
                                         const float *dy, float *dx, int64_t batch)
{
    (void)x;
    if (dx != NULL) backward_impl(l, y, dy, dx, batch);
    return KD_OK;
}

static void pool_destroy(kdi_layer *l)
{
    pool *p = l->priv;
    if (p != NULL) kdi_buf_free(&p->argmax);
    kdi_free(p);
}

static const kdi_layer_ops maxpool_ops = {.kind = "maxpool",
                                          .forward = pool_forward,
                                          .backward = pool_backward,
                                          .backward_thru_relu = pool_backward_thru_relu,
                                          .backward_plane = pool_backward_plane,
                                          .forward_plane = pool_forward_plane,
                                          .reserve = pool_reserve,
                                          .destroy = pool_destroy};
static const kdi_layer_ops avgpool_ops = {.kind = "avgpool",
                                          .forward = pool_forward,
                                          .backward = pool_backward,
                                          .reserve = pool_reserve,
                                          .destroy = pool_destroy};
static const kdi_layer_ops gap_ops = {.kind = "gap",
                                      .forward = pool_forward,
                                      .backward = pool_backward,
                                      .reserve = pool_reserve,
                                      .destroy = pool_destroy};

#define MAX_POOL_PLANE (1LL << 24)

static kd_status make(const kdi_args *a, kdi_shape in, kdi_layer *l, const kdi_layer_ops *ops,
                      int max, int global)
{
    static const char *const keys[] = {"k", "stride", NULL};
    pool *p = kdi_calloc(1, sizeof *p);
    if (p == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot allocate a pooling layer");
    l->ops = ops;
    l->priv = p;
    p->max = max;
    if (global) {
        KDI_TRY(kdi_args_check(a, 0, NULL, 0));
        p->k = in.h;
        p->kw = in.w;
        p->stride = 1;
    } else {
        KDI_TRY(kdi_args_check(a, 1, keys, 0));
        KDI_TRY(kdi_args_int(a, 0, "k", 0, 0, 1, 1 << 16, &p->k));
        p->kw = p->k;
        KDI_TRY(kdi_args_int(a, -1, "stride", 1, p->k, 1, 1 << 16, &p->stride));
        if (in.h < p->k || in.w < p->k)
            return kdi_fail(KD_ERR_SHAPE, "%s %lld does not fit a %lldx%lld input", ops->kind,
                            (long long)p->k, (long long)in.h, (long long)in.w);
        /* argmax holds each winner's offset in its plane as a float, exact up to 2^24 */
        if (max && in.h * in.w > MAX_POOL_PLANE)
            return kdi_fail(KD_ERR_SHAPE,
                            "maxpool: a %lldx%lld plane has more than 2^24 values (16777216), the "
                            "most it pools",
                            (long long)in.h, (long long)in.w);
    }
    p->max2 = max && !global && p->k == 2 && p->stride == 2;
    l->fuse = max ? KDI_FUSE_RELU_BEFORE | KDI_FUSE_PLANES : 0;
    if (p->max2) l->fuse |= KDI_FUSE_GRAD_PLANES; /* backward_plane: the 2x2 kernel's planes */
    l->in = in;
    if (global) {
        l->out = (kdi_shape){in.c, 1, 1};
        return kdi_layer_set_spec(l, "gap");
    }
    l->out = (kdi_shape){in.c, (in.h - p->k) / p->stride + 1, (in.w - p->k) / p->stride + 1};
    if (p->stride == p->k) return kdi_layer_set_spec(l, "%s %lld", ops->kind, (long long)p->k);
    return kdi_layer_set_spec(l, "%s %lld stride=%lld", ops->kind, (long long)p->k,
                              (long long)p->stride);
}

kd_status kdi_maxpool_create(const kdi_args *a, kdi_shape in, uint64_t seed, kdi_layer *l)
{
    (void)seed;
    return make(a, in, l, &maxpool_ops, 1, 0);
}

kd_status kdi_avgpool_create(const kdi_args *a, kdi_shape in, uint64_t seed, kdi_layer *l)
{
    (void)seed;
    return make(a, in, l, &avgpool_ops, 0, 0);
}

kd_status kdi_gap_create(const kdi_args *a, kdi_shape in, uint64_t seed, kdi_layer *l)
{
    (void)seed;
    return make(a, in, l, &gap_ops, 0, 1);
}
