/* Post-training int8 quantisation (kd_model_quantize): a float model becomes a model of the int8
 * layers of nn/layers/int8.c. The float layers are grouped into blocks (dense or conv, then an
 * optional bn folded into the conv, then an optional relu fused into the requantisation), the
 * activation range at the input and after every block is calibrated on the caller's examples (min-max,
 * or percentiles from a histogram), and the weights are quantised per output channel.
 * Jacob et al. 2018 (arXiv:1712.05877) for the scheme, Wu et al. 2020 (arXiv:2004.09602, sec. 4.1)
 * for percentile calibration. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "nn/fake_quant.h"
#include "nn/model.h"
#include "nn/spec.h"
#include "quant/plan.h"

#define CALIB_BATCH 64
#define BINS 2048

/* The range of one calibration point, and its histogram for percentiles. */
typedef struct range {
    float lo, hi;
    double *hist; /* BINS, over [lo, hi] of the first pass */
    double count;
} range;

static kd_status parse_spec(const char *spec, kdi_args *a, char *text, size_t size)
{
    snprintf(text, size, "%s", spec);
    return kdi_spec_parse_layer(text, a);
}

/* The blocks of m's layers, or KD_ERR_UNSUPPORTED naming the first layer without an int8 form. */
kd_status kdi_quant_plan(const kd_model *m, block *b, int32_t *nb)
{
    const kdi_seq *s = &m->seq;
    int32_t n = 0;
    for (int32_t i = 0; i < s->n; i++) {
        const kdi_layer *l = &s->layers[i];
        const char *kind = l->ops->kind;
        char text[256];
        kdi_args a;
        block *k = &b[n];
        memset(k, 0, sizeof *k);
        k->first = k->last = i;
        k->bn = -1;
        if (strcmp(kind, "dropout") == 0) continue; /* identity at inference */
        if (strcmp(kind, "dense") == 0 || strcmp(kind, "conv") == 0) {
            KDI_TRY(parse_spec(l->spec, &a, text, sizeof text));
            int conv = kind[0] == 'c';
            int64_t out = l->out.c * (conv ? 1 : l->out.h * l->out.w), ks = 0, stride = 1, pad = 0,
                    groups = 1;
            if (l->seq > 0 || (!conv && s->seq_in))
                return kdi_fail(KD_ERR_UNSUPPORTED,
                                "layer %d: '%s' on a sequence has no int8 form here", (int)i,
                                l->spec);
            if (conv) {
                KDI_TRY(kdi_args_int(&a, 1, "k", 0, 0, 1, 64, &ks));
                KDI_TRY(kdi_args_int(&a, -1, "stride", 1, 1, 1, 64, &stride));
                KDI_TRY(kdi_args_int(&a, -1, "pad", 1, 0, 0, 64, &pad));
                KDI_TRY(kdi_args_int(&a, -1, "groups", 1, 1, 1, 1 << 16, &groups));
                if (groups != 1)
                    return kdi_fail(KD_ERR_UNSUPPORTED,
                                    "layer %d: grouped convolution ('%s') has no int8 form yet",
                                    (int)i, l->spec);
            }
            k->kind = conv ? B_CONV : B_DENSE;
            int32_t j = i + 1;
            while (j < s->n && strcmp(s->layers[j].ops->kind, "dropout") == 0) j++;
            if (conv && j < s->n && strcmp(s->layers[j].ops->kind, "bn") == 0) {
                k->bn = j++;
                while (j < s->n && strcmp(s->layers[j].ops->kind, "dropout") == 0) j++;
            }
            if (j < s->n && strcmp(s->layers[j].ops->kind, "relu") == 0) {
                k->relu = 1;
                j++;
            }
            k->last = j - 1;
            i = j - 1;
            if (conv) {
                char extra[64] = "";
                size_t e = 0;
                if (stride != 1)
                    e += (size_t)snprintf(extra + e, sizeof extra - e, " stride=%lld",
                                          (long long)stride);
                if (pad != 0) snprintf(extra + e, sizeof extra - e, " pad=%lld", (long long)pad);
                snprintf(k->spec, sizeof k->spec, "qconv %lld %lld%s%s", (long long)out,
                         (long long)ks, extra, k->relu ? " relu=1" : "");
            } else {
                snprintf(k->spec, sizeof k->spec, "qdense %lld%s", (long long)out,
                         k->relu ? " relu=1" : "");
            }
        } else if (strcmp(kind, "maxpool") == 0) {
            k->kind = B_MAXPOOL;
            snprintf(k->spec, sizeof k->spec, "q%s", l->spec);
        } else if (strcmp(kind, "flatten") == 0) {
            k->kind = B_FLATTEN;
            snprintf(k->spec, sizeof k->spec, "qflatten");
        } else {
            return kdi_fail(KD_ERR_UNSUPPORTED,
                            "layer %d ('%s') has no int8 form: kd_model_quantize handles dense, "
                            "conv (with bn and relu after it), maxpool, flatten and dropout",
                            (int)i, l->spec);
        }
        n++;
    }
    if (n == 0 || (b[n - 1].kind != B_DENSE && b[n - 1].kind != B_CONV))
        return kdi_fail(KD_ERR_UNSUPPORTED,
                        "kd_model_quantize needs a model ending with dense or conv (and maybe "
                        "relu)");
    /* The last block returns floats (dequant=1); one ending in relu keeps its clamped codes and a
     * dequantize follows, as the float output skips the clamp. */
    if (!b[n - 1].relu) strcat(b[n - 1].spec, " dequant=1");
    *nb = n;
    return KD_OK;
}

