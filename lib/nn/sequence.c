#include "nn/sequence.h"

#include <ctype.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/limits.h"
#include "core/rng.h"
#include "core/threads.h"
#include "kernels/kernels.h"
#include "nn/fake_quant.h"

/* Image layers read C x H x W; on a sequence they would mix tokens, so they refuse one. */
static int image_only(const char *kind)
{
    static const char *const kinds[] = {"conv", "maxpool", "avgpool", "gap", "bn", NULL};
    for (int k = 0; kinds[k] != NULL; k++)
        if (strcmp(kinds[k], kind) == 0) return 1;
    return 0;
}

static kd_status check_flow(const kdi_args *a)
{
    if (a->vocab > 0 && strcmp(a->kind, "embed") != 0)
        return kdi_fail(KD_ERR_FORMAT, "token ids go into 'embed D' first, not into '%s'", a->kind);
    if (a->seq && image_only(a->kind))
        return kdi_fail(KD_ERR_SHAPE, "'%s' takes images, not a sequence of tokens", a->kind);
    return KD_OK;
}

static kd_status build_layer(kdi_seq *s, int32_t i, char *text, kdi_shape in, int32_t seq,
                             uint64_t seed)
{
    kdi_args a;
    KDI_TRY(kdi_spec_parse_layer(text, &a));
    kdi_layer_create_fn create = kdi_layer_find(a.kind);
    if (create == NULL)
        return kdi_fail(KD_ERR_FORMAT, "layer %d: unknown kind '%s'", (int)i, a.kind);
    a.seq = seq;
    a.vocab = i == 0 ? s->vocab : 0;
    kdi_layer *l = &s->layers[i];
    kd_status st = check_flow(&a);
    if (st == KD_OK) st = create(&a, in, kdi_rng_derive(seed, (uint64_t)i), l);
    if (st == KD_OK && kdi_shape_size(l->out) <= 0)
        st = kdi_fail(KD_ERR_SHAPE, "layer %d ('%s') has an empty output", (int)i, a.kind);
    if (st == KD_OK) {
        /* uint8 codes flow only between int8 layers (nn/layers/int8.c). */
        int codes_before = i > 0 && (s->layers[i - 1].ops->codes & KDI_CODES_OUT);
        int reads = (l->ops->codes & KDI_CODES_IN) != 0;
        if (reads != codes_before)
            st = kdi_fail(KD_ERR_FORMAT,
                          reads ? "'%s' reads the uint8 codes of an int8 layer, and none comes "
                                  "before it (start with quantize)"
                                : "'%s' reads floats, but the layer before it writes uint8 codes "
                                  "(end the int8 layers with dequant=1 or dequantize)",
                          a.kind);
    }
    if (st == KD_OK && l->ops->link != NULL) st = l->ops->link(l, s->layers, i);
    if (st == KD_OK) l->seq = l->seq == 0 ? (seq ? 1 : -1) : l->seq;
    if (st != KD_OK) {
        /* Keep the layer's own sentence, prefixed by where it stands in the spec. */
        char why[400];
        strncpy(why, kd_last_error(), sizeof why - 1);
        why[sizeof why - 1] = '\0';
        kdi_layer_free(l);
        return kdi_fail(st, "layer %d: %s", (int)i, why);
    }
    return KD_OK;
}

/* Every layer's kind is known: a typo late in a spec is refused before anything is allocated. */
static kd_status check_kinds(char *const *parts, int32_t n)
{
    for (int32_t i = 0; i < n; i++) {
        char kind[32];
        size_t k = 0;
        for (const char *p = parts[i];
             *p != '\0' && *p != '(' && !isspace((unsigned char)*p) && k + 1 < sizeof kind; p++)
            kind[k++] = (char)tolower((unsigned char)*p);
        kind[k] = '\0';
        if (kdi_layer_find(kind) == NULL)
            return kdi_fail(KD_ERR_FORMAT, "layer %d: unknown kind '%s'", (int)i, kind);
    }
    return KD_OK;
}

/* Builds under the model's value budget (core/limits.h), shared with nested sequences. */
static kd_status seq_build(kdi_seq *s, const char *spec, kdi_shape in, int32_t seq, int64_t vocab,
                           uint64_t seed);

