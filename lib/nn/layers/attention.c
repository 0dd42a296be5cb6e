/* Multi-head self-attention on a sequence [T, D], as PyTorch's nn.MultiheadAttention(D, H,
 * batch_first=True) called with query = key = value = x:
 *   [Q K V] = x in_proj_weight^T + in_proj_bias          in_proj_weight [3D, D], rows q, k, v
 *   head h: P_h = softmax(Q_h K_h^T / sqrt(D/H) + M)      Vaswani et al. 2017, eq. 1
 *           O_h = dropout(P_h) V_h                         (M = -inf above the diagonal if causal)
 *   y = [O_1 .. O_H] out_proj.weight^T + out_proj.bias    out_proj.weight [D, D]
 * Head h reads columns h*D/H .. (h+1)*D/H - 1 of Q, K and V. Spec: attention H [causal]
 * [dropout=P]. Initialised as nn.MultiheadAttention: in_proj_weight Xavier-uniform, out_proj.weight
 * U(+-1/sqrt(D)), biases 0. The probabilities P (before dropout), [batch, H, T, T], stay readable
 * until the next forward (kd_model_attention), and a gradient on them may be added before backward
 * (attention distillation). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/rng.h"
#include "core/threads.h"
#include "kernels/kernels.h"
#include "nn/gemm.h"
#include "nn/layers/attention.h"
#include "nn/layers/layers.h"

typedef struct attention {
    int64_t heads, t, d;
    int causal;
    float p; /* dropout on the probabilities */
    kdi_rng rng;
    kdi_buf qkv, probs, dropped, mask, o, d_o, dqkv, scratch, extra;
    kdi_buf cache; /* decoding: [T, 3D] rows of q, k, v for the positions stepped so far */
    int has_extra; /* extra holds a gradient on probs for the next backward */
    int64_t batch; /* of the last forward */
} attention;

/* Scratch floats one thread uses: a T x T score or gradient matrix. */
static int64_t scratch_size(const attention *a) { return a->t * a->t + 2 * a->t; }

static kd_status att_reserve(kdi_layer *l, int64_t batch)
{
    attention *a = l->priv;
    int64_t rows = batch * a->t, pp = batch * a->heads * a->t * a->t;
    KDI_TRY(kdi_buf_reserve(&a->qkv, rows * 3 * a->d));
    KDI_TRY(kdi_buf_reserve(&a->dqkv, rows * 3 * a->d));
    KDI_TRY(kdi_buf_reserve(&a->o, rows * a->d));
    KDI_TRY(kdi_buf_reserve(&a->d_o, rows * a->d));
    KDI_TRY(kdi_buf_reserve(&a->probs, pp));
    /* a score matrix for each of libkd's threads (the loop over heads) */
    KDI_TRY(kdi_buf_reserve(&a->scratch, kdi_threads() * scratch_size(a)));
    if (a->p > 0.0f) {
        KDI_TRY(kdi_buf_reserve(&a->dropped, pp));
        KDI_TRY(kdi_buf_reserve(&a->mask, pp));
    }
    /* A gradient added on the probabilities must follow the batch, as sequence.c's do. */
    if (a->extra.data != NULL) KDI_TRY(kdi_buf_reserve(&a->extra, pp));
    return KD_OK;
}

/* P = softmax(S / sqrt(hd)) row by row, the causal mask applied by softmaxing only the first i + 1
 * entries of row i (the masked ones are exactly 0, as exp(-inf)). */
static void masked_softmax(const attention *a, float *p, const float *s, float inv_sqrt)
{
    const kdi_kernels *k = kdi_kernels_get();
    int64_t t = a->t;
    if (!a->causal) {
        k->softmax_rows(p, s, t, t, inv_sqrt);
        return;
    }
    for (int64_t i = 0; i < t; i++) {
        k->softmax_rows(p + i * t, s + i * t, 1, i + 1, inv_sqrt);
        memset(p + i * t + i + 1, 0, (size_t)(t - i - 1) * sizeof *p);
    }
}

/* A causal product's rows in blocks of CAUSAL_BLOCK: row block i0..i1 of the scores needs keys
 * 0..i1 - 1 only, and key block j0..j1 of the backward's transposed products queries j0.. only, so
 * about 5/8 of the full products are computed at T = 64 (the skipped terms are exact zeros). */
