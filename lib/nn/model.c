/* kd_model: an input shape and a sequence of layers, with the public forward/backward calls. */
#include "nn/model.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "nn/layers/attention.h"

const kdi_param_list *kdi_model_params(const kd_model *m) { return &m->params; }

/* The model's input, from its first spec layer. */
typedef struct input_kind {
    kdi_shape shape;
    int32_t seq;   /* a sequence [T, d] of floats, or of token ids */
    int64_t vocab; /* > 0: token ids */
} input_kind;

/* Reads "input N", "input CxHxW", "sequence T D" or "tokens V T". */
static kd_status parse_input(char *text, input_kind *in)
{
    kdi_args a;
    KDI_TRY(kdi_spec_parse_layer(text, &a));
    memset(in, 0, sizeof *in);
    int tokens = strcmp(a.kind, "tokens") == 0;
    if (tokens || strcmp(a.kind, "sequence") == 0) {
        /* tokens V T: T ids in 0..V-1; sequence T D: T vectors of D floats. */
        int64_t first, second;
        KDI_TRY(kdi_args_check(&a, 2, NULL, 0));
        KDI_TRY(kdi_args_int(&a, 0, NULL, 0, 0, 1, tokens ? 1 << 24 : 1 << 20, &first));
        KDI_TRY(kdi_args_int(&a, 1, NULL, 0, 0, 1, 1 << 20, &second));
        if (!tokens && first * second > (1LL << 31))
            return kdi_fail(KD_ERR_FORMAT, "sequence %lld %lld is too large", (long long)first,
                            (long long)second);
        in->shape = tokens ? kdi_shape_flat(second) : (kdi_shape){first, second, 1};
        in->seq = 1;
        in->vocab = tokens ? first : 0;
        return KD_OK;
    }
    if (strcmp(a.kind, "input") != 0)
        return kdi_fail(KD_ERR_FORMAT,
                        "a spec starts with 'input N', 'input CxHxW', 'sequence T D' or "
                        "'tokens V T', not '%s'",
                        a.kind);
    if (a.n != 1 || a.nbody != 0)
        return kdi_fail(KD_ERR_FORMAT, "'input' takes one size, N or CxHxW");
    return kdi_parse_dims(a.tok[0], &in->shape.c, &in->shape.h, &in->shape.w);
}

/* The spec after its "input" layer, as one string (heap). */
static kd_status body_of(const char *spec, char **body, input_kind *in)
{
    char **parts;
    int32_t n;
    KDI_TRY(kdi_spec_split(spec, &parts, &n));
    kd_status st = parse_input(parts[0], in);
    size_t len = 1;
    for (int32_t i = 1; i < n; i++) len += strlen(parts[i]) + 3;
    char *out = st == KD_OK ? kdi_malloc(len) : NULL;
    if (st == KD_OK && out == NULL) st = kdi_fail(KD_ERR_NOMEM, "cannot allocate the spec");
    if (st == KD_OK) {
        out[0] = '\0';
        for (int32_t i = 1; i < n; i++) {
            if (i > 1) strcat(out, " | ");
            strcat(out, parts[i]);
        }
        if (n == 1) st = kdi_fail(KD_ERR_FORMAT, "the spec has no layer after 'input'");
    }
    kdi_free(parts);
    if (st != KD_OK) {
        kdi_free(out);
        return st;
    }
    *body = out;
    return KD_OK;
}

static char *canonical_spec(const kd_model *m)
{
    char *body = kdi_seq_spec(&m->seq);
    if (body == NULL) return NULL;
    kdi_shape in = m->seq.in;
    char head[80];
    if (m->seq.vocab > 0)
        snprintf(head, sizeof head, "tokens %lld %lld", (long long)m->seq.vocab, (long long)in.c);
    else if (m->seq.seq_in)
        snprintf(head, sizeof head, "sequence %lld %lld", (long long)in.c, (long long)in.h);
    else if (in.h == 1 && in.w == 1)
        snprintf(head, sizeof head, "input %lld", (long long)in.c);
    else
        snprintf(head, sizeof head, "input %lldx%lldx%lld", (long long)in.c, (long long)in.h,
                 (long long)in.w);
    char *spec = kdi_malloc(strlen(head) + strlen(body) + 4);
    if (spec != NULL) sprintf(spec, "%s | %s", head, body);
    kdi_free(body);
    return spec;
}