kd_status kdi_seq_build(kdi_seq *s, const char *spec, kdi_shape in, uint64_t seed)
{
    return kdi_seq_build_as(s, spec, in, 0, 0, seed);
}

kd_status kdi_seq_build_as(kdi_seq *s, const char *spec, kdi_shape in, int32_t seq, int64_t vocab,
                           uint64_t seed)
{
    kdi_budget_enter();
    kd_status st = seq_build(s, spec, in, seq, vocab, seed);
    kdi_budget_leave();
    return st;
}

static kd_status seq_build(kdi_seq *s, const char *spec, kdi_shape in, int32_t seq, int64_t vocab,
                           uint64_t seed)
{
    memset(s, 0, sizeof *s);
    s->in = s->out = in;
    s->seq_in = s->seq_out = seq;
    s->vocab = vocab;
    if (spec == NULL || spec[0] == '\0') return KD_OK;
    char **parts;
    int32_t n;
    KDI_TRY(kdi_spec_split(spec, &parts, &n));
    if (check_kinds(parts, n) != KD_OK) {
        kdi_free(parts);
        return KD_ERR_FORMAT;
    }
    s->layers = kdi_calloc((size_t)n, sizeof *s->layers);
    s->acts = kdi_calloc((size_t)n, sizeof *s->acts);
    s->extra_grad = kdi_calloc((size_t)n, sizeof *s->extra_grad);
    s->has_extra = kdi_calloc((size_t)n, 1);
    s->stale = kdi_calloc((size_t)n, 1);
    s->keep = kdi_calloc((size_t)n, 1);
    s->wcopy = kdi_calloc((size_t)n, sizeof *s->wcopy);
    kd_status st = KD_OK;
    if (s->layers == NULL || s->acts == NULL || s->extra_grad == NULL || s->has_extra == NULL ||
        s->stale == NULL || s->keep == NULL || s->wcopy == NULL)
        st = kdi_fail(KD_ERR_NOMEM, "cannot allocate %d layers", (int)n);
    kdi_shape cur = in;
    int32_t cur_seq = seq;
    for (int32_t i = 0; st == KD_OK && i < n; i++) {
        st = build_layer(s, i, parts[i], cur, cur_seq, seed);
        if (st == KD_OK) {
            s->n = i + 1;
            cur = s->layers[i].out;
            cur_seq = s->layers[i].seq > 0;
        }
    }
    kdi_free(parts);
    if (st == KD_OK && s->n > 0 && (s->layers[s->n - 1].ops->codes & KDI_CODES_OUT))
        st = kdi_fail(KD_ERR_FORMAT,
                      "the last layer ('%s') writes uint8 codes: end the int8 layers with "
                      "dequant=1 or dequantize",
                      s->layers[s->n - 1].ops->kind);
    if (st != KD_OK) {
        kdi_seq_free(s);
        return st;
    }
    s->out = cur;
    s->seq_out = cur_seq;
    return KD_OK;
}

void kdi_seq_free(kdi_seq *s)
{
    for (int32_t i = 0; i < s->n; i++) {
        kdi_layer_free(&s->layers[i]);
        kdi_buf_free(&s->acts[i]);
        kdi_buf_free(&s->extra_grad[i]);
        if (s->wcopy != NULL) kdi_buf_free(&s->wcopy[i]);
    }
    kdi_free(s->layers);
    kdi_free(s->acts);
    kdi_free(s->extra_grad);
    kdi_free(s->has_extra);
    kdi_free(s->stale);
    kdi_free(s->keep);
    kdi_free(s->wcopy);
    kdi_buf_free(&s->xcopy);
    kdi_buf_free(&s->grad[0]);
    kdi_buf_free(&s->grad[1]);
    kdi_buf_free(&s->row[0]);
    kdi_buf_free(&s->row[1]);
    kdi_fq_free(s->fq);
    memset(s, 0, sizeof *s);
}

/* The float values of l's parameters. */
static int64_t param_floats(const kdi_layer *l)
{
    int64_t n = 0;
    for (int32_t j = 0; j < l->nparams; j++)
        if (l->params[j].value != NULL) n += l->params[j].count;
    return n;
}