#define CAUSAL_BLOCK 16

/* Threads for the loop over (example, head) pairs: one when the layer draws dropout masks (their
 * order is the random stream's), else libkd's threads as far as the scratch has room for them
 * (sized by reserve, for the thread count of the first forward at this batch size). */
static int pair_threads(const attention *a, int64_t batch, int drop)
{
    int nt = drop ? 1 : kdi_threads_for(batch * a->heads * a->t * a->t);
    int64_t room = a->scratch.capacity / scratch_size(a);
    return nt > room ? (int)room : nt;
}

/* One (example b, head h) pair of the forward: scores, softmax, dropout, P V. */
static void att_forward_pair(attention *a, int64_t b, int64_t h, float inv_sqrt, int drop, float *s)
{
    const kdi_kernels *k = kdi_kernels_get();
    int64_t t = a->t, d = a->d, hd = d / a->heads, tt = t * t;
    const float *q = a->qkv.data + b * t * 3 * d + h * hd, *kk = q + d, *v = q + 2 * d;
    float *p = a->probs.data + (b * a->heads + h) * tt, *o = a->o.data + b * t * d + h * hd;
    if (a->causal)
        for (int64_t i0 = 0; i0 < t; i0 += CAUSAL_BLOCK) {
            int64_t i1 = i0 + CAUSAL_BLOCK < t ? i0 + CAUSAL_BLOCK : t;
            k->gemm(0, 1, i1 - i0, i1, hd, 1.0f, q + i0 * 3 * d, 3 * d, kk, 3 * d, 0.0f, s + i0 * t,
                    t);
        }
    else
        k->gemm(0, 1, t, t, hd, 1.0f, q, 3 * d, kk, 3 * d, 0.0f, s, t);
    masked_softmax(a, p, s, inv_sqrt);
    const float *pd = p;
    if (drop) {
        float *m = a->mask.data + (b * a->heads + h) * tt;
        for (int64_t i = 0; i < tt; i++) m[i] = kdi_rng_uniform(&a->rng) >= a->p ? 1.0f : 0.0f;
        float *dr = a->dropped.data + (b * a->heads + h) * tt;
        k->mul(dr, p, m, 1.0f / (1.0f - a->p), tt);
        pd = dr;
    }
    if (a->causal)
        for (int64_t i0 = 0; i0 < t; i0 += CAUSAL_BLOCK) {
            int64_t i1 = i0 + CAUSAL_BLOCK < t ? i0 + CAUSAL_BLOCK : t;
            k->gemm(0, 0, i1 - i0, hd, i1, 1.0f, pd + i0 * t, t, v, 3 * d, 0.0f, o + i0 * d, d);
        }
    else
        k->gemm(0, 0, t, hd, t, 1.0f, pd, t, v, 3 * d, 0.0f, o, d);
}

static kd_status att_forward(kdi_layer *l, const float *x, float *y, int64_t batch, int train)
{
    attention *a = l->priv;
    const kdi_kernels *k = kdi_kernels_get();
    int64_t t = a->t, d = a->d, hd = d / a->heads, rows = batch * t, pairs = batch * a->heads;
    float inv_sqrt = 1.0f / sqrtf((float)hd);
    int drop = train && a->p > 0.0f, nt = pair_threads(a, batch, drop);
    kdi_gemm(0, 1, rows, 3 * d, d, 1.0f, x, d, l->params[0].value, d, 0.0f, a->qkv.data, 3 * d);
    k->bias_add(a->qkv.data, l->params[1].value, rows, 3 * d);
    if (nt > 1) kdi_blas_serial_begin();
    KDI_FOR(nt, bh, pairs, {
        att_forward_pair(a, bh / a->heads, bh % a->heads, inv_sqrt, drop,
                         a->scratch.data + kdi_thread_id() * scratch_size(a));
    });
    if (nt > 1) kdi_blas_serial_end();
    kdi_gemm(0, 1, rows, d, d, 1.0f, a->o.data, d, l->params[2].value, d, 0.0f, y, d);
    k->bias_add(y, l->params[3].value, rows, d);
    a->batch = batch;
    a->has_extra = 0;
    return KD_OK;
}

