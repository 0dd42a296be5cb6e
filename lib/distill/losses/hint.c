/* FitNets hint loss (Romero et al. 2015, eq. 3): the student's guided layer, through the
 * regressor, regresses the teacher's hint layer. As PyTorch's mse_loss (RepDistiller's HintLoss),
 * the squared error is averaged over batch and values rather than halved and summed:
 *   L = 1/(B n) sum (s - t)^2,  dL/ds = 2 (s - t) / (B n). */
#include "core/error.h"
#include "distill/losses/losses.h"

static kd_status hint_check(kdi_shape s, kdi_shape t)
{
    if (s.c != t.c || s.h != t.h || s.w != t.w)
        return kdi_fail(KD_ERR_SHAPE,
                        "the hint loss compares equal shapes: the student's feature is "
                        "%lldx%lldx%lld, the teacher's %lldx%lldx%lld; add a regressor",
                        (long long)s.c, (long long)s.h, (long long)s.w, (long long)t.c,
                        (long long)t.h, (long long)t.w);
    return KD_OK;
}

static kd_status hint_forward(kd_feature_loss *l, const float *s, kdi_shape ss, const float *t,
                              kdi_shape ts, int64_t batch, double *loss, float *grad)
{
    (void)l;
    (void)ts;
    int64_t n = batch * kdi_shape_size(ss);
    double sum = 0.0, scale = 2.0 / (double)n;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)s[i] - (double)t[i];
        sum += d * d;
        grad[i] = (float)(scale * d);
    }
    *loss = sum / (double)n;
    return KD_OK;
}

const kdi_feature_ops kdi_hint_ops = {.name = "hint", .check = hint_check, .forward = hint_forward};
