/* Magnitude pruning with a schedule (kd_pruner): every trainable weight tensor of two or more dims
 * (dense and conv weights, attention projections, embeddings; not biases or norms' scales) keeps
 * a mask. At the steps the schedule names, the mask of each tensor is recomputed to zero its
 * smallest-magnitude fraction s_t of values (layer-wise, Han et al. 2015); every step zeroes the
 * masked values again, so an optimizer's update (momentum, Adam's moments) never revives them.
 * The sparsity follows Zhu and Gupta 2017 ("To prune, or not to prune", eq. 1), from 0:
 *   s_t = s_f (1 - (1 - (t - t0) / (t1 - t0))^3)   for t0 <= t < t1,  s_f from t1 on.
 * Masks only grow: zeroed values have the smallest magnitudes and stay masked. The sort workspace
 * is allocated at creation, so a step allocates nothing. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "nn/model.h"

struct kd_pruner {
    kd_model *m;
    float target;
    int64_t begin, end, every;
    int32_t n;         /* pruned tensors */
    kdi_param **ps;    /* their parameters */
    uint8_t **masks;   /* 1: kept */
    float *work;       /* |w| of the largest tensor, sorted */
    float current;     /* the sparsity the masks were last set to */
    int64_t last_step; /* the last step that set masks; -1 before any */
};

static int prunable(const kdi_param *p) { return p->grad != NULL && p->ndim >= 2; }

void kd_pruner_destroy(kd_pruner *p)
{
    if (p == NULL) return;
    for (int32_t i = 0; i < p->n; i++) kdi_free(p->masks != NULL ? p->masks[i] : NULL);
    kdi_free(p->masks);
    kdi_free(p->ps);
    kdi_free(p->work);
    kdi_free(p);
}

