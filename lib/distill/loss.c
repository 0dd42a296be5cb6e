/* Distillation losses behind kd_loss. The generic part (options, sizes, state, double-buffered
 * gradient) is here once; each kind is an ops table (see loss.h). */
#include "distill/loss.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "distill/losses/losses.h"
#include "kernels/kernels.h"

/* ---------------------------------------------------------------- Hinton */

/* Hinton et al. 2015, section 2: the soft term's gradient is (q_T - p) / T per example, so the T^2
 * factor keeps its size comparable with the hard term's as T changes:
 *   L     = alpha T^2 KL(p || q_T) + (1 - alpha) CE(q_1, y),
 *   dL/dz = alpha T (q_T - p) + (1 - alpha) (q_1 - onehot(y)).
 * The soft term is a batch mean; the hard term a mean over the labelled rows (or the batch, as
 * KD_LOSS_HARD_MEAN says); unlabelled rows (y == -1) have no hard term. lpt are the teachers'
 * log-probabilities at T; under logit standardisation z is standardised for the soft term only,
 * as Sun et al.'s code (its cross-entropy reads the raw logits). */
static kd_status hinton_forward(kd_loss *l, const float *z, const float *lpt, const int32_t *y,
                                int64_t batch, int64_t classes, double *parts, float *grad)
{
    float t = l->opt[KD_LOSS_TEMPERATURE], alpha = l->opt[KD_LOSS_ALPHA];
    int soft = alpha > 0.0f, hard = alpha < 1.0f;
    int64_t count = batch * classes;
    float *lq = NULL, *lp1 = NULL;
    double *gs = NULL, kl = 0.0, ce = 0.0;
    if (soft) KDI_TRY(kdi_student_soft_log_probs(l, z, batch, classes, &lq));
    if (soft) KDI_TRY(kdi_student_soft_grad(l, batch, classes, &gs));
    if (hard) KDI_TRY(kdi_log_probs(&l->ws[1], z, batch, classes, 1.0f, 0, &lp1));
    double nh = hard ? kdi_loss_hard_count(l, y, batch) : 1.0;
    double k = (double)alpha * t / (double)batch;
    for (int64_t i = 0; soft && i < count; i++) {
        double p = exp((double)lpt[i]);
        if (p > 0.0) kl += p * ((double)lpt[i] - (double)lq[i]);
        gs[i] = k * (exp((double)lq[i]) - p);
    }
    if (soft) kdi_student_soft_finish(l, gs, batch, classes, grad);
    for (int64_t r = 0; hard && r < batch; r++)
        if (y[r] >= 0) ce -= lp1[r * classes + y[r]];
    parts[KD_LOSS_PART_SOFT] = (double)alpha * t * t * kl / (double)batch;
    parts[KD_LOSS_PART_HARD] = (1.0 - alpha) * ce / nh;
    parts[KD_LOSS_PART_TOTAL] = parts[KD_LOSS_PART_SOFT] + parts[KD_LOSS_PART_HARD];
    if (!isfinite(parts[KD_LOSS_PART_TOTAL]))
        return kdi_fail(KD_ERR_NUMERIC, "the loss is not finite (soft %g, hard %g)",
                        parts[KD_LOSS_PART_SOFT], parts[KD_LOSS_PART_HARD]);
    double gh = (1.0 - alpha) / nh;
    if (!soft) {
        /* Cross-entropy alone (alpha 0, a language model's usual step): gh (softmax(z) - onehot),
         * the softmax by the vectorised kernel rather than exp of every log-probability. */
        const kdi_kernels *kk = kdi_kernels_get();
        kk->softmax_rows(grad, z, batch, classes, 1.0f);
        kk->scale(grad, (float)gh, count);
        for (int64_t r = 0; r < batch; r++) {
            if (y[r] >= 0)
                grad[r * classes + y[r]] -= (float)gh;
            else
                memset(grad + r * classes, 0, (size_t)classes * sizeof *grad);
        }
        return KD_OK;
    }
    for (int64_t r = 0; hard && r < batch; r++) {
        if (y[r] < 0) continue;
        for (int64_t c = 0; c < classes; c++) {
            int64_t i = r * classes + c;
            grad[i] += (float)(gh * (exp((double)lp1[i]) - (c == y[r] ? 1.0 : 0.0)));
        }
    }
    return KD_OK;
}

