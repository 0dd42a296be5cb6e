/* Self-attention distribution transfer (MiniLM, Wang et al. 2020, their L_AT): the KL divergence
 * from the teacher's attention probabilities to the student's, per head and query position,
 *   L = 1/(B H T) sum_{b,h,i} sum_j a_t[j] log(a_t[j] / a_s[j]),
 *   dL/da_s[j] = -a_t[j] / a_s[j] / (B H T),
 * on [batch, H, T, T] probabilities (kd_model_attention: c = H, h = w = T). Entries the teacher
 * gives 0 (masked positions) add nothing; a_s is floored at 1e-12 so a softmax that underflowed
 * gives a large, finite term. */
#include <math.h>

#include "core/error.h"
#include "distill/losses/losses.h"

#define FLOOR 1e-12

static kd_status akl_check(kdi_shape s, kdi_shape t)
{
    KDI_TRY(kdi_check_same_size("attention KL", s, t));
    if (s.c != t.c || s.h != t.h || s.w != t.w || s.h != s.w)
        return kdi_fail(KD_ERR_SHAPE,
                        "attention KL compares probabilities [H, T, T] of equal shapes; got "
                        "%lldx%lldx%lld and %lldx%lldx%lld",
                        (long long)s.c, (long long)s.h, (long long)s.w, (long long)t.c,
                        (long long)t.h, (long long)t.w);
    return KD_OK;
}

static kd_status akl_forward(kd_feature_loss *l, const float *s, kdi_shape ss, const float *t,
                             kdi_shape ts, int64_t batch, double *loss, float *grad)
{
    (void)l;
    (void)ts;
    int64_t n = batch * kdi_shape_size(ss), rows = batch * ss.c * ss.h;
    for (int64_t i = 0; i < n; i++)
        if (!(s[i] >= 0.0f && s[i] <= 1.0f + 1e-5f && t[i] >= 0.0f && t[i] <= 1.0f + 1e-5f))
            return kdi_fail(KD_ERR_ARGUMENT,
                            "attention KL: value %lld (%g, %g) is not a "
                            "probability",
                            (long long)i, (double)s[i], (double)t[i]);
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double p = t[i], q = fmax((double)s[i], FLOOR);
        grad[i] = p > 0.0 ? (float)(-p / q / (double)rows) : 0.0f;
        if (p > 0.0) sum += p * (log(p) - log(q));
    }
    *loss = sum / (double)rows;
    return KD_OK;
}

const kdi_feature_ops kdi_attention_kl_ops = {
    .name = "attention KL", .check = akl_check, .forward = akl_forward};
