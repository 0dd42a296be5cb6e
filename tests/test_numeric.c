/* Numeric robustness over the whole float range the preconditions accept (finite logits, finite
 * temperature > 0; issue 16): every kernel variant's softmax and log-softmax, and the losses'
 * values and gradients, against a double-precision reference computed here, on logits of extreme
 * magnitudes (+-FLT_MAX, +-3e38, +-1e38, +-1e30, denormals), mixed signs, rows of equal values
 * and long rows, at temperatures 1e-3 .. 1e3. The kind of bug: a float intermediate that
 * overflows where the result does not (z - max = -inf for z = -3e38, max = 3e38).
 *
 * Tolerances, |got - ref| <= atol + rtol |ref|:
 *   softmax       atol 1e-6, rtol 1e-4 (exp of an argument rounded twice in float)
 *   log-softmax   atol 1e-5, rtol 1e-6, the reference clamped to -FLT_MAX (kernels.h)
 *   losses        atol 1e-5 (T^2 scaled), rtol 1e-4; gradients atol 1e-6 (T scaled), rtol 1e-4,
 *                 against references built on the clamped log-probabilities (see below). */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "distill/loss.h"
#include "kernels/kernels.h"
#include "testutil.h"

#define MAXC 1000

static const char *const variants[] = {"ref", "avx2", "avx512"};
static const float temps[] = {1e-3f, 0.1f, 1.0f, 4.0f, 1e3f};
#define NTEMPS (sizeof temps / sizeof temps[0])

typedef struct row {
    int64_t n;
    float z[MAXC];
} row;

/* The rows of the sweep, built from a few magnitudes and patterns; returns how many. */
static int make_rows(row *rows)
{
    static const float mags[] = {FLT_MAX, 3e38f, 1e38f, 1e30f, 1.0f, 1e-30f, 1e-40f};
    int k = 0;
    for (size_t m = 0; m < sizeof mags / sizeof mags[0]; m++) {
        float a = mags[m];
        rows[k].n = 2, rows[k].z[0] = a, rows[k].z[1] = -a, k++;
        rows[k].n = 2, rows[k].z[0] = -a, rows[k].z[1] = a, k++;
        rows[k].n = 3;
        for (int j = 0; j < 3; j++) rows[k].z[j] = a;
        k++;
        rows[k].n = 3;
        for (int j = 0; j < 3; j++) rows[k].z[j] = -a;
        k++;
        rows[k].n = 5;
        float v5[5] = {a, 0.0f, -a, a / 2, -a / 3};
        memcpy(rows[k].z, v5, sizeof v5);
        k++;
        rows[k].n = 17; /* past one AVX-512 vector: a tail */
        for (int j = 0; j < 17; j++) rows[k].z[j] = (j % 3 == 0 ? -a : a) * ((float)(j + 1) / 17);
        k++;
        rows[k].n = MAXC; /* long, random signs and sizes up to a */
        kdt_fill(rows[k].z, MAXC, 7 + m, -1.0f, 1.0f);
        for (int j = 0; j < MAXC; j++) rows[k].z[j] *= a;
        k++;
    }
    return k;
}

/* log_softmax(z inv_t) in double, inv_t the float the library uses. */
static void ref_log_softmax(const float *z, int64_t n, float inv_t, double *lp);

/* The same clamped at -FLT_MAX, as the kernels document: the losses' references use it, so where
 * a weighted log-probability is below -FLT_MAX they check the documented value (a finite
 * understatement of the exact loss, which the gradient does not depend on), not the exact one. */
static void ref_log_softmax_clamped(const float *z, int64_t n, float inv_t, double *lp)
{
    ref_log_softmax(z, n, inv_t, lp);
    for (int64_t j = 0; j < n; j++) lp[j] = fmax(lp[j], -(double)FLT_MAX);
}

static void ref_log_softmax(const float *z, int64_t n, float inv_t, double *lp)
{
    double m = -INFINITY, s = 0.0;
    for (int64_t j = 0; j < n; j++) m = fmax(m, (double)z[j] * inv_t);
    for (int64_t j = 0; j < n; j++) s += exp((double)z[j] * inv_t - m);
    for (int64_t j = 0; j < n; j++) lp[j] = (double)z[j] * inv_t - m - log(s);
}

static int near(double got, double ref, double atol, double rtol)
{
    return fabs(got - ref) <= atol + rtol * fabs(ref);
}