kd_status kd_model_create(const char *spec, uint64_t seed, kd_model **out)
{
    KDI_CHECK_NULL(spec);
    KDI_CHECK_NULL(out);
    char *body;
    input_kind in;
    KDI_TRY(body_of(spec, &body, &in));
    kd_model *m = kdi_calloc(1, sizeof *m);
    if (m == NULL) {
        kdi_free(body);
        return kdi_fail(KD_ERR_NOMEM, "cannot allocate a model");
    }
    kd_status st = kdi_seq_build_as(&m->seq, body, in.shape, in.seq, in.vocab, seed);
    kdi_free(body);
    if (st != KD_OK) {
        kdi_free(m);
        return st;
    }
    m->seed = seed;
    st = kdi_seq_collect(&m->seq, "", &m->params);
    if (st == KD_OK && (m->spec = canonical_spec(m)) == NULL)
        st = kdi_fail(KD_ERR_NOMEM, "cannot allocate the spec");
    if (st != KD_OK) {
        kd_model_destroy(m);
        return st;
    }
    *out = m;
    return KD_OK;
}

void kd_model_destroy(kd_model *m)
{
    if (m == NULL) return;
    kdi_seq_free(&m->seq);
    kdi_param_list_free(&m->params);
    kdi_buf_free(&m->input);
    kdi_buf_free(&m->ids);
    kdi_buf_free(&m->eval);
    kdi_norm_free(&m->norm);
    kdi_free(m->spec);
    kdi_free(m);
}

void kdi_model_params_changed(kd_model *m)
{
    for (int32_t i = 0; i < m->seq.n; i++)
        if (m->seq.layers[i].ops->changed != NULL) m->seq.layers[i].ops->changed(&m->seq.layers[i]);
}

kd_status kd_model_clone(const kd_model *m, kd_model **out)
{
    KDI_CHECK_NULL(m);
    KDI_CHECK_NULL(out);
    kd_model *c;
    KDI_TRY(kd_model_create(m->spec, m->seed, &c));
    for (int32_t i = 0; i < m->params.n; i++) {
        const kdi_param *src = m->params.items[i].p;
        kdi_param *dst = c->params.items[i].p;
        memcpy(kdi_param_data(dst), kdi_param_data(src), (size_t)kdi_param_bytes(src));
    }
    kdi_model_params_changed(c);
    kd_status st = kdi_model_copy_normalization(c, m);
    if (st != KD_OK) {
        kd_model_destroy(c);
        return st;
    }
    *out = c;
    return KD_OK;
}

const char *kd_model_spec(const kd_model *m) { return m != NULL ? m->spec : NULL; }

kd_status kd_model_input_size(const kd_model *m, int64_t *size)
{
    KDI_CHECK_NULL(m);
    KDI_CHECK_NULL(size);
    *size = kdi_shape_size(m->seq.in);
    return KD_OK;
}

kd_status kd_model_output_size(const kd_model *m, int64_t *size)
{
    KDI_CHECK_NULL(m);
    KDI_CHECK_NULL(size);
    *size = kdi_shape_size(m->seq.out);
    return KD_OK;
}

kd_status kd_model_param_count(const kd_model *m, int64_t *count)
{
    KDI_CHECK_NULL(m);
    KDI_CHECK_NULL(count);
    int64_t total = 0;
    /* Int8 models: their int8 weights and int32 biases, as many as the float model's. */
    for (int32_t i = 0; i < m->params.n; i++) {
        const kdi_param *p = m->params.items[i].p;
        if (p->grad != NULL || (p->raw != NULL && p->raw_type != KDI_ST_U8)) total += p->count;
    }
    *count = total;
    return KD_OK;
}

kd_status kd_model_layer_count(const kd_model *m, int32_t *count)
{
    KDI_CHECK_NULL(m);
    KDI_CHECK_NULL(count);
    *count = m->seq.n;
    return KD_OK;
}

