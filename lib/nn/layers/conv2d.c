/* Conv2d, as PyTorch's nn.Conv2d: square kernel, stride, zero padding, groups (depthwise when
 * groups == in == out).
 *
 * Spec: conv OUT K [stride=S] [pad=P] [groups=G] [bias=0|1]   (stride 1, pad 0, groups 1, bias 1)
 * Parameters: weight [OUT, IN/G, K, K], bias [OUT] (absent with bias=0).
 *
 * Convolution as a matrix product over the im2col matrix (Chellapilla, Puri and Simard 2006). A
 * chunk of n images of one group is unrolled side by side into cols [cg*K*K, n*OH*OW], so one
 * GEMM per chunk and group does the work even for 7x7 maps:
 *   forward   Y[og, n*hw]  = W[g] cols
 *   backward  dW[g]       += dY cols^T,   dcols = W[g]^T dY,   dx = col2im(dcols)
 * Y is then scattered to NCHW (and dY gathered from it), a copy K*K*cg times cheaper than the GEMM.
 * With stride 1 an image's columns are "wide", one per pixel of the padded width (see dims).
 * Depthwise convolution (one input and one output channel a group) has GEMMs of a single row, so it
 * runs as direct loops over each channel's rows instead, with no workspace.
 * The workspaces are sized by reserve; forward and backward do not allocate. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/rng.h"
#include "core/threads.h"
#include "kernels/kernels.h"
#include "nn/layers/layers.h"

typedef struct conv {
    int64_t k, stride, pad, groups;
    int bias;
    kdi_buf cols; /* a chunk of images of one group side by side: [cin/g * k * k, n * oh * ow] */
    kdi_buf out;  /* the GEMM's [out/g, n * oh * ow]: outputs (forward) or dY gathered (backward) */
    kdi_buf planes; /* stride 1 ("wide" columns): a padded plane a thread, im2col and col2im */
    int64_t slots;  /* per-thread workspaces (depthwise: in cols and out; stride 1: in planes), the
                     * threads at reserve */
    /* What cols still holds after a forward: the im2col of images [kept_b0, ...) of group kept_g of
     * the input kept_x at batch kept_batch, which backward reuses instead of recomputing it. */
    const float *kept_x;
    int64_t kept_b0, kept_g, kept_batch;
} conv;

/* The outputs ox in [*lo, *hi) whose input column ox * s - p + j lies inside [0, w). */
static void valid_range(int64_t j, int64_t s, int64_t p, int64_t w, int64_t ow, int64_t *lo,
                        int64_t *hi)
{
    int64_t a = p - j, b = w - 1 + p - j; /* need a <= ox * s <= b */
    int64_t l = a <= 0 ? 0 : (a + s - 1) / s;
    int64_t h = b < 0 ? 0 : b / s + 1;
    *lo = l < ow ? l : ow;
    *hi = h < ow ? h : ow;
    if (*hi < *lo) *hi = *lo;
}

/* cols[(c*K + i)*K + j][oy*ow + ox] (row stride ld) = x[c][oy*s - p + i][ox*s - p + j], 0 outside. */
static void im2col(const conv *cv, const float *x, int64_t cin, int64_t h, int64_t w, int64_t oh,
                   int64_t ow, float *cols, int64_t ld)
{
    int64_t k = cv->k, s = cv->stride, p = cv->pad;
    for (int64_t c = 0; c < cin; c++)
        for (int64_t i = 0; i < k; i++)
            for (int64_t j = 0; j < k; j++) {
                float *row = cols + ((c * k + i) * k + j) * ld;
                int64_t lo, hi;
                valid_range(j, s, p, w, ow, &lo, &hi);
                for (int64_t oy = 0; oy < oh; oy++) {
                    int64_t iy = oy * s - p + i;
                    float *r = row + oy * ow;
                    if (iy < 0 || iy >= h) {
                        memset(r, 0, sizeof(float) * (size_t)ow);
                        continue;
                    }
                    const float *xr = x + (c * h + iy) * w;
                    for (int64_t ox = 0; ox < lo; ox++) r[ox] = 0.0f;
                    if (s == 1) {
                        const float *src = xr + j - p; /* rows are short: a loop beats memcpy */
                        for (int64_t ox = lo; ox < hi; ox++) r[ox] = src[ox];
                    } else {
                        for (int64_t ox = lo; ox < hi; ox++) r[ox] = xr[ox * s + j - p];
                    }
                    for (int64_t ox = hi; ox < ow; ox++) r[ox] = 0.0f;
                }
            }
}

