/* BatchNorm (Ioffe and Szegedy 2015), as PyTorch's BatchNorm2d on C x H x W input and BatchNorm1d
 * on flat input: statistics per channel over the batch (and positions); training normalises with
 * the batch's biased variance and moves the running estimates (unbiased variance) by momentum 0.1;
 * evaluation uses the running estimates. Spec: bn [eps=E] [momentum=M]. Parameters weight and bias;
 * buffers running_mean, running_var and num_batches_tracked (int64). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/threads.h"
#include "kernels/kernels.h"
#include "nn/layers/layers.h"

typedef struct bn {
    float eps, momentum;
    kdi_buf xhat;   /* normalised input of the last training forward */
    float *inv_std; /* per channel, of the last training forward */
    /* Synchronised batch norm (kdi_bn_set_sync): the job's all-reduce, and per channel the
     * statistics over the job (stats: mean then variance) and the sums sent (red). */
    const kdi_sync *sync;
    double *stats;
    float *red;
    float *shift; /* the shift of the sums sent (sync_stats) */
    /* Sums of each input plane (sum, sum of squares: 4 floats' room a plane), taken as the layer
     * before wrote them (observe_plane), for the training forward of batch `observed` (0: none). */
    kdi_buf psums;
    int64_t observed;
} bn;

static kd_status bn_reserve(kdi_layer *l, int64_t batch)
{
    bn *b = l->priv;
    KDI_TRY(kdi_buf_reserve(&b->psums, 4 * batch * l->in.c));
    return kdi_buf_reserve(&b->xhat, batch * kdi_shape_size(l->in));
}

static void bn_observe_begin(kdi_layer *l, int64_t batch) { ((bn *)l->priv)->observed = batch; }

static void bn_observe_plane(kdi_layer *l, const float *xp, int64_t p)
{
    double *ps = (double *)(void *)((bn *)l->priv)->psums.data + 2 * p;
    kdi_kernels_get()->sum_dot(xp, xp, l->in.h * l->in.w, &ps[0], &ps[1]);
}

/* Channel c's sums over this process's slice, in double: from psums when the layer before gave
 * them, else from x. */
static void channel_sums(const float *x, const double *psums, int64_t batch, int64_t c, int64_t ch,
                         int64_t hw, double *s, double *ss)
{
    const kdi_kernels *k = kdi_kernels_get();
    *s = *ss = 0.0;
    for (int64_t n = 0; n < batch; n++) {
        double ps, pss;
        if (psums != NULL) {
            ps = psums[2 * (n * ch + c)];
            pss = psums[2 * (n * ch + c) + 1];
        } else {
            const float *p = x + (n * ch + c) * hw;
            k->sum_dot(p, p, hw, &ps, &pss);
        }
        *s += ps;
        *ss += pss;
    }
}

/* Mean and biased variance of channel c. Products of floats are exact in double, so E[x^2] - m^2
 * loses only what the double sums round off, unless |mean| is ~1e6 times the deviation. */
static void channel_stats(const float *x, const double *psums, int64_t batch, int64_t c, int64_t ch,
                          int64_t hw, double *mean, double *var)
{
    double s, ss;
    channel_sums(x, psums, batch, c, ch, hw, &s, &ss);
    double count = (double)(batch * hw), m = s / count, v = ss / count - m * m;
    *mean = m;
    *var = v > 0.0 ? v : 0.0;
}

static kd_status bn_check(kdi_layer *l, int64_t batch, int train)
{
    /* synchronised, the job's batch counts: checked by every process alike in sync_stats (one
     * process refusing its slice alone would leave the others waiting in the all-reduce) */
    if (train && ((bn *)l->priv)->sync == NULL && batch * l->in.h * l->in.w < 2)
        return kdi_fail(KD_ERR_SHAPE,
                        "bn needs more than one value per channel to train (batch %lld)",
                        (long long)batch);
    return KD_OK;
}

/* Mean and biased variance of every channel over the job's global batch, in one all-reduce as a
 * rule. Each process sends its sums shifted by K, sum (x - K) and sum (x - K)^2, from its double
 * sums as the lone path takes them; K is the job's mean of the last synchronised forward (0 at
 * first), the same on every process whatever their running statistics (a step undone on one, a
 * load, steps before the synchronisation); the float sum loses about 2^-24 (1 + (mean - K)^2 / var)
 * of the variance. Where some process sees its mean more than 4 deviations from K (the first
 * step), a third value says so, and every process sends its squared deviations from the job's
 * mean in a second sum (as precise as one process's statistics). */
