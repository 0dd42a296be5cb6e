/* Similarity-preserving KD (Tung and Mori 2019, eqs. 2-4): the batch's Gram matrix G = F F^T of
 * flattened features, each row L2-normalised (F.normalize, clamp 1e-12), and
 *   L = ||G^_s - G^_t||_F^2 / B^2.
 * Backward: dG^ = 2 (G^_s - G^_t) / B^2; per row dG_i = (dG^_i - <dG^_i, G^_i> G^_i) / ||G_i||;
 * dF = (dG + dG^T) F. */
#include <math.h>

#include "core/error.h"
#include "distill/losses/losses.h"

#define EPS 1e-12

/* Normalises each row of g [b, b] in place; norms[i] gets max(||row||, EPS). */
static void normalise_rows(double *g, int64_t b, double *norms)
{
    for (int64_t i = 0; i < b; i++) {
        double *row = g + i * b, n = 0.0;
        for (int64_t j = 0; j < b; j++) n += row[j] * row[j];
        n = fmax(sqrt(n), EPS);
        for (int64_t j = 0; j < b; j++) row[j] /= n;
        norms[i] = n;
    }
}

static kd_status similarity_forward(kd_feature_loss *l, const float *s, kdi_shape ss,
                                    const float *t, kdi_shape ts, int64_t batch, double *loss,
                                    float *grad)
{
    int64_t b = batch, bb = batch * batch, ns = kdi_shape_size(ss);
    double *gs, *gt, *norms;
    KDI_TRY(kdi_ws_doubles(&l->ws[0], 2 * bb + b, &gs));
    KDI_TRY(kdi_buf_reserve(&l->ws[1], bb));
    gt = gs + bb;
    norms = gt + bb;
    kdi_gram(t, b, kdi_shape_size(ts), gt);
    normalise_rows(gt, b, norms);
    kdi_gram(s, b, ns, gs);
    normalise_rows(gs, b, norms);
    double sum = 0.0, scale = 2.0 / (double)bb;
    for (int64_t i = 0; i < bb; i++) {
        double d = gs[i] - gt[i];
        sum += d * d;
        gt[i] = scale * d; /* gt now holds dL/dG^ */
    }
    for (int64_t i = 0; i < b; i++) {
        double *dg = gt + i * b, *g = gs + i * b, proj = 0.0;
        int clamped = norms[i] <= EPS;
        for (int64_t j = 0; j < b; j++) proj += dg[j] * g[j];
        for (int64_t j = 0; j < b; j++) dg[j] = (clamped ? dg[j] : dg[j] - proj * g[j]) / norms[i];
    }
    kdi_gram_backward(gt, s, b, ns, l->ws[1].data, grad);
    *loss = sum / (double)bb;
    return KD_OK;
}

const kdi_feature_ops kdi_similarity_ops = {
    .name = "similarity", .check = kdi_check_any_size, .forward = similarity_forward};