/* The adjoint of im2col: dx[c][iy][ix] += every entry of cols that was copied from there. */
static void col2im(const conv *cv, const float *cols, int64_t cin, int64_t h, int64_t w, int64_t oh,
                   int64_t ow, float *dx, int64_t ld)
{
    int64_t k = cv->k, s = cv->stride, p = cv->pad;
    for (int64_t c = 0; c < cin; c++)
        for (int64_t i = 0; i < k; i++)
            for (int64_t j = 0; j < k; j++) {
                const float *row = cols + ((c * k + i) * k + j) * ld;
                int64_t lo, hi;
                valid_range(j, s, p, w, ow, &lo, &hi);
                for (int64_t oy = 0; oy < oh; oy++) {
                    int64_t iy = oy * s - p + i;
                    if (iy < 0 || iy >= h) continue;
                    float *xr = dx + (c * h + iy) * w;
                    const float *r = row + oy * ow;
                    for (int64_t ox = lo; ox < hi; ox++) xr[ox * s + j - p] += r[ox];
                }
            }
}

/* ---------------------------------------------------------------- depthwise, direct */

static int depthwise(const kdi_layer *l)
{
    const conv *cv = l->priv;
    return cv->groups == l->in.c && cv->groups == l->out.c;
}

/* Threads for a depthwise pass: one workspace slot each, so no more than reserve made. */
static int dw_threads(const kdi_layer *l, int64_t batch)
{
    const conv *cv = l->priv;
    int nt = kdi_threads_for(batch * l->in.c * (l->in.h * l->in.w + l->out.h * l->out.w));
    if (nt > l->in.c) nt = (int)l->in.c;
    return nt < cv->slots ? nt : (int)cv->slots;
}

/* Stride 1 runs on the padded plane, hp x wp, with outputs laid out on rows of wp too ("wide":
 * columns past ow are scratch). Tap (i, j) then reads the padded plane at offset i * wp + j for
 * every output at once, so each tap is one long axpy or dot through the SIMD kernels instead of
 * oh short rows. The wide outputs span L = (oh - 1) * wp + ow values. */
static void pad_plane(const float *x, int64_t h, int64_t w, int64_t p, float *xp)
{
    int64_t wp = w + 2 * p;
    memset(xp, 0, sizeof(float) * (size_t)((h + 2 * p) * wp));
    for (int64_t y = 0; y < h; y++) memcpy(xp + (y + p) * wp + p, x + y * w, sizeof(float) * w);
}

static void dw_forward_wide(const kdi_layer *l, const float *x, float *y, int64_t batch)
{
    conv *cv = l->priv;
    const kdi_kernels *kn = kdi_kernels_get();
    int64_t k = cv->k, p = cv->pad, ch = l->in.c, h = l->in.h, w = l->in.w, wp = w + 2 * p;
    int64_t oh = l->out.h, ow = l->out.w, len = (oh - 1) * wp + ow, plane = (h + 2 * p) * wp;
    int nt = dw_threads(l, batch);
    KDI_PARALLEL_FOR(nt) /* channels are independent; each thread has its own planes */
    for (int64_t c = 0; c < ch; c++) {
        float *xp = cv->cols.data + kdi_thread_id() * 2 * plane;
        float *yw = cv->out.data + kdi_thread_id() * oh * wp;
        for (int64_t n = 0; n < batch; n++) {
            int64_t nc = n * ch + c;
            const float *wc = l->params[0].value + c * k * k;
            float b = cv->bias ? l->params[1].value[c] : 0.0f;
            pad_plane(x + nc * h * w, h, w, p, xp);
            for (int64_t q = 0; q < len; q++) yw[q] = b;
            for (int64_t i = 0; i < k; i++)
                for (int64_t j = 0; j < k; j++) kn->axpy(yw, wc[i * k + j], xp + i * wp + j, len);
            float *yc = y + nc * oh * ow;
            for (int64_t oy = 0; oy < oh; oy++)
                memcpy(yc + oy * ow, yw + oy * wp, sizeof(float) * (size_t)ow);
        }
    }
}