kd_status kd_model_layer_info(const kd_model *m, int32_t i, const char **kind, int64_t *params,
                              int64_t *output_size)
{
    KDI_CHECK_NULL(m);
    if (i < 0 || i >= m->seq.n)
        return kdi_fail(KD_ERR_ARGUMENT, "layer %d is not in 0..%d", (int)i, (int)m->seq.n - 1);
    kdi_layer *l = &m->seq.layers[i];
    if (kind != NULL) *kind = l->ops->kind;
    if (params != NULL) *params = kdi_layer_param_count(l);
    if (output_size != NULL) *output_size = kdi_shape_size(l->out);
    return KD_OK;
}

kd_status kdi_model_check_size(const kd_model *m, int64_t batch)
{
    int64_t widest = kdi_shape_size(m->seq.in), total;
    for (int32_t i = 0; i < m->seq.n; i++)
        if (kdi_shape_size(m->seq.layers[i].out) > widest)
            widest = kdi_shape_size(m->seq.layers[i].out);
    if (batch < 1 || !kdi_mul_ok(batch, widest, &total) || total > (1LL << 40))
        return kdi_fail(KD_ERR_ARGUMENT, "batch %lld is not a usable size (1 or more)",
                        (long long)batch);
    return KD_OK;
}

/* The public boundary: pointers, batch range and finiteness, once. */
static kd_status check_batch(const kd_model *m, const float *x, int64_t batch, const float *logits)
{
    KDI_CHECK_NULL(m);
    KDI_CHECK_NULL(x);
    KDI_CHECK_NULL(logits);
    KDI_TRY(kdi_model_check_size(m, batch));
    if (!kdi_all_finite(x, batch * kdi_shape_size(m->seq.in)))
        return kdi_fail(KD_ERR_NUMERIC, "the input holds NaN or infinity");
    return kdi_model_check_tokens(m, x, batch);
}

kd_status kdi_model_check_tokens(const kd_model *m, const float *x, int64_t batch)
{
    /* A token model reads float inputs as ids: whole numbers in 0..V-1. */
    int64_t n = batch * kdi_shape_size(m->seq.in);
    for (int64_t i = 0; m->seq.vocab > 0 && i < n; i++)
        if (x[i] < 0.0f || x[i] >= (float)m->seq.vocab || x[i] != (float)(int64_t)x[i])
            return kdi_fail(KD_ERR_ARGUMENT,
                            "x[%lld] = %g is not a token id (a whole number in 0..%lld)",
                            (long long)i, (double)x[i], (long long)m->seq.vocab - 1);
    return KD_OK;
}

/* Checks ids [batch, T] of a token model and writes them as floats into buf. */
static kd_status ids_to_floats(kd_model *m, const int32_t *ids, int64_t batch, const float *logits,
                               kdi_buf *buf)
{
    KDI_CHECK_NULL(m);
    KDI_CHECK_NULL(ids);
    KDI_CHECK_NULL(logits);
    if (m->seq.vocab <= 0)
        return kdi_fail(KD_ERR_UNSUPPORTED, "the model takes floats, not token ids (its spec "
                                            "starts 'input', not 'tokens V T')");
    KDI_TRY(kdi_model_check_size(m, batch));
    int64_t n = batch * kdi_shape_size(m->seq.in);
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= m->seq.vocab)
            return kdi_fail(KD_ERR_ARGUMENT, "ids[%lld] = %d is not in 0..%lld", (long long)i,
                            (int)ids[i], (long long)m->seq.vocab - 1);
    KDI_TRY(kdi_buf_reserve(buf, n));
    for (int64_t i = 0; i < n; i++) buf->data[i] = (float)ids[i];
    return KD_OK;
}

static kd_status run(kd_model *m, const float *x, int64_t batch, float *logits, int train)
{
    const float *y;
    if (m->norm.channels > 0) KDI_TRY(kdi_model_normalize(m, x, batch, &x));
    KDI_TRY(kdi_seq_forward(&m->seq, x, batch, train, &y));
    memcpy(logits, y, (size_t)(batch * kdi_shape_size(m->seq.out)) * sizeof *logits);
    return KD_OK;
}

kd_status kdi_model_predict(kd_model *m, const float *x, int64_t batch, float *logits)
{
    return run(m, x, batch, logits, 0);
}

