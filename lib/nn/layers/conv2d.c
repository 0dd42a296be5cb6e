/* Conv2d, as PyTorch's nn.Conv2d: square kernel, stride, zero padding, groups (depthwise when
 * groups == in == out).
 *
 * Spec: conv OUT K [stride=S] [pad=P] [groups=G] [bias=0|1]   (stride 1, pad 0, groups 1, bias 1)
 * Parameters: weight [OUT, IN/G, K, K], bias [OUT] (absent with bias=0).
 *
 * Convolution as a matrix product over the im2col matrix (Chellapilla, Puri and Simard 2006). A
 * chunk of n images of one group (as many as fit COLS_BUDGET, at least 1) is unrolled side by side
 * into cols [cg*K*K, n*OH*OW]:
 *   forward   Y[og, n*hw]  = W[g] cols
 *   backward  dW[g]^T     += cols dY^T,  dcols = W[g]^T dY,   dx = col2im(dcols)
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
#include "core/helper.h"
#include "core/rng.h"
#include "core/threads.h"
#include "kernels/kernels.h"
#include "nn/layers/layers.h"

typedef struct conv {
    int64_t k, stride, pad, groups;
    int bias;
    kdi_buf cols; /* a chunk of images of one group side by side: [cin/g * k * k, n * oh * ow] */
    kdi_buf out;  /* the GEMM's [out/g, n * oh * ow]: outputs (forward) or dY gathered (backward) */
    kdi_buf planes; /* a plane a thread: padded (stride 1, "wide" columns), for im2col and col2im;
                     * an output plane, for a lazy forward (kdi_then) */
    kdi_buf wt;     /* backward: partial sums of dW^T, [parts][groups][cin/g * k * k][out/g] */
    kdi_buf bsum;   /* backward_planes: each plane's sum of dY, [batch][out], for the bias */
    int64_t slots;  /* per-thread workspaces (depthwise: in cols and out; else a slot of each of
                     * cols, out and planes), the threads at reserve */
    int64_t *rows;  /* implicit forward (see implicit): im2col row (c, i, j)'s offset in the
                     * group's padded planes, c plane + i wp + j; NULL before reserve or unused */
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

/* Threads for a pass touching about `work` floats in `parts` independent parts: each thread uses
 * one workspace slot, so no more than reserve made, nor than the parts. */
static int slot_threads(const conv *cv, int64_t work, int64_t parts)
{
    int64_t nt = kdi_threads_for(work);
    if (nt > cv->slots) nt = cv->slots;
    if (nt > parts) nt = parts;
    return nt < 1 ? 1 : (int)nt;
}

/* Threads for a depthwise pass, a channel a part. */
static int dw_threads(const kdi_layer *l, int64_t batch)
{
    return slot_threads(l->priv, batch * l->in.c * (l->in.h * l->in.w + l->out.h * l->out.w),
                        l->in.c);
}

/* Stride 1 runs on the padded plane, hp x wp, with outputs laid out on rows of wp too ("wide":
 * columns past ow are scratch). Tap (i, j) then reads the padded plane at offset i * wp + j for
 * every output at once, so each tap is one long axpy or dot through the SIMD kernels instead of
 * oh short rows. The wide outputs span L = (oh - 1) * wp + ow values. */
static void pad_plane(const kdi_kernels *kn, const float *x, int64_t h, int64_t w, int64_t p,
                      float *xp)
{
    int64_t wp = w + 2 * p,
            edge = p * wp + p; /* the zeros before the first value, after the last */
    memset(xp, 0, sizeof(float) * (size_t)edge);
    kn->plane_in(xp + edge, x, h, w, wp); /* the rows, the zeros between them */
    memset(xp + edge + (h - 1) * wp + w, 0, sizeof(float) * (size_t)edge);
}