static void dw_backward_wide(const kdi_layer *l, const float *x, const float *dy, float *dx,
                             int64_t batch)
{
    conv *cv = l->priv;
    const kdi_kernels *kn = kdi_kernels_get();
    int64_t k = cv->k, p = cv->pad, ch = l->in.c, h = l->in.h, w = l->in.w, wp = w + 2 * p;
    int64_t oh = l->out.h, ow = l->out.w, len = (oh - 1) * wp + ow, plane = (h + 2 * p) * wp;
    int nt = dw_threads(l, batch);
    KDI_PARALLEL_FOR(nt) /* per channel, images in order: the same sums on any thread count */
    for (int64_t c = 0; c < ch; c++) {
        float *xp = cv->cols.data + kdi_thread_id() * 2 * plane, *dxp = xp + plane;
        float *dyw = cv->out.data + kdi_thread_id() * oh * wp;
        for (int64_t n = 0; n < batch; n++) {
            int64_t nc = n * ch + c;
            const float *wc = l->params[0].value + c * k * k, *dyc = dy + nc * oh * ow;
            float *gc = l->params[0].grad + c * k * k;
            /* dy on wide rows, zero in the scratch columns so they add nothing */
            memset(dyw, 0, sizeof(float) * (size_t)len);
            for (int64_t oy = 0; oy < oh; oy++)
                memcpy(dyw + oy * wp, dyc + oy * ow, sizeof(float) * (size_t)ow);
            if (cv->bias) l->params[1].grad[c] += (float)kn->sum(dyc, oh * ow);
            pad_plane(x + nc * h * w, h, w, p, xp);
            for (int64_t i = 0; i < k; i++)
                for (int64_t j = 0; j < k; j++)
                    gc[i * k + j] += (float)kn->dot(dyw, xp + i * wp + j, len);
            if (dx == NULL) continue;
            memset(dxp, 0, sizeof(float) * (size_t)plane);
            for (int64_t i = 0; i < k; i++)
                for (int64_t j = 0; j < k; j++) kn->axpy(dxp + i * wp + j, wc[i * k + j], dyw, len);
            float *dxc = dx + nc * h * w;
            for (int64_t y = 0; y < h; y++)
                memcpy(dxc + y * w, dxp + (y + p) * wp + p, sizeof(float) * (size_t)w);
        }
    }
}

/* y[n][c] = bias[c] + sum over taps (i, j) of w[c][i][j] x[n][c][oy*s - p + i][ox*s - p + j]: tap
 * by tap, a scaled input row segment is added to each output row, a loop the compiler vectorises. */
static void dw_forward_strided(const kdi_layer *l, const float *x, float *y, int64_t batch)
{
    const conv *cv = l->priv;
    int64_t k = cv->k, s = cv->stride, p = cv->pad, ch = l->in.c, h = l->in.h, w = l->in.w;
    int64_t oh = l->out.h, ow = l->out.w;
    int nt = kdi_threads_for(batch * ch * (h * w + oh * ow));
    KDI_PARALLEL_FOR(nt) /* planes are independent */
    for (int64_t nc = 0; nc < batch * ch; nc++) {
        int64_t c = nc % ch;
        const float *xc = x + nc * h * w, *wc = l->params[0].value + c * k * k;
        float *yc = y + nc * oh * ow, b = cv->bias ? l->params[1].value[c] : 0.0f;
        for (int64_t q = 0; q < oh * ow; q++) yc[q] = b;
        for (int64_t i = 0; i < k; i++) {
            int64_t oy0, oy1;
            valid_range(i, s, p, h, oh, &oy0, &oy1); /* rows, as columns */
            for (int64_t j = 0; j < k; j++) {
                int64_t lo, hi;
                valid_range(j, s, p, w, ow, &lo, &hi);
                float wv = wc[i * k + j];
                for (int64_t oy = oy0; oy < oy1; oy++) {
                    const float *xr = xc + (oy * s - p + i) * w + j - p;
                    float *yr = yc + oy * ow;
                    if (s == 1)
                        for (int64_t ox = lo; ox < hi; ox++) yr[ox] += wv * xr[ox];
                    else
                        for (int64_t ox = lo; ox < hi; ox++) yr[ox] += wv * xr[ox * s];
                }
            }
        }
    }
}

/* Per tap: dW[c][i][j] += sum of dy * the inputs it multiplied, gathered into one row of products
 * (acc, ow floats) and summed once a plane; dx gets dy scaled by the tap's weight. */
