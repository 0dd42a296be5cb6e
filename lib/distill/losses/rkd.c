/* Relational KD (Park et al. 2019, eqs. 3-7, as their code github.com/lenscloth/RKD metric/loss.py
 * RkdDistance and RKdAngle, on flattened features; the teacher side is a constant):
 *   distance: D_ij = ||e_i - e_j|| (squared value clamped at 1e-12, D_ii = 0), mu = mean over
 *     i != j, L_d = 1/B^2 sum_ij huber(D^s_ij / mu_s - D^t_ij / mu_t);
 *   angle: A_abc = <n(e_b - e_a), n(e_c - e_a)>, n(v) = v / ||v|| (0 for v = 0),
 *     L_a = 1/B^3 sum_abc huber(A^s_abc - A^t_abc);
 *   L = DISTANCE_WEIGHT * L_d + ANGLE_WEIGHT * L_a,  huber = smooth-L1 with threshold 1.
 * Everything is computed from the Gram matrix K = E E^T in double -- D_ab^2 = K_aa + K_bb - 2 K_ab,
 * <e_b - e_a, e_c - e_a> = K_bc - K_ab - K_ac + K_aa -- so the B^3 angles cost O(B^3), not
 * O(B^3 dim), and the gradient goes back through K: dE = (dK + dK^T) E. */
#include <math.h>
#include <string.h>

#include "core/error.h"
#include "distill/losses/losses.h"

#define DIST_EPS 1e-12 /* clamp of the squared distance (pdist's eps) */
#define NORM_EPS 1e-12 /* below this length a difference vector counts as 0 (F.normalize) */

/* Raw lengths r_ij = sqrt(max(K_ii + K_jj - 2 K_ij, 0)) into r [b, b]. */
static void lengths(const double *k, int64_t b, double *r)
{
    for (int64_t i = 0; i < b; i++)
        for (int64_t j = 0; j < b; j++)
            r[i * b + j] =
                i == j ? 0.0 : sqrt(fmax(k[i * b + i] + k[j * b + j] - 2.0 * k[i * b + j], 0.0));
}

static double dist(double r) { return fmax(r, sqrt(DIST_EPS)); }

static double mean_dist(const double *r, int64_t b)
{
    double sum = 0.0;
    for (int64_t i = 0; i < b; i++)
        for (int64_t j = 0; j < b; j++)
            if (i != j) sum += dist(r[i * b + j]);
    return sum / (double)(b * (b - 1));
}

/* The distance term; adds w * dL_d/dr into dr. */
static double distance_term(const double *rs, const double *rt, int64_t b, double w, double *dr)
{
    double mus = mean_dist(rs, b), mut = mean_dist(rt, b), n2 = (double)(b * b);
    double loss = 0.0, dmu = 0.0;
    for (int64_t i = 0; i < b * b; i++) {
        if (i / b == i % b) continue;
        double ds = dist(rs[i]), x = ds / mus - dist(rt[i]) / mut;
        double g = w * kdi_smooth_l1_grad(x) / n2;
        loss += kdi_smooth_l1(x);
        dmu -= g * ds / (mus * mus);
        if (rs[i] * rs[i] > DIST_EPS) dr[i] += g / mus;
    }
    double share = dmu / (double)(b * (b - 1));
    for (int64_t i = 0; i < b * b; i++)
        if (i / b != i % b && rs[i] * rs[i] > DIST_EPS) dr[i] += share;
    return loss / n2;
}

/* cos of the angle at a between e_b and e_c, from K and the lengths r; 0 for a zero side. */
static double angle(const double *k, const double *r, int64_t n, int64_t a, int64_t b, int64_t c)
{
    double rab = r[a * n + b], rac = r[a * n + c];
    if (rab <= NORM_EPS || rac <= NORM_EPS) return 0.0;
    return (k[b * n + c] - k[a * n + b] - k[a * n + c] + k[a * n + a]) / (rab * rac);
}