static kd_status sync_stats(kdi_layer *l, const float *x, const double *psums, int64_t batch)
{
    bn *b = l->priv;
    int64_t ch = l->in.c, hw = l->in.h * l->in.w;
    double n = (double)(batch * hw), count = (double)(b->sync->batch * hw), far = 0.0;
    if (count < 2.0) /* each process's slice may hold one value a channel; the job's may not */
        return kdi_fail(KD_ERR_SHAPE,
                        "bn needs more than one value per channel to train (global batch %lld)",
                        (long long)b->sync->batch);
    for (int64_t c = 0; c < ch; c++) {
        double s, ss, k = b->shift[c];
        channel_sums(x, psums, batch, c, ch, hw, &s, &ss);
        b->stats[c] = s; /* kept for a second sum */
        b->stats[ch + c] = ss;
        double d = s - n * k, q = ss - 2.0 * k * s + n * k * k;
        b->red[c] = (float)d;
        b->red[ch + c] = (float)q;
        /* q / n - (d / n)^2 is n times the local variance */
        if (d * d > 16.0 * (q * n - d * d)) far = 1.0;
    }
    b->red[2 * ch] = (float)far;
    KDI_TRY(kdi_sync_sum(b->sync, b->red, 2 * ch + 1, "batch norm's statistics"));
    int second = b->red[2 * ch] > 0.0f;
    for (int64_t c = 0; c < ch; c++) {
        double d = (double)b->red[c] / count, m = b->shift[c] + d;
        double v = (double)b->red[ch + c] / count - d * d;
        if (second) { /* local squared deviations from m, from the double sums */
            double s = b->stats[c], ss = b->stats[ch + c];
            b->red[ch + c] = (float)(ss - 2.0 * m * s + n * m * m);
        }
        b->stats[c] = m;
        b->stats[ch + c] = v > 0.0 ? v : 0.0;
    }
    if (second) {
        KDI_TRY(kdi_sync_sum(b->sync, b->red + ch, ch, "batch norm's statistics"));
        for (int64_t c = 0; c < ch; c++) {
            double v = (double)b->red[ch + c] / count;
            b->stats[ch + c] = v > 0.0 ? v : 0.0;
        }
    }
    for (int64_t c = 0; c < ch; c++) b->shift[c] = (float)b->stats[c]; /* the job's means */
    return KD_OK;
}

/* y = bn(x); and r = relu(y) when r != NULL (a ReLU fused, see forward_relu), each plane while
 * it is in L1. */
static kd_status forward_impl(kdi_layer *l, const float *x, float *y, float *r, int64_t batch,
                              int train)
{
    bn *b = l->priv;
    int64_t ch = l->in.c, hw = l->in.h * l->in.w, count = batch * hw;
    const float *gamma = l->params[0].value, *beta = l->params[1].value;
    float *rmean = l->params[2].value, *rvar = l->params[3].value;
    int sync = train && b->sync != NULL;
    int64_t observed = b->observed; /* for this forward only, whatever happens below */
    b->observed = 0;
    const double *psums = train && observed == batch ? (const double *)(void *)b->psums.data : NULL;
    if (sync) { /* the job's statistics, before the channels go to threads */
        KDI_TRY(sync_stats(l, x, psums, batch));
        count = b->sync->batch * hw;
    }
    const kdi_kernels *kn = kdi_kernels_get();
    int nt = kdi_threads_for(batch * hw * ch);
    /* channels are independent: the same sums on any thread count */
    KDI_FOR(nt, c, ch, {
        double mean = rmean[c], var = rvar[c];
        if (sync) {
            mean = b->stats[c];
            var = b->stats[ch + c];
        } else if (train) {
            channel_stats(x, psums, batch, c, ch, hw, &mean, &var);
        }
        if (train) {
            rmean[c] = (1.0f - b->momentum) * rmean[c] + b->momentum * (float)mean;
            rvar[c] = (1.0f - b->momentum) * rvar[c] +
                      b->momentum * (float)(var * (double)count / (double)(count - 1));
        }
        float inv = (float)(1.0 / sqrt(var + b->eps)), m = (float)mean, g = gamma[c], bt = beta[c];
        if (train) b->inv_std[c] = inv;
        for (int64_t n = 0; n < batch; n++) {
            int64_t at = (n * ch + c) * hw;
            kn->bn_apply(y + at, train ? b->xhat.data + at : NULL, x + at, hw, m, inv, g, bt);
            if (r != NULL) kn->relu_fwd(r + at, y + at, hw);
        }
    });
    if (train) l->params[4].ivalue[0]++;
    return KD_OK;
}

