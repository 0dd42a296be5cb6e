/* DIST, "Knowledge Distillation from A Stronger Teacher" (Huang, You, Wang, Qian and Xu,
 * NeurIPS 2022, eqs. 6-10; the authors' code dist_kd.py). With Y_s, Y_t [B, C] the student's and
 * teacher's probabilities at temperature tau and rho the Pearson correlation
 *   rho(a, b) = <a - mean a, b - mean b> / (|a - mean a| |b - mean b| + 1e-8),
 *   inter = 1 - (1/B) sum_i rho(Y_s[i, :], Y_t[i, :])   (each example's class scores),
 *   intra = 1 - (1/C) sum_j rho(Y_s[:, j], Y_t[:, j])   (each class's scores over the batch),
 *   L = tau^2 (beta inter + gamma intra) + w_ce CE(z, y).
 * d rho / d a for a' = a - mean a, b' = b - mean b, d = |a'| |b'| + eps:
 *   g = b' / d - <a', b'> |b'| a' / (|a'| d^2),  then centred: g - mean g (the mean's derivative);
 * then through the softmax: dL/du = Y_s * (g - <g, Y_s>), du/dz = 1 / tau. */
#include <math.h>

#include "core/error.h"
#include "distill/losses/losses.h"

#define DIST_EPS 1e-8

static kd_status dist_check(const kd_loss *l, const float *p, const int32_t *labels, int64_t batch,
                            int64_t classes)
{
    float beta = l->opt[KD_LOSS_BETA], gamma = l->opt[KD_LOSS_GAMMA];
    float ce = l->opt[KD_LOSS_CE_WEIGHT];
    (void)classes;
    (void)batch;
    if ((beta > 0.0f || gamma > 0.0f) && p == NULL)
        return kdi_fail(KD_ERR_ARGUMENT,
                        "soft_targets is NULL but beta is %g and gamma %g; NULL is allowed only "
                        "when both are 0",
                        (double)beta, (double)gamma);
    if (ce > 0.0f && labels == NULL)
        return kdi_fail(KD_ERR_ARGUMENT,
                        "labels is NULL but KD_LOSS_CE_WEIGHT is %g; NULL is allowed only when "
                        "it is 0",
                        (double)ce);
    if (labels != NULL) KDI_TRY(kdi_check_labels(labels, batch, classes));
    return KD_OK;
}