/* ---------------------------------------------------------------- calibration */

static void see_minmax(range *r, const float *v, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        r->lo = v[i] < r->lo ? v[i] : r->lo;
        r->hi = v[i] > r->hi ? v[i] : r->hi;
    }
}

static void see_hist(range *r, const float *v, int64_t n)
{
    double w = (double)r->hi - (double)r->lo;
    for (int64_t i = 0; i < n; i++) {
        int64_t bin = w > 0 ? (int64_t)(((double)v[i] - r->lo) / w * BINS) : 0;
        bin = bin < 0 ? 0 : bin >= BINS ? BINS - 1 : bin;
        r->hist[bin] += 1.0;
    }
    r->count += (double)n;
}

/* Runs x through the clone in batches; pass 0 gathers min and max, pass 1 the histograms. */
static kd_status run_pass(kd_model *c, const float *x, int64_t n, const block *b, int32_t nb,
                          range *r, int pass, float *logits)
{
    int64_t in = kdi_model_in(c);
    for (int64_t s = 0; s < n; s += CALIB_BATCH) {
        int64_t batch = n - s < CALIB_BATCH ? n - s : CALIB_BATCH;
        KDI_TRY(kdi_model_predict(c, x + s * in, batch, logits));
        for (int32_t k = 0; k <= nb; k++) {
            const float *v = k == 0 ? c->seq.x : kdi_seq_output(&c->seq, b[k - 1].last);
            int64_t cnt = batch * (k == 0 ? in : kdi_shape_size(c->seq.layers[b[k - 1].last].out));
            if (pass == 0)
                see_minmax(&r[k], v, cnt);
            else
                see_hist(&r[k], v, cnt);
        }
    }
    return KD_OK;
}

/* [lo, hi] from the histogram: the (100 - p)-th and p-th percentiles, at bin edges. */
static void percentiles(range *r, float p)
{
    double w = ((double)r->hi - r->lo) / BINS, want_lo = r->count * (100.0 - p) / 100.0,
           want_hi = r->count * p / 100.0, cum = 0;
    float lo = r->lo, hi = r->hi;
    int found_lo = 0;
    for (int i = 0; i < BINS; i++) {
        cum += r->hist[i];
        if (!found_lo && cum > want_lo) {
            lo = (float)(r->lo + w * i);
            found_lo = 1;
        }
        if (cum >= want_hi) {
            hi = (float)(r->lo + w * (i + 1));
            break;
        }
    }
    r->lo = lo;
    r->hi = hi;
}

