/* Probabilistic knowledge transfer (Passalis and Tefas 2018, eqs. 8-10 with the cosine kernel, as
 * the authors' code, also RepDistiller's PKT): with u_i = f_i / (||f_i|| + e),
 *   K_ij = (<u_i, u_j> + 1) / 2,  p_ij = K_ij / sum_k K_ik,
 *   L = 1/B^2 sum_ij p^t_ij log((p^t_ij + e) / (p^s_ij + e)),  e = 1e-7,
 * a KL(teacher || student) between the conditional distributions (diagonal included, as there).
 * Backward, through the Gram matrix G = F F^T and m_i = sqrt(G_ii) + e, C_ij = G_ij / (m_i m_j):
 *   dp_ij = -p^t_ij / (B^2 (p^s_ij + e)),  dK_ij = (dp_ij - sum_k dp_ik p_ik) / sum_k K_ik,
 *   dC = dK / 2,  dG_ij = dC_ij / (m_i m_j),  dm_i = -(sum_j dC_ij C_ij + dC_ji C_ji) / m_i,
 *   dG_ii += dm_i / (2 sqrt(G_ii)),  dF = (dG + dG^T) F. */
#include <math.h>

#include "core/error.h"
#include "distill/losses/losses.h"

#define EPS 1e-7

/* g [b, b] (a Gram matrix) becomes the cosine kernel's conditional probabilities; n gets the
 * norms sqrt(G_ii), m the m_i and rows the row sums of K. */
static void conditional(double *g, int64_t b, double *n, double *m, double *rows)
{
    for (int64_t i = 0; i < b; i++) {
        n[i] = sqrt(g[i * b + i]);
        m[i] = n[i] + EPS;
    }
    for (int64_t i = 0; i < b; i++) {
        double *row = g + i * b, sum = 0.0;
        for (int64_t j = 0; j < b; j++) {
            row[j] = (row[j] / (m[i] * m[j]) + 1.0) / 2.0;
            sum += row[j];
        }
        for (int64_t j = 0; j < b; j++) row[j] /= sum;
        rows[i] = sum;
    }
}

static kd_status pkt_forward(kd_feature_loss *l, const float *s, kdi_shape ss, const float *t,
                             kdi_shape ts, int64_t batch, double *loss, float *grad)
{
    int64_t b = batch, bb = batch * batch, ns = kdi_shape_size(ss);
    double *ps, *pt, *n, *m, *rows;
    KDI_TRY(kdi_ws_doubles(&l->ws[0], 2 * bb + 3 * b, &ps));
    KDI_TRY(kdi_buf_reserve(&l->ws[1], bb));
    pt = ps + bb;
    n = pt + bb;
    m = n + b;
    rows = m + b;
    kdi_gram(t, b, kdi_shape_size(ts), pt);
    conditional(pt, b, n, m, rows);
    kdi_gram(s, b, ns, ps);
    conditional(ps, b, n, m, rows);
    double sum = 0.0, scale = 1.0 / (double)bb;
    for (int64_t i = 0; i < bb; i++) {
        sum += pt[i] * log((pt[i] + EPS) / (ps[i] + EPS));
        pt[i] = -scale * pt[i] / (ps[i] + EPS); /* pt now holds dL/dp */
    }
    /* Through the row normalisation into dC (in pt), then C (rebuilt in ps). */
    for (int64_t i = 0; i < b; i++) {
        double *dp = pt + i * b, *p = ps + i * b, proj = 0.0;
        for (int64_t j = 0; j < b; j++) proj += dp[j] * p[j];
        for (int64_t j = 0; j < b; j++) {
            dp[j] = (dp[j] - proj) / rows[i] / 2.0;
            p[j] = 2.0 * p[j] * rows[i] - 1.0;
        }
    }
    double *dm = rows; /* the row sums are no longer needed */
    for (int64_t i = 0; i < b; i++) dm[i] = 0.0;
    for (int64_t i = 0; i < b; i++)
        for (int64_t j = 0; j < b; j++) {
            double dcc = pt[i * b + j] * ps[i * b + j];
            dm[i] -= dcc / m[i];
            dm[j] -= dcc / m[j];
        }
    for (int64_t i = 0; i < b; i++)
        for (int64_t j = 0; j < b; j++) pt[i * b + j] /= m[i] * m[j];
    for (int64_t i = 0; i < b; i++)
        if (n[i] > 0.0) pt[i * b + i] += dm[i] / (2.0 * n[i]);
    kdi_gram_backward(pt, s, b, ns, l->ws[1].data, grad);
    *loss = sum * scale;
    return KD_OK;
}

const kdi_feature_ops kdi_pkt_ops = {
    .name = "pkt", .check = kdi_check_any_size, .forward = pkt_forward};
