/* Decoupled knowledge distillation (Zhao, Cui, Song, Qiu and Liang, CVPR 2022, eqs. 1-7; their
 * reference code mdistiller's dkd_loss). With p the teacher's and q the student's probabilities at
 * temperature T, t the target class, b = [p_t, 1 - p_t] and p^_j = p_j / (1 - p_t) for j != t:
 *   TCKD = KL(b^T || b^S),  NCKD = KL(p^T || p^S),
 *   L = T^2 (alpha TCKD + beta NCKD) + w_ce CE(z, y),  soft term a batch mean.
 * Both sides are split from log-probabilities, log(1 - p_t) = logsumexp_{j != t} log p_j, so
 * p^_j = exp(log p_j - log(1 - p_t)) stays finite for a teacher whose 1 - p_t underflows: from
 * the teacher's logits (kd_loss_forward_logits, the trainer) this is mdistiller's softmax over
 * the non-target logits. Gradients with respect to u = z / T (z standardised under
 * KD_LOSS_LOGIT_STANDARDIZE, as Sun et al. 2024's DKD):
 *   dTCKD/du_t = q_t - b_t,     dTCKD/du_k = q_k - (1 - b_t) r_k,   r_k = q_k / (1 - q_t),
 *   dNCKD/du_t = 0,             dNCKD/du_k = r_k - p^_k                     (k != t),
 * and du/dz = 1/T, so the KD part's gradient is T (alpha dTCKD + beta dNCKD) / B. */
#include <math.h>

#include "core/error.h"
#include "distill/losses/losses.h"

static kd_status dkd_check(const kd_loss *l, const float *p, const int32_t *labels, int64_t batch,
                           int64_t classes)
{
    float alpha = l->opt[KD_LOSS_ALPHA], beta = l->opt[KD_LOSS_BETA];
    float ce = l->opt[KD_LOSS_CE_WEIGHT];
    if (classes < 2)
        return kdi_fail(KD_ERR_ARGUMENT,
                        "DKD splits target and other classes: it needs 2 "
                        "classes or more, not %lld",
                        (long long)classes);
    if ((alpha > 0.0f || beta > 0.0f) && p == NULL)
        return kdi_fail(KD_ERR_ARGUMENT,
                        "soft_targets is NULL but alpha is %g and beta %g; NULL is allowed only "
                        "when both are 0",
                        (double)alpha, (double)beta);
    if (ce > 0.0f && labels == NULL)
        return kdi_fail(KD_ERR_ARGUMENT,
                        "labels is NULL but KD_LOSS_CE_WEIGHT is %g; NULL is allowed only when "
                        "it is 0",
                        (double)ce);
    if (labels != NULL) KDI_TRY(kdi_check_labels(labels, batch, classes));
    return KD_OK;
}

static int64_t argmax(const float *p, int64_t n)
{
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (p[i] > p[best]) best = i;
    return best;
}

/* log(1 - q_t) from the log-probabilities lq of a row: logsumexp over j != t. */
static double log_others(const float *lq, int64_t classes, int64_t t)
{
    double m = -INFINITY, sum = 0.0;
    for (int64_t j = 0; j < classes; j++)
        if (j != t && lq[j] > m) m = lq[j];
    if (m == -INFINITY) return -INFINITY; /* no mass off the target */
    for (int64_t j = 0; j < classes; j++)
        if (j != t) sum += exp((double)lq[j] - m);
    return m + log(sum);
}

/* x log(x) for x = exp(lx), 0 when x is 0. */
static double xlogx(double lx) { return lx > -INFINITY ? exp(lx) * lx : 0.0; }

/* One row's TCKD and NCKD into tc, nc, from the teacher's (lp) and student's (lq)
 * log-probabilities; writes the KD gradient (scale times d/du) into g. */
