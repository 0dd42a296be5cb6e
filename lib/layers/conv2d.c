/* Conv2d (PyTorch's nn.Conv2d): weight [out, in/groups, k, k], bias [out]; stride, zero padding and
 * groups (depthwise when groups == in == out). Spec: conv OUT K [stride=S] [pad=P] [groups=G]
 * [bias=0|1]. Each image and group is one GEMM over its im2col matrix (Chellapilla et al. 2006):
 * y[g] = W[g] cols, dW[g] += dy[g] cols^T, dcols = W[g]^T dy[g], then col2im. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "kernels/kernels.h"
#include "layers.h"
#include "rng.h"

typedef struct conv {
    int64_t k, stride, pad, groups;
    int bias;
    kdi_buf cols; /* one image's im2col matrix of one group: [cin/g * k * k, oh * ow] */
} conv;

/* cols[(c * k + i) * k + j][oy * ow + ox] = x[c][oy * s - p + i][ox * s - p + j], 0 outside. */
static void im2col(const conv *cv, const float *x, int64_t cin, int64_t h, int64_t w, int64_t oh,
                   int64_t ow, float *cols)
{
    int64_t k = cv->k, hw = oh * ow;
    for (int64_t c = 0; c < cin; c++)
        for (int64_t i = 0; i < k; i++)
            for (int64_t j = 0; j < k; j++) {
                float *row = cols + ((c * k + i) * k + j) * hw;
                for (int64_t oy = 0; oy < oh; oy++) {
                    int64_t iy = oy * cv->stride - cv->pad + i;
                    float *r = row + oy * ow;
                    if (iy < 0 || iy >= h) {
                        memset(r, 0, sizeof(float) * (size_t)ow);
                        continue;
                    }
                    const float *xr = x + (c * h + iy) * w;
                    for (int64_t ox = 0; ox < ow; ox++) {
                        int64_t ix = ox * cv->stride - cv->pad + j;
                        r[ox] = ix >= 0 && ix < w ? xr[ix] : 0.0f;
                    }
                }
            }
}

/* The adjoint of im2col: dx[c][iy][ix] += dcols[...] for every place the input was copied to. */
static void col2im(const conv *cv, const float *cols, int64_t cin, int64_t h, int64_t w, int64_t oh,
                   int64_t ow, float *dx)
{
    int64_t k = cv->k, hw = oh * ow;
    for (int64_t c = 0; c < cin; c++)
        for (int64_t i = 0; i < k; i++)
            for (int64_t j = 0; j < k; j++) {
                const float *row = cols + ((c * k + i) * k + j) * hw;
                for (int64_t oy = 0; oy < oh; oy++) {
                    int64_t iy = oy * cv->stride - cv->pad + i;
                    if (iy < 0 || iy >= h) continue;
                    float *xr = dx + (c * h + iy) * w;
                    const float *r = row + oy * ow;
                    for (int64_t ox = 0; ox < ow; ox++) {
                        int64_t ix = ox * cv->stride - cv->pad + j;
                        if (ix >= 0 && ix < w) xr[ix] += r[ox];
                    }
                }
            }
}

static kd_status conv_reserve(kdi_layer *l, int64_t batch)
{
    (void)batch;
    conv *cv = l->priv;
    int64_t cg = l->in.c / cv->groups;
    return kdi_buf_reserve(&cv->cols, cg * cv->k * cv->k * l->out.h * l->out.w);
}

static kd_status conv_forward(kdi_layer *l, const float *x, float *y, int64_t batch, int train)
{
    (void)train;
    conv *cv = l->priv;
    const kdi_kernels *kn = kdi_kernels_get();
    int64_t cin = l->in.c, h = l->in.h, w = l->in.w, oh = l->out.h, ow = l->out.w, hw = oh * ow;
    int64_t cg = cin / cv->groups, og = l->out.c / cv->groups, kk = cg * cv->k * cv->k;
    const float *wt = l->params[0].value;
    for (int64_t b = 0; b < batch; b++)
        for (int64_t g = 0; g < cv->groups; g++) {
            const float *xg = x + (b * cin + g * cg) * h * w;
            float *yg = y + (b * l->out.c + g * og) * hw;
            im2col(cv, xg, cg, h, w, oh, ow, cv->cols.data);
            kn->gemm(0, 0, og, hw, kk, 1.0f, wt + g * og * kk, kk, cv->cols.data, hw, 0.0f, yg, hw);
            if (cv->bias)
                for (int64_t o = 0; o < og; o++) {
                    float bo = l->params[1].value[g * og + o];
                    for (int64_t p = 0; p < hw; p++) yg[o * hw + p] += bo;
                }
        }
    return KD_OK;
}

