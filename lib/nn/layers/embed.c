/* Embeddings of a token sequence.
 * embed D: token embedding, PyTorch's nn.Embedding(V, D): y[t] = weight[id_t], weight [V, D],
 *   initialised N(0, 1) as nn.Embedding. Its input is the model's token ids (carried as floats,
 *   exact below 2^24, checked by the model's public calls), so it must come first.
 * posembed: learned positional embedding (GPT-2's wpe, Radford et al. 2019): y[t] = x[t] +
 *   weight[t], weight [T, D], initialised N(0, 1) as an nn.Embedding(T, D) would be. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/rng.h"
#include "kernels/kernels.h"
#include "nn/layers/layers.h"

static void init_normal(float *w, int64_t n, uint64_t seed)
{
    kdi_rng r;
    kdi_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) w[i] = kdi_rng_normal(&r);
}

static kd_status embed_forward(kdi_layer *l, const float *x, float *y, int64_t batch, int train)
{
    (void)train;
    int64_t rows = batch * l->in.c, d = l->out.h, vocab = l->params[0].dims[0];
    const float *w = l->params[0].value;
    for (int64_t r = 0; r < rows; r++) {
        /* The model's public calls check ids; a layer used directly still must not read out of
         * bounds. */
        if (!(x[r] >= 0.0f && x[r] < (float)vocab))
            return kdi_fail(KD_ERR_ARGUMENT, "embed: token id %g is not in 0..%lld", (double)x[r],
                            (long long)vocab - 1);
        memcpy(y + r * d, w + (int64_t)x[r] * d, (size_t)d * sizeof *y);
    }
    return KD_OK;
}

static kd_status embed_backward(kdi_layer *l, const float *x, const float *y, const float *dy,
                                float *dx, int64_t batch)
{
    (void)y;
    int64_t rows = batch * l->in.c, d = l->out.h;
    const kdi_kernels *k = kdi_kernels_get();
    for (int64_t r = 0; r < rows; r++)
        k->axpy(l->params[0].grad + (int64_t)x[r] * d, 1.0f, dy + r * d, d);
    /* Ids have no gradient. */
    if (dx != NULL) memset(dx, 0, (size_t)rows * sizeof *dx);
    return KD_OK;
}

static const kdi_layer_ops embed_ops = {
    .kind = "embed", .forward = embed_forward, .backward = embed_backward};

kd_status kdi_embed_create(const kdi_args *a, kdi_shape in, uint64_t seed, kdi_layer *l)
{
    static const char *const keys[] = {"dim", NULL};
    int64_t d;
    KDI_TRY(kdi_args_check(a, 1, keys, 0));
    KDI_TRY(kdi_args_int(a, 0, "dim", 0, 0, 1, 1 << 20, &d));
    if (a->vocab <= 0)
        return kdi_fail(KD_ERR_FORMAT,
                        "embed takes token ids: the spec starts 'tokens V T | embed D'");
    l->ops = &embed_ops;
    l->in = in;
    l->out = (kdi_shape){in.c, d, 1};
    l->seq = 1;
    int64_t dims[2] = {a->vocab, d};
    KDI_TRY(kdi_layer_add_param(l, "weight", 1, 2, dims));
    init_normal(l->params[0].value, a->vocab * d, kdi_rng_derive(seed, 0));
    return kdi_layer_set_spec(l, "embed %lld", (long long)d);
}

static kd_status pos_forward(kdi_layer *l, const float *x, float *y, int64_t batch, int train)
{
    (void)train;
    int64_t n = kdi_shape_size(l->in);
    const kdi_kernels *k = kdi_kernels_get();
    for (int64_t b = 0; b < batch; b++) {
        if (y + b * n != x + b * n) memcpy(y + b * n, x + b * n, (size_t)n * sizeof *y);
        k->axpy(y + b * n, 1.0f, l->params[0].value, n);
    }
    return KD_OK;
}

static kd_status pos_backward(kdi_layer *l, const float *x, const float *y, const float *dy,
                              float *dx, int64_t batch)
{
    (void)x;
    (void)y;
    int64_t n = kdi_shape_size(l->in);
    const kdi_kernels *k = kdi_kernels_get();
    for (int64_t b = 0; b < batch; b++) k->axpy(l->params[0].grad, 1.0f, dy + b * n, n);
    if (dx != NULL) memcpy(dx, dy, (size_t)(batch * n) * sizeof *dx);
    return KD_OK;
}

static kd_status pos_step(kdi_layer *l, const float *x, float *y, int64_t pos)
{
    int64_t d = kdi_seq_width(l->in, 1);
    if (pos < 0 || pos >= l->in.c)
        return kdi_fail(KD_ERR_ARGUMENT, "position %lld is not in 0..%lld", (long long)pos,
                        (long long)l->in.c - 1);
    for (int64_t i = 0; i < d; i++) y[i] = x[i] + l->params[0].value[pos * d + i];
    return KD_OK;
}

static const kdi_layer_ops pos_ops = {
    .kind = "posembed", .forward = pos_forward, .backward = pos_backward, .step = pos_step};

kd_status kdi_posembed_create(const kdi_args *a, kdi_shape in, uint64_t seed, kdi_layer *l)
{
    KDI_TRY(kdi_args_check(a, 0, NULL, 0));
    if (!a->seq) return kdi_fail(KD_ERR_SHAPE, "posembed needs a sequence [T, d] (after embed)");
    l->ops = &pos_ops;
    l->in = l->out = in;
    int64_t dims[2] = {in.c, kdi_seq_width(in, 1)};
    KDI_TRY(kdi_layer_add_param(l, "weight", 1, 2, dims));
    init_normal(l->params[0].value, dims[0] * dims[1], kdi_rng_derive(seed, 0));
    return kdi_layer_set_spec(l, "posembed");
}
