/* Attention transfer (Zagoruyko and Komodakis 2017, section 3.1; their code's at and at_loss in
 * github.com/szagoruyko/attention-transfer): per example the spatial map a_j = 1/C sum_c F_cj^2
 * (p = 2), normalised a^ = a / max(||a||_2, 1e-12) as F.normalize, and
 *   L = 1/(B P) sum_b sum_j (a^_s - a^_t)_bj^2      (P = h * w positions; .pow(2).mean()).
 * Backward: dL/da^ = 2 (a^_s - a^_t) / (B P); through the normalisation
 * da = (da^ - <da^, a^> a^) / ||a|| (or da^ / 1e-12 below the clamp); dF_cj = da_j * 2 F_cj / C. */
#include <math.h>

#include "core/error.h"
#include "distill/losses/losses.h"

#define EPS 1e-12

static kd_status attention_check(kdi_shape s, kdi_shape t)
{
    if (s.h != t.h || s.w != t.w)
        return kdi_fail(KD_ERR_SHAPE,
                        "attention transfer compares maps of one size: the student's are "
                        "%lldx%lld, the teacher's %lldx%lld",
                        (long long)s.h, (long long)s.w, (long long)t.h, (long long)t.w);
    if (s.h * s.w < 2)
        return kdi_fail(KD_ERR_SHAPE,
                        "attention transfer needs spatial maps (h x w > 1); the features are "
                        "%lldx%lldx%lld",
                        (long long)s.c, (long long)s.h, (long long)s.w);
    return KD_OK;
}

/* The normalised map of one example into a (P doubles); returns max(||raw map||, EPS). */
static double attention_map(const float *f, int64_t c, int64_t p, double *a)
{
    for (int64_t j = 0; j < p; j++) a[j] = 0.0;
    for (int64_t ch = 0; ch < c; ch++)
        for (int64_t j = 0; j < p; j++) a[j] += (double)f[ch * p + j] * f[ch * p + j];
    double norm = 0.0;
    for (int64_t j = 0; j < p; j++) {
        a[j] /= (double)c;
        norm += a[j] * a[j];
    }
    norm = fmax(sqrt(norm), EPS);
    for (int64_t j = 0; j < p; j++) a[j] /= norm;
    return norm;
}

static kd_status attention_forward(kd_feature_loss *l, const float *s, kdi_shape ss, const float *t,
                                   kdi_shape ts, int64_t batch, double *loss, float *grad)
{
    int64_t p = ss.h * ss.w, ns = kdi_shape_size(ss), nt = kdi_shape_size(ts);
    double *as, *at;
    KDI_TRY(kdi_ws_doubles(&l->ws[0], 2 * p, &as));
    at = as + p;
    double sum = 0.0, scale = 2.0 / ((double)batch * (double)p);
    for (int64_t b = 0; b < batch; b++) {
        double norm = attention_map(s + b * ns, ss.c, p, as);
        (void)attention_map(t + b * nt, ts.c, p, at);
        double proj = 0.0;
        for (int64_t j = 0; j < p; j++) {
            double d = as[j] - at[j];
            sum += d * d;
            at[j] = scale * d; /* at now holds dL/da^ */
            proj += at[j] * as[j];
        }
        /* The clamp: below EPS the map is divided by a constant, so no projection. */
        int clamped = norm <= EPS;
        for (int64_t j = 0; j < p; j++) at[j] = (clamped ? at[j] : at[j] - proj * as[j]) / norm;
        const float *f = s + b * ns;
        float *g = grad + b * ns;
        for (int64_t ch = 0; ch < ss.c; ch++)
            for (int64_t j = 0; j < p; j++)
                g[ch * p + j] = (float)(at[j] * 2.0 * (double)f[ch * p + j] / (double)ss.c);
    }
    *loss = sum / ((double)batch * (double)p);
    return KD_OK;
}

const kdi_feature_ops kdi_attention_ops = {
    .name = "attention", .check = attention_check, .forward = attention_forward};