/* Copies l's parameters' values, one after the other, to w. */
static void params_copy(const kdi_layer *l, float *w)
{
    for (int32_t j = 0; j < l->nparams; j++)
        if (l->params[j].value != NULL) {
            memcpy(w, l->params[j].value, sizeof(float) * (size_t)l->params[j].count);
            w += l->params[j].count;
        }
}

/* Sizes every buffer for batch once; later batches of that size or smaller allocate nothing, unless
 * the thread count has grown since (layers keep a workspace a thread: convolution). */
static kd_status reserve(kdi_seq *s, int64_t batch)
{
    /* kdi_threads() reads KD_THREADS, giving OpenBLAS its count before the first GEMM */
    int threads = kdi_threads();
    if (batch <= s->reserved && threads <= s->reserved_threads) return KD_OK;
    if (batch < s->reserved) batch = s->reserved;
    int64_t widest = kdi_shape_size(s->in);
    for (int32_t i = 0; i < s->n; i++) {
        kdi_layer *l = &s->layers[i];
        int64_t size = kdi_shape_size(l->out);
        if (size > widest) widest = size;
        KDI_TRY(kdi_buf_reserve(&s->acts[i], batch * size));
        if (l->ops->reserve != NULL) KDI_TRY(l->ops->reserve(l, batch));
    }
    /* a lazy chain keeps its layer's parameters, and at layer 0 its input, to write its outputs
     * when read */
    if (s->n > 0 && (s->layers[0].fuse & KDI_FUSE_PLANES_AFTER))
        KDI_TRY(kdi_buf_reserve(&s->xcopy, batch * kdi_shape_size(s->in)));
    for (int32_t i = 0; i < s->n; i++)
        if (s->layers[i].fuse & KDI_FUSE_PLANES_AFTER)
            KDI_TRY(kdi_buf_reserve(&s->wcopy[i], param_floats(&s->layers[i])));
    KDI_TRY(kdi_buf_reserve(&s->grad[0], batch * widest));
    KDI_TRY(kdi_buf_reserve(&s->grad[1], batch * widest));
    /* Feature-gradient buffers already in use must follow the batch too. */
    for (int32_t i = 0; i < s->n; i++)
        if (s->extra_grad[i].data != NULL)
            KDI_TRY(kdi_buf_reserve(&s->extra_grad[i], batch * kdi_shape_size(s->layers[i].out)));
    s->reserved = batch;
    s->reserved_threads = threads;
    return KD_OK;
}

kd_status kdi_seq_prepare(kdi_seq *s, int64_t batch, int train)
{
    KDI_TRY(reserve(s, batch));
    for (int32_t i = 0; i < s->n; i++) {
        kdi_layer *l = &s->layers[i];
        if (l->ops->check != NULL) KDI_TRY(l->ops->check(l, batch, train));
    }
    return KD_OK;
}

/* Layer i's forward, on rounded weights when fake quantisation marks them; through forward_relu
 * with the ReLU after it when relu (fuses_relu_after) and with `then` (a layer after it, plane by
 * plane) when not NULL. */
static kd_status layer_forward(kdi_seq *s, int32_t i, const float *x, int relu,
                               const kdi_then *then, int64_t batch, int train)
{
    kdi_layer *l = &s->layers[i];
    float *y = s->acts[i].data, *r = relu ? s->acts[i + 1].data : NULL;
    int fq = s->fq != NULL && s->fq->weights[i];
    if (fq) KDI_TRY(kdi_fq_weights_begin(s->fq, l, i, 1));
    kd_status st = relu || then != NULL ? l->ops->forward_relu(l, x, y, r, then, batch, train)
                                        : l->ops->forward(l, x, y, batch, train);
    if (fq) kdi_fq_weights_end(s->fq, l, i);
    return st;
}

static kd_status layer_backward(kdi_seq *s, int32_t i, const float *x, const float *dy, float *dx)
{
    kdi_layer *l = &s->layers[i];
    int fq = s->fq != NULL && s->fq->weights[i];
    if (fq) KDI_TRY(kdi_fq_weights_begin(s->fq, l, i, 0));
    kd_status st = l->ops->backward(l, x, s->acts[i].data, dy, dx, s->batch);
    if (fq) kdi_fq_weights_end(s->fq, l, i);
    return st;
}