START_TEST(kernels_against_double)
{
    static row rows[64];
    static float out[MAXC];
    static double lp[MAXC];
    int nrows = make_rows(rows);
    for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
        const kdi_kernels *k = kdi_kernels_variant(variants[v]);
        if (k == NULL) continue;
        for (int r = 0; r < nrows; r++)
            for (size_t t = 0; t < NTEMPS; t++) {
                const row *w = &rows[r];
                float inv_t = 1.0f / temps[t];
                ref_log_softmax(w->z, w->n, inv_t, lp);
                k->log_softmax_rows(out, w->z, 1, w->n, inv_t);
                for (int64_t j = 0; j < w->n; j++) {
                    double want = fmax(lp[j], -(double)FLT_MAX);
                    ck_assert_msg(near(out[j], want, 1e-5, 1e-6),
                                  "%s log_softmax row %d (n %lld, z0 %g) T %g [%lld]: %.9g, "
                                  "double %.9g",
                                  variants[v], r, (long long)w->n, (double)w->z[0],
                                  (double)temps[t], (long long)j, (double)out[j], lp[j]);
                }
                k->softmax_rows(out, w->z, 1, w->n, inv_t);
                for (int64_t j = 0; j < w->n; j++)
                    ck_assert_msg(near(out[j], exp(lp[j]), 1e-6, 1e-4),
                                  "%s softmax row %d (n %lld, z0 %g) T %g [%lld]: %.9g, double "
                                  "%.9g",
                                  variants[v], r, (long long)w->n, (double)w->z[0],
                                  (double)temps[t], (long long)j, (double)out[j], exp(lp[j]));
            }
    }
}
END_TEST

/* A masked logit (-inf) in a wide row: -inf stays -inf (probability 0), the others as in double. */
START_TEST(masked_wide_row)
{
    float z[5] = {3e38f, -INFINITY, -3e38f, 1.0f, -INFINITY}, out[5];
    double lp[5];
    for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
        const kdi_kernels *k = kdi_kernels_variant(variants[v]);
        if (k == NULL) continue;
        for (size_t t = 0; t < NTEMPS; t++) {
            float inv_t = 1.0f / temps[t];
            ref_log_softmax(z, 5, inv_t, lp);
            k->log_softmax_rows(out, z, 1, 5, inv_t);
            for (int j = 0; j < 5; j++)
                ck_assert_msg(isinf(z[j]) ? out[j] == -INFINITY
                                          : near(out[j], fmax(lp[j], -(double)FLT_MAX), 1e-5, 1e-6),
                              "%s T %g [%d]: %.9g, double %.9g", variants[v], (double)temps[t], j,
                              (double)out[j], lp[j]);
            k->softmax_rows(out, z, 1, 5, inv_t);
            for (int j = 0; j < 5; j++)
                ck_assert_msg(near(out[j], exp(lp[j]), 1e-6, 1e-4), "%s T %g softmax [%d]: %.9g",
                              variants[v], (double)temps[t], j, (double)out[j]);
        }
    }
}
END_TEST

/* Hinton's soft term in double, alpha 1: T^2 KL(p || q) and its gradient T (q - p), one row. */
static double ref_hinton(const float *zs, const float *zt, int64_t n, float t, double *grad)
{
    static double lq[MAXC], lp[MAXC];
    ref_log_softmax_clamped(zs, n, 1.0f / t, lq);
    ref_log_softmax_clamped(zt, n, 1.0f / t, lp);
    double kl = 0.0;
    for (int64_t j = 0; j < n; j++) {
        double p = exp(lp[j]);
        if (p > 0.0) kl += p * (lp[j] - lq[j]);
        grad[j] = (double)t * (exp(lq[j]) - p);
    }
    return (double)t * t * kl;
}

/* Reverse KL in double: T^2 KL(q || p), gradient T q (g - <q, g>) with g = log q - log p. */
static double ref_reverse_kl(const float *zs, const float *zt, int64_t n, float t, double *grad)
{
    static double lq[MAXC], lp[MAXC];
    ref_log_softmax_clamped(zs, n, 1.0f / t, lq);
    ref_log_softmax_clamped(zt, n, 1.0f / t, lp);
    /* the token-level kinds take log p as log max(p, FLT_TRUE_MIN) (kd.h) */
    for (int64_t j = 0; j < n; j++) lp[j] = fmax(lp[j], log((double)FLT_TRUE_MIN));
    double d = 0.0;
    for (int64_t j = 0; j < n; j++) {
        double q = exp(lq[j]);
        if (q > 0.0) d += q * (lq[j] - lp[j]);
    }
    for (int64_t j = 0; j < n; j++) {
        double q = exp(lq[j]);
        grad[j] = q > 0.0 ? (double)t * q * (lq[j] - lp[j] - d) : 0.0;
    }
    return (double)t * t * d;
}

typedef double (*ref_loss)(const float *, const float *, int64_t, float, double *);

