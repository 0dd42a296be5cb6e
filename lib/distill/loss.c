/* Distillation losses behind kd_loss. The generic part (options, sizes, state, double-buffered
 * gradient) is here once; each kind is an ops table (see loss.h). */
#include "distill/loss.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "distill/losses/losses.h"
#include "kernels/kernels.h"

/* ---------------------------------------------------------------- Hinton */

static kd_status hinton_check(const kd_loss *l, const float *soft, const int32_t *labels,
                              int64_t batch, int64_t classes)
{
    float alpha = l->opt[KD_LOSS_ALPHA];
    if (alpha > 0.0f && soft == NULL)
        return kdi_fail(
            KD_ERR_ARGUMENT,
            "soft_targets is NULL but alpha is %g; NULL is allowed only when alpha is 0",
            (double)alpha);
    if (alpha < 1.0f && labels == NULL)
        return kdi_fail(KD_ERR_ARGUMENT,
                        "labels is NULL but alpha is %g; NULL is allowed only when alpha is 1",
                        (double)alpha);
    if (soft != NULL) KDI_TRY(kdi_check_probabilities(soft, batch, classes));
    if (labels != NULL) KDI_TRY(kdi_check_labels(labels, batch, classes));
    return KD_OK;
}

/* Row-wise log_softmax(z / t) into ws; KD_ERR_NUMERIC when z / t overflows. */
static kd_status log_probs(kdi_buf *ws, const float *z, int64_t batch, int64_t classes, float t,
                           float **out)
{
    KDI_TRY(kdi_buf_reserve(ws, batch * classes));
    kdi_kernels_get()->log_softmax_rows(ws->data, z, batch, classes, 1.0f / t);
    if (!kdi_all_finite(ws->data, batch * classes))
        return kdi_fail(KD_ERR_NUMERIC, "the student's logits overflow at temperature %g",
                        (double)t);
    *out = ws->data;
    return KD_OK;
}

/* KL(p || q) = sum p (log p - log q), with 0 log 0 = 0, from log q. */
static double kl_div(const float *p, const float *lq, int64_t n)
{
    double kl = 0.0;
    for (int64_t i = 0; i < n; i++)
        if (p[i] > 0.0f) kl += (double)p[i] * (log((double)p[i]) - (double)lq[i]);
    return kl;
}

/* Hinton et al. 2015, section 2: the soft term's gradient is (q_T - p) / T per example, so the T^2
 * factor keeps its size comparable with the hard term's as T changes:
 *   L     = alpha T^2 KL(p || q_T) + (1 - alpha) CE(q_1, y),
 *   dL/dz = alpha T (q_T - p) + (1 - alpha) (q_1 - onehot(y)).
 * Both are batch means; unlabelled rows (y == -1) have no hard term. */
static kd_status hinton_forward(kd_loss *l, const float *z, const float *p, const int32_t *y,
                                int64_t batch, int64_t classes, double *parts, float *grad)
{
    float t = l->opt[KD_LOSS_TEMPERATURE], alpha = l->opt[KD_LOSS_ALPHA];
    int soft = alpha > 0.0f, hard = alpha < 1.0f;
    int64_t count = batch * classes;
    float *lpt = NULL, *lp1 = NULL;
    if (soft) KDI_TRY(log_probs(&l->ws[0], z, batch, classes, t, &lpt));
    if (hard) KDI_TRY(log_probs(&l->ws[1], z, batch, classes, 1.0f, &lp1));
    double kl = soft ? kl_div(p, lpt, count) : 0.0, ce = 0.0;
    for (int64_t r = 0; hard && r < batch; r++)
        if (y[r] >= 0) ce -= lp1[r * classes + y[r]];
    parts[KD_LOSS_PART_SOFT] = (double)alpha * t * t * kl / (double)batch;
    parts[KD_LOSS_PART_HARD] = (1.0 - alpha) * ce / (double)batch;
    parts[KD_LOSS_PART_TOTAL] = parts[KD_LOSS_PART_SOFT] + parts[KD_LOSS_PART_HARD];
    if (!isfinite(parts[KD_LOSS_PART_TOTAL]))
        return kdi_fail(KD_ERR_NUMERIC, "the loss is not finite (soft %g, hard %g)",
                        parts[KD_LOSS_PART_SOFT], parts[KD_LOSS_PART_HARD]);

    double gs = (double)alpha * t / (double)batch, gh = (1.0 - alpha) / (double)batch;
    for (int64_t r = 0; r < batch; r++) {
        int labelled = hard && y[r] >= 0;
        for (int64_t c = 0; c < classes; c++) {
            int64_t i = r * classes + c;
            double g = 0.0;
            if (soft) g += gs * (exp((double)lpt[i]) - (double)p[i]);
            if (labelled) g += gh * (exp((double)lp1[i]) - (c == y[r] ? 1.0 : 0.0));
            grad[i] = (float)g;
        }
    }
    return KD_OK;
}