/* 1 - rho of n pairs (a[k * stride], b[k * stride]); adds -w d rho / d a to g (same stride). */
static double one_minus_rho(const double *a, const double *b, int64_t n, int64_t stride, double w,
                            double *g)
{
    double ma = 0.0, mb = 0.0, ab = 0.0, aa = 0.0, bb = 0.0;
    for (int64_t k = 0; k < n; k++) {
        ma += a[k * stride];
        mb += b[k * stride];
    }
    ma /= (double)n;
    mb /= (double)n;
    for (int64_t k = 0; k < n; k++) {
        double x = a[k * stride] - ma, y = b[k * stride] - mb;
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    double na = sqrt(aa), nb = sqrt(bb), d = na * nb + DIST_EPS;
    double ka = na > 0.0 ? ab * nb / (na * d * d) : 0.0, mg = 0.0;
    for (int64_t k = 0; k < n; k++) mg += (b[k * stride] - mb) / d - ka * (a[k * stride] - ma);
    mg /= (double)n;
    for (int64_t k = 0; k < n; k++)
        g[k * stride] -= w * ((b[k * stride] - mb) / d - ka * (a[k * stride] - ma) - mg);
    return 1.0 - ab / d;
}

static kd_status dist_forward(kd_loss *l, const float *z, const float *lp, const int32_t *y,
                              int64_t batch, int64_t classes, double *parts, float *grad)
{
    double t = l->opt[KD_LOSS_TEMPERATURE], beta = l->opt[KD_LOSS_BETA];
    double gamma = l->opt[KD_LOSS_GAMMA], wce = l->opt[KD_LOSS_CE_WEIGHT];
    int kd = beta > 0.0 || gamma > 0.0, hard = wce > 0.0;
    int64_t count = batch * classes;
    float *lq = NULL, *lp1 = NULL;
    double *gs = NULL, *ys = NULL, *yt = NULL, inter = 0.0, intra = 0.0, ce = 0.0;
    if (kd) {
        KDI_TRY(kdi_student_soft_log_probs(l, z, batch, classes, &lq));
        KDI_TRY(kdi_student_soft_grad(l, batch, classes, &gs));
        /* ws[2] holds standardised logits only under KD_LOSS_LOGIT_STANDARDIZE, which DIST
         * refuses (kd_loss_set_float), so it is free here. */
        KDI_TRY(kdi_ws_doubles(&l->ws[2], 2 * count, &ys));
        yt = ys + count;
        for (int64_t i = 0; i < count; i++) {
            ys[i] = exp((double)lq[i]);
            yt[i] = exp((double)lp[i]);
        }
        /* gs first holds d soft / d Y_s, scaled by tau^2. */
        double t2 = t * t;
        for (int64_t r = 0; r < batch; r++)
            inter += one_minus_rho(ys + r * classes, yt + r * classes, classes, 1,
                                   t2 * beta / (double)batch, gs + r * classes);
        for (int64_t c = 0; c < classes; c++)
            intra +=
                one_minus_rho(ys + c, yt + c, batch, classes, t2 * gamma / (double)classes, gs + c);
        inter /= (double)batch;
        intra /= (double)classes;
        parts[KD_LOSS_PART_SOFT] = t2 * (beta * inter + gamma * intra);
        for (int64_t r = 0; r < batch; r++) { /* through the softmax at tau */
            double *g = gs + r * classes, *q = ys + r * classes, dot = 0.0;
            for (int64_t c = 0; c < classes; c++) dot += g[c] * q[c];
            for (int64_t c = 0; c < classes; c++) g[c] = q[c] * (g[c] - dot) / t;
        }
        kdi_student_soft_finish(l, gs, batch, classes, grad);
    } else {
        for (int64_t i = 0; i < count; i++) grad[i] = 0.0f;
    }
    if (hard) KDI_TRY(kdi_log_probs(&l->ws[1], z, batch, classes, 1.0f, 0, &lp1));
    double gh = hard ? wce / kdi_loss_hard_count(l, y, batch) : 0.0;
    for (int64_t r = 0; hard && r < batch; r++) {
        if (y[r] < 0) continue;
        const float *lpr = lp1 + r * classes;
        ce -= lpr[y[r]];
        for (int64_t c = 0; c < classes; c++)
            grad[r * classes + c] += (float)(gh * (exp((double)lpr[c]) - (c == y[r] ? 1.0 : 0.0)));
    }
    parts[KD_LOSS_PART_HARD] = ce * gh;
    parts[KD_LOSS_PART_TOTAL] = parts[KD_LOSS_PART_SOFT] + parts[KD_LOSS_PART_HARD];
    if (!isfinite(parts[KD_LOSS_PART_TOTAL]) || !kdi_all_finite(grad, count))
        return kdi_fail(KD_ERR_NUMERIC, "the loss is not finite (soft %g, hard %g)",
                        parts[KD_LOSS_PART_SOFT], parts[KD_LOSS_PART_HARD]);
    return KD_OK;
}

static int dist_uses_soft(const kd_loss *l)
{
    return l->opt[KD_LOSS_BETA] > 0.0f || l->opt[KD_LOSS_GAMMA] > 0.0f;
}

/* The authors' code's defaults (beta = gamma = tau = 1, their ImageNet setting); for CIFAR they
 * use beta = gamma = 2, tau = 4. */
static void dist_defaults(kd_loss *l)
{
    l->opt[KD_LOSS_BETA] = 1.0f;
    l->opt[KD_LOSS_GAMMA] = 1.0f;
    l->opt[KD_LOSS_TEMPERATURE] = 1.0f;
}

const kdi_loss_ops kdi_dist_ops = {.name = "dist",
                                   .check = dist_check,
                                   .forward = dist_forward,
                                   .uses_soft = dist_uses_soft,
                                   .defaults = dist_defaults};