static void dw_backward_strided(const kdi_layer *l, const float *x, const float *dy, float *dx,
                                int64_t batch)
{
    const conv *cv = l->priv;
    int64_t k = cv->k, s = cv->stride, p = cv->pad, ch = l->in.c, h = l->in.h, w = l->in.w;
    int64_t oh = l->out.h, ow = l->out.w;
    const kdi_kernels *kn = kdi_kernels_get();
    if (dx != NULL) memset(dx, 0, sizeof(float) * (size_t)(batch * ch * h * w));
    int nt = dw_threads(l, batch);
    KDI_PARALLEL_FOR(nt) /* per channel, images in order: the same sums on any thread count */
    for (int64_t c = 0; c < ch; c++) {
        float *acc = cv->out.data + kdi_thread_id() * ow;
        for (int64_t n = 0; n < batch; n++) {
            int64_t nc = n * ch + c;
            const float *xc = x + nc * h * w, *wc = l->params[0].value + c * k * k;
            const float *dyc = dy + nc * oh * ow;
            float *dxc = dx != NULL ? dx + nc * h * w : NULL, *gc = l->params[0].grad + c * k * k;
            if (cv->bias) l->params[1].grad[c] += (float)kn->sum(dyc, oh * ow);
            for (int64_t i = 0; i < k; i++) {
                int64_t oy0, oy1;
                valid_range(i, s, p, h, oh, &oy0, &oy1); /* rows, as columns */
                for (int64_t j = 0; j < k; j++) {
                    int64_t lo, hi;
                    valid_range(j, s, p, w, ow, &lo, &hi);
                    float wv = wc[i * k + j];
                    for (int64_t ox = lo; ox < hi; ox++) acc[ox] = 0.0f;
                    for (int64_t oy = oy0; oy < oy1; oy++) {
                        int64_t off = (oy * s - p + i) * w + j - p;
                        const float *xr = xc + off, *gr = dyc + oy * ow;
                        if (s == 1)
                            for (int64_t ox = lo; ox < hi; ox++) acc[ox] += gr[ox] * xr[ox];
                        else
                            for (int64_t ox = lo; ox < hi; ox++) acc[ox] += gr[ox] * xr[ox * s];
                        if (dxc == NULL) continue;
                        float *dxr = dxc + off;
                        if (s == 1)
                            for (int64_t ox = lo; ox < hi; ox++) dxr[ox] += wv * gr[ox];
                        else
                            for (int64_t ox = lo; ox < hi; ox++) dxr[ox * s] += wv * gr[ox];
                    }
                    gc[i * k + j] += (float)kn->sum(acc + lo, hi - lo);
                }
            }
        }
    }
}

static void dw_forward(const kdi_layer *l, const float *x, float *y, int64_t batch)
{
    if (((const conv *)l->priv)->stride == 1)
        dw_forward_wide(l, x, y, batch);
    else
        dw_forward_strided(l, x, y, batch);
}

static void dw_backward(const kdi_layer *l, const float *x, const float *dy, float *dx,
                        int64_t batch)
{
    if (((const conv *)l->priv)->stride == 1)
        dw_backward_wide(l, x, dy, dx, batch);
    else
        dw_backward_strided(l, x, dy, dx, batch);
}

/* ---------------------------------------------------------------- im2col + GEMM */

/* Images per GEMM: enough columns to keep BLAS efficient, few enough to bound the workspace. */
#define COLS_BUDGET (1 << 22) /* floats in one im2col matrix, 16 MiB */

/* The sizes every pass needs, in one place.
 * Stride 1 lays each image's columns out "wide", as the depthwise path does: output (oy, ox) at
 * column oy * wp + ox of its image, wp = w + 2 pad the padded width, so cw = (oh - 1) * wp + ow
 * columns an image, the wp - ow after each output row scratch. Row (c, i, j) of im2col is then
 * one contiguous copy of the padded plane from i * wp + j, and col2im one axpy into it, instead of
 * k * k * oh short rows with bounds each (21% of the small CNN's step); the scratch columns cost
 * the GEMMs 7% (28 x 28) to 13% (14 x 14) more columns. dY's scratch columns are zero when
 * gathered, so they add nothing to dW, and their dcols (W^T 0) add nothing in col2im. */
typedef struct dims {
    int64_t cin, cout, h, w, oh, ow, hw, cg, og, kk;
    int wide;
    int64_t wp, cw, plane; /* padded width, columns an image, padded plane (wide) */
} dims;

static dims dims_of(const kdi_layer *l)
{
    const conv *cv = l->priv;
    dims d = {l->in.c, l->out.c, l->in.h, l->in.w, l->out.h, l->out.w, 0, 0, 0, 0, 0, 0, 0, 0};
    d.hw = d.oh * d.ow;
    d.cg = d.cin / cv->groups;
    d.og = d.cout / cv->groups;
    d.kk = d.cg * cv->k * cv->k;
    d.wide = cv->stride == 1;
    d.wp = d.wide ? d.w + 2 * cv->pad : d.ow;
    d.cw = d.wide ? (d.oh - 1) * d.wp + d.ow : d.hw;
    d.plane = d.wide ? (d.h + 2 * cv->pad) * d.wp : 0;
    return d;
}

static int64_t chunk_of(const kdi_layer *l, int64_t batch)
{
    dims d = dims_of(l);
    int64_t n = COLS_BUDGET / (d.kk * d.cw);
    return n < 1 ? 1 : n > batch ? batch : n;
}