/* The angle term over anchors a and pairs b <= c: A is symmetric in b, c, so a pair b < c counts
 * twice; b == c gives 1 (or 0 for a zero side) on both sides, a constant. Triplets with b or c
 * equal to a are 0 on both sides. Adds w * dL_a/dK into dk and w * dL_a/dr into dr. */
static double angle_term(const double *ks, const double *rs, const double *kt, const double *rt,
                         int64_t n, double w, double *dk, double *dr)
{
    double loss = 0.0, n3 = (double)n * (double)n * (double)n;
    for (int64_t a = 0; a < n; a++)
        for (int64_t b = 0; b < n; b++) {
            if (b == a) continue;
            for (int64_t c = b; c < n; c++) {
                if (c == a) continue;
                double as = angle(ks, rs, n, a, b, c), x = as - angle(kt, rt, n, a, b, c);
                loss += (c == b ? 1.0 : 2.0) * kdi_smooth_l1(x);
                double rab = rs[a * n + b], rac = rs[a * n + c];
                if (c == b || rab <= NORM_EPS || rac <= NORM_EPS) continue;
                double g = 2.0 * w * kdi_smooth_l1_grad(x) / n3, dp = g / (rab * rac);
                dk[b * n + c] += dp;
                dk[a * n + b] -= dp;
                dk[a * n + c] -= dp;
                dk[a * n + a] += dp;
                dr[a * n + b] -= g * as / rab;
                dr[a * n + c] -= g * as / rac;
            }
        }
    return loss / n3;
}

/* dr (d loss / d r_ij) into dk through r_ij = sqrt(K_ii + K_jj - 2 K_ij). */
static void lengths_backward(const double *dr, const double *r, int64_t b, double *dk)
{
    for (int64_t i = 0; i < b; i++)
        for (int64_t j = 0; j < b; j++) {
            double d = dr[i * b + j], len = r[i * b + j];
            if (i == j || d == 0.0 || len <= 0.0) continue;
            dk[i * b + i] += d / (2.0 * len);
            dk[j * b + j] += d / (2.0 * len);
            dk[i * b + j] -= d / len;
        }
}

static kd_status rkd_forward(kd_feature_loss *l, const float *s, kdi_shape ss, const float *t,
                             kdi_shape ts, int64_t batch, double *loss, float *grad)
{
    int64_t b = batch, bb = batch * batch, ns = kdi_shape_size(ss);
    if (b < 2) { /* no pair: no relation to transfer */
        memset(grad, 0, (size_t)(b * ns) * sizeof *grad);
        *loss = 0.0;
        return KD_OK;
    }
    double *ks, *kt, *rs, *rt, *dk, *dr;
    KDI_TRY(kdi_ws_doubles(&l->ws[0], 6 * bb, &ks));
    KDI_TRY(kdi_buf_reserve(&l->ws[1], bb));
    kt = ks + bb;
    rs = kt + bb;
    rt = rs + bb;
    dk = rt + bb;
    dr = dk + bb;
    memset(dk, 0, (size_t)(2 * bb) * sizeof *dk);
    kdi_gram(s, b, ns, ks);
    kdi_gram(t, b, kdi_shape_size(ts), kt);
    lengths(ks, b, rs);
    lengths(kt, b, rt);
    double wd = l->opt[KD_FEATURE_RKD_DISTANCE_WEIGHT], wa = l->opt[KD_FEATURE_RKD_ANGLE_WEIGHT];
    double ld = distance_term(rs, rt, b, wd, dr);
    double la = angle_term(ks, rs, kt, rt, b, wa, dk, dr);
    lengths_backward(dr, rs, b, dk);
    kdi_gram_backward(dk, s, b, ns, l->ws[1].data, grad);
    *loss = wd * ld + wa * la;
    return KD_OK;
}

const kdi_feature_ops kdi_rkd_ops = {
    .name = "rkd", .check = kdi_check_any_size, .forward = rkd_forward};