kd_status kd_model_predict(kd_model *m, const float *x, int64_t batch, float *logits)
{
    KDI_TRY(check_batch(m, x, batch, logits));
    return kdi_model_predict(m, x, batch, logits);
}

kd_status kdi_model_forward(kd_model *m, const float *x, int64_t batch, float *logits)
{
    /* The caller may reuse x before backward, so the model keeps its own copy. */
    int64_t n = batch * kdi_shape_size(m->seq.in);
    KDI_TRY(kdi_buf_reserve(&m->input, n));
    memcpy(m->input.data, x, (size_t)n * sizeof *x);
    return run(m, m->input.data, batch, logits, 1);
}

kd_status kd_model_forward(kd_model *m, const float *x, int64_t batch, float *logits)
{
    KDI_TRY(check_batch(m, x, batch, logits));
    return kdi_model_forward(m, x, batch, logits);
}

kd_status kdi_model_backward(kd_model *m, const float *grad_logits)
{
    m->grads_dirty = 1;
    return kdi_seq_backward(&m->seq, grad_logits, NULL);
}

kd_status kdi_model_backward_each(kd_model *m, const float *grad_logits,
                                  kd_status (*after_layer)(void *ctx, int32_t layer), void *ctx)
{
    m->seq.after_layer = after_layer;
    m->seq.after_ctx = ctx;
    kd_status st = kdi_model_backward(m, grad_logits);
    m->seq.after_layer = NULL;
    m->seq.after_ctx = NULL;
    return st;
}

kd_status kd_model_predict_tokens(kd_model *m, const int32_t *ids, int64_t batch, float *logits)
{
    KDI_TRY(ids_to_floats(m, ids, batch, logits, &m->ids));
    return run(m, m->ids.data, batch, logits, 0);
}

kd_status kd_model_forward_tokens(kd_model *m, const int32_t *ids, int64_t batch, float *logits)
{
    KDI_TRY(ids_to_floats(m, ids, batch, logits, &m->input));
    return run(m, m->input.data, batch, logits, 1);
}

kd_status kd_model_tokens(const kd_model *m, int64_t *vocab, int64_t *length)
{
    KDI_CHECK_NULL(m);
    int tokens = m->seq.vocab > 0;
    if (vocab != NULL) *vocab = m->seq.vocab;
    if (length != NULL) *length = tokens ? m->seq.in.c : 0;
    return KD_OK;
}

kd_status kd_model_output_rows(const kd_model *m, int64_t *rows, int64_t *classes)
{
    KDI_CHECK_NULL(m);
    int64_t r, c;
    kdi_model_rows(m, &r, &c);
    if (rows != NULL) *rows = r;
    if (classes != NULL) *classes = c;
    return KD_OK;
}

int kdi_model_is_int8(const kd_model *m)
{
    for (int32_t i = 0; i < m->seq.n; i++)
        if (m->seq.layers[i].ops->codes != 0) return 1;
    return 0;
}

kd_status kd_model_backward(kd_model *m, const float *grad_logits)
{
    KDI_CHECK_NULL(m);
    KDI_CHECK_NULL(grad_logits);
    if (kdi_model_is_int8(m))
        return kdi_fail(KD_ERR_UNSUPPORTED, "the model is int8 and only predicts: train the float "
                                            "model, then quantise it (kd_model_quantize)");
    if (!m->seq.trained)
        return kdi_fail(KD_ERR_STATE, "kd_model_backward needs a kd_model_forward first");
    if (!kdi_all_finite(grad_logits, m->seq.batch * kdi_shape_size(m->seq.out)))
        return kdi_fail(KD_ERR_NUMERIC, "grad_logits holds NaN or infinity");
    return kdi_model_backward(m, grad_logits);
}

const float *kdi_model_feature(kd_model *m, int32_t layer)
{
    return kdi_seq_output(&m->seq, layer);
}