static kd_status conv_reserve(kdi_layer *l, int64_t batch)
{
    conv *cv = l->priv;
    if (depthwise(l)) {
        int64_t slots = kdi_threads();
        if (cv->stride != 1) {
            KDI_TRY(kdi_buf_reserve(&cv->out, slots * l->out.w)); /* dw_backward_strided's acc */
        } else {
            int64_t wp = l->in.w + 2 * cv->pad;
            KDI_TRY(kdi_buf_reserve(&cv->cols, slots * 2 * (l->in.h + 2 * cv->pad) * wp));
            KDI_TRY(kdi_buf_reserve(&cv->out, slots * l->out.h * wp)); /* wide rows */
        }
        if (slots > cv->slots) cv->slots = slots;
        return KD_OK;
    }
    dims d = dims_of(l);
    int64_t n = chunk_of(l, batch);
    if (d.wide) {
        int64_t slots = kdi_threads();
        KDI_TRY(kdi_buf_reserve(&cv->planes, slots * d.plane));
        if (slots > cv->slots) cv->slots = slots;
    }
    KDI_TRY(kdi_buf_reserve(&cv->cols, d.kk * d.cw * n));
    return kdi_buf_reserve(&cv->out, d.og * d.cw * n);
}

/* Parallel chunks, one region a chunk and group: images are shared out for im2col, the NCHW
 * copies and col2im; each GEMM is split into slices of its output, called from every thread with
 * OpenBLAS held at one thread. The slices start at multiples of KDI_BLOCK (kdi_part), so each
 * output mostly lands on the same place of OpenBLAS's register tiles as in one whole call; in some
 * shapes OpenBLAS still rounds a slice differently (tests/test_thread_count.c bounds it). */
static void share(int64_t n, int t, int nt, int64_t *lo, int64_t *hi)
{
    *lo = n * t / nt;
    *hi = n * (t + 1) / nt;
}

/* Threads for a chunk; with wide columns no more than the padded planes reserve made. */
static int chunk_threads(const conv *cv, const dims *d, int64_t n)
{
    int nt = kdi_threads_for(n * d->kk * d->hw);
    return d->wide && nt > cv->slots ? (int)cv->slots : nt;
}

/* Waits for the whole team (an orphaned barrier: the functions below also run outside a region,
 * as a team of one). */
#ifdef _OPENMP
#define BARRIER(team)                                                                              \
    do {                                                                                           \
        if ((team) > 1) {                                                                          \
            KDI_PRAGMA(omp barrier)                                                                \
        }                                                                                          \
    } while (0)
#else
#define BARRIER(team) (void)(team)
#endif

/* Wide im2col of one image's group (t: the thread's padded plane): row (c, i, j) is the padded
 * plane of channel c from i * wp + j, cw values. */
static void im2col_wide(const conv *cv, const dims *d, const float *x, float *cols, int64_t ld,
                        int t)
{
    int64_t k = cv->k;
    float *xp = cv->planes.data + t * d->plane;
    for (int64_t c = 0; c < d->cg; c++) {
        pad_plane(x + c * d->h * d->w, d->h, d->w, cv->pad, xp);
        for (int64_t i = 0; i < k; i++)
            for (int64_t j = 0; j < k; j++)
                memcpy(cols + ((c * k + i) * k + j) * ld, xp + i * d->wp + j,
                       sizeof(float) * (size_t)d->cw);
    }
}

/* The adjoint of im2col_wide: dx += the padded plane's interior after each row of dcols is added
 * to it where im2col_wide copied that row from. */
static void col2im_wide(const conv *cv, const dims *d, const float *cols, int64_t ld, float *dx,
                        int t)
{
    const kdi_kernels *kn = kdi_kernels_get();
    int64_t k = cv->k, p = cv->pad;
    float *dxp = cv->planes.data + t * d->plane;
    for (int64_t c = 0; c < d->cg; c++) {
        memset(dxp, 0, sizeof(float) * (size_t)d->plane);
        for (int64_t i = 0; i < k; i++)
            for (int64_t j = 0; j < k; j++)
                kn->axpy(dxp + i * d->wp + j, 1.0f, cols + ((c * k + i) * k + j) * ld, d->cw);
        float *dxc = dx + c * d->h * d->w;
        for (int64_t y = 0; y < d->h; y++)
            kn->axpy(dxc + y * d->w, 1.0f, dxp + (y + p) * d->wp + p, d->w);
    }
}