/* Fusion with a ReLU next to a layer (the ReLU's own passes over memory were a tenth of the small
 * CNN's step): "conv | relu" forward writes both outputs in one pass (KDI_FUSE_RELU_AFTER);
 * "relu | maxpool" backward masks the pooled gradient instead of the ReLU's whole input
 * (KDI_FUSE_RELU_BEFORE). Every activation is there when read (a feature loss or a probe reads
 * the conv's output as before; see lazy_chain) and the values are the same bit for bit. Not where
 * fake quantisation rounds the activation between the two (the second would read rounded values),
 * nor in a backward that adds a gradient there (a feature loss): the layers then run one by one. */
static int fusion_on = 1;
void kdi_seq_set_fusion(int on) { fusion_on = on; }
static _Atomic int64_t planes_backwards; /* tests: backwards fed plane by plane (below) */
int64_t kdi_seq_planes_backwards(void) { return atomic_load(&planes_backwards); }

static int is_relu(const kdi_seq *s, int32_t i)
{
    return strcmp(s->layers[i].ops->kind, "relu") == 0;
}

/* Whether layer i's forward takes the ReLU at i + 1 along. */
static int fuses_relu_after(const kdi_seq *s, int32_t i)
{
    const kdi_layer *l = &s->layers[i];
    return fusion_on && i + 1 < s->n && (l->fuse & KDI_FUSE_RELU_AFTER) &&
           l->ops->forward_relu != NULL && is_relu(s, i + 1) &&
           (s->fq == NULL || !s->fq->point[i + 1]);
}

/* Whether the layer at i + 2 runs plane by plane inside layer i's forward, which takes the ReLU at
 * i + 1 along (fuses_relu_after): max pooling after "conv | relu", reading each plane of the
 * ReLU's output while it is in cache instead of in a pass of its own. */
static int fuses_planes_after(const kdi_seq *s, int32_t i)
{
    if (i + 2 >= s->n || !(s->layers[i].fuse & KDI_FUSE_PLANES_AFTER)) return 0;
    const kdi_layer *next = &s->layers[i + 2];
    return (next->fuse & KDI_FUSE_PLANES) && next->ops->forward_plane != NULL &&
           (s->fq == NULL || (!s->fq->point[i + 2] && !s->fq->weights[i + 2]));
}

/* Whether that chain (layer i, its ReLU, the per-plane layer after it: fuses_planes_after holds)
 * leaves the outputs of layer i and of the ReLU unwritten: nothing reads them in training (the
 * pooling's backward takes the ReLU's along from its own outputs and argmax, the convolution's
 * backward reads its input), and writing them was most of the small CNN's memory traffic (11% of
 * its step on one thread). They are written when read (kdi_seq_output, a backward that needs
 * them: materialise), and by every later forward once read. Not under fake quantisation. */
static int lazy_chain(const kdi_seq *s, int32_t i, int64_t batch)
{
    /* each forward copies the parameters aside (wcopy): only where the outputs it saves writing
     * are 4x larger (not the small CNN's second conv at batch 1) */
    const kdi_layer *l = &s->layers[i];
    return s->fq == NULL && !s->keep[i] && !s->keep[i + 1] &&
           batch * kdi_shape_size(l->out) >= 4 * param_floats(l);
}

/* Writes activation i if the last forward left it unwritten: its layer's forward again, on its
 * input (written, or layer 0's copy of the input). Only convolutions (not depthwise) and ReLUs are
 * left unwritten, whose forwards cannot fail. */
static void materialise(kdi_seq *s, int32_t i)
{
    if (!s->stale[i]) return;
    if (i > 0) materialise(s, i - 1);
    const float *in = i > 0 ? s->acts[i - 1].data : s->xcopy.data;
    kdi_layer *l = &s->layers[i];
    /* on the parameters of that forward (wcopy: a step or a load may have moved them since) */
    float *saved[KDI_MAX_PARAMS], *w = s->wcopy[i].data;
    for (int32_t j = 0; j < l->nparams; j++) {
        saved[j] = l->params[j].value;
        if (saved[j] != NULL) {
            l->params[j].value = w;
            w += l->params[j].count;
        }
    }
    (void)l->ops->forward(l, in, s->acts[i].data, s->batch, s->trained);
    for (int32_t j = 0; j < l->nparams; j++) l->params[j].value = saved[j];
    s->stale[i] = 0;
}