static void dkd_row(const float *lp, const float *lq, int64_t classes, int64_t t, double alpha,
                    double beta, double scale, double *tc, double *nc, double *g)
{
    double lbt = lp[t], lbn = log_others(lp, classes, t), bt = exp(lbt), bn = exp(lbn);
    double lqt = lq[t], l1qt = log_others(lq, classes, t);
    *tc = xlogx(lbt) - bt * lqt + xlogx(lbn) - bn * l1qt;
    *nc = 0.0;
    g[t] = scale * alpha * (exp(lqt) - bt);
    for (int64_t k = 0; k < classes; k++) {
        if (k == t) continue;
        double lr = (double)lq[k] - l1qt, r = exp(lr);
        /* With no teacher mass off the target p^ is undefined: no NCKD for the row. */
        int some = lbn > -INFINITY;
        double lph = some ? (double)lp[k] - lbn : -INFINITY, ph = exp(lph);
        if (ph > 0.0) *nc += ph * (lph - lr);
        double dn = some ? r - ph : 0.0;
        g[k] = scale * (alpha * (exp((double)lq[k]) - bn * r) + beta * dn);
    }
}

static kd_status dkd_forward(kd_loss *l, const float *z, const float *lp, const int32_t *y,
                             int64_t batch, int64_t classes, double *parts, float *grad)
{
    float t = l->opt[KD_LOSS_TEMPERATURE];
    double alpha = l->opt[KD_LOSS_ALPHA], beta = l->opt[KD_LOSS_BETA];
    double wce = l->opt[KD_LOSS_CE_WEIGHT];
    int kd = alpha > 0.0 || beta > 0.0, hard = wce > 0.0;
    float *lq = NULL, *lp1 = NULL;
    double *gs = NULL;
    if (kd) KDI_TRY(kdi_student_soft_log_probs(l, z, batch, classes, &lq));
    if (kd) KDI_TRY(kdi_student_soft_grad(l, batch, classes, &gs));
    if (hard) KDI_TRY(kdi_log_probs(&l->ws[1], z, batch, classes, 1.0f, 0, &lp1));
    double tc = 0.0, nc = 0.0, ce = 0.0, scale = (double)t / (double)batch;
    for (int64_t r = 0; kd && r < batch; r++) {
        int32_t label = y != NULL ? y[r] : -1;
        const float *pr = lp + r * classes;
        int64_t target = label >= 0 ? label : argmax(pr, classes);
        double a, b;
        dkd_row(pr, lq + r * classes, classes, target, alpha, beta, scale, &a, &b,
                gs + r * classes);
        tc += a;
        nc += b;
    }
    if (kd)
        kdi_student_soft_finish(l, gs, batch, classes, grad);
    else
        for (int64_t i = 0; i < batch * classes; i++) grad[i] = 0.0f;
    double gh = hard ? wce / kdi_loss_hard_count(l, y, batch) : 0.0;
    for (int64_t r = 0; hard && r < batch; r++) {
        int32_t label = y[r];
        if (label < 0) continue;
        float *g = grad + r * classes;
        const float *lpr = lp1 + r * classes;
        ce -= lpr[label];
        for (int64_t c = 0; c < classes; c++)
            g[c] += (float)(gh * (exp((double)lpr[c]) - (c == label ? 1.0 : 0.0)));
    }
    double t2 = (double)t * (double)t;
    parts[KD_LOSS_PART_SOFT] = t2 * (alpha * tc + beta * nc) / (double)batch;
    parts[KD_LOSS_PART_HARD] = ce * gh;
    parts[KD_LOSS_PART_TOTAL] = parts[KD_LOSS_PART_SOFT] + parts[KD_LOSS_PART_HARD];
    if (!isfinite(parts[KD_LOSS_PART_TOTAL]) || !kdi_all_finite(grad, batch * classes))
        return kdi_fail(KD_ERR_NUMERIC, "the loss is not finite (soft %g, hard %g)",
                        parts[KD_LOSS_PART_SOFT], parts[KD_LOSS_PART_HARD]);
    return KD_OK;
}

static int dkd_uses_soft(const kd_loss *l)
{
    return l->opt[KD_LOSS_ALPHA] > 0.0f || l->opt[KD_LOSS_BETA] > 0.0f;
}

static void dkd_defaults(kd_loss *l) { l->opt[KD_LOSS_ALPHA] = 1.0f; }

const kdi_loss_ops kdi_dkd_ops = {.name = "dkd",
                                  .check = dkd_check,
                                  .forward = dkd_forward,
                                  .uses_soft = dkd_uses_soft,
                                  .defaults = dkd_defaults};