kd_status kd_pruner_create(kd_model *m, float sparsity, kd_pruner **out)
{
    KDI_CHECK_NULL(m);
    KDI_CHECK_NULL(out);
    if (!(sparsity >= 0.0f && sparsity < 1.0f))
        return kdi_fail(KD_ERR_ARGUMENT, "sparsity must be in [0, 1), got %g", (double)sparsity);
    const kdi_param_list *ps = kdi_model_params(m);
    kd_pruner *p = kdi_calloc(1, sizeof *p);
    if (p == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot allocate a pruner");
    int64_t largest = 0;
    for (int32_t i = 0; i < ps->n; i++)
        if (prunable(ps->items[i].p)) {
            p->n++;
            if (ps->items[i].p->count > largest) largest = ps->items[i].p->count;
        }
    if (p->n == 0) {
        kdi_free(p);
        return kdi_fail(KD_ERR_ARGUMENT, "model '%s' has no weight matrix or kernel to prune",
                        m->spec);
    }
    p->ps = kdi_calloc((size_t)p->n, sizeof *p->ps);
    p->masks = kdi_calloc((size_t)p->n, sizeof *p->masks);
    p->work = kdi_malloc(sizeof *p->work * (size_t)largest);
    kd_status st = p->ps == NULL || p->masks == NULL || p->work == NULL ? KD_ERR_NOMEM : KD_OK;
    for (int32_t i = 0, k = 0; st == KD_OK && i < ps->n; i++) {
        if (!prunable(ps->items[i].p)) continue;
        p->ps[k] = ps->items[i].p;
        p->masks[k] = kdi_malloc((size_t)p->ps[k]->count);
        if (p->masks[k] == NULL)
            st = KD_ERR_NOMEM;
        else
            memset(p->masks[k], 1, (size_t)p->ps[k]->count);
        k++;
    }
    if (st != KD_OK) {
        kd_pruner_destroy(p);
        return kdi_fail(KD_ERR_NOMEM, "cannot allocate the pruner's masks");
    }
    p->m = m;
    p->target = sparsity;
    p->every = 1;
    p->last_step = -1;
    *out = p;
    return KD_OK;
}

kd_status kd_pruner_set_int(kd_pruner *p, kd_pruner_option key, int64_t value)
{
    KDI_CHECK_NULL(p);
    static const char *const names[] = {"KD_PRUNER_BEGIN_STEP", "KD_PRUNER_END_STEP",
                                        "KD_PRUNER_FREQUENCY"};
    if ((int)key < 0 || (int)key > KD_PRUNER_FREQUENCY)
        return kdi_fail(KD_ERR_ARGUMENT, "pruner option %d is not a kd_pruner_option", (int)key);
    if (value < 0 || (key == KD_PRUNER_FREQUENCY && value < 1))
        return kdi_fail(KD_ERR_ARGUMENT, "%s %lld is out of range (it must be >= %d)", names[key],
                        (long long)value, key == KD_PRUNER_FREQUENCY ? 1 : 0);
    switch (key) {
    case KD_PRUNER_BEGIN_STEP: p->begin = value; return KD_OK;
    case KD_PRUNER_END_STEP: p->end = value; return KD_OK;
    case KD_PRUNER_FREQUENCY: p->every = value; return KD_OK;
    }
    return KD_OK; /* unreachable: key checked above */
}

/* Zhu and Gupta 2017, eq. 1, with s_i = 0. */
static float schedule(const kd_pruner *p, int64_t step)
{
    if (step < p->begin) return 0.0f;
    if (step >= p->end) return p->target;
    double f = 1.0 - (double)(step - p->begin) / (double)(p->end - p->begin);
    return (float)(p->target * (1.0 - f * f * f));
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Masks the floor(s * count) smallest |w| of tensor k (ties at the threshold go too). */
static void set_mask(kd_pruner *p, int32_t k, float s)
{
    const kdi_param *w = p->ps[k];
    int64_t cut = (int64_t)floor((double)s * (double)w->count);
    if (cut <= 0) return;
    for (int64_t i = 0; i < w->count; i++) p->work[i] = fabsf(w->value[i]);
    qsort(p->work, (size_t)w->count, sizeof *p->work, cmp_float);
    float threshold = p->work[cut - 1];
    for (int64_t i = 0; i < w->count; i++)
        if (fabsf(w->value[i]) <= threshold) p->masks[k][i] = 0;
}

static void apply(kd_pruner *p)
{
    for (int32_t k = 0; k < p->n; k++) {
        const uint8_t *mask = p->masks[k];
        float *w = p->ps[k]->value;
        for (int64_t i = 0; i < p->ps[k]->count; i++)
            if (!mask[i]) w[i] = 0.0f;
    }
}

kd_status kd_pruner_step(kd_pruner *p, int64_t step)
{
    KDI_CHECK_NULL(p);
    if (step < 0) return kdi_fail(KD_ERR_ARGUMENT, "step must be >= 0, got %lld", (long long)step);
    float s = schedule(p, step);
    int due = step >= p->end || (step - p->begin) % p->every == 0;
    if (s > p->current && due) {
        for (int32_t k = 0; k < p->n; k++) set_mask(p, k, s);
        p->current = s;
        p->last_step = step;
    }
    apply(p);
    return KD_OK;
}

kd_status kd_pruner_sparsity(const kd_pruner *p, float *sparsity)
{
    KDI_CHECK_NULL(p);
    KDI_CHECK_NULL(sparsity);
    *sparsity = p->current;
    return KD_OK;
}

kd_status kd_model_sparsity(const kd_model *m, float *sparsity)
{
    KDI_CHECK_NULL(m);
    KDI_CHECK_NULL(sparsity);
    const kdi_param_list *ps = kdi_model_params(m);
    int64_t zeros = 0, total = 0;
    for (int32_t i = 0; i < ps->n; i++) {
        const kdi_param *w = ps->items[i].p;
        if (!prunable(w)) continue;
        total += w->count;
        for (int64_t j = 0; j < w->count; j++) zeros += w->value[j] == 0.0f;
    }
    *sparsity = total > 0 ? (float)((double)zeros / (double)total) : 0.0f;
    return KD_OK;
}