static int hinton_uses_soft(const kd_loss *l) { return l->opt[KD_LOSS_ALPHA] > 0.0f; }

static const kdi_loss_ops hinton_ops = {.name = "hinton",
                                        .check = hinton_check,
                                        .forward = hinton_forward,
                                        .uses_soft = hinton_uses_soft};

/* ---------------------------------------------------------------- options */

int kdi_loss_option_known(int key)
{
    return (key >= KD_LOSS_TEMPERATURE && key <= KD_LOSS_CE_WEIGHT) ||
           (key >= KD_LOSS_JSD_BETA && key <= KD_LOSS_MASK_UNLABELLED);
}

static kd_status check_option(int key, float value)
{
    if (!kdi_loss_option_known(key))
        return kdi_fail(KD_ERR_ARGUMENT, "loss option %d is not a kd_loss_option", key);
    switch ((kd_loss_option)key) {
    case KD_LOSS_TEMPERATURE:
        if (!(value > 0.0f) || !isfinite(value) || !isfinite(1.0f / value))
            return kdi_fail(KD_ERR_ARGUMENT,
                            "KD_LOSS_TEMPERATURE %g must be finite and greater than 0",
                            (double)value);
        break;
    case KD_LOSS_ALPHA:
        if (!(value >= 0.0f && value <= 1.0f))
            return kdi_fail(KD_ERR_ARGUMENT, "KD_LOSS_ALPHA %g must be in [0, 1]", (double)value);
        break;
    case KD_LOSS_BETA:
    case KD_LOSS_CE_WEIGHT:
        if (!(value >= 0.0f) || !isfinite(value))
            return kdi_fail(KD_ERR_ARGUMENT, "loss option %d: %g must be finite and >= 0", key,
                            (double)value);
        break;
    case KD_LOSS_JSD_BETA:
    case KD_LOSS_SKEW:
        if (!(value >= 0.0f && value <= 1.0f))
            return kdi_fail(KD_ERR_ARGUMENT, "loss option %d: %g must be in [0, 1]", key,
                            (double)value);
        break;
    case KD_LOSS_MASK_UNLABELLED:
        if (value != 0.0f && value != 1.0f)
            return kdi_fail(KD_ERR_ARGUMENT, "KD_LOSS_MASK_UNLABELLED %g must be 0 or 1",
                            (double)value);
        break;
    }
    return KD_OK;
}

/* ---------------------------------------------------------------- the handle */

