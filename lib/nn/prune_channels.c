/* Structured pruning (kd_model_prune_channels): whole output neurons of dense layers and output
 * channels of convolutions are removed, so the model's shapes shrink, and with them the layers
 * that read those outputs: the batch norm and elementwise layers between, and the inputs of the
 * next dense or conv layer. A layer's outputs are ranked by the L1 norm of their weights (Li et
 * al. 2017, "Pruning Filters for Efficient ConvNets", sec. 3.1) and the largest kept, in order.
 * A layer is pruned only when its outputs reach the next dense or conv layer (groups = 1) through
 * layers that act per channel (activations, dropout, bn, pooling, flatten): the model's last
 * layer, and layers before a residual block, a layernorm or a grouped conv, keep their outputs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "nn/model.h"

typedef struct plan {
    int64_t *keep; /* kept output channels of this layer, ascending; NULL when not pruned */
    int64_t nkeep;
    int32_t consumer; /* the layer that reads them */
} plan;

static int is(const kdi_layer *l, const char *kind) { return strcmp(l->ops->kind, kind) == 0; }

/* Dense on flat input, or conv with groups = 1. */
static int weighted(const kdi_layer *l)
{
    if (is(l, "dense")) return l->seq <= 0;
    return is(l, "conv") && l->params[0].dims[1] == l->in.c;
}

static int per_channel(const kdi_layer *l)
{
    static const char *const kinds[] = {"relu",    "leakyrelu", "gelu",   "tanh",
                                        "sigmoid", "dropout",   "bn",     "maxpool",
                                        "avgpool", "gap",       "flatten"};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (is(l, kinds[i])) return l->seq <= 0;
    return 0;
}

/* The next weighted layer that reads layer i's outputs through per-channel layers, or -1. */
static int32_t consumer_of(const kdi_seq *s, int32_t i)
{
    for (int32_t j = i + 1; j < s->n; j++) {
        if (weighted(&s->layers[j])) return j;
        if (!per_channel(&s->layers[j])) return -1;
    }
    return -1;
}

typedef struct scored {
    double score;
    int64_t index;
} scored;

static int cmp_scored(const void *a, const void *b)
{
    const scored *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? 1 : -1; /* largest first */
    return (x->index > y->index) - (x->index < y->index);
}

