#include "nn/fake_quant.h"

#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"

kdi_fq *kdi_fq_create(int32_t n, const uint8_t *weights, const uint8_t *point)
{
    kdi_fq *f = kdi_calloc(1, sizeof *f);
    if (f == NULL) return NULL;
    size_t np = (size_t)n + 1;
    f->n = n;
    f->weights = kdi_calloc((size_t)n + 1, 1);
    f->point = kdi_calloc(np, 1);
    f->seen = kdi_calloc(np, 1);
    f->lo = kdi_calloc(np, sizeof *f->lo);
    f->hi = kdi_calloc(np, sizeof *f->hi);
    f->scale = kdi_calloc(np, sizeof *f->scale);
    f->zero = kdi_calloc(np, sizeof *f->zero);
    f->act = kdi_calloc(np, sizeof *f->act);
    f->wq = kdi_calloc((size_t)n + 1, sizeof *f->wq);
    f->master = kdi_calloc((size_t)n + 1, sizeof *f->master);
    if (f->weights == NULL || f->point == NULL || f->seen == NULL || f->lo == NULL ||
        f->hi == NULL || f->scale == NULL || f->zero == NULL || f->act == NULL || f->wq == NULL ||
        f->master == NULL) {
        kdi_fq_free(f);
        return NULL;
    }
    memcpy(f->weights, weights, (size_t)n);
    memcpy(f->point, point, np);
    return f;
}

void kdi_fq_free(kdi_fq *f)
{
    if (f == NULL) return;
    for (int32_t p = 0; f->act != NULL && p <= f->n; p++) kdi_buf_free(&f->act[p]);
    for (int32_t i = 0; f->wq != NULL && i < f->n; i++) kdi_buf_free(&f->wq[i]);
    kdi_free(f->weights);
    kdi_free(f->point);
    kdi_free(f->seen);
    kdi_free(f->lo);
    kdi_free(f->hi);
    kdi_free(f->scale);
    kdi_free(f->zero);
    kdi_free(f->act);
    kdi_free(f->wq);
    kdi_free(f->master);
    kdi_free(f);
}

void kdi_fq_scale(float lo, float hi, float *scale, float *zero)
{
    double l = lo < 0 ? lo : 0, h = hi > 0 ? hi : 0;
    double s = (h - l) / 255.0;
    if (!(s > 1e-30)) s = 1.0; /* a constant zero tensor */
    double z = nearbyint(-l / s);
    *scale = (float)s;
    *zero = (float)(z < 0 ? 0 : z > 255 ? 255 : z);
}

/* The code of x before clamping: round(x / s) + z, as the int8 model's quantize_u8 kernel. */
static inline float code_of(float x, float s, float z) { return rintf(x / s) + z; }

kd_status kdi_fq_activation(kdi_fq *f, int32_t p, const float *x, int64_t count, int train,
                            const float **out)
{
    if (train) {
        float lo = x[0], hi = x[0];
        for (int64_t j = 1; j < count; j++) {
            lo = x[j] < lo ? x[j] : lo;
            hi = x[j] > hi ? x[j] : hi;
        }
        if (!f->seen[p]) {
            f->lo[p] = lo;
            f->hi[p] = hi;
            f->seen[p] = 1;
        } else {
            f->lo[p] += KDI_FQ_MOMENTUM * (lo - f->lo[p]);
            f->hi[p] += KDI_FQ_MOMENTUM * (hi - f->hi[p]);
        }
    }
    if (!f->seen[p]) {
        *out = x;
        return KD_OK;
    }
    KDI_TRY(kdi_buf_reserve(&f->act[p], count));
    float s, z, *y = f->act[p].data;
    kdi_fq_scale(f->lo[p], f->hi[p], &s, &z);
    f->scale[p] = s;
    f->zero[p] = z;
    for (int64_t j = 0; j < count; j++) {
        float q = code_of(x[j], s, z);
        q = q < 0.0f ? 0.0f : q > 255.0f ? 255.0f : q;
        y[j] = (q - z) * s;
    }
    *out = y;
    return KD_OK;
}

void kdi_fq_mask(const kdi_fq *f, int32_t p, const float *x, float *g, int64_t count)
{
    float s = f->scale[p], z = f->zero[p];
    for (int64_t j = 0; j < count; j++) {
        float q = code_of(x[j], s, z);
        if (q < 0.0f || q > 255.0f) g[j] = 0.0f;
    }
}

void kdi_fq_round_weights(const float *w, float *q, int64_t out, int64_t k)
{
    for (int64_t o = 0; o < out; o++) {
        const float *wo = w + o * k;
        float mx = 0, *qo = q + o * k;
        for (int64_t i = 0; i < k; i++) mx = fabsf(wo[i]) > mx ? fabsf(wo[i]) : mx;
        float sw = mx > 0 ? mx / 127.0f : 1.0f;
        if (!(sw > 0)) sw = 1.0f; /* mx / 127 underflowed */
        for (int64_t i = 0; i < k; i++) {
            float v = rintf(wo[i] / sw);
            qo[i] = (v > 127 ? 127 : v < -127 ? -127 : v) * sw;
        }
    }
}

kd_status kdi_fq_weights_begin(kdi_fq *f, kdi_layer *l, int32_t i, int round)
{
    kdi_param *w = &l->params[0];
    if (round) {
        KDI_TRY(kdi_buf_reserve(&f->wq[i], w->count));
        kdi_fq_round_weights(w->value, f->wq[i].data, w->dims[0], w->count / w->dims[0]);
    }
    f->master[i] = w->value;
    w->value = f->wq[i].data;
    return KD_OK;
}

void kdi_fq_weights_end(kdi_fq *f, kdi_layer *l, int32_t i)
{
    l->params[0].value = f->master[i];
    f->master[i] = NULL;
}