/* dS = P * (dP - rowsum(dP * P)) / sqrt(hd), in place over dp: the softmax's backward, with the
 * scale of eq. 1 folded in. Masked entries have P = 0 and get 0: a causal row i needs only its
 * first i + 1 entries. */
static void softmax_backward(float *dp, const float *p, int64_t t, int causal, float inv_sqrt)
{
    const kdi_kernels *k = kdi_kernels_get();
    for (int64_t i = 0; i < t; i++) {
        int64_t n = causal ? i + 1 : t;
        float *d = dp + i * t;
        const float *pr = p + i * t;
        float s = (float)k->dot(d, pr, n);
        for (int64_t j = 0; j < n; j++) d[j] = pr[j] * (d[j] - s) * inv_sqrt;
        if (n < t) memset(d + n, 0, (size_t)(t - n) * sizeof *d);
    }
}

/* One (example, head) pair of the backward: dV, dP, dropout's and the tap's gradients, the
 * softmax's backward, dQ and dK. */
static void att_backward_pair(attention *a, int64_t b, int64_t h, float inv_sqrt, float *dp)
{
    const kdi_kernels *k = kdi_kernels_get();
    int64_t t = a->t, d = a->d, hd = d / a->heads, tt = t * t;
    int drop = a->p > 0.0f;
    int64_t off = b * t * 3 * d + h * hd, ph = (b * a->heads + h) * tt;
    const float *q = a->qkv.data + off, *kk = q + d, *v = q + 2 * d;
    const float *p = a->probs.data + ph, *pd = drop ? a->dropped.data + ph : p;
    const float *dout = a->d_o.data + b * t * d + h * hd;
    float *dq = a->dqkv.data + off, *dk = dq + d, *dv = dq + 2 * d;
    if (a->causal)
        for (int64_t i0 = 0; i0 < t; i0 += CAUSAL_BLOCK) {
            int64_t i1 = i0 + CAUSAL_BLOCK < t ? i0 + CAUSAL_BLOCK : t;
            k->gemm(0, 1, i1 - i0, i1, hd, 1.0f, dout + i0 * d, d, v, 3 * d, 0.0f, dp + i0 * t, t);
            k->gemm(1, 0, i1 - i0, hd, t - i0, 1.0f, pd + i0 * t + i0, t, dout + i0 * d, d, 0.0f,
                    dv + i0 * 3 * d, 3 * d);
        }
    else {
        k->gemm(0, 1, t, t, hd, 1.0f, dout, d, v, 3 * d, 0.0f, dp, t);
        k->gemm(1, 0, t, hd, t, 1.0f, pd, t, dout, d, 0.0f, dv, 3 * d);
    }
    if (drop) k->mul(dp, dp, a->mask.data + ph, 1.0f / (1.0f - a->p), tt);
    if (a->has_extra) k->axpy(dp, 1.0f, a->extra.data + ph, tt);
    softmax_backward(dp, p, t, a->causal, inv_sqrt);
    if (a->causal)
        for (int64_t i0 = 0; i0 < t; i0 += CAUSAL_BLOCK) {
            int64_t i1 = i0 + CAUSAL_BLOCK < t ? i0 + CAUSAL_BLOCK : t;
            k->gemm(0, 0, i1 - i0, hd, i1, 1.0f, dp + i0 * t, t, kk, 3 * d, 0.0f, dq + i0 * 3 * d,
                    3 * d);
            k->gemm(1, 0, i1 - i0, hd, t - i0, 1.0f, dp + i0 * t + i0, t, q + i0 * 3 * d, 3 * d,
                    0.0f, dk + i0 * 3 * d, 3 * d);
        }
    else {
        k->gemm(0, 0, t, hd, t, 1.0f, dp, t, kk, 3 * d, 0.0f, dq, 3 * d);
        k->gemm(1, 0, t, hd, t, 1.0f, dp, t, q, 3 * d, 0.0f, dk, 3 * d);
    }
}