static void im2col_images(const kdi_layer *l, const dims *d, const float *x, int64_t b0, int64_t n,
                          int64_t g, int64_t lo, int64_t hi, int t)
{
    const conv *cv = l->priv;
    for (int64_t i = lo; i < hi; i++) {
        const float *xi = x + ((b0 + i) * d->cin + g * d->cg) * d->h * d->w;
        if (d->wide)
            im2col_wide(cv, d, xi, cv->cols.data + i * d->cw, n * d->cw, t);
        else
            im2col(cv, xi, d->cg, d->h, d->w, d->oh, d->ow, cv->cols.data + i * d->hw, n * d->hw);
    }
}

/* Y columns of images [lo, hi) to NCHW, plus the bias: a plane at a time, or with wide columns
 * a row at a time, past the scratch columns. */
static void scatter(const kdi_layer *l, const dims *d, float *y, int64_t b0, int64_t n, int64_t g,
                    int64_t lo, int64_t hi)
{
    const conv *cv = l->priv;
    int64_t ld = n * d->cw, rows = d->wide ? d->oh : 1, len = d->wide ? d->ow : d->hw;
    for (int64_t i = lo; i < hi; i++)
        for (int64_t o = 0; o < d->og; o++) {
            float *yo = y + ((b0 + i) * d->cout + g * d->og + o) * d->hw;
            const float *src = cv->out.data + o * ld + i * d->cw;
            float bo = cv->bias ? l->params[1].value[g * d->og + o] : 0.0f;
            for (int64_t r = 0; r < rows; r++) {
                float *yr = yo + r * len;
                const float *sr = src + r * d->wp;
                if (!cv->bias)
                    memcpy(yr, sr, sizeof(float) * (size_t)len);
                else
                    for (int64_t q = 0; q < len; q++) yr[q] = sr[q] + bo;
            }
        }
}

/* Y[:, c0:c1] = W cols[:, c0:c1]. */
static void y_part(const kdi_layer *l, const dims *d, int64_t n, int64_t g, int64_t c0, int64_t c1)
{
    const conv *cv = l->priv;
    int64_t ld = n * d->cw;
    if (c1 > c0)
        kdi_kernels_get()->gemm(0, 0, d->og, c1 - c0, d->kk, 1.0f,
                                l->params[0].value + g * d->og * d->kk, d->kk, cv->cols.data + c0,
                                ld, 0.0f, cv->out.data + c0, ld);
}

/* The parts p of `parts` that thread t of a team runs: t, t + team, ... A team smaller than parts
 * (kdi_team_for, on a busy machine) runs the same parts, so the same slices and results. */
#define EACH_PART(p, t, team, parts) for (int p = (t); p < (parts); p += (team))

/* One chunk and group, parts of it by thread t of team. */
static void forward_team(const kdi_layer *l, const dims *d, const float *x, float *y, int64_t b0,
                         int64_t n, int64_t g, int t, int team, int parts)
{
    int64_t lo, hi, c0, c1;
    EACH_PART(p, t, team, parts)
    {
        share(n, p, parts, &lo, &hi);
        im2col_images(l, d, x, b0, n, g, lo, hi, t);
    }
    BARRIER(team);
    EACH_PART(p, t, team, parts)
    {
        kdi_part(n * d->cw, p, parts, &c0, &c1);
        y_part(l, d, n, g, c0, c1);
    }
    BARRIER(team);
    EACH_PART(p, t, team, parts)
    {
        share(n, p, parts, &lo, &hi);
        scatter(l, d, y, b0, n, g, lo, hi);
    }
}

static kd_status conv_forward(kdi_layer *l, const float *x, float *y, int64_t batch, int train)
{
    (void)train;
    if (depthwise(l)) {
        dw_forward(l, x, y, batch);
        return KD_OK;
    }
    conv *cv = l->priv;
    dims d = dims_of(l);
    int64_t chunk = chunk_of(l, batch);
    for (int64_t b0 = 0; b0 < batch; b0 += chunk) {
        int64_t n = batch - b0 < chunk ? batch - b0 : chunk;
        int nt = chunk_threads(cv, &d, n);
        for (int64_t g = 0; g < cv->groups; g++) {
            if (nt == 1) {
                forward_team(l, &d, x, y, b0, n, g, 0, 1, 1);
            } else {
                int team = kdi_team_for(nt);
                (void)team; /* unused without OpenMP */
                kdi_blas_serial_begin();
#ifdef _OPENMP
#pragma omp parallel num_threads(team) if (team > 1)
#endif
                forward_team(l, &d, x, y, b0, n, g, kdi_thread_id(), kdi_team_size(), nt);
                kdi_blas_serial_end();
            }
            cv->kept_b0 = b0;
            cv->kept_g = g;
        }
    }
    cv->kept_x = x;
    cv->kept_batch = batch;
    return KD_OK;
}

