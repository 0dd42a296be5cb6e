/* kd_model: an input shape and a sequence of layers, with the public forward/backward calls. */
#include "nn/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

const kdi_param_list *kdi_model_params(const kd_model *m) { return &m->params; }

/* Reads "input N" or "input CxHxW". */
static kd_status parse_input(char *text, kdi_shape *in)
{
    kdi_args a;
    KDI_TRY(kdi_spec_parse_layer(text, &a));
    if (strcmp(a.kind, "input") != 0)
        return kdi_fail(KD_ERR_FORMAT, "a spec starts with 'input N' or 'input CxHxW', not '%s'",
                        a.kind);
    if (a.n != 1 || a.nbody != 0)
        return kdi_fail(KD_ERR_FORMAT, "'input' takes one size, N or CxHxW");
    return kdi_parse_dims(a.tok[0], &in->c, &in->h, &in->w);
}

/* The spec after its "input" layer, as one string (heap). */
static kd_status body_of(const char *spec, char **body, kdi_shape *in)
{
    char **parts;
    int32_t n;
    KDI_TRY(kdi_spec_split(spec, &parts, &n));
    kd_status st = parse_input(parts[0], in);
    size_t len = 1;
    for (int32_t i = 1; i < n; i++) len += strlen(parts[i]) + 3;
    char *out = st == KD_OK ? malloc(len) : NULL;
    if (st == KD_OK && out == NULL) st = kdi_fail(KD_ERR_NOMEM, "cannot allocate the spec");
    if (st == KD_OK) {
        out[0] = '\0';
        for (int32_t i = 1; i < n; i++) {
            if (i > 1) strcat(out, " | ");
            strcat(out, parts[i]);
        }
        if (n == 1) st = kdi_fail(KD_ERR_FORMAT, "the spec has no layer after 'input'");
    }
    free(parts);
    if (st != KD_OK) {
        free(out);
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
    if (in.h == 1 && in.w == 1)
        snprintf(head, sizeof head, "input %lld", (long long)in.c);
    else
        snprintf(head, sizeof head, "input %lldx%lldx%lld", (long long)in.c, (long long)in.h,
                 (long long)in.w);
    char *spec = malloc(strlen(head) + strlen(body) + 4);
    if (spec != NULL) sprintf(spec, "%s | %s", head, body);
    free(body);
    return spec;
}

kd_status kd_model_create(const char *spec, uint64_t seed, kd_model **out)
{
    KDI_CHECK_NULL(spec);
    KDI_CHECK_NULL(out);
    char *body;
    kdi_shape in;
    KDI_TRY(body_of(spec, &body, &in));
    kd_model *m = calloc(1, sizeof *m);
    if (m == NULL) {
        free(body);
        return kdi_fail(KD_ERR_NOMEM, "cannot allocate a model");
    }
    kd_status st = kdi_seq_build(&m->seq, body, in, seed);
    free(body);
    if (st != KD_OK) {
        free(m);
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
    kdi_buf_free(&m->eval);
    free(m->spec);
    free(m);
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
        if (src->value != NULL) memcpy(dst->value, src->value, (size_t)src->count * sizeof(float));
        if (src->ivalue != NULL)
            memcpy(dst->ivalue, src->ivalue, (size_t)src->count * sizeof(int64_t));
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
    for (int32_t i = 0; i < m->params.n; i++)
        if (m->params.items[i].p->grad != NULL) total += m->params.items[i].p->count;
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
    return KD_OK;
}

static kd_status run(kd_model *m, const float *x, int64_t batch, float *logits, int train)
{
    const float *y;
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

kd_status kd_model_backward(kd_model *m, const float *grad_logits)
{
    KDI_CHECK_NULL(m);
    KDI_CHECK_NULL(grad_logits);
    if (!m->seq.trained)
        return kdi_fail(KD_ERR_STATE, "kd_model_backward needs a kd_model_forward first");
    if (!kdi_all_finite(grad_logits, m->seq.batch * kdi_shape_size(m->seq.out)))
        return kdi_fail(KD_ERR_NUMERIC, "grad_logits holds NaN or infinity");
    return kdi_model_backward(m, grad_logits);
}

const float *kdi_model_feature(const kd_model *m, int32_t layer) { return m->seq.acts[layer].data; }

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
    *data = kdi_model_feature(m, layer);
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
    if (n < 1 || batch < 1) return kdi_fail(KD_ERR_ARGUMENT, "n and batch must be 1 or more");
    for (int64_t i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= classes)
            return kdi_fail(KD_ERR_ARGUMENT, "label %d of example %lld is not in 0..%lld",
                            (int)labels[i], (long long)i, (long long)classes - 1);
    /* Checked whole first, so no batch fails after confusion has counted earlier ones (and the
     * batches need no check of their own). */
    if (batch > n) batch = n;
    KDI_TRY(kdi_model_check_size(m, batch));
    int64_t values;
    if (!kdi_mul_ok(n, in, &values))
        return kdi_fail(KD_ERR_ARGUMENT, "n %lld is not a usable size", (long long)n);
    if (!kdi_all_finite(x, values)) return kdi_fail(KD_ERR_NUMERIC, "x holds NaN or infinity");
    KDI_TRY(kdi_buf_reserve(&m->eval, batch * classes));
    int64_t hits = 0;
    for (int64_t start = 0; start < n; start += batch) {
        int64_t rows = n - start < batch ? n - start : batch;
        KDI_TRY(run(m, x + start * in, rows, m->eval.data, 0));
        for (int64_t r = 0; r < rows; r++) {
            const float *z = m->eval.data + r * classes;
            int64_t best = 0;
            for (int64_t c = 1; c < classes; c++)
                if (z[c] > z[best]) best = c;
            int32_t y = labels[start + r];
            hits += best == y;
            if (confusion != NULL) confusion[(int64_t)y * classes + best]++;
        }
    }
    *correct = hits;
    return KD_OK;
}