static void dw_forward_wide(const kdi_layer *l, const float *x, float *y, int64_t batch)
{
    conv *cv = l->priv;
    const kdi_kernels *kn = kdi_kernels_get();
    int64_t k = cv->k, p = cv->pad, ch = l->in.c, h = l->in.h, w = l->in.w, wp = w + 2 * p;
    int64_t oh = l->out.h, ow = l->out.w, len = (oh - 1) * wp + ow, plane = (h + 2 * p) * wp;
    int nt = dw_threads(l, batch);
    /* channels are independent; each thread has its own planes */
    KDI_FOR(nt, c, ch, {
        float *xp = cv->cols.data + kdi_thread_id() * 2 * plane;
        float *yw = cv->out.data + kdi_thread_id() * oh * wp;
        for (int64_t n = 0; n < batch; n++) {
            int64_t nc = n * ch + c;
            const float *wc = l->params[0].value + c * k * k;
            float b = cv->bias ? l->params[1].value[c] : 0.0f;
            pad_plane(kn, x + nc * h * w, h, w, p, xp);
            for (int64_t q = 0; q < len; q++) yw[q] = b;
            for (int64_t i = 0; i < k; i++)
                for (int64_t j = 0; j < k; j++) kn->axpy(yw, wc[i * k + j], xp + i * wp + j, len);
            /* a memcpy a row, not plane_out as col2im_image: here the kernel measured slower
             * (bench_conv's depthwise 64 3x3 @14, one thread: forward 2.9-3.6 -> 3.4-5.6 ms,
             * training 9.1-9.9 -> 10.4-14.6 ms with plane_in and plane_out on all three copies) */
            float *yc = y + nc * oh * ow;
            for (int64_t oy = 0; oy < oh; oy++)
                memcpy(yc + oy * ow, yw + oy * wp, sizeof(float) * (size_t)ow);
        }
    });
}

static void dw_backward_wide(const kdi_layer *l, const float *x, const float *dy, float *dx,
                             int64_t batch)
{
    conv *cv = l->priv;
    const kdi_kernels *kn = kdi_kernels_get();
    int64_t k = cv->k, p = cv->pad, ch = l->in.c, h = l->in.h, w = l->in.w, wp = w + 2 * p;
    int64_t oh = l->out.h, ow = l->out.w, len = (oh - 1) * wp + ow, plane = (h + 2 * p) * wp;
    int nt = dw_threads(l, batch);
    /* per channel, images in order: the same sums on any thread count */
    KDI_FOR(nt, c, ch, {
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
            pad_plane(kn, x + nc * h * w, h, w, p, xp);
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
    });
}

/* y[n][c] = bias[c] + sum over taps (i, j) of w[c][i][j] x[n][c][oy*s - p + i][ox*s - p + j]: tap
 * by tap, a scaled input row segment is added to each output row, a loop the compiler vectorises. */
static void dw_forward_strided(const kdi_layer *l, const float *x, float *y, int64_t batch)
{
    const conv *cv = l->priv;
    int64_t k = cv->k, s = cv->stride, p = cv->pad, ch = l->in.c, h = l->in.h, w = l->in.w;
    int64_t oh = l->out.h, ow = l->out.w;
    int nt = kdi_threads_for(batch * ch * (h * w + oh * ow));
    /* planes are independent */
    KDI_FOR(nt, nc, batch * ch, {
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
    });
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
    /* per channel, images in order: the same sums on any thread count */
    KDI_FOR(nt, c, ch, {
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
    });
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

/* ---------------------------------------------------------------- im2col + GEMM

 * The batch runs in chunks of a few images whose im2col matrix fits in L2 (COLS_BUDGET): a whole
 * batch's (16 MiB for the small CNN) went to memory and back between im2col and the GEMM, whose
 * packing then missed cache on every row. On Zen 5 (bench_compare, interleaved runs) the ResNet's
 * step went from 88 to 66 ms on one thread and 57 to 42 ms on two, the small CNN's from 16.4 to
 * 11.2 ms and 10-11 to 6.9 ms. Each thread has its own workspace (a slot of cols, out and
 * planes), so threads take whole chunks with no barrier:
 *   forward      chunks are independent: im2col, GEMM and the NCHW copy of each on one thread;
 *   backward     chunk by chunk too, dY gathered once for both products: dW^T += cols dY^T into
 *                the partial sum (wt) of the chunk's run of chunks (wt_parts: a fixed split of
 *                the batch, whatever the thread count), dcols = W^T dY, col2im; dW += the runs'
 *                wt^T added in order at the end, so every sum runs in the same order on any
 *                number of threads. The bias gradient by output channels, over images in order.
 * dW^T rather than dW: its GEMM reads both operands along their rows (no transposed packing of
 * the kk x N im2col rows, 22% of the small CNN's step). */
#define COLS_BUDGET (1 << 15) /* floats in one chunk's im2col matrix, 128 KiB */

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
    int64_t scratch;       /* a thread's plane: the padded plane, or an output plane if larger */
    int64_t chunk;         /* images a chunk */
} dims;