/* One kind on one (student, teacher) row pair from logits at T: KD_OK and the double reference,
 * when that is finite in float. */
static void check_kind(kd_loss_kind kind, ref_loss ref, const row *s, const row *te, float t)
{
    static float grad[MAXC];
    static double want_g[MAXC];
    double want = ref(s->z, te->z, s->n, t, want_g);
    if (!(fabs(want) < 0.5 * FLT_MAX)) return; /* not a float: KD_ERR_NUMERIC is right */
    for (int64_t j = 0; j < s->n; j++)
        if (!(fabs(want_g[j]) < FLT_MAX)) return;
    kd_loss *l;
    ck_assert_int_eq(kd_loss_create(kind, &l), KD_OK);
    ck_assert_int_eq(kd_loss_set_float(l, KD_LOSS_TEMPERATURE, t), KD_OK);
    ck_assert_int_eq(kd_loss_set_float(l, KD_LOSS_ALPHA, 1.0f), KD_OK);
    float v = NAN;
    kd_status st = kd_loss_forward_logits(l, s->z, te->z, NULL, 1, s->n, &v);
    ck_assert_msg(st == KD_OK, "kind %d n %lld (z0 %g, teacher z0 %g) T %g: %s (exact %g)", kind,
                  (long long)s->n, (double)s->z[0], (double)te->z[0], (double)t, kd_last_error(),
                  want);
    ck_assert_msg(near(v, want, 1e-5 * t * t, 1e-4), "kind %d n %lld z0 %g T %g: %.9g, double %.9g",
                  kind, (long long)s->n, (double)s->z[0], (double)t, (double)v, want);
    ck_assert_int_eq(kd_loss_backward(l, grad), KD_OK);
    for (int64_t j = 0; j < s->n; j++)
        ck_assert_msg(near(grad[j], want_g[j], 1e-6 * t, 1e-4),
                      "kind %d n %lld z0 %g T %g grad[%lld]: %.9g, double %.9g", kind,
                      (long long)s->n, (double)s->z[0], (double)t, (long long)j, (double)grad[j],
                      want_g[j]);
    kd_loss_destroy(l);
}

START_TEST(hinton_regression)
{
    /* Failed before the fix: z - max = -inf in float, the log-probability -inf, KD_ERR_NUMERIC,
     * although the exact loss is 0. */
    float z[2] = {3e38f, -3e38f}, v = NAN, g[2];
    kd_loss *l;
    ck_assert_int_eq(kd_loss_create(KD_LOSS_HINTON, &l), KD_OK);
    ck_assert_int_eq(kd_loss_set_float(l, KD_LOSS_TEMPERATURE, 4.0f), KD_OK);
    ck_assert_int_eq(kd_loss_set_float(l, KD_LOSS_ALPHA, 1.0f), KD_OK);
    ck_assert_msg(kd_loss_forward_logits(l, z, z, NULL, 1, 2, &v) == KD_OK, "%s", kd_last_error());
    ck_assert_msg(fabsf(v) < 1e-6f, "loss %g", (double)v);
    ck_assert_int_eq(kd_loss_backward(l, g), KD_OK);
    ck_assert(fabsf(g[0]) < 1e-6f && fabsf(g[1]) < 1e-6f);
    kd_loss_destroy(l);
}
END_TEST

START_TEST(losses_against_double)
{
    static row rows[64];
    int nrows = make_rows(rows);
    for (int r = 0; r < nrows; r++)
        for (int u = 0; u < nrows; u++) {
            if (rows[u].n != rows[r].n) continue;
            for (size_t t = 0; t < NTEMPS; t++) {
                check_kind(KD_LOSS_HINTON, ref_hinton, &rows[r], &rows[u], temps[t]);
                check_kind(KD_LOSS_REVERSE_KL, ref_reverse_kl, &rows[r], &rows[u], temps[t]);
            }
        }
}
END_TEST

/* DIST's inter-class term for one example (BETA 1, GAMMA 0) in double: T^2 (1 - rho(q, p)). */
static double ref_dist(const float *zs, const float *zt, int64_t n, float t)
{
    static double lq[MAXC], lp[MAXC];
    ref_log_softmax(zs, n, 1.0f / t, lq);
    ref_log_softmax(zt, n, 1.0f / t, lp);
    double ma = 0.0, mb = 0.0, ab = 0.0, aa = 0.0, bb = 0.0;
    for (int64_t j = 0; j < n; j++) ma += exp(lq[j]) / (double)n, mb += exp(lp[j]) / (double)n;
    for (int64_t j = 0; j < n; j++) {
        double x = exp(lq[j]) - ma, y = exp(lp[j]) - mb;
        ab += x * y, aa += x * x, bb += y * y;
    }
    return (double)t * t * (1.0 - ab / (sqrt(aa) * sqrt(bb) + 1e-8));
}

