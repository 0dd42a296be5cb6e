/* Logit matching (Ba and Caruana 2014, "Do deep nets really need to be deep?", section 2.1: the
 * student regresses the teacher's logits with an L2 loss), mixed with the label term as Hinton's:
 *   L     = alpha / (B C) sum (z - z_t)^2 + (1 - alpha) / N sum_labelled CE(z, y),
 *   dL/dz = 2 alpha (z - z_t) / (B C) + (1 - alpha) (softmax(z) - onehot(y)) / N,
 * N the labelled rows (or B, as KD_LOSS_HARD_MEAN says).
 * soft_targets are the teachers' logits (the trainer averages an ensemble's). */
#include <math.h>

#include "core/error.h"
#include "distill/losses/losses.h"

static kd_status mse_check(const kd_loss *l, const float *zt, const int32_t *labels, int64_t batch,
                           int64_t classes)
{
    float alpha = l->opt[KD_LOSS_ALPHA];
    if (alpha > 0.0f && zt == NULL)
        return kdi_fail(KD_ERR_ARGUMENT,
                        "soft_targets (the teachers' logits) is NULL but alpha is %g; NULL is "
                        "allowed only when alpha is 0",
                        (double)alpha);
    if (alpha < 1.0f && labels == NULL)
        return kdi_fail(KD_ERR_ARGUMENT,
                        "labels is NULL but alpha is %g; NULL is allowed only when alpha is 1",
                        (double)alpha);
    if (zt != NULL && !kdi_all_finite(zt, batch * classes))
        return kdi_fail(KD_ERR_NUMERIC, "the teachers' logits hold NaN or infinity");
    if (labels != NULL) KDI_TRY(kdi_check_labels(labels, batch, classes));
    return KD_OK;
}

static kd_status mse_forward(kd_loss *l, const float *z, const float *zt, const int32_t *y,
                             int64_t batch, int64_t classes, double *parts, float *grad)
{
    double alpha = l->opt[KD_LOSS_ALPHA];
    int soft = alpha > 0.0, hard = alpha < 1.0;
    float *lp = NULL;
    if (hard) KDI_TRY(kdi_log_probs(&l->ws[0], z, batch, classes, 1.0f, 0, &lp));
    double mse = 0.0, ce = 0.0, gs = 2.0 * alpha / (double)(batch * classes);
    double nh = hard ? kdi_loss_hard_count(l, y, batch) : 1.0, gh = (1.0 - alpha) / nh;
    for (int64_t r = 0; r < batch; r++) {
        int labelled = hard && y[r] >= 0;
        if (labelled) ce -= lp[r * classes + y[r]];
        for (int64_t c = 0; c < classes; c++) {
            int64_t i = r * classes + c;
            double g = 0.0;
            if (soft) {
                double d = (double)z[i] - (double)zt[i];
                mse += d * d;
                g += gs * d;
            }
            if (labelled) g += gh * (exp((double)lp[i]) - (c == y[r] ? 1.0 : 0.0));
            grad[i] = (float)g;
        }
    }
    parts[KD_LOSS_PART_SOFT] = alpha * mse / (double)(batch * classes);
    parts[KD_LOSS_PART_HARD] = (1.0 - alpha) * ce / nh;
    parts[KD_LOSS_PART_TOTAL] = parts[KD_LOSS_PART_SOFT] + parts[KD_LOSS_PART_HARD];
    if (!isfinite(parts[KD_LOSS_PART_TOTAL]))
        return kdi_fail(KD_ERR_NUMERIC, "the loss is not finite (soft %g, hard %g)",
                        parts[KD_LOSS_PART_SOFT], parts[KD_LOSS_PART_HARD]);
    return KD_OK;
}

static int mse_uses_soft(const kd_loss *l) { return l->opt[KD_LOSS_ALPHA] > 0.0f; }

static void mse_defaults(kd_loss *l) { l->opt[KD_LOSS_ALPHA] = 1.0f; }

const kdi_loss_ops kdi_logit_mse_ops = {.name = "logit_mse",
                                        .check = mse_check,
                                        .forward = mse_forward,
                                        .uses_soft = mse_uses_soft,
                                        .soft_is_logits = 1,
                                        .defaults = mse_defaults};