static dims dims_of(const kdi_layer *l)
{
    const conv *cv = l->priv;
    dims d = {l->in.c, l->out.c, l->in.h, l->in.w, l->out.h, l->out.w, 0, 0,
              0,       0,        0,       0,       0,        0,        0, 0};
    d.hw = d.oh * d.ow;
    d.cg = d.cin / cv->groups;
    d.og = d.cout / cv->groups;
    d.kk = d.cg * cv->k * cv->k;
    d.wide = cv->stride == 1;
    d.wp = d.wide ? d.w + 2 * cv->pad : d.ow;
    d.cw = d.wide ? (d.oh - 1) * d.wp + d.ow : d.hw;
    d.plane = d.wide ? (d.h + 2 * cv->pad) * d.wp : 0;
    d.scratch = d.plane > d.hw ? d.plane : d.hw;
    d.chunk = COLS_BUDGET / (d.kk * d.cw);
    if (d.chunk < 1) d.chunk = 1;
    return d;
}

/* Whether the forward reads im2col's rows in place (the kernels' gemm_rows_b) from the group's
 * planes padded into the thread's cols slot: stride 1 (wide rows, each a run of a padded plane)
 * and a chunk of one image (an image's im2col matrix past COLS_BUDGET: the ResNet's 3 x 3 layers
 * of 32 and 64 channels). Copying the rows out wrote and read each plane k k times: the 32-channel
 * 14 x 14 layer's forward took 3.4 ms at batch 128 on one thread with the copies, 2.9 ms without.
 * The backward keeps the copies: its dW product by offset rows (A's, or B's transposed in the
 * packing) measured slower than the copies plus the strided product. */
static int implicit(const dims *d) { return d->wide && d->chunk == 1; }

/* Thread t's workspace: im2col (or dcols) of a chunk, the GEMM's outputs (or dY), a padded plane. */
static float *slot_cols(const conv *cv, const dims *d, int t)
{
    return cv->cols.data + t * d->kk * d->cw * d->chunk;
}
static float *slot_out(const conv *cv, const dims *d, int t)
{
    return cv->out.data + t * d->og * d->cw * d->chunk;
}
static float *slot_plane(const conv *cv, const dims *d, int t)
{
    return cv->planes.data + t * d->scratch;
}

/* The partial sums of dW^T a backward keeps: the batch's chunks fall into `parts` runs of
 * consecutive chunks, each run summed on its own (one thread, in order) and the runs added in
 * order at the end, so that every sum has the same terms in the same order on any thread count.
 * Before, each thread owned a slice of the input channels over all the chunks, so every thread
 * gathered all of dY and packed it for its GEMM: 2 threads did 1.5x the work of one. At most
 * WT_PARTS, and at most WT_BUDGET floats of them (a large layer keeps fewer). */
#define WT_PARTS 8
#define WT_BUDGET (1 << 20)
static int64_t wt_parts(const kdi_layer *l, int64_t chunks)
{
    int64_t parts = WT_BUDGET / l->params[0].count;
    if (parts > WT_PARTS) parts = WT_PARTS;
    if (parts > chunks) parts = chunks;
    return parts < 1 ? 1 : parts;
}