/* Every divergence is 0 with gradient 0 when the teacher's logits are the student's (DIST: its
 * double reference, not 0 on near-constant rows by its 1e-8; its gradient finite): DKD, DIST and
 * the token-level kinds on every extreme row. */
START_TEST(zero_when_equal)
{
    static const kd_loss_kind kinds[] = {KD_LOSS_HINTON,          KD_LOSS_DKD, KD_LOSS_DIST,
                                         KD_LOSS_REVERSE_KL,      KD_LOSS_JSD, KD_LOSS_SKEW_KL,
                                         KD_LOSS_SKEW_REVERSE_KL, KD_LOSS_TVD};
    static row rows[64];
    static float grad[MAXC];
    int nrows = make_rows(rows);
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
        for (int r = 0; r < nrows; r++)
            for (size_t t = 0; t < NTEMPS; t++) {
                const row *w = &rows[r];
                int32_t y = 0;
                kd_loss *l;
                ck_assert_int_eq(kd_loss_create(kinds[k], &l), KD_OK);
                ck_assert_int_eq(kd_loss_set_float(l, KD_LOSS_TEMPERATURE, temps[t]), KD_OK);
                int dist = kinds[k] == KD_LOSS_DIST;
                if (dist) {
                    ck_assert_int_eq(kd_loss_set_float(l, KD_LOSS_BETA, 1.0f), KD_OK);
                    ck_assert_int_eq(kd_loss_set_float(l, KD_LOSS_GAMMA, 0.0f), KD_OK);
                }
                if (kinds[k] == KD_LOSS_DKD || dist)
                    ck_assert_int_eq(kd_loss_set_float(l, KD_LOSS_CE_WEIGHT, 0.0f), KD_OK);
                else
                    ck_assert_int_eq(kd_loss_set_float(l, KD_LOSS_ALPHA, 1.0f), KD_OK);
                float v = NAN;
                kd_status st = kd_loss_forward_logits(l, w->z, w->z, &y, 1, w->n, &v);
                ck_assert_msg(st == KD_OK, "kind %d row %d (n %lld, z0 %g) T %g: %s", kinds[k], r,
                              (long long)w->n, (double)w->z[0], (double)temps[t], kd_last_error());
                double want = dist ? ref_dist(w->z, w->z, w->n, temps[t]) : 0.0;
                ck_assert_msg(near(v, want, 1e-4, 1e-4),
                              "kind %d row %d (n %lld, z0 %g) T %g: loss %g, double %g", kinds[k],
                              r, (long long)w->n, (double)w->z[0], (double)temps[t], (double)v,
                              want);
                ck_assert_int_eq(kd_loss_backward(l, grad), KD_OK);
                for (int64_t j = 0; j < w->n; j++)
                    ck_assert_msg(dist ? isfinite(grad[j]) : fabsf(grad[j]) <= 1e-4f,
                                  "kind %d row %d (n %lld, z0 %g) T %g: grad[%lld] %g", kinds[k], r,
                                  (long long)w->n, (double)w->z[0], (double)temps[t], (long long)j,
                                  (double)grad[j]);
                kd_loss_destroy(l);
            }
}
END_TEST

/* kd_soft_targets_from_logits: the teachers' softmax at T against double. */
START_TEST(soft_targets_against_double)
{
    static row rows[64];
    static float p[MAXC];
    static double lp[MAXC];
    int nrows = make_rows(rows);
    for (int r = 0; r < nrows; r++)
        for (size_t t = 0; t < NTEMPS; t++) {
            const row *w = &rows[r];
            ck_assert_int_eq(kd_soft_targets_from_logits(w->z, NULL, 1, 1, w->n, temps[t], p),
                             KD_OK);
            ref_log_softmax(w->z, w->n, 1.0f / temps[t], lp);
            for (int64_t j = 0; j < w->n; j++)
                ck_assert_msg(near(p[j], exp(lp[j]), 1e-6, 1e-4),
                              "row %d T %g [%lld]: %.9g, double %.9g", r, (double)temps[t],
                              (long long)j, (double)p[j], exp(lp[j]));
        }
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("numeric");
    TCase *t = tcase_create("numeric");
    tcase_add_test(t, hinton_regression);
    tcase_add_test(t, kernels_against_double);
    tcase_add_test(t, masked_wide_row);
    tcase_add_test(t, losses_against_double);
    tcase_add_test(t, zero_when_equal);
    tcase_add_test(t, soft_targets_against_double);
    suite_add_tcase(s, t);
    return s;
}

int main(void) { return kdt_run(suite()); }