const float *kdi_seq_output(kdi_seq *s, int32_t i)
{
    materialise(s, i);
    s->keep[i] = 1;
    return s->acts[i].data;
}

/* Whether layer i, in a training forward, shows each plane of its output to the layer after it as
 * it writes it (batch norm after a conv: its sums taken while the plane is in L1, not in a pass of
 * their own over the whole batch). */
static int observed_after(const kdi_seq *s, int32_t i, int train)
{
    if (!fusion_on || !train || i + 1 >= s->n) return 0;
    const kdi_layer *l = &s->layers[i], *next = &s->layers[i + 1];
    return (l->fuse & KDI_FUSE_PLANES_AFTER) && l->ops->forward_relu != NULL &&
           (next->fuse & KDI_FUSE_OBSERVE) && next->ops->observe_begin != NULL &&
           next->ops->observe_plane != NULL && (s->fq == NULL || !s->fq->point[i + 1]);
}

/* Whether layer i's backward (in this backward) runs through the ReLU at i - 1. */
static int fuses_relu_before(const kdi_seq *s, int32_t i)
{
    const kdi_layer *l = &s->layers[i];
    return fusion_on && i > 0 && (l->fuse & KDI_FUSE_RELU_BEFORE) &&
           l->ops->backward_thru_relu != NULL && is_relu(s, i - 1) && !s->has_extra[i - 1] &&
           (s->fq == NULL || (!s->fq->point[i] && !s->fq->weights[i]));
}

/* Whether layer i's backward through the ReLU at i - 1 (fuses_relu_before holds) runs plane by
 * plane inside the backward of layer i - 2: max pooling after "conv | relu", each plane of the
 * conv's output gradient made as the conv's backward reads it, never written whole. Not with a
 * gradient added at the conv's output (a feature loss), nor under fake quantisation. */
static int grad_planes_before(const kdi_seq *s, int32_t i)
{
    if (i < 2 || s->fq != NULL || s->has_extra[i - 2]) return 0;
    const kdi_layer *l = &s->layers[i], *c = &s->layers[i - 2];
    return (l->fuse & KDI_FUSE_GRAD_PLANES) && l->ops->backward_plane != NULL &&
           (c->fuse & KDI_FUSE_GRAD_PLANES_AFTER) && c->ops->backward_planes != NULL;
}

/* Activation p (0 the input, i + 1 layer i's output) as the next layer reads it: rounded when fake
 * quantisation marks it. */
static kd_status point(kdi_seq *s, int32_t p, const float *v, int64_t batch, int train,
                       const float **out)
{
    *out = v;
    if (s->fq == NULL || !s->fq->point[p]) return KD_OK;
    kdi_shape sh = p == 0 ? s->in : s->layers[p - 1].out;
    return kdi_fq_activation(s->fq, p, v, batch * kdi_shape_size(sh), train, out);
}

/* What layer i read in the last forward. */
static const float *layer_input(const kdi_seq *s, int32_t i)
{
    const float *v = i > 0 ? s->acts[i - 1].data : s->x;
    if (s->fq != NULL && s->fq->point[i] && s->fq->seen[i]) return s->fq->act[i].data;
    return v;
}