static kd_status bn_forward(kdi_layer *l, const float *x, float *y, int64_t batch, int train)
{
    return forward_impl(l, x, y, NULL, batch, train);
}

static kd_status bn_forward_relu(kdi_layer *l, const float *x, float *y, float *r,
                                 const kdi_then *then, int64_t batch, int train)
{
    (void)then; /* not KDI_FUSE_PLANES_AFTER: its planes go by channel, all images of one */
    return forward_impl(l, x, y, r, batch, train);
}

/* Channel c's dx from its sums in b->stats (see bn_backward). */
static void input_grad(const kdi_layer *l, const float *dy, float *dx, int64_t batch, int64_t c,
                       double count)
{
    const bn *b = l->priv;
    const kdi_kernels *kn = kdi_kernels_get();
    int64_t ch = l->in.c, hw = l->in.h * l->in.w;
    float k = l->params[0].value[c] * b->inv_std[c] / (float)count;
    float a = (float)b->stats[c], bb = (float)b->stats[ch + c], nn = (float)count;
    for (int64_t n = 0; n < batch; n++) {
        int64_t at = (n * ch + c) * hw;
        kn->bn_input_grad(dx + at, dy + at, b->xhat.data + at, hw, k, nn, a, bb);
    }
}

/* dx = gamma * inv_std / N * (N dy - sum dy - xhat * sum(dy xhat)), per channel. Synchronised,
 * N and the sums are the job's: each process's dy is its slice's, which the trainer weighs by
 * share = b_r / B afterwards, so the sums are taken of share * dy and divided by share again. */
static kd_status bn_backward(kdi_layer *l, const float *x, const float *y, const float *dy,
                             float *dx, int64_t batch)
{
    (void)x;
    (void)y;
    bn *b = l->priv;
    const kdi_kernels *kn = kdi_kernels_get();
    int64_t ch = l->in.c, hw = l->in.h * l->in.w;
    const kdi_sync *sync = b->sync;
    double count = (double)((sync != NULL ? sync->batch : batch) * hw);
    int nt = kdi_threads_for(batch * ch * hw);
    /* Without a sync the input gradient follows its channel's sums at once, while the channel's dy
     * and xhat planes are still in L2 or L3 (the ResNet's first batch norm reads 25.6 MB a pass):
     * the same operations in the same order as the two loops below. */
    int fused = sync == NULL && dx != NULL;
    KDI_FOR(nt, c, ch, {
        double sdy = 0.0, sdyx = 0.0;
        for (int64_t n = 0; n < batch; n++) {
            double s, sx;
            kn->sum_dot(dy + (n * ch + c) * hw, b->xhat.data + (n * ch + c) * hw, hw, &s, &sx);
            sdy += s;
            sdyx += sx;
        }
        l->params[0].grad[c] += (float)sdyx;
        l->params[1].grad[c] += (float)sdy;
        if (sync != NULL) {
            b->red[c] = (float)(sync->share * sdy);
            b->red[ch + c] = (float)(sync->share * sdyx);
        } else {
            b->stats[c] = sdy;
            b->stats[ch + c] = sdyx;
        }
        if (fused) input_grad(l, dy, dx, batch, c, count);
    });
    if (dx == NULL || fused) return KD_OK;
    if (sync != NULL) {
        KDI_TRY(kdi_sync_sum(sync, b->red, 2 * ch, "batch norm's gradient sums"));
        for (int64_t c = 0; c < 2 * ch; c++) b->stats[c] = (double)b->red[c] / sync->share;
    }
    KDI_FOR(nt, c, ch, input_grad(l, dy, dx, batch, c, count));
    return KD_OK;
}