static kd_status conv_reserve(kdi_layer *l, int64_t batch)
{
    conv *cv = l->priv;
    int64_t slots = kdi_threads();
    if (depthwise(l)) {
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
    if (implicit(&d) && cv->rows == NULL) { /* fixed by the layer's shape */
        int64_t *rows = kdi_malloc(sizeof *rows * (size_t)d.kk);
        if (rows == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot allocate a conv's row offsets");
        for (int64_t c = 0; c < d.cg; c++)
            for (int64_t i = 0; i < cv->k; i++)
                for (int64_t j = 0; j < cv->k; j++)
                    rows[(c * cv->k + i) * cv->k + j] = c * d.plane + i * d.wp + j;
        cv->rows = rows;
    }
    KDI_TRY(kdi_buf_reserve(&cv->planes, slots * d.scratch));
    /* the implicit forward's padded planes fit too: k k cw >= (oh + k - 1) wp for wp >= k */
    KDI_TRY(kdi_buf_reserve(&cv->cols, slots * d.kk * d.cw * d.chunk));
    KDI_TRY(kdi_buf_reserve(&cv->out, slots * d.og * d.cw * d.chunk));
    KDI_TRY(kdi_buf_reserve(&cv->wt, wt_parts(l, WT_PARTS) * l->params[0].count));
    if (cv->bias) KDI_TRY(kdi_buf_reserve(&cv->bsum, batch * d.cout));
    if (slots > cv->slots) cv->slots = slots;
    return KD_OK;
}

/* [*lo, *hi): part t of nt of n. */
static void share(int64_t n, int t, int nt, int64_t *lo, int64_t *hi)
{
    *lo = n * t / nt;
    *hi = n * (t + 1) / nt;
}

/* im2col of input channels [c0, c1) of group g of one image (the thread's padded plane xp, with
 * wide columns) into rows (c - c0) k k ... of cols (row stride ld). */
static void im2col_channels(const conv *cv, const dims *d, const float *x, int64_t c0, int64_t c1,
                            float *cols, int64_t ld, float *xp)
{
    int64_t k = cv->k;
    if (!d->wide) {
        im2col(cv, x + c0 * d->h * d->w, c1 - c0, d->h, d->w, d->oh, d->ow, cols, ld);
        return;
    }
    const kdi_kernels *kn = kdi_kernels_get();
    for (int64_t c = c0; c < c1; c++) {
        pad_plane(kn, x + c * d->h * d->w, d->h, d->w, cv->pad, xp);
        for (int64_t i = 0; i < k; i++)
            for (int64_t j = 0; j < k; j++)
                memcpy(cols + (((c - c0) * k + i) * k + j) * ld, xp + i * d->wp + j,
                       sizeof(float) * (size_t)d->cw);
    }
}

/* The adjoint of im2col for one image's group: dx (its cg planes, zero on entry) += dcols. Wide:
 * each row of dcols added where im2col_channels copied it from, on the padded plane dxp. */
static void col2im_image(const conv *cv, const dims *d, const float *cols, int64_t ld, float *dx,
                         float *dxp)
{
    if (!d->wide) {
        col2im(cv, cols, d->cg, d->h, d->w, d->oh, d->ow, dx, ld);
        return;
    }
    const kdi_kernels *kn = kdi_kernels_get();
    int64_t k = cv->k, p = cv->pad;
    for (int64_t c = 0; c < d->cg; c++) {
        memset(dxp, 0, sizeof(float) * (size_t)d->plane);
        for (int64_t i = 0; i < k; i++)
            for (int64_t j = 0; j < k; j++)
                kn->axpy(dxp + i * d->wp + j, 1.0f, cols + ((c * k + i) * k + j) * ld, d->cw);
        /* the plane's inside, copied (-0 adds nothing to any value) */
        kn->plane_out(dx + c * d->h * d->w, NULL, dxp + p * d->wp + p, d->h, d->w, d->wp, -0.0f);
    }
}

/* dY of images [b0, b0 + n), output channels [q0, q1) of group g, from NCHW into out
 * [q1 - q0, n cw]; zeros in wide scratch. With a source (backward_planes) each plane is made there
 * instead, in the thread's plane xp (or in place), and its sum kept for the bias (bsum). */
static void gather(const conv *cv, const dims *d, const float *dy, const kdi_grad_src *gs,
                   int64_t b0, int64_t n, int64_t g, int64_t q0, int64_t q1, float *out, float *xp)
{
    const kdi_kernels *kn = kdi_kernels_get();
    int64_t ld = n * d->cw;
    for (int64_t i = 0; i < n; i++)
        for (int64_t o = q0; o < q1; o++) {
            float *dst = out + (o - q0) * ld + i * d->cw;
            int64_t p = (b0 + i) * d->cout + g * d->og + o;
            const float *src;
            if (gs != NULL) {                      /* dy is NULL */
                float *plane = d->wide ? xp : dst; /* not wide: the plane is dst's layout */
                gs->l->ops->backward_plane(gs->l, gs->y, gs->dy, p, plane);
                if (cv->bias) cv->bsum.data[p] = (float)kn->sum(plane, d->hw);
                src = plane;
            } else {
                src = dy + p * d->hw;
            }
            if (!d->wide) {
                if (src != dst) memcpy(dst, src, sizeof(float) * (size_t)d->hw);
                continue;
            }
            kn->plane_in(dst, src, d->oh, d->ow, d->wp);
        }
}

/* Group g's im2col of a chunk, images [b0, b0 + n), into cols (the implicit forward: its padded
 * planes), with xp as scratch. */
static void forward_cols(const conv *cv, const dims *d, const float *x, int64_t b0, int64_t n,
                         int64_t g, float *cols, float *xp)
{
    const kdi_kernels *kn = kdi_kernels_get();
    if (implicit(d)) { /* n is 1 */
        const float *xg = x + (b0 * d->cin + g * d->cg) * d->h * d->w;
        for (int64_t c = 0; c < d->cg; c++)
            pad_plane(kn, xg + c * d->h * d->w, d->h, d->w, cv->pad, cols + c * d->plane);
        return;
    }
    int64_t ld = n * d->cw;
    for (int64_t i = 0; i < n; i++)
        im2col_channels(cv, d, x + ((b0 + i) * d->cin + g * d->cg) * d->h * d->w, 0, d->cg,
                        cols + i * d->cw, ld, xp);
}

/* Output channels [q0, q1) of group g of a chunk whose cols are made: Y = W cols for their rows
 * (by gemm_rows_b, or by `fn`, a gemm), Y to NCHW plus the bias (a row at a time past wide
 * scratch); with a fused ReLU (r != NULL) also r = relu(Y), each plane while it is in L1, by the
 * ReLU layer's kernel, and the layer after it on that plane (then != NULL); xp: a plane of scratch. */
static void forward_rows(const kdi_layer *l, const dims *d, kdi_gemm_fn *fn, const float *cols,
                         float *out, float *xp, float *y, float *r, const kdi_then *then,
                         int64_t b0, int64_t n, int64_t g, int64_t q0, int64_t q1)
{
    const conv *cv = l->priv;
    const kdi_kernels *kn = kdi_kernels_get();
    int64_t ld = n * d->cw, rows = d->wide ? d->oh : 1, len = d->wide ? d->ow : d->hw;
    int64_t stride = d->wide ? d->wp : d->hw;
    const float *wg = l->params[0].value + (g * d->og + q0) * d->kk;
    if (implicit(d))
        kn->gemm_rows_b(q1 - q0, ld, d->kk, 1.0f, wg, d->kk, cols, cv->rows, 0.0f, out + q0 * ld,
                        ld);
    else
        fn(0, 0, q1 - q0, ld, d->kk, 1.0f, wg, d->kk, cols, ld, 0.0f, out + q0 * ld, ld);
    for (int64_t i = 0; i < n; i++)
        for (int64_t o = q0; o < q1; o++) {
            float *yo = y + ((b0 + i) * d->cout + g * d->og + o) * d->hw;
            const float *src = out + o * ld + i * d->cw;
            /* -0 adds nothing to any value, -0 included: the copy of a layer without bias */
            float bo = cv->bias ? l->params[1].value[g * d->og + o] : -0.0f;
            int64_t p = (b0 + i) * d->cout + g * d->og + o;
            if (then != NULL && then->observe) { /* the output plane, in L1 */
                kn->plane_out(yo, NULL, src, rows, len, stride, bo);
                then->l->ops->observe_plane(then->l, yo, p);
                continue;
            }
            if (then != NULL && then->lazy) { /* the ReLU's plane in scratch, then pooled */
                kn->plane_out(NULL, xp, src, rows, len, stride, bo);
                then->l->ops->forward_plane(then->l, xp, then->y, p);
                continue;
            }
            float *ro = r != NULL ? r + (yo - y) : NULL;
            kn->plane_out(yo, ro, src, rows, len, stride, bo);
            if (then != NULL) then->l->ops->forward_plane(then->l, ro, then->y, p); /* in L1 */
        }
}

/* One chunk of the forward, images [b0, b0 + n), on thread t's workspace. */
static void forward_chunk(const kdi_layer *l, const dims *d, const float *x, float *y, float *r,
                          const kdi_then *then, int64_t b0, int64_t n, int t)
{
    const conv *cv = l->priv;
    float *cols = slot_cols(cv, d, t), *out = slot_out(cv, d, t), *xp = slot_plane(cv, d, t);
    for (int64_t g = 0; g < cv->groups; g++) {
        forward_cols(cv, d, x, b0, n, g, cols, xp);
        forward_rows(l, d, kdi_kernels_get()->gemm, cols, out, xp, y, r, then, b0, n, g, 0, d->og);
    }
}

/* A forward of one image, its output channels shared with libkd's helper thread (core/helper.h):
 * batch-1 inference, too short for an OpenMP region. A part is a run of whole 8-row blocks of W,
 * on the whole product's tiles (gemm_route, gemm_rows_b_route) so the parts change no bit, and
 * on its own plane of scratch (slot p). The im2col is made first, by the caller. */
#define CONV_HELPER_MIN 65536.0 /* multiply-adds: the GEMVs' threshold (nn/gemm.h) */
#define CONV_HELPER_PARTS 4
typedef struct conv_job {
    const kdi_layer *l;
    const dims *d;
    kdi_gemm_fn *fn;
    float *cols, *out, *y, *r;
    const kdi_then *then;
    int64_t g, parts;
} conv_job;

static void conv_part(void *arg, int64_t p)
{
    const conv_job *j = arg;
    int64_t blocks = (j->d->og + 7) / 8, q0 = blocks * p / j->parts * 8,
            q1 = blocks * (p + 1) / j->parts * 8;
    if (q1 > j->d->og) q1 = j->d->og;
    if (q0 >= q1) return;
    forward_rows(j->l, j->d, j->fn, j->cols, j->out, slot_plane(j->l->priv, j->d, (int)p), j->y,
                 j->r, j->then, 0, 1, j->g, q0, q1);
}

/* Whether a forward of `batch` images goes to forward_shared, and its gemm for the parts. */
static int64_t shared_parts(const kdi_layer *l, const dims *d, int64_t batch, kdi_gemm_fn **fn)
{
    const conv *cv = l->priv;
    const kdi_kernels *kn = kdi_kernels_get();
    double macs = (double)d->og * (double)d->cw * (double)d->kk;
    int64_t parts = (d->og + 7) / 8;
    if (parts > CONV_HELPER_PARTS) parts = CONV_HELPER_PARTS;
    if (parts > cv->slots) parts = cv->slots;
    if (batch != 1 || parts < 2 || macs < CONV_HELPER_MIN || kdi_threads() < 2 || kdi_in_parallel())
        return 0;
    if (implicit(d)) { /* the whole's tiles must be the parts': small tiles stay small below */
        *fn = NULL;
        return kn->gemm_rows_b_route(d->og, d->cw, d->kk) == KDI_GEMM_BY_PACKED ? 0 : parts;
    }
    int route = kn->gemm_route(0, 0, d->og, d->cw, d->kk);
    if (route == KDI_GEMM_BY_GEMM) return 0; /* BLAS may round a slice's edge apart */
    *fn = kdi_gemm_by(kn, route);
    return parts;
}

static void forward_shared(const kdi_layer *l, const dims *d, kdi_gemm_fn *fn, int64_t parts,
                           const float *x, float *y, float *r, const kdi_then *then)
{
    const conv *cv = l->priv;
    conv_job j = {l, d, fn, slot_cols(cv, d, 0), slot_out(cv, d, 0), y, r, then, 0, parts};
    for (j.g = 0; j.g < cv->groups; j.g++) {
        forward_cols(cv, d, x, 0, 1, j.g, j.cols, slot_plane(cv, d, 0));
        kdi_helper_parts(parts, conv_part, &j);
    }
}

/* y = conv(x); and r = relu(y) when r != NULL (a ReLU fused into this layer, see forward_relu),
 * then the next layer on r's planes when then != NULL. */
static void forward_impl(kdi_layer *l, const float *x, float *y, float *r, const kdi_then *then,
                         int64_t batch)
{
    if (depthwise(l)) {
        dw_forward(l, x, y, batch); /* never with a fused ReLU (l->fuse) */
        return;
    }
    conv *cv = l->priv;
    dims d = dims_of(l);
    int64_t chunks = (batch + d.chunk - 1) / d.chunk;
    int nt = slot_threads(cv, batch * d.kk * d.hw, chunks);
    kdi_gemm_fn *fn = NULL;
    int64_t parts = shared_parts(l, &d, batch, &fn);
    if (parts > 0) { /* libkd's kernels only (shared_parts): OpenBLAS's count is not touched */
        forward_shared(l, &d, fn, parts, x, y, r, then);
        return;
    }
    /* OpenBLAS on one thread even when the chunks run on one (a batch of one chunk): on its own
     * threads it split the GEMM otherwise and rounded differently, so a conv's output depended on
     * the thread count (AVX2 kernels, which call it) */
    kdi_blas_serial_begin();
    /* chunks are independent; each thread has its own workspace */
    KDI_FOR(nt, c, chunks, {
        int64_t b0 = c * d.chunk, n = batch - b0 < d.chunk ? batch - b0 : d.chunk;
        forward_chunk(l, &d, x, y, r, then, b0, n, kdi_thread_id());
    });
    kdi_blas_serial_end();
}

static kd_status conv_forward(kdi_layer *l, const float *x, float *y, int64_t batch, int train)
{
    (void)train;
    forward_impl(l, x, y, NULL, NULL, batch);
    return KD_OK;
}

static kd_status conv_forward_relu(kdi_layer *l, const float *x, float *y, float *r,
                                   const kdi_then *then, int64_t batch, int train)
{
    (void)train;
    forward_impl(l, x, y, r, then, batch);
    return KD_OK;
}

/* One chunk of the backward, images [b0, b0 + n), on thread t's workspace: per group, dY gathered
 * once for both products; wt (the chunk's run's dW^T, [groups][cin/g k k][out/g]) += cols dY^T;
 * then, unless dx is NULL, dcols = W^T dY and col2im. */
static void backward_chunk(const kdi_layer *l, const dims *d, const float *x, const float *dy,
                           const kdi_grad_src *gs, float *dx, float *wt, int64_t b0, int64_t n,
                           int t)
{
    conv *cv = l->priv;
    const kdi_kernels *kn = kdi_kernels_get();
    float *cols = slot_cols(cv, d, t), *out = slot_out(cv, d, t), *xp = slot_plane(cv, d, t);
    int64_t ld = n * d->cw;
    if (dx != NULL)
        memset(dx + b0 * d->cin * d->h * d->w, 0,
               sizeof(float) * (size_t)(n * d->cin * d->h * d->w));
    for (int64_t g = 0; g < cv->groups; g++) {
        gather(cv, d, dy, gs, b0, n, g, 0, d->og, out, xp);
        for (int64_t i = 0; i < n; i++)
            im2col_channels(cv, d, x + ((b0 + i) * d->cin + g * d->cg) * d->h * d->w, 0, d->cg,
                            cols + i * d->cw, ld, xp);
        /* wt[g][r][o] += sum over the chunk's columns of cols[r] dY[o] */
        kn->gemm(0, 1, d->kk, d->og, ld, 1.0f, cols, ld, out, ld, 1.0f, wt + g * d->kk * d->og,
                 d->og);
        if (dx == NULL) continue;
        kn->gemm(1, 0, d->kk, ld, d->og, 1.0f, l->params[0].value + g * d->og * d->kk, d->kk, out,
                 ld, 0.0f, cols, ld);
        for (int64_t i = 0; i < n; i++)
            col2im_image(cv, d, cols + i * d->cw, ld,
                         dx + ((b0 + i) * d->cin + g * d->cg) * d->h * d->w, xp);
    }
}

/* The backward, dY from memory or (gs != NULL, not depthwise) from the layer two after. */
static void backward_impl(kdi_layer *l, const float *x, const float *dy, const kdi_grad_src *gs,
                          float *dx, int64_t batch)
{
    if (depthwise(l)) {
        dw_backward(l, x, dy, dx, batch);
        return;
    }
    conv *cv = l->priv;
    const kdi_kernels *kn = kdi_kernels_get();
    dims d = dims_of(l);
    int64_t chunks = (batch + d.chunk - 1) / d.chunk, parts = wt_parts(l, chunks);
    int64_t count = l->params[0].count;
    int nt = slot_threads(cv, batch * d.kk * d.hw, parts);
    memset(cv->wt.data, 0, sizeof(float) * (size_t)(parts * count));
    kdi_blas_serial_begin(); /* as in forward_impl */
    /* a part's sums do not depend on the thread that runs it */
    KDI_FOR(nt, part, parts, {
        int64_t lo, hi;
        share(chunks, (int)part, (int)parts, &lo, &hi);
        for (int64_t c = lo; c < hi; c++) {
            int64_t b0 = c * d.chunk, n = batch - b0 < d.chunk ? batch - b0 : d.chunk;
            backward_chunk(l, &d, x, dy, gs, dx, cv->wt.data + part * count, b0, n,
                           kdi_thread_id());
        }
    });
    kdi_blas_serial_end();
    if (cv->bias) {
        int nb = kdi_threads_for(batch * d.cout * d.hw);
        /* each channel summed over the images in order */
        KDI_FOR(nb, o, d.cout, {
            for (int64_t b = 0; b < batch; b++)
                l->params[1].grad[o] += gs != NULL
                                            ? cv->bsum.data[b * d.cout + o]
                                            : (float)kn->sum(dy + (b * d.cout + o) * d.hw, d.hw);
        });
    }
    /* dW[g][o][r] += the parts' wt[g][r][o], added in order */
    float *gw = l->params[0].grad;
    for (int64_t g = 0; g < cv->groups; g++)
        for (int64_t o = 0; o < d.og; o++)
            for (int64_t r = 0; r < d.kk; r++) {
                const float *w = cv->wt.data + (g * d.kk + r) * d.og + o;
                float sum = w[0];
                for (int64_t part = 1; part < parts; part++) sum += w[part * count];
                gw[(g * d.og + o) * d.kk + r] += sum;
            }
}

static kd_status conv_backward(kdi_layer *l, const float *x, const float *y, const float *dy,
                               float *dx, int64_t batch)
{
    (void)y;
    backward_impl(l, x, dy, NULL, dx, batch);
    return KD_OK;
}

static kd_status conv_backward_planes(kdi_layer *l, const float *x, const kdi_grad_src *src,
                                      float *dx, int64_t batch)
{
    backward_impl(l, x, NULL, src, dx, batch);
    return KD_OK;
}

static void conv_destroy(kdi_layer *l)
{
    conv *cv = l->priv;
    if (cv == NULL) return;
    kdi_buf_free(&cv->cols);
    kdi_buf_free(&cv->out);
    kdi_buf_free(&cv->planes);
    kdi_buf_free(&cv->wt);
    kdi_buf_free(&cv->bsum);
    kdi_free(cv->rows);
    kdi_free(cv);
}

static const kdi_layer_ops conv_ops = {.kind = "conv",
                                       .forward = conv_forward,
                                       .backward = conv_backward,
                                       .reserve = conv_reserve,
                                       .forward_relu = conv_forward_relu,
                                       .backward_planes = conv_backward_planes,
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
    l->fuse =
        depthwise(l) ? 0 : KDI_FUSE_RELU_AFTER | KDI_FUSE_PLANES_AFTER | KDI_FUSE_GRAD_PLANES_AFTER;
    return conv_spec(l, out);
}
