/* Cosine embedding loss on features (DistilBERT, Sanh et al. 2019, which aligns the hidden states
 * of student and teacher with PyTorch's CosineEmbeddingLoss, target 1):
 *   L = 1/B sum_b (1 - cos_b),  cos = <s, t> / sqrt((|s|^2 + e)(|t|^2 + e)),  e = 1e-12,
 *   dcos/ds = t / den - cos * s / (|s|^2 + e). */
#include <math.h>

#include "core/error.h"
#include "distill/losses/losses.h"
#include "kernels/kernels.h"

#define EPS 1e-12

static kd_status cosine_check(kdi_shape s, kdi_shape t)
{
    return kdi_check_same_size("the cosine loss", s, t);
}

static kd_status cosine_forward(kd_feature_loss *l, const float *s, kdi_shape ss, const float *t,
                                kdi_shape ts, int64_t batch, double *loss, float *grad)
{
    (void)l;
    (void)ts;
    const kdi_kernels *k = kdi_kernels_get();
    int64_t n = kdi_shape_size(ss);
    double sum = 0.0;
    for (int64_t b = 0; b < batch; b++) {
        const float *sb = s + b * n, *tb = t + b * n;
        double dot = k->dot(sb, tb, n), ms = k->sum_sq(sb, n) + EPS, mt = k->sum_sq(tb, n) + EPS;
        double den = sqrt(ms * mt), cos = dot / den;
        sum += 1.0 - cos;
        for (int64_t i = 0; i < n; i++)
            grad[b * n + i] =
                (float)(-((double)tb[i] / den - cos * (double)sb[i] / ms) / (double)batch);
    }
    *loss = sum / (double)batch;
    return KD_OK;
}

const kdi_feature_ops kdi_cosine_ops = {
    .name = "cosine", .check = cosine_check, .forward = cosine_forward};