/* dY of images [lo, hi) from NCHW into out's columns; with wide columns, zeros in the scratch. */
static void gather(kdi_layer *l, const dims *d, const float *dy, int64_t b0, int64_t n, int64_t g,
                   int64_t lo, int64_t hi)
{
    conv *cv = l->priv;
    int64_t ld = n * d->cw;
    for (int64_t i = lo; i < hi; i++)
        for (int64_t o = 0; o < d->og; o++) {
            float *dst = cv->out.data + o * ld + i * d->cw;
            const float *src = dy + ((b0 + i) * d->cout + g * d->og + o) * d->hw;
            if (!d->wide) {
                memcpy(dst, src, sizeof(float) * (size_t)d->hw);
                continue;
            }
            for (int64_t r = 0; r < d->oh; r++) {
                memcpy(dst + r * d->wp, src + r * d->ow, sizeof(float) * (size_t)d->ow);
                if (r + 1 < d->oh) /* a few floats: a loop, not a memset call */
                    for (int64_t q = r * d->wp + d->ow; q < (r + 1) * d->wp; q++) dst[q] = 0.0f;
            }
        }
}

/* The bias gradient of output channels [o0, o1): each summed over the images in order. */
static void bias_part(kdi_layer *l, const dims *d, const float *dy, int64_t b0, int64_t n,
                      int64_t g, int64_t o0, int64_t o1)
{
    /* the kernel's vector sum in double: the scalar loop was one dependent add a value (7% of
     * the small CNN's step) */
    const kdi_kernels *kn = kdi_kernels_get();
    for (int64_t o = o0; o < o1; o++)
        for (int64_t i = 0; i < n; i++) {
            const float *dyo = dy + ((b0 + i) * d->cout + g * d->og + o) * d->hw;
            l->params[1].grad[g * d->og + o] += (float)kn->sum(dyo, d->hw);
        }
}

/* One chunk and group of backward, by thread t of team: dW[:, r0:r1] += dY cols[r0:r1]^T (rows of
 * cols, each over every image), dcols[:, c0:c1] = W^T dY[:, c0:c1], col2im of images [lo, hi). */
static void backward_team(kdi_layer *l, const dims *d, const float *x, const float *dy, float *dx,
                          int64_t b0, int64_t n, int64_t g, int reuse, int t, int team, int parts)
{
    conv *cv = l->priv;
    const kdi_kernels *kn = kdi_kernels_get();
    int64_t ld = n * d->cw, lo, hi, o0, o1, r0, r1, c0, c1;
    EACH_PART(p, t, team, parts)
    {
        share(n, p, parts, &lo, &hi);
        share(d->og, p, parts, &o0, &o1);
        gather(l, d, dy, b0, n, g, lo, hi);
        if (!reuse) im2col_images(l, d, x, b0, n, g, lo, hi, t);
        if (cv->bias) bias_part(l, d, dy, b0, n, g, o0, o1);
    }
    BARRIER(team); /* dW needs every image's columns */
    EACH_PART(p, t, team, parts)
    {
        kdi_part(d->kk, p, parts, &r0, &r1);
        if (r1 > r0)
            kn->gemm(0, 1, d->og, r1 - r0, ld, 1.0f, cv->out.data, ld, cv->cols.data + r0 * ld, ld,
                     1.0f, l->params[0].grad + g * d->og * d->kk + r0, d->kk);
    }
    if (dx == NULL) return;
    BARRIER(team); /* dcols overwrites the columns dW read */
    EACH_PART(p, t, team, parts)
    {
        kdi_part(ld, p, parts, &c0, &c1);
        if (c1 > c0)
            kn->gemm(1, 0, d->kk, c1 - c0, d->og, 1.0f, l->params[0].value + g * d->og * d->kk,
                     d->kk, cv->out.data + c0, ld, 0.0f, cv->cols.data + c0, ld);
    }
    BARRIER(team);
    EACH_PART(p, t, team, parts)
    {
        share(n, p, parts, &lo, &hi);
        for (int64_t i = lo; i < hi; i++) {
            float *dxi = dx + ((b0 + i) * d->cin + g * d->cg) * d->h * d->w;
            if (d->wide)
                col2im_wide(cv, d, cv->cols.data + i * d->cw, ld, dxi, t);
            else
                col2im(cv, cv->cols.data + i * d->hw, d->cg, d->h, d->w, d->oh, d->ow, dxi, ld);
        }
    }
}

/* Backward walks the chunks and groups in reverse, so its first one finds its im2col still in
 * cols from the forward (a whole batch in one chunk computes im2col once a step). */