static void bn_destroy(kdi_layer *l)
{
    bn *b = l->priv;
    if (b == NULL) return;
    kdi_buf_free(&b->xhat);
    kdi_buf_free(&b->psums);
    kdi_free(b->inv_std);
    kdi_free(b->stats);
    kdi_free(b->red);
    kdi_free(b);
}

/* What the sequence may fuse with this layer: the ReLU after it and the sums of its input, both
 * plane by plane, so not on flat input (a call a value). */
static void set_fuse(kdi_layer *l)
{
    int planes = l->in.h * l->in.w >= 16;
    l->fuse = planes ? KDI_FUSE_RELU_AFTER | KDI_FUSE_OBSERVE : 0;
}

static const kdi_layer_ops bn_ops = {.kind = "bn",
                                     .forward = bn_forward,
                                     .backward = bn_backward,
                                     .reserve = bn_reserve,
                                     .check = bn_check,
                                     .forward_relu = bn_forward_relu,
                                     .observe_begin = bn_observe_begin,
                                     .observe_plane = bn_observe_plane,
                                     .destroy = bn_destroy};

kd_status kdi_bn_create(const kdi_args *a, kdi_shape in, uint64_t seed, kdi_layer *l)
{
    (void)seed;
    static const char *const keys[] = {"eps", "momentum", NULL};
    bn *b = kdi_calloc(1, sizeof *b);
    if (b == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot allocate a bn layer");
    l->ops = &bn_ops;
    l->priv = b;
    KDI_TRY(kdi_args_check(a, 0, keys, 0));
    KDI_TRY(kdi_args_float(a, -1, "eps", 1, 1e-5f, 1e-12f, 1.0f, &b->eps));
    KDI_TRY(kdi_args_float(a, -1, "momentum", 1, 0.1f, 0.0f, 1.0f, &b->momentum));
    l->in = l->out = in;
    set_fuse(l);
    int64_t dims[1] = {in.c};
    /* The parameters first: they pass the model's budget before anything of in.c is allocated. */
    KDI_TRY(kdi_layer_add_param(l, "weight", 1, 1, dims));
    KDI_TRY(kdi_layer_add_param(l, "bias", 1, 1, dims));
    KDI_TRY(kdi_layer_add_param(l, "running_mean", 0, 1, dims));
    KDI_TRY(kdi_layer_add_param(l, "running_var", 0, 1, dims));
    b->inv_std = kdi_calloc((size_t)in.c, sizeof(float));
    b->stats = kdi_calloc((size_t)in.c * 2, sizeof(double));
    if (b->inv_std == NULL || b->stats == NULL)
        return kdi_fail(KD_ERR_NOMEM, "cannot allocate a bn layer");
    for (int64_t c = 0; c < in.c; c++) l->params[0].value[c] = l->params[3].value[c] = 1.0f;
    /* Last, so no failure above can leave it unowned: from here the layer's params free it. */
    int64_t *tracked = kdi_calloc(1, sizeof(int64_t));
    if (tracked == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot allocate a bn layer");
    /* num_batches_tracked: an int64 scalar, shape [] in PyTorch's state dict */
    kdi_param *t = &l->params[l->nparams++];
    *t = (kdi_param){.name = "num_batches_tracked", .ivalue = tracked, .count = 1, .ndim = 0};
    if (b->eps == 1e-5f && b->momentum == 0.1f) return kdi_layer_set_spec(l, "bn");
    return kdi_layer_set_spec(l, "bn eps=%g momentum=%g", (double)b->eps, (double)b->momentum);
}

int kdi_is_bn(const kdi_layer *l) { return l->ops == &bn_ops; }

kd_status kdi_bn_set_sync(kdi_layer *l, const kdi_sync *s)
{
    bn *b = l->priv;
    if (s != NULL && b->red == NULL) {
        b->red = kdi_calloc((size_t)l->in.c * 3 + 1, sizeof(float));
        if (b->red == NULL)
            return kdi_fail(KD_ERR_NOMEM, "cannot allocate synchronised batch norm");
        b->shift = b->red + 2 * l->in.c + 1;
    }
    if (b->shift != NULL) memset(b->shift, 0, sizeof(float) * (size_t)l->in.c);
    b->sync = s;
    return KD_OK;
}