kd_status kdi_seq_forward(kdi_seq *s, const float *x, int64_t batch, int train, const float **out)
{
    KDI_TRY(kdi_seq_prepare(s, batch, train));
    const float *cur;
    s->trained = 0;
    s->batch = 0;
    KDI_TRY(point(s, 0, x, batch, train, &cur));
    memset(s->stale, 0, (size_t)s->n);
    for (int32_t i = 0; i < s->n; i++) {
        if (fuses_relu_after(s, i)) {
            int planes = fuses_planes_after(s, i), lazy = planes && lazy_chain(s, i, batch);
            kdi_then then = {0};
            if (planes) then = (kdi_then){&s->layers[i + 2], s->acts[i + 2].data, lazy, 0};
            if (lazy && i == 0)
                memcpy(s->xcopy.data, cur, sizeof(float) * (size_t)(batch * kdi_shape_size(s->in)));
            if (lazy) params_copy(&s->layers[i], s->wcopy[i].data);
            KDI_TRY(layer_forward(s, i, cur, 1, planes ? &then : NULL, batch, train));
            s->stale[i] = s->stale[i + 1] = (uint8_t)lazy;
            i += planes ? 2 : 1; /* the ReLU's output (and the next's) written, none rounded */
        } else if (observed_after(s, i, train)) {
            /* the next layer (batch norm) runs on its own after, with the sums it was shown */
            kdi_layer *next = &s->layers[i + 1];
            kdi_then then = {next, NULL, 0, 1};
            next->ops->observe_begin(next, batch);
            KDI_TRY(layer_forward(s, i, cur, 0, &then, batch, train));
        } else {
            KDI_TRY(layer_forward(s, i, cur, 0, NULL, batch, train));
        }
        KDI_TRY(point(s, i + 1, s->acts[i].data, batch, train, &cur));
    }
    memset(s->has_extra, 0, (size_t)s->n);
    s->x = x;
    s->batch = batch;
    s->trained = train;
    *out = cur;
    return KD_OK;
}

kd_status kdi_seq_backward(kdi_seq *s, const float *dy, float *dx)
{
    if (!s->trained || s->batch == 0)
        return kdi_fail(KD_ERR_STATE, "backward needs a training forward first");
    const kdi_kernels *k = kdi_kernels_get();
    const float *g = dy;
    int next = 0;
    for (int32_t i = s->n - 1; i >= 0; i--) {
        kdi_layer *l = &s->layers[i];
        int64_t nout = s->batch * kdi_shape_size(l->out);
        int masked = s->fq != NULL && s->fq->point[i + 1];
        if (s->has_extra[i] || masked) {
            /* The caller's dy is read-only; our own buffers take the changes in place. */
            float *sum = g == dy ? s->grad[next].data : s->grad[next ^ 1].data;
            if (g == dy) {
                memcpy(sum, dy, (size_t)nout * sizeof *sum);
                next ^= 1;
            }
            /* The straight-through estimator: no gradient where the output was clipped. */
            if (masked) kdi_fq_mask(s->fq, i + 1, s->acts[i].data, sum, nout);
            if (s->has_extra[i]) k->axpy(sum, 1.0f, s->extra_grad[i].data, nout);
            g = sum;
        }
        /* this step's layers, i down to low: layer i alone, or through the ReLU before it, or
         * also the conv before that, fed its dY plane by plane from layer i */
        int relu = fuses_relu_before(s, i), planes = relu && grad_planes_before(s, i);
        int32_t low = i - relu - planes;
        float *target = low > 0 ? s->grad[next].data : dx;
        if (planes) {
            kdi_layer *c = &s->layers[low];
            kdi_grad_src src = {l, s->acts[i].data, g};
            if (low > 0) materialise(s, low - 1); /* the conv's input */
            KDI_TRY(c->ops->backward_planes(c, layer_input(s, low), &src, target, s->batch));
            atomic_fetch_add_explicit(&planes_backwards, 1, memory_order_relaxed);
        } else if (relu) { /* dx of the ReLU's input */
            KDI_TRY(l->ops->backward_thru_relu(l, layer_input(s, i), s->acts[i].data, g, target,
                                               s->batch));
        } else {
            if (i > 0) materialise(s, i - 1); /* a ReLU's backward reads its input */
            KDI_TRY(layer_backward(s, i, layer_input(s, i), g, target));
        }
        for (int32_t j = i; j >= low && s->after_layer != NULL; j--)
            KDI_TRY(s->after_layer(s->after_ctx, j));
        i = low;
        g = target;
        next ^= 1;
    }
    if (s->n == 0 && dx != NULL)
        memcpy(dx, dy, (size_t)(s->batch * kdi_shape_size(s->in)) * sizeof *dx);
    if (dx != NULL && s->fq != NULL && s->fq->point[0])
        kdi_fq_mask(s->fq, 0, s->x, dx, s->batch * kdi_shape_size(s->in));
    memset(s->has_extra, 0, (size_t)s->n);
    s->trained = 0;
    return KD_OK;
}

