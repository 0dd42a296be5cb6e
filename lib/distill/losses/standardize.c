/* Logit standardisation (Sun, Ren, Li, Wang and Cao, "Logit Standardization in Knowledge
 * Distillation", CVPR 2024, eq. 8 and Algorithm 1; their code's normalize()): each row of logits
 * becomes its z-score before the temperature softmax,
 *   s_j = (z_j - mean(z)) / (std(z) + 1e-7),  std unbiased (divides by n - 1, torch.std).
 * The gradient, with sigma = std(z) and g = dL/ds:
 *   dL/dz_j = (g_j - mean(g)) / (sigma + 1e-7) - (sum_i g_i s_i) s_j / ((n - 1) sigma). */
#include <math.h>

#include "core/error.h"
#include "distill/losses/losses.h"

#define LS_EPS 1e-7

void kdi_standardize_rows(const float *z, int64_t batch, int64_t classes, float *s, double *sigma)
{
    for (int64_t r = 0; r < batch; r++) {
        const float *zr = z + r * classes;
        double mean = 0.0, var = 0.0;
        for (int64_t c = 0; c < classes; c++) mean += zr[c];
        mean /= (double)classes;
        for (int64_t c = 0; c < classes; c++)
            var += ((double)zr[c] - mean) * ((double)zr[c] - mean);
        double sd = sqrt(var / (double)(classes - 1));
        for (int64_t c = 0; c < classes; c++)
            s[r * classes + c] = (float)(((double)zr[c] - mean) / (sd + LS_EPS));
        if (sigma != NULL) sigma[r] = sd;
    }
}

void kdi_standardize_backward(double *g, const float *s, const double *sigma, int64_t batch,
                              int64_t classes)
{
    for (int64_t r = 0; r < batch; r++) {
        double *gr = g + r * classes, mean = 0.0, gs = 0.0, sd = sigma[r];
        const float *sr = s + r * classes;
        for (int64_t c = 0; c < classes; c++) {
            mean += gr[c];
            gs += gr[c] * (double)sr[c];
        }
        mean /= (double)classes;
        /* A constant row (sigma 0) has s = 0: the second term vanishes with it. */
        double k = sd > 0.0 ? gs / ((double)(classes - 1) * sd) : 0.0;
        for (int64_t c = 0; c < classes; c++)
            gr[c] = (gr[c] - mean) / (sd + LS_EPS) - k * (double)sr[c];
    }
}

int kdi_loss_standardizes(const kd_loss *l) { return l->opt[KD_LOSS_LOGIT_STANDARDIZE] != 0.0f; }

kd_status kdi_student_soft_log_probs(kd_loss *l, const float *z, int64_t batch, int64_t classes,
                                     float **out)
{
    float t = l->opt[KD_LOSS_TEMPERATURE];
    if (!kdi_loss_standardizes(l)) return kdi_log_probs(&l->ws[0], z, batch, classes, t, 1, out);
    double *sigma;
    KDI_TRY(kdi_buf_reserve(&l->ws[2], batch * classes));
    KDI_TRY(kdi_ws_doubles(&l->ws[3], batch, &sigma));
    kdi_standardize_rows(z, batch, classes, l->ws[2].data, sigma);
    return kdi_log_probs(&l->ws[0], l->ws[2].data, batch, classes, t, 1, out);
}

kd_status kdi_student_soft_grad(kd_loss *l, int64_t batch, int64_t classes, double **gs)
{
    KDI_TRY(kdi_ws_doubles(&l->gs, batch * classes, gs));
    for (int64_t i = 0; i < batch * classes; i++) (*gs)[i] = 0.0;
    return KD_OK;
}

void kdi_student_soft_finish(kd_loss *l, double *gs, int64_t batch, int64_t classes, float *grad)
{
    if (kdi_loss_standardizes(l))
        kdi_standardize_backward(gs, l->ws[2].data, (const double *)(const void *)l->ws[3].data,
                                 batch, classes);
    for (int64_t i = 0; i < batch * classes; i++) grad[i] = (float)gs[i];
}