/* scale and zero point of [lo, hi] widened to hold 0 (so real 0, padding and ReLU's floor, is
 * exact). */
static void scale_of(const range *r, float *scale, uint8_t *zp)
{
    double lo = r->lo < 0 ? r->lo : 0, hi = r->hi > 0 ? r->hi : 0;
    double s = (hi - lo) / 255.0;
    if (!(s > 1e-30)) s = 1.0; /* a constant zero tensor */
    double z = nearbyint(-lo / s);
    *scale = (float)s;
    *zp = (uint8_t)(z < 0 ? 0 : z > 255 ? 255 : z);
}

/* ---------------------------------------------------------------- weights */

/* W [out, k] and bias [out] of block b in float, bn folded (W' = W g / sqrt(var + eps),
 * b' = (b - mean) g / sqrt(var + eps) + beta). w and bias are caller's arrays. */
static kd_status folded(const kd_model *m, const block *b, float *w, float *bias, int64_t out,
                        int64_t k)
{
    const kdi_layer *l = &m->seq.layers[b->first];
    memcpy(w, l->params[0].value, sizeof(float) * (size_t)(out * k));
    for (int64_t o = 0; o < out; o++) bias[o] = l->nparams > 1 ? l->params[1].value[o] : 0.0f;
    if (b->bn < 0) return KD_OK;
    const kdi_layer *bn = &m->seq.layers[b->bn];
    char text[256];
    kdi_args a;
    float eps;
    KDI_TRY(parse_spec(bn->spec, &a, text, sizeof text));
    KDI_TRY(kdi_args_float(&a, -1, "eps", 1, 1e-5f, 1e-12f, 1.0f, &eps));
    const float *g = bn->params[0].value, *beta = bn->params[1].value, *mean = bn->params[2].value,
                *var = bn->params[3].value;
    for (int64_t o = 0; o < out; o++) {
        double f = (double)g[o] / sqrt((double)var[o] + eps);
        for (int64_t i = 0; i < k; i++) w[o * k + i] = (float)(w[o * k + i] * f);
        bias[o] = (float)(((double)bias[o] - mean[o]) * f + beta[o]);
    }
    return KD_OK;
}

/* Fills int8 layer q from block b: weights per output channel, bias in int32 of scale
 * s_in s_w[o], the output scale and zero point. */
static kd_status fill_layer(const kd_model *m, const block *b, kdi_layer *q, float s_in,
                            float s_out, uint8_t z_out)
{
    int64_t out = q->params[0].dims[0], k = q->params[0].count / out;
    float *w = kdi_malloc(sizeof(float) * (size_t)(out * k)),
          *bias = kdi_malloc(sizeof(float) * (size_t)out);
    kd_status st = w != NULL && bias != NULL
                       ? KD_OK
                       : kdi_fail(KD_ERR_NOMEM, "cannot allocate the folded weights");
    if (st == KD_OK) st = folded(m, b, w, bias, out, k);
    if (st == KD_OK) {
        int8_t *qw = q->params[0].raw;
        float *sw = q->params[1].value;
        int32_t *qb = q->params[2].raw;
        for (int64_t o = 0; o < out; o++) {
            float mx = 0;
            for (int64_t i = 0; i < k; i++)
                mx = fabsf(w[o * k + i]) > mx ? fabsf(w[o * k + i]) : mx;
            sw[o] = mx > 0 ? mx / 127.0f : 1.0f;
            if (!(sw[o] > 0)) sw[o] = 1.0f; /* mx / 127 underflowed */
            for (int64_t i = 0; i < k; i++) {
                float v = rintf(w[o * k + i] / sw[o]);
                qw[o * k + i] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
            }
            double bq = nearbyint((double)bias[o] / ((double)s_in * sw[o]));
            qb[o] = (int32_t)(bq > 2147483647.0    ? 2147483647.0
                              : bq < -2147483647.0 ? -2147483647.0
                                                   : bq);
        }
        if (q->nparams > 3) {
            q->params[3].value[0] = s_out;
            ((uint8_t *)q->params[4].raw)[0] = z_out;
        }
    }
    kdi_free(w);
    kdi_free(bias);
    return st;
}