kd_status kd_model_feature(const kd_model *m, int32_t layer, const float **data, int64_t *batch,
                           int64_t *c, int64_t *h, int64_t *w)
{
    KDI_CHECK_NULL(m);
    KDI_CHECK_NULL(data);
    if (layer < 0 || layer >= m->seq.n)
        return kdi_fail(KD_ERR_ARGUMENT, "layer %d is not in 0..%d", (int)layer, (int)m->seq.n - 1);
    if (m->seq.batch == 0)
        return kdi_fail(KD_ERR_STATE, "features need a forward or predict first");
    kdi_shape s = m->seq.layers[layer].out;
    /* const to the caller: the activations are the model's cache, which this may fill in (an
     * output the last forward left unwritten, kdi_seq_output) but not change */
    *data = kdi_model_feature((kd_model *)m, layer);
    if (batch != NULL) *batch = m->seq.batch;
    if (c != NULL) *c = s.c;
    if (h != NULL) *h = s.h;
    if (w != NULL) *w = s.w;
    return KD_OK;
}

kd_status kd_model_feature_backward(kd_model *m, int32_t layer, const float *grad)
{
    KDI_CHECK_NULL(m);
    KDI_CHECK_NULL(grad);
    if (layer < 0 || layer >= m->seq.n)
        return kdi_fail(KD_ERR_ARGUMENT, "layer %d is not in 0..%d", (int)layer, (int)m->seq.n - 1);
    if (!m->seq.trained)
        return kdi_fail(KD_ERR_STATE, "kd_model_feature_backward needs a kd_model_forward first");
    if (!kdi_all_finite(grad, m->seq.batch * kdi_shape_size(m->seq.layers[layer].out)))
        return kdi_fail(KD_ERR_NUMERIC, "the feature gradient holds NaN or infinity");
    return kdi_model_feature_backward(m, layer, grad);
}

kd_status kdi_model_feature_backward(kd_model *m, int32_t layer, const float *grad)
{
    return kdi_seq_add_output_grad(&m->seq, layer, grad);
}

/* The k-th attention layer, depth first (inside residual blocks too); NULL when there is none. */
static kdi_layer *find_attention(const kdi_seq *s, int32_t *k)
{
    for (int32_t i = 0; i < s->n; i++) {
        kdi_layer *l = &s->layers[i];
        if (kdi_attention_is(l) && (*k)-- == 0) return l;
        const char *name;
        kdi_seq *c;
        for (int32_t j = 0; l->ops->child != NULL && (c = l->ops->child(l, j, &name)) != NULL;
             j++) {
            kdi_layer *found = find_attention(c, k);
            if (found != NULL) return found;
        }
    }
    return NULL;
}

kdi_layer *kdi_model_attention_layer(const kd_model *m, int32_t k)
{
    return k < 0 ? NULL : find_attention(&m->seq, &k);
}

kd_status kd_model_attention_count(const kd_model *m, int32_t *count)
{
    KDI_CHECK_NULL(m);
    KDI_CHECK_NULL(count);
    int32_t k = INT32_MAX;
    find_attention(&m->seq, &k);
    *count = INT32_MAX - k;
    return KD_OK;
}

static kd_status attention_at(const kd_model *m, int32_t k, kdi_layer **l)
{
    int32_t count, left = k;
    KDI_TRY(kd_model_attention_count(m, &count));
    if (k < 0 || k >= count)
        return kdi_fail(KD_ERR_ARGUMENT, "attention layer %d is not in 0..%d", (int)k,
                        (int)count - 1);
    *l = find_attention(&m->seq, &left);
    return KD_OK;
}

kd_status kd_model_attention(const kd_model *m, int32_t k, const float **probs, int64_t *batch,
                             int64_t *heads, int64_t *length)
{
    KDI_CHECK_NULL(m);
    KDI_CHECK_NULL(probs);
    kdi_layer *l = NULL;
    KDI_TRY(attention_at(m, k, &l));
    int64_t b, h, t;
    const float *p = kdi_attention_probs(l, &b, &h, &t);
    if (m->seq.batch == 0 || p == NULL)
        return kdi_fail(KD_ERR_STATE, "attention probabilities need a forward or predict first");
    *probs = p;
    if (batch != NULL) *batch = b;
    if (heads != NULL) *heads = h;
    if (length != NULL) *length = t;
    return KD_OK;
}