kd_status kd_loss_create(kd_loss_kind kind, kd_loss **out)
{
    KDI_CHECK_NULL(out);
    const kdi_loss_ops *ops = NULL;
    switch (kind) {
    case KD_LOSS_HINTON: ops = &hinton_ops; break;
    case KD_LOSS_LOGIT_MSE: ops = &kdi_logit_mse_ops; break;
    case KD_LOSS_DKD: ops = &kdi_dkd_ops; break;
    case KD_LOSS_REVERSE_KL: ops = &kdi_reverse_kl_ops; break;
    case KD_LOSS_JSD: ops = &kdi_jsd_ops; break;
    case KD_LOSS_SKEW_KL: ops = &kdi_skew_kl_ops; break;
    case KD_LOSS_SKEW_REVERSE_KL: ops = &kdi_skew_reverse_kl_ops; break;
    case KD_LOSS_TVD: ops = &kdi_tvd_ops; break;
    }
    if (ops == NULL)
        return kdi_fail(KD_ERR_ARGUMENT, "loss kind %d is not a kd_loss_kind", (int)kind);
    kd_loss *l = calloc(1, sizeof *l);
    if (l == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot allocate a loss");
    l->kind = kind;
    l->ops = ops;
    l->opt[KD_LOSS_TEMPERATURE] = 4.0f;
    l->opt[KD_LOSS_ALPHA] = 0.9f;
    l->opt[KD_LOSS_BETA] = 8.0f;
    l->opt[KD_LOSS_CE_WEIGHT] = 1.0f;
    l->opt[KD_LOSS_JSD_BETA] = 0.5f;
    l->opt[KD_LOSS_SKEW] = 0.1f;
    if (ops->defaults != NULL) ops->defaults(l);
    *out = l;
    return KD_OK;
}

void kd_loss_destroy(kd_loss *l)
{
    if (l == NULL) return;
    for (int i = 0; i < 2; i++) {
        kdi_buf_free(&l->grad[i]);
        kdi_buf_free(&l->ws[i]);
    }
    for (int i = 0; i < 4; i++) kdi_buf_free(&l->pad[i]);
    free(l);
}

kd_status kd_loss_set_float(kd_loss *l, kd_loss_option key, float value)
{
    KDI_CHECK_NULL(l);
    KDI_TRY(check_option((int)key, value));
    l->opt[key] = value;
    return KD_OK;
}

kd_status kd_loss_get_float(const kd_loss *l, kd_loss_option key, float *value)
{
    KDI_CHECK_NULL(l);
    KDI_CHECK_NULL(value);
    if (!kdi_loss_option_known((int)key))
        return kdi_fail(KD_ERR_ARGUMENT, "loss option %d is not a kd_loss_option", (int)key);
    *value = l->opt[key];
    return KD_OK;
}

static kd_status check_sizes(int64_t batch, int64_t classes)
{
    int64_t count;
    if (batch < 1)
        return kdi_fail(KD_ERR_ARGUMENT, "batch is %lld; it must be 1 or more", (long long)batch);
    if (classes < 1)
        return kdi_fail(KD_ERR_ARGUMENT, "classes is %lld; it must be 1 or more",
                        (long long)classes);
    if (!kdi_mul_ok(batch, classes, &count) || count > (1LL << 40))
        return kdi_fail(KD_ERR_ARGUMENT, "batch %lld x classes %lld is too large", (long long)batch,
                        (long long)classes);
    return KD_OK;
}

kd_status kdi_loss_check(const kd_loss *l, const float *soft_targets, const int32_t *labels,
                         int64_t batch, int64_t classes)
{
    KDI_CHECK_NULL(l);
    KDI_TRY(check_sizes(batch, classes));
    return l->ops->check(l, soft_targets, labels, batch, classes);
}

int kdi_loss_uses_soft(const kd_loss *l) { return l->ops->uses_soft(l); }

int kdi_loss_soft_is_logits(const kd_loss *l) { return l->ops->soft_is_logits; }

float kdi_loss_temperature(const kd_loss *l) { return l->opt[KD_LOSS_TEMPERATURE]; }

/* KD_LOSS_MASK_UNLABELLED: the kind's forward on the labelled rows alone, gathered into l->pad,
 * its gradient scattered back; padded rows get 0. With every row labelled, no copy. */
static kd_status forward_rows(kd_loss *l, const float *z, const float *soft, const int32_t *y,
                              int64_t batch, int64_t classes, double *parts, float *grad)
{
    int64_t kept = 0;
    if (l->opt[KD_LOSS_MASK_UNLABELLED] == 0.0f || y == NULL)
        return l->ops->forward(l, z, soft, y, batch, classes, parts, grad);
    for (int64_t r = 0; r < batch; r++) kept += y[r] >= 0;
    if (kept == batch) return l->ops->forward(l, z, soft, y, batch, classes, parts, grad);
    size_t row = (size_t)classes * sizeof *z;
    memset(grad, 0, (size_t)batch * row);
    if (kept == 0) return KD_OK; /* parts stay 0, as TRL's clamped denominator gives */
    for (int i = 0; i < 4; i++)
        KDI_TRY(kdi_buf_reserve(&l->pad[i], i == 2 ? kept : kept * classes));
    float *pz = l->pad[0].data, *pp = soft != NULL ? l->pad[1].data : NULL, *pg = l->pad[3].data;
    int32_t *py = (int32_t *)(void *)l->pad[2].data;
    for (int64_t r = 0, k = 0; r < batch; r++) {
        if (y[r] < 0) continue;
        memcpy(pz + k * classes, z + r * classes, row);
        if (pp != NULL) memcpy(pp + k * classes, soft + r * classes, row);
        py[k++] = y[r];
    }
    KDI_TRY(l->ops->forward(l, pz, pp, py, kept, classes, parts, pg));
    for (int64_t r = 0, k = 0; r < batch; r++)
        if (y[r] >= 0) memcpy(grad + r * classes, pg + (k++) * classes, row);
    return KD_OK;
}

kd_status kdi_loss_forward(kd_loss *l, const float *student_logits, const float *soft_targets,
                           const int32_t *labels, int64_t batch, int64_t classes, float *loss)
{
    int next = 1 - l->cur;
    double parts[KDI_LOSS_NPARTS] = {0};
    KDI_TRY(kdi_buf_reserve(&l->grad[next], batch * classes));
    KDI_TRY(forward_rows(l, student_logits, soft_targets, labels, batch, classes, parts,
                         l->grad[next].data));
    l->cur = next;
    l->batch = batch;
    l->classes = classes;
    memcpy(l->parts, parts, sizeof parts);
    /* The other buffer's gradient is stale now: grow it too, so the next forward of this size
     * does not allocate. Should that fail, the next forward reports it. */
    (void)kdi_buf_reserve(&l->grad[1 - next], batch * classes);
    *loss = (float)parts[KD_LOSS_PART_TOTAL];
    return KD_OK;
}

kd_status kd_loss_forward(kd_loss *l, const float *student_logits, const float *soft_targets,
                          const int32_t *labels, int64_t batch, int64_t classes, float *loss)
{
    KDI_CHECK_NULL(l);
    KDI_CHECK_NULL(student_logits);
    KDI_CHECK_NULL(loss);
    KDI_TRY(kdi_loss_check(l, soft_targets, labels, batch, classes));
    if (!kdi_all_finite(student_logits, batch * classes))
        return kdi_fail(KD_ERR_NUMERIC, "student_logits hold NaN or infinity");
    return kdi_loss_forward(l, student_logits, soft_targets, labels, batch, classes, loss);
}

const float *kdi_loss_grad(const kd_loss *l) { return l->grad[l->cur].data; }

kd_status kd_loss_backward(kd_loss *l, float *grad_student_logits)
{
    KDI_CHECK_NULL(l);
    KDI_CHECK_NULL(grad_student_logits);
    if (l->batch == 0)
        return kdi_fail(KD_ERR_STATE, "kd_loss_backward needs a kd_loss_forward first");
    memcpy(grad_student_logits, kdi_loss_grad(l),
           (size_t)(l->batch * l->classes) * sizeof *grad_student_logits);
    return KD_OK;
}

kd_status kd_loss_value(const kd_loss *l, kd_loss_part part, float *value)
{
    KDI_CHECK_NULL(l);
    KDI_CHECK_NULL(value);
    if ((int)part < 0 || (int)part >= KDI_LOSS_NPARTS)
        return kdi_fail(KD_ERR_ARGUMENT, "loss part %d is not a kd_loss_part", (int)part);
    if (l->batch == 0) return kdi_fail(KD_ERR_STATE, "kd_loss_value needs a kd_loss_forward first");
    *value = (float)l->parts[part];
    return KD_OK;
}