/* The ranges fake quantisation tracked (x == NULL): the input's and every block output's; the
 * last block's is unused when it returns floats. KD_ERR_STATE when a range was never trained. */
static kd_status tracked_ranges(const kd_model *m, const block *b, int32_t nb, range *r)
{
    const kdi_fq *f = m->seq.fq;
    for (int32_t k = 0; k <= nb; k++) {
        int32_t p = k == 0 ? 0 : b[k - 1].last + 1;
        if (!f->point[p]) {
            r[k].lo = r[k].hi = 0.0f;
            continue;
        }
        if (!f->seen[p])
            return kdi_fail(KD_ERR_STATE,
                            "the fake-quantised model has not been trained yet: its activation "
                            "ranges are tracked by training steps (kd_model_forward in training "
                            "mode); train it, or quantise it with kd_model_quantize");
        r[k].lo = f->lo[p];
        r[k].hi = f->hi[p];
    }
    return KD_OK;
}

/* ---------------------------------------------------------------- the call */

static kd_status quantize(const kd_model *m, const float *x, int64_t n, kd_calibration method,
                          float pct, kd_model **out)
{
    block *b = kdi_calloc((size_t)m->seq.n + 1, sizeof *b);
    range *r = kdi_calloc((size_t)m->seq.n + 2, sizeof *r);
    char *spec = NULL;
    kd_model *c = NULL, *q = NULL;
    float *logits = NULL;
    int32_t nb = 0;
    kd_status st =
        b != NULL && r != NULL ? KD_OK : kdi_fail(KD_ERR_NOMEM, "cannot allocate the plan");
    if (st == KD_OK) st = kdi_quant_plan(m, b, &nb);
    if (st == KD_OK) st = kd_model_clone(m, &c);
    if (st == KD_OK) {
        logits = kdi_malloc(sizeof(float) * (size_t)(CALIB_BATCH * kdi_model_out(m)));
        if (logits == NULL) st = kdi_fail(KD_ERR_NOMEM, "cannot allocate the calibration logits");
    }
    for (int32_t k = 0; st == KD_OK && k <= nb; k++) {
        r[k].lo = INFINITY;
        r[k].hi = -INFINITY;
    }
    if (st == KD_OK && x == NULL) {
        st = tracked_ranges(m, b, nb, r);
    } else if (st == KD_OK) {
        st = run_pass(c, x, n, b, nb, r, 0, logits);
    }
    if (st == KD_OK && x != NULL && method == KD_CALIBRATION_PERCENTILE) {
        for (int32_t k = 0; st == KD_OK && k <= nb; k++) {
            r[k].hist = kdi_calloc(BINS, sizeof(double));
            if (r[k].hist == NULL) st = kdi_fail(KD_ERR_NOMEM, "cannot allocate a histogram");
        }
        if (st == KD_OK) st = run_pass(c, x, n, b, nb, r, 1, logits);
        for (int32_t k = 0; st == KD_OK && k <= nb; k++) percentiles(&r[k], pct);
    }
    /* The spec: the float model's input, quantize, the blocks. */
    size_t len = strlen(m->spec) + 32 + (size_t)nb * sizeof b[0].spec;
    if (st == KD_OK && (spec = kdi_malloc(len)) == NULL)
        st = kdi_fail(KD_ERR_NOMEM, "cannot allocate the int8 spec");
    if (st == KD_OK) {
        const char *bar = strchr(m->spec, '|');
        size_t head = bar != NULL ? (size_t)(bar - m->spec) : strlen(m->spec);
        while (head > 0 && m->spec[head - 1] == ' ') head--;
        memcpy(spec, m->spec, head);
        spec[head] = '\0';
        strcat(spec, " | quantize");
        for (int32_t k = 0; k < nb; k++) {
            strcat(spec, " | ");
            strcat(spec, b[k].spec);
        }
        if (b[nb - 1].relu) strcat(spec, " | dequantize");
        st = kd_model_create(spec, 0, &q);
    }
    if (st == KD_OK) {
        float s;
        uint8_t z;
        scale_of(&r[0], &s, &z);
        kdi_layer *ql = &q->seq.layers[0];
        ql->params[0].value[0] = s;
        ((uint8_t *)ql->params[1].raw)[0] = z;
        float s_in = s;
        for (int32_t k = 0; st == KD_OK && k < nb; k++) {
            scale_of(&r[k + 1], &s, &z);
            if (b[k].kind == B_DENSE || b[k].kind == B_CONV) {
                st = fill_layer(c, &b[k], &q->seq.layers[k + 1], s_in, s, z);
                s_in = s;
            }
        }
    }
    if (st == KD_OK) st = kdi_model_copy_normalization(q, m);
    if (st == KD_OK) kdi_model_params_changed(q);
    for (int32_t k = 0; r != NULL && k <= nb; k++) kdi_free(r[k].hist);
    kdi_free(r);
    kdi_free(b);
    kdi_free(spec);
    kdi_free(logits);
    kd_model_destroy(c);
    if (st != KD_OK) {
        kd_model_destroy(q);
        return st;
    }
    *out = q;
    return KD_OK;
}