static int cmp_index(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The nkeep outputs of weighted layer l with the largest L1 norms, ascending. */
static kd_status rank(const kdi_layer *l, int64_t nkeep, int64_t **keep)
{
    const kdi_param *w = &l->params[0];
    int64_t rows = w->dims[0], per = w->count / rows;
    scored *sc = kdi_malloc(sizeof *sc * (size_t)rows);
    *keep = kdi_malloc(sizeof **keep * (size_t)nkeep);
    if (sc == NULL || *keep == NULL) {
        kdi_free(sc);
        kdi_free(*keep);
        *keep = NULL;
        return kdi_fail(KD_ERR_NOMEM, "cannot allocate the channel ranking");
    }
    for (int64_t r = 0; r < rows; r++) {
        double s = 0.0;
        for (int64_t k = 0; k < per; k++) s += fabs((double)w->value[r * per + k]);
        sc[r] = (scored){s, r};
    }
    qsort(sc, (size_t)rows, sizeof *sc, cmp_scored);
    for (int64_t r = 0; r < nkeep; r++) (*keep)[r] = sc[r].index;
    qsort(*keep, (size_t)nkeep, sizeof **keep, cmp_index);
    kdi_free(sc);
    return KD_OK;
}

/* Layer text with its first number (dense N, conv OUT ...) replaced by n. */
static int respec(const char *spec, int64_t n, char *out, size_t cap)
{
    const char *sp = strchr(spec, ' ');
    if (sp == NULL) return -1;
    const char *rest = sp + 1 + strspn(sp + 1, "0123456789");
    int len = snprintf(out, cap, "%.*s %lld%s", (int)(sp - spec), spec, (long long)n, rest);
    return len < 0 || (size_t)len >= cap ? -1 : len;
}

/* dst[r][c][k] = src[rows[r]][cols[c]][k]: a weight viewed as [out, in channels, inner]; rows or
 * cols NULL for all. */
static void copy_weight(const kdi_param *src, kdi_param *dst, const int64_t *rows,
                        const int64_t *cols, int64_t src_in, int64_t dst_in, int64_t inner)
{
    int64_t dst_out = dst->count / (dst_in * inner);
    for (int64_t r = 0; r < dst_out; r++)
        for (int64_t c = 0; c < dst_in; c++) {
            int64_t sr = rows != NULL ? rows[r] : r, scol = cols != NULL ? cols[c] : c;
            memcpy(dst->value + (r * dst_in + c) * inner, src->value + (sr * src_in + scol) * inner,
                   sizeof(float) * (size_t)inner);
        }
}

static void copy_selected(const kdi_param *src, kdi_param *dst, const int64_t *sel)
{
    if (src->ivalue != NULL) {
        memcpy(dst->ivalue, src->ivalue, sizeof(int64_t) * (size_t)src->count);
        return;
    }
    for (int64_t i = 0; i < dst->count; i++) dst->value[i] = src->value[sel[i]];
}

/* Copies old layer i into new layer i: rows kept by its own plan, input channels by the plan of
 * the layer that feeds it (in), per-channel buffers (bn) by the channels passing through (through). */
static void copy_layer(const kdi_layer *o, kdi_layer *n, const plan *own, const plan *in,
                       const plan *through)
{
    if (is(o, "bn") && through != NULL) {
        for (int k = 0; k < o->nparams; k++)
            copy_selected(&o->params[k], &n->params[k], through->keep);
        return;
    }
    if (!weighted(o)) return;
    const int64_t *rows = own != NULL ? own->keep : NULL, *cols = in != NULL ? in->keep : NULL;
    int64_t src_ch, dst_ch, inner;
    if (is(o, "conv")) {
        src_ch = o->params[0].dims[1];
        dst_ch = n->params[0].dims[1];
        inner = o->params[0].dims[2] * o->params[0].dims[3];
    } else if (in != NULL) { /* dense: its inputs are channels of `inner` values (flattened) */
        dst_ch = in->nkeep;
        inner = n->params[0].dims[1] / dst_ch;
        src_ch = o->params[0].dims[1] / inner;
    } else {
        inner = n->params[0].dims[1];
        src_ch = dst_ch = 1;
    }
    copy_weight(&o->params[0], &n->params[0], rows, cols, src_ch, dst_ch, inner);
    if (o->nparams > 1) {
        if (rows != NULL)
            copy_selected(&o->params[1], &n->params[1], rows);
        else
            memcpy(n->params[1].value, o->params[1].value,
                   sizeof(float) * (size_t)o->params[1].count);
    }
}

static kd_status new_spec(const kd_model *m, const plan *plans, char **out)
{
    char **parts;
    int32_t n;
    KDI_TRY(kdi_spec_split(m->spec, &parts, &n));
    size_t cap = strlen(m->spec) + 32 * (size_t)n + 1;
    char *s = kdi_malloc(cap), layer[256];
    kd_status st = s == NULL ? kdi_fail(KD_ERR_NOMEM, "cannot allocate a spec") : KD_OK;
    size_t len = 0;
    for (int32_t i = 0; st == KD_OK && i < n; i++) {
        /* parts[0] is the input; layer i of the chain is parts[i + 1] */
        const char *text = parts[i];
        const plan *p = i > 0 ? &plans[i - 1] : NULL;
        if (p != NULL && p->keep != NULL) {
            if (respec(m->seq.layers[i - 1].spec, p->nkeep, layer, sizeof layer) < 0)
                st = kdi_fail(KD_ERR_FORMAT, "layer %d: cannot rewrite '%s'", (int)(i - 1),
                              m->seq.layers[i - 1].spec);
            text = layer;
        }
        if (st == KD_OK) len += (size_t)snprintf(s + len, cap - len, "%s%s", i ? " | " : "", text);
    }
    kdi_free(parts);
    if (st != KD_OK) {
        kdi_free(s);
        return st;
    }
    *out = s;
    return KD_OK;
}

kd_status kd_model_prune_channels(const kd_model *m, float fraction, kd_model **out)
{
    KDI_CHECK_NULL(m);
    KDI_CHECK_NULL(out);
    if (!(fraction >= 0.0f && fraction < 1.0f))
        return kdi_fail(KD_ERR_ARGUMENT, "fraction must be in [0, 1), got %g", (double)fraction);
    /* Before the search: an int8 model's layers are qdense/qconv, which it does not know, so it
     * would say "nothing to prune" instead of why. */
    if (kdi_model_is_int8(m))
        return kdi_fail(KD_ERR_UNSUPPORTED, "the model is int8: prune the float model, then "
                                            "quantise the pruned one (kd_model_quantize)");
    if (m->seq.seq_in || m->seq.vocab > 0)
        return kdi_fail(KD_ERR_UNSUPPORTED,
                        "model '%s' reads a sequence; channel pruning covers models of 'input N' "
                        "or 'input CxHxW'",
                        m->spec);
    const kdi_seq *s = &m->seq;
    plan *plans = kdi_calloc((size_t)(s->n > 0 ? s->n : 1), sizeof *plans);
    if (plans == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot allocate a pruning plan");
    kd_status st = KD_OK;
    int pruned = 0;
    for (int32_t i = 0; st == KD_OK && i < s->n; i++) {
        const kdi_layer *l = &s->layers[i];
        int32_t j = weighted(l) ? consumer_of(s, i) : -1;
        if (j < 0) continue;
        int64_t c = l->params[0].dims[0];
        int64_t drop = (int64_t)floor((double)fraction * (double)c + 0.5);
        int64_t nkeep = c - drop < 1 ? 1 : c - drop;
        plans[i].consumer = j;
        plans[i].nkeep = nkeep;
        st = rank(l, nkeep, &plans[i].keep);
        pruned++;
    }
    if (st == KD_OK && pruned == 0)
        st = kdi_fail(KD_ERR_UNSUPPORTED,
                      "model '%s' has no dense or conv layer whose outputs feed another one "
                      "through per-channel layers: nothing to prune",
                      m->spec);
    char *spec = NULL;
    kd_model *c = NULL;
    if (st == KD_OK) st = new_spec(m, plans, &spec);
    if (st == KD_OK) st = kd_model_create(spec, m->seed, &c);
    if (st == KD_OK) st = kdi_model_copy_normalization(c, m);
    if (st == KD_OK) {
        /* Untouched tensors first (same list, same order), then the layers that shrank. */
        for (int32_t i = 0; i < m->params.n; i++) {
            const kdi_param *a = m->params.items[i].p;
            kdi_param *b = c->params.items[i].p;
            if (a->count != b->count) continue;
            if (a->value != NULL) memcpy(b->value, a->value, sizeof(float) * (size_t)a->count);
            if (a->ivalue != NULL) memcpy(b->ivalue, a->ivalue, sizeof(int64_t) * (size_t)a->count);
        }
        const plan *feeding = NULL; /* the plan whose channels flow through layer i */
        for (int32_t i = 0; i < s->n; i++) {
            const plan *in = feeding != NULL && feeding->consumer == i ? feeding : NULL;
            copy_layer(&s->layers[i], &c->seq.layers[i], plans[i].keep ? &plans[i] : NULL, in,
                       in == NULL ? feeding : NULL);
            if (in != NULL) feeding = NULL;
            if (plans[i].keep != NULL) feeding = &plans[i];
        }
    }
    for (int32_t i = 0; i < s->n; i++) kdi_free(plans[i].keep);
    kdi_free(plans);
    kdi_free(spec);
    if (st != KD_OK) {
        kd_model_destroy(c);
        return st;
    }
    *out = c;
    return KD_OK;
}