static kd_status att_backward(kdi_layer *l, const float *x, const float *y, const float *dy,
                              float *dx, int64_t batch)
{
    (void)y;
    attention *a = l->priv;
    const kdi_kernels *k = kdi_kernels_get();
    int64_t t = a->t, d = a->d, hd = d / a->heads, rows = batch * t, pairs = batch * a->heads;
    float inv_sqrt = 1.0f / sqrtf((float)hd);
    int nt = pair_threads(a, batch, 0);
    kdi_gemm(0, 0, rows, d, d, 1.0f, dy, d, l->params[2].value, d, 0.0f, a->d_o.data, d);
    kdi_gemm(1, 0, d, d, rows, 1.0f, dy, d, a->o.data, d, 1.0f, l->params[2].grad, d);
    k->bias_grad(l->params[3].grad, dy, rows, d);
    if (nt > 1) kdi_blas_serial_begin();
    KDI_FOR(nt, bh, pairs, {
        att_backward_pair(a, bh / a->heads, bh % a->heads, inv_sqrt,
                          a->scratch.data + kdi_thread_id() * scratch_size(a));
    });
    if (nt > 1) kdi_blas_serial_end();
    kdi_gemm(1, 0, 3 * d, d, rows, 1.0f, a->dqkv.data, 3 * d, x, d, 1.0f, l->params[0].grad, d);
    k->bias_grad(l->params[1].grad, a->dqkv.data, rows, 3 * d);
    if (dx != NULL)
        kdi_gemm(0, 0, rows, d, 3 * d, 1.0f, a->dqkv.data, 3 * d, l->params[0].value, d, 0.0f, dx,
                 d);
    a->has_extra = 0;
    return KD_OK;
}

/* One position of one sequence, with the keys and values of the earlier positions kept from the
 * steps before: the same sums as the forward's row pos (a causal mask hides later positions, so
 * nothing after pos is needed). */
static kd_status att_step(kdi_layer *l, const float *x, float *y, int64_t pos)
{
    attention *a = l->priv;
    const kdi_kernels *k = kdi_kernels_get();
    int64_t d = a->d, hd = d / a->heads;
    if (!a->causal)
        return kdi_fail(KD_ERR_UNSUPPORTED, "decoding token by token needs causal attention");
    if (pos < 0 || pos >= a->t)
        return kdi_fail(KD_ERR_ARGUMENT, "position %lld is not in 0..%lld", (long long)pos,
                        (long long)a->t - 1);
    KDI_TRY(kdi_buf_reserve(&a->cache, a->t * 3 * d));
    KDI_TRY(kdi_buf_reserve(&a->scratch, a->t * a->t + 2 * a->t));
    KDI_TRY(kdi_buf_reserve(&a->o, a->t * d));
    float *row = a->cache.data + pos * 3 * d, *o = a->o.data, *s = a->scratch.data, *p = s + a->t;
    k->gemm(0, 1, 1, 3 * d, d, 1.0f, x, d, l->params[0].value, d, 0.0f, row, 3 * d);
    k->bias_add(row, l->params[1].value, 1, 3 * d);
    for (int64_t h = 0; h < a->heads; h++) {
        const float *q = row + h * hd, *keys = a->cache.data + d + h * hd;
        k->gemm(0, 1, 1, pos + 1, hd, 1.0f, q, 3 * d, keys, 3 * d, 0.0f, s, pos + 1);
        k->softmax_rows(p, s, 1, pos + 1, 1.0f / sqrtf((float)hd));
        k->gemm(0, 0, 1, hd, pos + 1, 1.0f, p, pos + 1, a->cache.data + 2 * d + h * hd, 3 * d, 0.0f,
                o + h * hd, d);
    }
    k->gemm(0, 1, 1, d, d, 1.0f, o, d, l->params[2].value, d, 0.0f, y, d);
    k->bias_add(y, l->params[3].value, 1, d);
    return KD_OK;
}

static void att_destroy(kdi_layer *l)
{
    attention *a = l->priv;
    if (a == NULL) return;
    kdi_buf *bufs[] = {&a->qkv, &a->probs, &a->dropped, &a->mask,  &a->o,
                       &a->d_o, &a->dqkv,  &a->scratch, &a->extra, &a->cache};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) kdi_buf_free(bufs[i]);
    kdi_free(a);
}