kd_status kd_model_quantize(const kd_model *m, const float *x, int64_t n, kd_calibration method,
                            float percentile, kd_model **out)
{
    KDI_CHECK_NULL(m);
    KDI_CHECK_NULL(x);
    KDI_CHECK_NULL(out);
    if (n < 1)
        return kdi_fail(KD_ERR_ARGUMENT, "n is %lld; give at least one calibration example",
                        (long long)n);
    if (method != KD_CALIBRATION_MINMAX && method != KD_CALIBRATION_PERCENTILE)
        return kdi_fail(KD_ERR_ARGUMENT, "method %d is not a kd_calibration", (int)method);
    if (method == KD_CALIBRATION_PERCENTILE && !(percentile > 50.0f && percentile <= 100.0f))
        return kdi_fail(KD_ERR_ARGUMENT, "percentile is %g; expected (50, 100], such as 99.99",
                        (double)percentile);
    if (m->seq.vocab > 0)
        return kdi_fail(KD_ERR_UNSUPPORTED, "a token model has no int8 form here");
    if (kdi_model_is_int8(m)) return kdi_fail(KD_ERR_UNSUPPORTED, "the model is int8 already");
    int64_t count;
    if (!kdi_mul_ok(n, kdi_model_in(m), &count)) return kdi_fail(KD_ERR_ARGUMENT, "n is too large");
    if (!kdi_all_finite(x, count))
        return kdi_fail(KD_ERR_NUMERIC, "the calibration examples hold NaN or infinity");
    KDI_TRY(kdi_model_check_size(m, n < CALIB_BATCH ? n : CALIB_BATCH));
    return quantize(m, x, n, method, percentile, out);
}

kd_status kd_model_is_quantized(const kd_model *m, int32_t *quantized)
{
    KDI_CHECK_NULL(m);
    KDI_CHECK_NULL(quantized);
    *quantized = kdi_model_is_int8(m);
    return KD_OK;
}

kd_status kd_model_quantize_trained(const kd_model *m, kd_model **out)
{
    KDI_CHECK_NULL(m);
    KDI_CHECK_NULL(out);
    if (m->seq.fq == NULL)
        return kdi_fail(KD_ERR_STATE, "the model is not fake-quantised: call "
                                      "kd_model_set_fake_quant(m, 1) and train it first");
    return quantize(m, NULL, 0, KD_CALIBRATION_MINMAX, 0.0f, out);
}
