/* The driver of the token-level divergences (reverse KL, JSD, skew KL, TVD): each kind gives one
 * element's term of D(p, q) and dD/dq_j (its ops' term); this file adds the softmax's Jacobian,
 * the temperature and the hard term:
 *   L     = alpha T^2 / N sum_rows D(p, q) + (1 - alpha) / N_y sum_labelled CE(z, y),
 *   dL/dz = alpha T / N  q * (g - <q, g>) + (1 - alpha) / N_y (softmax(z) - onehot(y)),
 * with q = softmax(z / T), p = exp(lp) the teachers' probabilities (the generic layer hands every
 * kind log-probabilities), g_j = dD/dq_j, N the rows and N_y the labelled rows (or N, as
 * KD_LOSS_HARD_MEAN says): d q / d(z / T) is
 * diag(q) - q q^T, and d(z / T) / dz = 1 / T. A constant added to every g_j changes nothing, so
 * the terms may drop one. */
#include <float.h>
#include <math.h>

#include "core/error.h"
#include "distill/losses/losses.h"

double kdi_log_floor(double x) { return log(x > (double)FLT_TRUE_MIN ? x : (double)FLT_TRUE_MIN); }

/* The kind's weight: beta for JSD, lambda for the skew kinds. */
static double weight(const kd_loss *l)
{
    return l->kind == KD_LOSS_JSD ? l->opt[KD_LOSS_JSD_BETA] : l->opt[KD_LOSS_SKEW];
}

/* One row, from the teachers' log-probabilities lp: returns D(p, q) and writes
 * scale * q * (g - <q, g>) into out, g kept there between the two passes. */
static double row(const kd_loss *l, const float *lp, const float *lq, int64_t n, double scale,
                  float *out)
{
    double w = weight(l), d = 0.0, qg = 0.0, g;
    for (int64_t j = 0; j < n; j++) {
        double q = exp((double)lq[j]);
        d += l->ops->term(exp((double)lp[j]), q, lq[j], w, &g);
        qg += q * g;
        out[j] = (float)g;
    }
    for (int64_t j = 0; j < n; j++)
        out[j] = (float)(scale * exp((double)lq[j]) * ((double)out[j] - qg));
    return d;
}

kd_status kdi_divergence_forward(kd_loss *l, const float *z, const float *lp, const int32_t *y,
                                 int64_t batch, int64_t classes, double *parts, float *grad)
{
    float t = l->opt[KD_LOSS_TEMPERATURE];
    double alpha = l->opt[KD_LOSS_ALPHA];
    int soft = alpha > 0.0, hard = alpha < 1.0;
    float *lq = NULL, *lp1 = NULL;
    if (soft) KDI_TRY(kdi_log_probs(&l->ws[0], z, batch, classes, t, 1, &lq));
    if (hard) KDI_TRY(kdi_log_probs(&l->ws[1], z, batch, classes, 1.0f, 0, &lp1));
    double nh = hard ? kdi_loss_hard_count(l, y, batch) : 1.0;
    double d = 0.0, ce = 0.0, gs = alpha * t / (double)batch, gh = (1.0 - alpha) / nh;
    for (int64_t r = 0; r < batch; r++) {
        float *g = grad + r * classes;
        if (soft)
            d += row(l, lp + r * classes, lq + r * classes, classes, gs, g);
        else
            for (int64_t c = 0; c < classes; c++) g[c] = 0.0f;
        if (!hard || y[r] < 0) continue;
        const float *lp = lp1 + r * classes;
        ce -= lp[y[r]];
        for (int64_t c = 0; c < classes; c++)
            g[c] += (float)(gh * (exp((double)lp[c]) - (c == y[r] ? 1.0 : 0.0)));
    }
    parts[KD_LOSS_PART_SOFT] = alpha * (double)t * (double)t * d / (double)batch;
    parts[KD_LOSS_PART_HARD] = (1.0 - alpha) * ce / nh;
    parts[KD_LOSS_PART_TOTAL] = parts[KD_LOSS_PART_SOFT] + parts[KD_LOSS_PART_HARD];
    if (!isfinite(parts[KD_LOSS_PART_TOTAL]) || !kdi_all_finite(grad, batch * classes))
        return kdi_fail(KD_ERR_NUMERIC, "the loss is not finite (soft %g, hard %g)",
                        parts[KD_LOSS_PART_SOFT], parts[KD_LOSS_PART_HARD]);
    return KD_OK;
}

int kdi_divergence_uses_soft(const kd_loss *l) { return l->opt[KD_LOSS_ALPHA] > 0.0f; }

void kdi_divergence_defaults(kd_loss *l)
{
    l->opt[KD_LOSS_ALPHA] = 1.0f;
    l->opt[KD_LOSS_TEMPERATURE] = 1.0f;
    l->opt[KD_LOSS_MASK_UNLABELLED] = 1.0f;
}