kd_status kd_model_attention_backward(kd_model *m, int32_t k, const float *grad)
{
    KDI_CHECK_NULL(m);
    KDI_CHECK_NULL(grad);
    kdi_layer *l = NULL;
    KDI_TRY(attention_at(m, k, &l));
    if (!m->seq.trained)
        return kdi_fail(KD_ERR_STATE, "kd_model_attention_backward needs a kd_model_forward first");
    int64_t b, h, t;
    kdi_attention_probs(l, &b, &h, &t);
    if (!kdi_all_finite(grad, b * h * t * t))
        return kdi_fail(KD_ERR_NUMERIC, "the attention gradient holds NaN or infinity");
    return kdi_attention_add_grad(l, grad);
}

kd_status kd_model_zero_grad(kd_model *m)
{
    KDI_CHECK_NULL(m);
    kdi_model_zero_grad(m);
    return KD_OK;
}

void kdi_model_zero_grad(kd_model *m)
{
    if (!m->grads_dirty) return;
    for (int32_t i = 0; i < m->params.n; i++) {
        kdi_param *p = m->params.items[i].p;
        if (p->grad != NULL) memset(p->grad, 0, (size_t)p->count * sizeof *p->grad);
    }
    m->grads_dirty = 0;
}

kd_status kd_model_evaluate(kd_model *m, const float *x, const int32_t *labels, int64_t n,
                            int64_t batch, int64_t *correct, int64_t *confusion)
{
    KDI_CHECK_NULL(m);
    KDI_CHECK_NULL(x);
    KDI_CHECK_NULL(labels);
    KDI_CHECK_NULL(correct);
    int64_t in = kdi_shape_size(m->seq.in), classes = kdi_shape_size(m->seq.out);
    if (m->seq.vocab > 0)
        return kdi_fail(KD_ERR_UNSUPPORTED, "kd_model_evaluate counts one label an example; a "
                                            "token model predicts every position");
    if (n < 1 || batch < 1) return kdi_fail(KD_ERR_ARGUMENT, "n and batch must be 1 or more");
    for (int64_t i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= classes)
            return kdi_fail(KD_ERR_ARGUMENT, "label %d of example %lld is not in 0..%lld",
                            (int)labels[i], (long long)i, (long long)classes - 1);
    if (batch > n) batch = n;
    KDI_TRY(kdi_model_check_size(m, batch));
    int64_t values;
    if (!kdi_mul_ok(n, in, &values))
        return kdi_fail(KD_ERR_ARGUMENT, "n %lld is not a usable size", (long long)n);
    KDI_TRY(kdi_buf_reserve(&m->eval, batch * classes));
    /* Each batch is checked for NaN right before its forward pass, which then reads it from cache
     * (a scan of the whole input first read it from memory twice: 5% of kd eval on one thread);
     * the predictions are counted only once every batch has passed, so a failed call changes
     * none of the outputs. */
    int32_t *pred = kdi_malloc(sizeof *pred * (size_t)n);
    if (pred == NULL)
        return kdi_fail(KD_ERR_NOMEM, "cannot allocate %lld predictions", (long long)n);
    kd_status st = KD_OK;
    for (int64_t start = 0; start < n && st == KD_OK; start += batch) {
        int64_t rows = n - start < batch ? n - start : batch;
        if (!kdi_all_finite(x + start * in, rows * in)) {
            st = kdi_fail(KD_ERR_NUMERIC, "x holds NaN or infinity (in examples %lld to %lld)",
                          (long long)start, (long long)(start + rows - 1));
            break;
        }
        st = run(m, x + start * in, rows, m->eval.data, 0);
        for (int64_t r = 0; r < rows && st == KD_OK; r++) {
            const float *z = m->eval.data + r * classes;
            int32_t best = 0;
            for (int64_t c = 1; c < classes; c++)
                if (z[c] > z[best]) best = (int32_t)c;
            pred[start + r] = best;
        }
    }
    if (st == KD_OK) {
        int64_t hits = 0;
        for (int64_t i = 0; i < n; i++) {
            hits += pred[i] == labels[i];
            if (confusion != NULL) confusion[(int64_t)labels[i] * classes + pred[i]]++;
        }
        *correct = hits;
    }
    kdi_free(pred);
    return st;
}