static int hinton_uses_soft(const kd_loss *l) { return l->opt[KD_LOSS_ALPHA] > 0.0f; }

static const kdi_loss_ops hinton_ops = {.name = "hinton",
                                        .check = kdi_check_alpha_inputs,
                                        .forward = hinton_forward,
                                        .uses_soft = hinton_uses_soft};

double kdi_loss_hard_count(const kd_loss *l, const int32_t *labels, int64_t batch)
{
    if (l->opt[KD_LOSS_HARD_MEAN] != 0.0f || labels == NULL) return (double)batch;
    int64_t n = 0;
    for (int64_t r = 0; r < batch; r++) n += labels[r] >= 0;
    return n > 0 ? (double)n : 1.0;
}

/* ---------------------------------------------------------------- options */

int kdi_loss_option_known(int key)
{
    return (key >= KD_LOSS_TEMPERATURE && key <= KD_LOSS_HARD_MEAN) ||
           (key >= KD_LOSS_JSD_BETA && key <= KD_LOSS_MASK_UNLABELLED);
}

/* An option's name for messages (key known). */
static const char *option_name(int key)
{
    switch ((kd_loss_option)key) {
    case KD_LOSS_TEMPERATURE: return "KD_LOSS_TEMPERATURE";
    case KD_LOSS_ALPHA: return "KD_LOSS_ALPHA";
    case KD_LOSS_BETA: return "KD_LOSS_BETA";
    case KD_LOSS_CE_WEIGHT: return "KD_LOSS_CE_WEIGHT";
    case KD_LOSS_LOGIT_STANDARDIZE: return "KD_LOSS_LOGIT_STANDARDIZE";
    case KD_LOSS_GAMMA: return "KD_LOSS_GAMMA";
    case KD_LOSS_HARD_MEAN: return "KD_LOSS_HARD_MEAN";
    case KD_LOSS_JSD_BETA: return "KD_LOSS_JSD_BETA";
    case KD_LOSS_SKEW: return "KD_LOSS_SKEW";
    case KD_LOSS_MASK_UNLABELLED: return "KD_LOSS_MASK_UNLABELLED";
    }
    return "?";
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
    case KD_LOSS_LOGIT_STANDARDIZE:
    case KD_LOSS_HARD_MEAN:
        if (value != 0.0f && value != 1.0f)
            return kdi_fail(KD_ERR_ARGUMENT, "%s %g must be 0 or 1", option_name(key),
                            (double)value);
        break;
    case KD_LOSS_BETA:
    case KD_LOSS_CE_WEIGHT:
    case KD_LOSS_GAMMA:
        if (!(value >= 0.0f) || !isfinite(value))
            return kdi_fail(KD_ERR_ARGUMENT, "%s %g must be finite and >= 0", option_name(key),
                            (double)value);
        break;
    case KD_LOSS_JSD_BETA:
    case KD_LOSS_SKEW:
        if (!(value >= 0.0f && value <= 1.0f))
            return kdi_fail(KD_ERR_ARGUMENT, "%s %g must be in [0, 1]", option_name(key),
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
    case KD_LOSS_DIST: ops = &kdi_dist_ops; break;
    }
    if (ops == NULL)
        return kdi_fail(KD_ERR_ARGUMENT, "loss kind %d is not a kd_loss_kind", (int)kind);
    kd_loss *l = kdi_calloc(1, sizeof *l);
    if (l == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot allocate a loss");
    l->kind = kind;
    l->ops = ops;
    l->opt[KD_LOSS_TEMPERATURE] = 4.0f;
    l->opt[KD_LOSS_ALPHA] = 0.9f;
    l->opt[KD_LOSS_BETA] = 8.0f;
    l->opt[KD_LOSS_CE_WEIGHT] = 1.0f;
    l->opt[KD_LOSS_JSD_BETA] = 0.5f;
    l->opt[KD_LOSS_SKEW] = 0.1f;
    l->opt[KD_LOSS_GAMMA] = 1.0f;
    if (ops->defaults != NULL) ops->defaults(l);
    *out = l;
    return KD_OK;
}

void kd_loss_destroy(kd_loss *l)
{
    if (l == NULL) return;
    for (int i = 0; i < 2; i++) kdi_buf_free(&l->grad[i]);
    for (int i = 0; i < KDI_LOSS_NWS; i++) kdi_buf_free(&l->ws[i]);
    for (int i = 0; i < 4; i++) kdi_buf_free(&l->pad[i]);
    kdi_buf_free(&l->tlp);
    kdi_buf_free(&l->tz);
    kdi_buf_free(&l->gs);
    kdi_free(l);
}

kd_status kd_loss_set_float(kd_loss *l, kd_loss_option key, float value)
{
    KDI_CHECK_NULL(l);
    KDI_TRY(check_option((int)key, value));
    if (key == KD_LOSS_LOGIT_STANDARDIZE && value != 0.0f && l->kind != KD_LOSS_HINTON &&
        l->kind != KD_LOSS_DKD)
        return kdi_fail(KD_ERR_ARGUMENT,
                        "KD_LOSS_LOGIT_STANDARDIZE applies to KD_LOSS_HINTON and KD_LOSS_DKD, not "
                        "to the %s loss",
                        l->ops->name);
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

kd_status kdi_loss_check(const kd_loss *l, const float *soft_targets, int soft_is_logits,
                         const int32_t *labels, int64_t batch, int64_t classes)
{
    KDI_CHECK_NULL(l);
    KDI_TRY(check_sizes(batch, classes));
    KDI_TRY(l->ops->check(l, soft_targets, labels, batch, classes));
    if (kdi_loss_standardizes(l) && classes < 2)
        return kdi_fail(KD_ERR_ARGUMENT,
                        "logit standardisation needs 2 classes or more (a standard deviation), "
                        "not %lld",
                        (long long)classes);
    if (soft_targets == NULL || !l->ops->uses_soft(l) || l->ops->soft_is_logits) return KD_OK;
    if (soft_is_logits) {
        if (!kdi_all_finite(soft_targets, batch * classes))
            return kdi_fail(KD_ERR_NUMERIC, "the teachers' logits hold NaN or infinity");
        return KD_OK;
    }
    if (kdi_loss_standardizes(l))
        return kdi_fail(KD_ERR_ARGUMENT,
                        "KD_LOSS_LOGIT_STANDARDIZE standardises the teachers' logits: pass them "
                        "with kd_loss_forward_logits, not probabilities with kd_loss_forward");
    return kdi_check_probabilities(soft_targets, batch, classes);
}

int kdi_loss_uses_soft(const kd_loss *l) { return l->ops->uses_soft(l); }

int kdi_loss_soft_is_logits(const kd_loss *l) { return l->ops->soft_is_logits; }

int kdi_loss_prefers_logits(const kd_loss *l, int32_t teachers)
{
    return l->ops->soft_is_logits || kdi_loss_standardizes(l) ||
           (l->kind == KD_LOSS_DKD && teachers == 1);
}

float kdi_loss_temperature(const kd_loss *l) { return l->opt[KD_LOSS_TEMPERATURE]; }

/* The teachers' log-probabilities at T into l->tlp: log p from probabilities (-inf where p is 0),
 * or log_softmax(z / T) from logits, z standardised first when asked. */
static kd_status teacher_log_probs(kd_loss *l, const float *soft, int is_logits, int64_t batch,
                                   int64_t classes, const float **out)
{
    int64_t count = batch * classes;
    float t = l->opt[KD_LOSS_TEMPERATURE];
    KDI_TRY(kdi_buf_reserve(&l->tlp, count));
    if (!is_logits) {
        for (int64_t i = 0; i < count; i++) l->tlp.data[i] = logf(soft[i]);
    } else {
        const float *z = soft;
        if (kdi_loss_standardizes(l)) {
            KDI_TRY(kdi_buf_reserve(&l->tz, count));
            kdi_standardize_rows(soft, batch, classes, l->tz.data, NULL);
            z = l->tz.data;
        }
        kdi_kernels_get()->log_softmax_rows(l->tlp.data, z, batch, classes, 1.0f / t);
        if (!kdi_all_finite(l->tlp.data, count))
            return kdi_fail(KD_ERR_NUMERIC, "the teachers' logits overflow at temperature %g",
                            (double)t);
    }
    *out = l->tlp.data;
    return KD_OK;
}

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
                           int soft_is_logits, const int32_t *labels, int64_t batch,
                           int64_t classes, float *loss)
{
    const float *soft = soft_targets;
    if (soft != NULL && !l->ops->soft_is_logits && l->ops->uses_soft(l))
        KDI_TRY(teacher_log_probs(l, soft_targets, soft_is_logits, batch, classes, &soft));
    int next = 1 - l->cur;
    double parts[KDI_LOSS_NPARTS] = {0};
    KDI_TRY(kdi_buf_reserve(&l->grad[next], batch * classes));
    KDI_TRY(
        forward_rows(l, student_logits, soft, labels, batch, classes, parts, l->grad[next].data));
    /* Each loss checks its double sum; a sum past FLT_MAX is finite there but not as the float
     * returned (alpha T^2 KL of logits near FLT_MAX), and a trainer stepped on it. */
    if (!isfinite((float)parts[KD_LOSS_PART_TOTAL]))
        return kdi_fail(KD_ERR_NUMERIC,
                        "the loss (%g: soft %g, hard %g) is beyond a float; the logits are too "
                        "large",
                        parts[KD_LOSS_PART_TOTAL], parts[KD_LOSS_PART_SOFT],
                        parts[KD_LOSS_PART_HARD]);
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

/* Names the first row of logits that is not finite. The losses also score a model alone (alpha 0:
 * cross-entropy, as an evaluation does), so the message says logits, not the student's. */
static kd_status nonfinite_logits(const float *z, int64_t batch, int64_t classes)
{
    int64_t i = 0;
    while (i < batch * classes && isfinite(z[i])) i++;
    return kdi_fail(KD_ERR_NUMERIC, "the logits scored hold NaN or infinity (row %lld of %lld)",
                    (long long)(i / classes), (long long)batch);
}

kd_status kd_loss_forward(kd_loss *l, const float *student_logits, const float *soft_targets,
                          const int32_t *labels, int64_t batch, int64_t classes, float *loss)
{
    KDI_CHECK_NULL(l);
    KDI_CHECK_NULL(student_logits);
    KDI_CHECK_NULL(loss);
    KDI_TRY(kdi_loss_check(l, soft_targets, 0, labels, batch, classes));
    if (!kdi_all_finite(student_logits, batch * classes))
        return nonfinite_logits(student_logits, batch, classes);
    return kdi_loss_forward(l, student_logits, soft_targets, 0, labels, batch, classes, loss);
}

kd_status kd_loss_forward_logits(kd_loss *l, const float *student_logits,
                                 const float *teacher_logits, const int32_t *labels, int64_t batch,
                                 int64_t classes, float *loss)
{
    KDI_CHECK_NULL(l);
    KDI_CHECK_NULL(student_logits);
    KDI_CHECK_NULL(loss);
    KDI_TRY(kdi_loss_check(l, teacher_logits, 1, labels, batch, classes));
    if (!kdi_all_finite(student_logits, batch * classes))
        return nonfinite_logits(student_logits, batch, classes);
    return kdi_loss_forward(l, student_logits, teacher_logits, 1, labels, batch, classes, loss);
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
