/* LM head: logits over the vocabulary for every token, y[t] = x[t] W^T with W [V, D] and no bias
 * (GPT-2's lm_head, Radford et al. 2019: nn.Linear(D, V, bias=False)). The output [T, V] per
 * example is [batch * T, V] rows, so every per-row logit loss applies per token.
 * Spec: lmhead V [tied]. Tied, W is the weight of the chain's earlier 'embed' layer (Press and Wolf
 * 2017, as GPT-2): the head has no tensor of its own and its gradient adds to the embedding's. */
#include <string.h>

#include "core/error.h"
#include "core/rng.h"
#include "kernels/kernels.h"
#include "nn/gemm.h"
#include "nn/layers/layers.h"

/* The weight in use: the head's own, or the embedding's (priv). */
static kdi_param *weight(kdi_layer *l) { return l->priv != NULL ? l->priv : &l->params[0]; }

static kd_status head_forward(kdi_layer *l, const float *x, float *y, int64_t batch, int train)
{
    (void)train;
    int64_t rows = batch * l->in.c, d = kdi_seq_width(l->in, 1), v = l->out.h;
    kdi_gemm_rows(0, 1, rows, v, d, 1.0f, x, d, weight(l)->value, d, 0.0f, y, v);
    return KD_OK;
}

static kd_status head_backward(kdi_layer *l, const float *x, const float *y, const float *dy,
                               float *dx, int64_t batch)
{
    (void)y;
    int64_t rows = batch * l->in.c, d = kdi_seq_width(l->in, 1), v = l->out.h;
    kdi_param *w = weight(l);
    kdi_gemm_rows(1, 0, v, d, rows, 1.0f, dy, v, x, d, 1.0f, w->grad, d);
    if (dx != NULL) kdi_gemm_rows(0, 0, rows, d, v, 1.0f, dy, v, w->value, d, 0.0f, dx, d);
    return KD_OK;
}

/* Ties to the nearest earlier embed of the chain, which must be [V, D]. */
static kd_status head_link(kdi_layer *l, kdi_layer *before, int32_t n)
{
    if (l->nparams > 0) return KD_OK;
    for (int32_t i = n - 1; i >= 0; i--) {
        if (strcmp(before[i].ops->kind, "embed") != 0) continue;
        kdi_param *w = &before[i].params[0];
        if (w->dims[0] != l->out.h || w->dims[1] != kdi_seq_width(l->in, 1))
            return kdi_fail(KD_ERR_SHAPE,
                            "lmhead %lld tied: the embedding is [%lld, %lld], not "
                            "[%lld, %lld]",
                            (long long)l->out.h, (long long)w->dims[0], (long long)w->dims[1],
                            (long long)l->out.h, (long long)kdi_seq_width(l->in, 1));
        l->priv = w;
        return KD_OK;
    }
    return kdi_fail(KD_ERR_FORMAT,
                    "lmhead tied needs an 'embed' layer before it in the same chain");
}

static const kdi_layer_ops head_ops = {
    .kind = "lmhead", .forward = head_forward, .backward = head_backward, .link = head_link};

kd_status kdi_lmhead_create(const kdi_args *a, kdi_shape in, uint64_t seed, kdi_layer *l)
{
    static const char *const keys[] = {"vocab", NULL};
    int64_t v;
    int tied = kdi_args_flag(a, "tied");
    KDI_TRY(kdi_args_check(a, 1 + tied, keys, 0));
    KDI_TRY(kdi_args_int(a, tied && strcmp(a->tok[0], "tied") == 0 ? 1 : 0, "vocab", 0, 0, 1,
                         1 << 24, &v));
    if (!a->seq) return kdi_fail(KD_ERR_SHAPE, "lmhead needs a sequence [T, d]");
    int64_t d = kdi_seq_width(in, 1);
    l->ops = &head_ops;
    l->in = in;
    l->out = (kdi_shape){in.c, v, 1};
    l->seq = 1;
    if (!tied) {
        int64_t dims[2] = {v, d};
        KDI_TRY(kdi_layer_add_param(l, "weight", 1, 2, dims));
        kdi_init_uniform(l->params[0].value, v * d, d, kdi_rng_derive(seed, 0));
    }
    return tied ? kdi_layer_set_spec(l, "lmhead %lld tied", (long long)v)
                : kdi_layer_set_spec(l, "lmhead %lld", (long long)v);
}