static const kdi_layer_ops att_ops = {.kind = "attention",
                                      .forward = att_forward,
                                      .backward = att_backward,
                                      .reserve = att_reserve,
                                      .step = att_step,
                                      .destroy = att_destroy};

int kdi_attention_is(const kdi_layer *l) { return l->ops == &att_ops; }

const float *kdi_attention_probs(const kdi_layer *l, int64_t *batch, int64_t *heads, int64_t *t)
{
    const attention *a = l->priv;
    *batch = a->batch;
    *heads = a->heads;
    *t = a->t;
    return a->batch > 0 ? a->probs.data : NULL;
}

kd_status kdi_attention_add_grad(kdi_layer *l, const float *g)
{
    attention *a = l->priv;
    int64_t n = a->batch * a->heads * a->t * a->t;
    if (a->batch == 0) return kdi_fail(KD_ERR_STATE, "attention gradients need a forward first");
    if (!a->has_extra) {
        KDI_TRY(kdi_buf_reserve(&a->extra, a->probs.capacity));
        memset(a->extra.data, 0, (size_t)n * sizeof(float));
    }
    kdi_kernels_get()->axpy(a->extra.data, 1.0f, g, n);
    a->has_extra = 1;
    return KD_OK;
}

/* Xavier-uniform (Glorot and Bengio 2010), as nn.MultiheadAttention's in_proj_weight. */
static void init_xavier(float *w, int64_t out, int64_t in, uint64_t seed)
{
    kdi_rng r;
    kdi_rng_seed(&r, seed);
    float bound = sqrtf(6.0f / (float)(in + out));
    for (int64_t i = 0; i < out * in; i++) w[i] = bound * (2.0f * kdi_rng_uniform(&r) - 1.0f);
}

kd_status kdi_attention_create(const kdi_args *args, kdi_shape in, uint64_t seed, kdi_layer *l)
{
    static const char *const keys[] = {"heads", "dropout", NULL};
    int causal = kdi_args_flag(args, "causal");
    int64_t heads;
    float p;
    KDI_TRY(kdi_args_check(args, 1 + causal, keys, 0));
    KDI_TRY(kdi_args_int(args, causal && strcmp(args->tok[0], "causal") == 0 ? 1 : 0, "heads", 0, 0,
                         1, 4096, &heads));
    KDI_TRY(kdi_args_float(args, -1, "dropout", 1, 0.0f, 0.0f, 0.99f, &p));
    if (!args->seq) return kdi_fail(KD_ERR_SHAPE, "attention needs a sequence [T, d]");
    int64_t d = kdi_seq_width(in, 1);
    if (d % heads != 0)
        return kdi_fail(KD_ERR_SHAPE, "attention: %lld heads do not divide the width %lld",
                        (long long)heads, (long long)d);
    attention *a = kdi_calloc(1, sizeof *a);
    if (a == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot allocate an attention layer");
    a->heads = heads;
    a->t = in.c;
    a->d = d;
    a->causal = causal;
    a->p = p;
    kdi_rng_seed(&a->rng, kdi_rng_derive(seed, 2));
    l->ops = &att_ops;
    l->priv = a;
    l->rng = &a->rng;
    l->in = l->out = in;
    l->seq = 1;
    int64_t w_in[2] = {3 * d, d}, b_in[1] = {3 * d}, w_out[2] = {d, d}, b_out[1] = {d};
    KDI_TRY(kdi_layer_add_param(l, "in_proj_weight", 1, 2, w_in));
    KDI_TRY(kdi_layer_add_param(l, "in_proj_bias", 1, 1, b_in));
    KDI_TRY(kdi_layer_add_param(l, "out_proj.weight", 1, 2, w_out));
    KDI_TRY(kdi_layer_add_param(l, "out_proj.bias", 1, 1, b_out));
    init_xavier(l->params[0].value, 3 * d, d, kdi_rng_derive(seed, 0));
    kdi_init_uniform(l->params[2].value, d * d, d, kdi_rng_derive(seed, 1));
    char drop[40] = "";
    if (p > 0.0f) snprintf(drop, sizeof drop, " dropout=%g", (double)p);
    return kdi_layer_set_spec(l, "attention %lld%s%s", (long long)heads, causal ? " causal" : "",
                              drop);
}