static kd_status conv_backward(kdi_layer *l, const float *x, const float *y, const float *dy,
                               float *dx, int64_t batch)
{
    (void)y;
    if (depthwise(l)) {
        dw_backward(l, x, dy, dx, batch);
        return KD_OK;
    }
    conv *cv = l->priv;
    dims d = dims_of(l);
    int64_t chunk = chunk_of(l, batch);
    int kept = cv->kept_x == x && cv->kept_batch == batch;
    cv->kept_x = NULL; /* dcols overwrites cols */
    if (dx != NULL) memset(dx, 0, sizeof(float) * (size_t)(batch * d.cin * d.h * d.w));
    for (int64_t b0 = (batch - 1) / chunk * chunk; b0 >= 0; b0 -= chunk) {
        int64_t n = batch - b0 < chunk ? batch - b0 : chunk;
        int nt = chunk_threads(cv, &d, n);
        for (int64_t g = cv->groups - 1; g >= 0; g--) {
            int reuse = kept && b0 == cv->kept_b0 && g == cv->kept_g;
            kept = 0;
            if (nt == 1) {
                backward_team(l, &d, x, dy, dx, b0, n, g, reuse, 0, 1, 1);
                continue;
            }
            int team = kdi_team_for(nt);
            (void)team; /* unused without OpenMP */
            kdi_blas_serial_begin();
#ifdef _OPENMP
#pragma omp parallel num_threads(team) if (team > 1)
#endif
            backward_team(l, &d, x, dy, dx, b0, n, g, reuse, kdi_thread_id(), kdi_team_size(), nt);
            kdi_blas_serial_end();
        }
    }
    return KD_OK;
}

static void conv_destroy(kdi_layer *l)
{
    conv *cv = l->priv;
    if (cv == NULL) return;
    kdi_buf_free(&cv->cols);
    kdi_buf_free(&cv->out);
    kdi_buf_free(&cv->planes);
    kdi_free(cv);
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
        return kdi_fail(KD_ERR_SHAPE,
                        "conv: groups=%lld must divide the input channels (%lld) and the output "
                        "channels (%lld)",
                        (long long)cv->groups, (long long)in.c, (long long)*out);
    if (in.h + 2 * cv->pad < cv->k || in.w + 2 * cv->pad < cv->k)
        return kdi_fail(KD_ERR_SHAPE,
                        "conv: a %lldx%lld kernel does not fit a %lldx%lld input "
                        "padded by %lld",
                        (long long)cv->k, (long long)cv->k, (long long)in.h, (long long)in.w,
                        (long long)cv->pad);
    return KD_OK;
}

static kd_status conv_spec(kdi_layer *l, int64_t out)
{
    const conv *cv = l->priv;
    char extra[96] = "";
    size_t n = 0;
    if (cv->stride != 1)
        n += (size_t)snprintf(extra + n, sizeof extra - n, " stride=%lld", (long long)cv->stride);
    if (cv->pad != 0)
        n += (size_t)snprintf(extra + n, sizeof extra - n, " pad=%lld", (long long)cv->pad);
    if (cv->groups != 1)
        n += (size_t)snprintf(extra + n, sizeof extra - n, " groups=%lld", (long long)cv->groups);
    if (!cv->bias) snprintf(extra + n, sizeof extra - n, " bias=0");
    return kdi_layer_set_spec(l, "conv %lld %lld%s", (long long)out, (long long)cv->k, extra);
}

kd_status kdi_conv_create(const kdi_args *a, kdi_shape in, uint64_t seed, kdi_layer *l)
{
    int64_t out;
    conv *cv = kdi_calloc(1, sizeof *cv);
    if (cv == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot allocate a conv layer");
    l->ops = &conv_ops;
    l->priv = cv;
    KDI_TRY(conv_args(a, in, &out, cv));
    l->in = in;
    l->out = (kdi_shape){out, (in.h + 2 * cv->pad - cv->k) / cv->stride + 1,
                         (in.w + 2 * cv->pad - cv->k) / cv->stride + 1};
    /* PyTorch's default init, kaiming_uniform(a = sqrt(5)): U(+-1/sqrt(fan_in)). */
    int64_t fan_in = in.c / cv->groups * cv->k * cv->k;
    int64_t wdims[4] = {out, in.c / cv->groups, cv->k, cv->k}, bdims[1] = {out};
    KDI_TRY(kdi_layer_add_param(l, "weight", 1, 4, wdims));
    kdi_init_uniform(l->params[0].value, l->params[0].count, fan_in, kdi_rng_derive(seed, 0));
    if (cv->bias) {
        KDI_TRY(kdi_layer_add_param(l, "bias", 1, 1, bdims));
        kdi_init_uniform(l->params[1].value, out, fan_in, kdi_rng_derive(seed, 1));
    }
    return conv_spec(l, out);
}