kd_status kdi_seq_add_output_grad(kdi_seq *s, int32_t i, const float *g)
{
    if (i < 0 || i >= s->n)
        return kdi_fail(KD_ERR_ARGUMENT, "layer %d is not in 0..%d", i, s->n - 1);
    if (!s->trained)
        return kdi_fail(KD_ERR_STATE, "feature gradients need a training forward first");
    int64_t n = s->batch * kdi_shape_size(s->layers[i].out);
    KDI_TRY(kdi_buf_reserve(&s->extra_grad[i], s->reserved * kdi_shape_size(s->layers[i].out)));
    s->keep[i] = 1; /* a feature loss's layer: later forwards write its output */
    if (!s->has_extra[i]) memset(s->extra_grad[i].data, 0, (size_t)n * sizeof(float));
    kdi_kernels_get()->axpy(s->extra_grad[i].data, 1.0f, g, n);
    s->has_extra[i] = 1;
    return KD_OK;
}

kd_status kdi_seq_can_step(const kdi_seq *s)
{
    if (!s->seq_in) return kdi_fail(KD_ERR_UNSUPPORTED, "decoding needs a sequence input");
    for (int32_t i = 0; i < s->n; i++) {
        const kdi_layer *l = &s->layers[i];
        const char *name;
        if (l->seq <= 0)
            return kdi_fail(KD_ERR_UNSUPPORTED, "layer %d ('%s') does not act token by token",
                            (int)i, l->ops->kind);
        for (int32_t k = 0; l->ops->child != NULL; k++) {
            kdi_seq *c = l->ops->child((kdi_layer *)l, k, &name);
            if (c == NULL) break;
            KDI_TRY(kdi_seq_can_step(c));
        }
    }
    return KD_OK;
}

kd_status kdi_seq_step(kdi_seq *s, const float *x, int64_t pos, const float **out)
{
    int64_t widest = 1;
    for (int32_t i = 0; i < s->n; i++)
        if (kdi_seq_width(s->layers[i].out, 1) > widest)
            widest = kdi_seq_width(s->layers[i].out, 1);
    KDI_TRY(kdi_buf_reserve(&s->row[0], widest));
    KDI_TRY(kdi_buf_reserve(&s->row[1], widest));
    /* Workspaces must hold one token (a layer's reserve sizes them for batches of T). */
    KDI_TRY(kdi_seq_prepare(s, 1, 0));
    const float *cur = x;
    for (int32_t i = 0; i < s->n; i++) {
        kdi_layer *l = &s->layers[i];
        float *y = s->row[i & 1].data;
        if (l->ops->step != NULL) {
            KDI_TRY(l->ops->step(l, cur, y, pos));
        } else {
            /* A per-token layer reads its T from in.c: a copy that sees one token runs it on one
             * row, sharing the parameters and workspaces. */
            kdi_layer one = *l;
            one.in.c = one.out.c = 1;
            KDI_TRY(l->ops->forward(&one, cur, y, 1, 0));
        }
        cur = y;
    }
    s->trained = 0;
    *out = cur;
    return KD_OK;
}

kd_status kdi_seq_collect(kdi_seq *s, const char *prefix, kdi_param_list *list)
{
    char name[96];
    for (int32_t i = 0; i < s->n; i++) {
        kdi_layer *l = &s->layers[i];
        snprintf(name, sizeof name, "%s%d.", prefix, (int)i);
        if (l->ops->collect != NULL) {
            KDI_TRY(l->ops->collect(l, name, list));
            continue;
        }
        for (int32_t j = 0; j < l->nparams; j++)
            KDI_TRY(kdi_param_list_push(list, name, &l->params[j]));
    }
    return KD_OK;
}

char *kdi_seq_spec(const kdi_seq *s)
{
    size_t len = 1;
    for (int32_t i = 0; i < s->n; i++) len += strlen(s->layers[i].spec) + 3;
    char *out = kdi_malloc(len);
    if (out == NULL) return NULL;
    out[0] = '\0';
    for (int32_t i = 0; i < s->n; i++) {
        if (i > 0) strcat(out, " | ");
        strcat(out, s->layers[i].spec);
    }
    return out;
}