static kd_status conv_backward(kdi_layer *l, const float *x, const float *y, const float *dy,
                               float *dx, int64_t batch)
{
    (void)y;
    conv *cv = l->priv;
    const kdi_kernels *kn = kdi_kernels_get();
    int64_t cin = l->in.c, h = l->in.h, w = l->in.w, oh = l->out.h, ow = l->out.w, hw = oh * ow;
    int64_t cg = cin / cv->groups, og = l->out.c / cv->groups, kk = cg * cv->k * cv->k;
    const float *wt = l->params[0].value;
    float *gw = l->params[0].grad;
    if (dx != NULL) memset(dx, 0, sizeof(float) * (size_t)(batch * cin * h * w));
    for (int64_t b = 0; b < batch; b++)
        for (int64_t g = 0; g < cv->groups; g++) {
            const float *xg = x + (b * cin + g * cg) * h * w;
            const float *dyg = dy + (b * l->out.c + g * og) * hw;
            im2col(cv, xg, cg, h, w, oh, ow, cv->cols.data);
            kn->gemm(0, 1, og, kk, hw, 1.0f, dyg, hw, cv->cols.data, hw, 1.0f, gw + g * og * kk, kk);
            if (cv->bias)
                for (int64_t o = 0; o < og; o++) {
                    double s = 0.0;
                    for (int64_t p = 0; p < hw; p++) s += dyg[o * hw + p];
                    l->params[1].grad[g * og + o] += (float)s;
                }
            if (dx == NULL) continue;
            kn->gemm(1, 0, kk, hw, og, 1.0f, wt + g * og * kk, kk, dyg, hw, 0.0f, cv->cols.data, hw);
            col2im(cv, cv->cols.data, cg, h, w, oh, ow, dx + (b * cin + g * cg) * h * w);
        }
    return KD_OK;
}

static void conv_destroy(kdi_layer *l)
{
    conv *cv = l->priv;
    if (cv != NULL) kdi_buf_free(&cv->cols);
    free(cv);
}

static const kdi_layer_ops conv_ops = {.kind = "conv",
                                       .forward = conv_forward,
                                       .backward = conv_backward,
                                       .reserve = conv_reserve,
                                       .destroy = conv_destroy};

static kd_status conv_args(const kdi_args *a, kdi_shape in, int64_t *out, conv *cv)
{
    static const char *const keys[] = {"out", "k", "stride", "pad", "groups", "bias", NULL};
    int64_t bias;
    KDI_TRY(kdi_args_check(a, 2, keys, 0));
    KDI_TRY(kdi_args_int(a, 0, "out", 0, 0, 1, 1 << 16, out));
    KDI_TRY(kdi_args_int(a, 1, "k", 0, 0, 1, 64, &cv->k));
    KDI_TRY(kdi_args_int(a, -1, "stride", 1, 1, 1, 64, &cv->stride));
    KDI_TRY(kdi_args_int(a, -1, "pad", 1, 0, 0, 64, &cv->pad));
    KDI_TRY(kdi_args_int(a, -1, "groups", 1, 1, 1, 1 << 16, &cv->groups));
    KDI_TRY(kdi_args_int(a, -1, "bias", 1, 1, 0, 1, &bias));
    cv->bias = (int)bias;
    if (in.c % cv->groups != 0 || *out % cv->groups != 0)
        return kdi_fail(KD_ERR_SHAPE, "conv: groups %lld must divide the input channels %lld and "
                        "the output channels %lld", (long long)cv->groups, (long long)in.c, (long long)*out);
    if (in.h + 2 * cv->pad < cv->k || in.w + 2 * cv->pad < cv->k)
        return kdi_fail(KD_ERR_SHAPE, "conv: kernel %lld does not fit a %lldx%lld input with padding %lld",
                        (long long)cv->k, (long long)in.h, (long long)in.w, (long long)cv->pad);
    return KD_OK;
}

kd_status kdi_conv_create(const kdi_args *a, kdi_shape in, uint64_t seed, kdi_layer *l)
{
    int64_t out;
    conv *cv = calloc(1, sizeof *cv);
    if (cv == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot allocate a conv layer");
    l->ops = &conv_ops;
    l->priv = cv;
    KDI_TRY(conv_args(a, in, &out, cv));
    l->in = in;
    l->out = (kdi_shape){out, (in.h + 2 * cv->pad - cv->k) / cv->stride + 1,
                         (in.w + 2 * cv->pad - cv->k) / cv->stride + 1};
    int64_t fan_in = in.c / cv->groups * cv->k * cv->k;
    int64_t wdims[4] = {out, in.c / cv->groups, cv->k, cv->k}, bdims[1] = {out};
    KDI_TRY(kdi_layer_add_param(l, "weight", 1, 4, wdims));
    kdi_init_uniform(l->params[0].value, l->params[0].count, fan_in, kdi_rng_derive(seed, 0));
    if (cv->bias) {
        KDI_TRY(kdi_layer_add_param(l, "bias", 1, 1, bdims));
        kdi_init_uniform(l->params[1].value, out, fan_in, kdi_rng_derive(seed, 1));
    }
    char extra[96] = "";
    size_t n = 0;
    if (cv->stride != 1) n += (size_t)snprintf(extra + n, sizeof extra - n, " stride=%lld", (long long)cv->stride);
    if (cv->pad != 0) n += (size_t)snprintf(extra + n, sizeof extra - n, " pad=%lld", (long long)cv->pad);
    if (cv->groups != 1) n += (size_t)snprintf(extra + n, sizeof extra - n, " groups=%lld", (long long)cv->groups);
    if (!cv->bias) snprintf(extra + n, sizeof extra - n, " bias=0");
    return kdi_layer_set_spec(l, "conv %lld %lld%s", (long long)out, (long long)cv->k, extra);
}
