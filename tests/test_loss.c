/* The loss module: the Hinton loss's value and gradient, its T^2 scaling, options, bad input. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "distill/loss.h"
#include "testutil.h"

#define B 6
#define C 5

static kd_loss *hinton(float t, float alpha)
{
    kd_loss *l;
    ck_assert_int_eq(kd_loss_create(KD_LOSS_HINTON, &l), KD_OK);
    ck_assert_int_eq(kd_loss_set_float(l, KD_LOSS_TEMPERATURE, t), KD_OK);
    ck_assert_int_eq(kd_loss_set_float(l, KD_LOSS_ALPHA, alpha), KD_OK);
    return l;
}

/* A batch: student logits, teacher probabilities at t, labels with two unlabelled rows. */
typedef struct batch {
    float z[B * C], p[B * C];
    int32_t y[B];
} batch;

static void make_batch(batch *b, float t, uint64_t seed)
{
    float tz[B * C];
    kdt_fill(b->z, B * C, seed, -3.0f, 3.0f);
    kdt_fill(tz, B * C, seed + 1, -4.0f, 4.0f);
    ck_assert_int_eq(kd_soft_targets_from_logits(tz, NULL, 1, B, C, t, b->p), KD_OK);
    static const int32_t labels[B] = {0, 3, -1, 4, -1, 2};
    memcpy(b->y, labels, sizeof labels);
}

typedef struct fd_ctx {
    kd_loss *l;
    batch *b;
} fd_ctx;

static double objective(void *p)
{
    fd_ctx *c = p;
    float v;
    ck_assert_int_eq(kd_loss_forward(c->l, c->b->z, c->b->p, c->b->y, B, C, &v), KD_OK);
    return c->l->parts[KD_LOSS_PART_TOTAL]; /* in double, for a clean finite difference */
}

static void gradcheck(float t, float alpha)
{
    kd_loss *l = hinton(t, alpha);
    batch b;
    make_batch(&b, t, 11);
    float v, g[B * C];
    ck_assert_int_eq(kd_loss_forward(l, b.z, b.p, b.y, B, C, &v), KD_OK);
    ck_assert_int_eq(kd_loss_backward(l, g), KD_OK);
    fd_ctx c = {l, &b};
    double err = kdt_gradcheck(objective, &c, b.z, g, B * C, 1e-2, 100);
    ck_assert_msg(err < 1e-2, "T %g alpha %g: gradient error %g", (double)t, (double)alpha, err);
    /* Unlabelled rows carry only the soft gradient: none at all when alpha == 0. */
    if (alpha == 0.0f)
        for (int c2 = 0; c2 < C; c2++) ck_assert(g[2 * C + c2] == 0.0f && g[4 * C + c2] == 0.0f);
    kd_loss_destroy(l);
}

START_TEST(gradient_matches_finite_differences)
{
    static const float temps[] = {1.0f, 2.0f, 4.0f, 10.0f};
    static const float alphas[] = {0.0f, 0.5f, 1.0f, 0.9f};
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) gradcheck(temps[i], alphas[j]);
}
END_TEST

/* z = [1, 0], p = [0.25, 0.75], T = 2, alpha = 0.5, label 0 (values from Python's math module):
 * q_T = [0.6224593, 0.3775407], KL = 0.2867418, CE = log(1 + e^-1) = 0.3132617,
 * soft = 0.5 * 4 * KL = 0.5734837, hard = 0.5 * CE = 0.1566308, total 0.7301145,
 * grad = alpha T (q_T - p) + (1 - alpha)(q_1 - y) = [0.2379886, -0.2379886]. */
START_TEST(hand_computed_two_classes)
{
    kd_loss *l = hinton(2.0f, 0.5f);
    const float z[2] = {1.0f, 0.0f}, p[2] = {0.25f, 0.75f};
    const int32_t y[1] = {0};
    float v, soft, hard, g[2];
    ck_assert_int_eq(kd_loss_forward(l, z, p, y, 1, 2, &v), KD_OK);
    ck_assert_float_eq_tol(v, 0.7301145f, 1e-6f);
    ck_assert_int_eq(kd_loss_value(l, KD_LOSS_PART_SOFT, &soft), KD_OK);
    ck_assert_int_eq(kd_loss_value(l, KD_LOSS_PART_HARD, &hard), KD_OK);
    ck_assert_float_eq_tol(soft, 0.5734837f, 1e-6f);
    ck_assert_float_eq_tol(hard, 0.1566308f, 1e-6f);
    ck_assert_int_eq(kd_loss_backward(l, g), KD_OK);
    ck_assert_float_eq_tol(g[0], 0.2379886f, 1e-6f);
    ck_assert_float_eq_tol(g[1], -0.2379886f, 1e-6f);
    kd_loss_destroy(l);
}
END_TEST

/* The soft part is alpha T^2 KL(p || softmax(z / T)), batch mean, for every T; the hard part is
 * (1 - alpha) CE over the labelled rows, divided by the whole batch. */
/* Finite logits whose loss overflows a float (alpha T^2 KL of about 6e38 here: its double sum is
 * finite, its float is not): KD_ERR_NUMERIC, not KD_OK with an infinite loss (a trainer then moved
 * its weights), for the public call and for a trainer's step. */
START_TEST(loss_beyond_a_float_is_refused)
{
    kd_loss *l;
    ck_assert_int_eq(kd_loss_create(KD_LOSS_HINTON, &l), KD_OK);
    ck_assert_int_eq(kd_loss_set_float(l, KD_LOSS_TEMPERATURE, 4.0f), KD_OK);
    ck_assert_int_eq(kd_loss_set_float(l, KD_LOSS_ALPHA, 0.5f), KD_OK);
    float z[3] = {3e38f, -3e38f, 0.0f}, p[3] = {1.0f / 3, 1.0f / 3, 1.0f / 3}, v = 0.0f;
    int32_t y[1] = {0};
    ck_assert_int_eq(kd_loss_forward(l, z, p, y, 1, 3, &v), KD_ERR_NUMERIC);
    ck_assert_msg(strstr(kd_last_error(), "float") != NULL, "%s", kd_last_error());
    kd_loss_destroy(l);
}
END_TEST

START_TEST(soft_part_scales_with_t_squared)
{
    static const float temps[] = {1.0f, 3.0f, 8.0f};
    for (int i = 0; i < 3; i++) {
        float t = temps[i], alpha = 0.7f;
        kd_loss *l = hinton(t, alpha);
        batch b;
        make_batch(&b, t, 5);
        float v, soft, hard;
        ck_assert_int_eq(kd_loss_forward(l, b.z, b.p, b.y, B, C, &v), KD_OK);
        double kl = 0.0, ce = 0.0, labelled = 0.0;
        for (int r = 0; r < B; r++) {
            labelled += b.y[r] >= 0;
            double m = -INFINITY, s = 0.0, m1 = -INFINITY, s1 = 0.0;
            for (int c = 0; c < C; c++) {
                m = fmax(m, b.z[r * C + c] / (double)t);
                m1 = fmax(m1, b.z[r * C + c]);
            }
            for (int c = 0; c < C; c++) {
                s += exp(b.z[r * C + c] / (double)t - m);
                s1 += exp(b.z[r * C + c] - m1);
            }
            for (int c = 0; c < C; c++) {
                double lq = b.z[r * C + c] / (double)t - m - log(s), p = b.p[r * C + c];
                if (p > 0) kl += p * (log(p) - lq);
            }
            if (b.y[r] >= 0) ce -= b.z[r * C + b.y[r]] - m1 - log(s1);
        }
        ck_assert_int_eq(kd_loss_value(l, KD_LOSS_PART_SOFT, &soft), KD_OK);
        ck_assert_int_eq(kd_loss_value(l, KD_LOSS_PART_HARD, &hard), KD_OK);
        double want_soft = alpha * (double)t * t * kl / B,
               want_hard = (1.0 - alpha) * ce / labelled;
        ck_assert_msg(fabs(soft - want_soft) < 1e-5 * (1 + want_soft), "T %g: soft %g, want %g",
                      (double)t, (double)soft, want_soft);
        ck_assert(fabs(hard - want_hard) < 1e-5 * (1 + want_hard));
        ck_assert(fabs(v - (want_soft + want_hard)) < 1e-5 * (1 + v));
        kd_loss_destroy(l);
    }
}
END_TEST

START_TEST(identical_distributions_give_zero_kl)
{
    kd_loss *l = hinton(3.0f, 1.0f);
    float z[B * C], p[B * C], v, g[B * C];
    kdt_fill(z, B * C, 3, -2.0f, 2.0f);
    ck_assert_int_eq(kd_soft_targets_from_logits(z, NULL, 1, B, C, 3.0f, p), KD_OK);
    /* labels may be NULL when alpha == 1 */
    ck_assert_int_eq(kd_loss_forward(l, z, p, NULL, B, C, &v), KD_OK);
    ck_assert(fabsf(v) < 1e-5f);
    ck_assert_int_eq(kd_loss_backward(l, g), KD_OK);
    for (int i = 0; i < B * C; i++) ck_assert(fabsf(g[i]) < 1e-6f);
    /* soft_targets may be NULL when alpha == 0: plain cross-entropy */
    ck_assert_int_eq(kd_loss_set_float(l, KD_LOSS_ALPHA, 0.0f), KD_OK);
    const int32_t y[B] = {0, 1, 2, 3, 4, 0};
    ck_assert_int_eq(kd_loss_forward(l, z, NULL, y, B, C, &v), KD_OK);
    ck_assert(v > 0.0f);
    kd_loss_destroy(l);
}
END_TEST

START_TEST(options_and_defaults)
{
    kd_loss *l;
    float v;
    ck_assert_int_eq(kd_loss_create(KD_LOSS_HINTON, &l), KD_OK);
    ck_assert_int_eq(kd_loss_get_float(l, KD_LOSS_TEMPERATURE, &v), KD_OK);
    ck_assert(v == 4.0f);
    ck_assert_int_eq(kd_loss_get_float(l, KD_LOSS_ALPHA, &v), KD_OK);
    ck_assert(v == 0.9f);
    const float bad_t[] = {0.0f, -1.0f, NAN, INFINITY, 1e-45f};
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(kd_loss_set_float(l, KD_LOSS_TEMPERATURE, bad_t[i]), KD_ERR_ARGUMENT);
        ck_assert(strstr(kd_last_error(), "TEMPERATURE") != NULL);
    }
    const float bad_a[] = {-0.01f, 1.01f, NAN, INFINITY};
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(kd_loss_set_float(l, KD_LOSS_ALPHA, bad_a[i]), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_loss_set_float(l, (kd_loss_option)7, 1.0f), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_loss_set_float(l, (kd_loss_option)-1, 1.0f), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_loss_get_float(l, (kd_loss_option)7, &v), KD_ERR_ARGUMENT);
    /* unchanged after the failed sets */
    ck_assert_int_eq(kd_loss_get_float(l, KD_LOSS_TEMPERATURE, &v), KD_OK);
    ck_assert(v == 4.0f);
    ck_assert_int_eq(kd_loss_get_float(l, KD_LOSS_ALPHA, &v), KD_OK);
    ck_assert(v == 0.9f);
    ck_assert_int_eq(kd_loss_set_float(l, KD_LOSS_ALPHA, 0.0f), KD_OK);
    ck_assert_int_eq(kd_loss_set_float(l, KD_LOSS_ALPHA, 1.0f), KD_OK);
    kd_loss_destroy(l);
    kd_loss_destroy(NULL);
}
END_TEST

/* Runs a forward that must fail with status, then checks that the loss still holds the previous
 * forward (value and gradient). */
static void expect_refused(kd_loss *l, const float *z, const float *p, const int32_t *y, int64_t b,
                           int64_t c, kd_status status, float before, const float *grad_before)
{
    float v = 123.0f, now, g[B * C];
    ck_assert_int_eq(kd_loss_forward(l, z, p, y, b, c, &v), status);
    ck_assert(v == 123.0f);
    ck_assert(kd_last_error()[0] != '\0');
    ck_assert_int_eq(kd_loss_value(l, KD_LOSS_PART_TOTAL, &now), KD_OK);
    ck_assert(now == before);
    ck_assert_int_eq(kd_loss_backward(l, g), KD_OK);
    ck_assert(memcmp(g, grad_before, sizeof g) == 0);
}

START_TEST(bad_input)
{
    kd_loss *l = hinton(2.0f, 0.5f);
    batch b;
    make_batch(&b, 2.0f, 9);
    float v, g[B * C];
    ck_assert_int_eq(kd_loss_create((kd_loss_kind)42, &l), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_loss_create(KD_LOSS_HINTON, NULL), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_loss_backward(l, g), KD_ERR_STATE);
    ck_assert_int_eq(kd_loss_value(l, KD_LOSS_PART_TOTAL, &v), KD_ERR_STATE);
    ck_assert_int_eq(kd_loss_forward(NULL, b.z, b.p, b.y, B, C, &v), KD_ERR_ARGUMENT);

    float before, grad_before[B * C];
    ck_assert_int_eq(kd_loss_forward(l, b.z, b.p, b.y, B, C, &before), KD_OK);
    ck_assert_int_eq(kd_loss_backward(l, grad_before), KD_OK);
    expect_refused(l, NULL, b.p, b.y, B, C, KD_ERR_ARGUMENT, before, grad_before);
    ck_assert_int_eq(kd_loss_forward(l, b.z, b.p, b.y, B, C, NULL), KD_ERR_ARGUMENT);
    expect_refused(l, b.z, b.p, b.y, 0, C, KD_ERR_ARGUMENT, before, grad_before);
    expect_refused(l, b.z, b.p, b.y, -3, C, KD_ERR_ARGUMENT, before, grad_before);
    expect_refused(l, b.z, b.p, b.y, B, 0, KD_ERR_ARGUMENT, before, grad_before);
    expect_refused(l, b.z, b.p, b.y, INT64_MAX, 2, KD_ERR_ARGUMENT, before, grad_before);
    /* NULL soft targets with alpha > 0, NULL labels with alpha < 1 */
    expect_refused(l, b.z, NULL, b.y, B, C, KD_ERR_ARGUMENT, before, grad_before);
    expect_refused(l, b.z, b.p, NULL, B, C, KD_ERR_ARGUMENT, before, grad_before);

    batch bad = b;
    bad.z[7] = NAN;
    expect_refused(l, bad.z, b.p, b.y, B, C, KD_ERR_NUMERIC, before, grad_before);
    /* the row is named, and not as a student's: the loss also scores a model alone */
    char want[64];
    snprintf(want, sizeof want, "the logits scored hold NaN or infinity (row %d of %d)", 7 / C, B);
    ck_assert_str_eq(kd_last_error(), want);
    bad.z[7] = INFINITY;
    expect_refused(l, bad.z, b.p, b.y, B, C, KD_ERR_NUMERIC, before, grad_before);
    /* finite logits at a small temperature are no longer refused (issue 16, test_numeric.c):
     * their log-probabilities below -FLT_MAX count as -FLT_MAX, the loss stays finite */
    kd_loss *cold = hinton(1e-3f, 0.5f);
    float huge[B * C];
    for (int i = 0; i < B * C; i++) huge[i] = i % 2 ? 3e38f : -3e38f;
    ck_assert_int_eq(kd_loss_forward(cold, huge, b.p, b.y, B, C, &v), KD_OK);
    ck_assert(isfinite(v));
    kd_loss_destroy(cold);

    bad = b;
    bad.p[3] += 0.01f; /* row 0 sums to 1.01 */
    expect_refused(l, b.z, bad.p, b.y, B, C, KD_ERR_ARGUMENT, before, grad_before);
    ck_assert(strstr(kd_last_error(), "sums to") != NULL);
    bad = b;
    bad.p[C + 1] = -bad.p[C + 1];
    expect_refused(l, b.z, bad.p, b.y, B, C, KD_ERR_ARGUMENT, before, grad_before);
    bad.p[C + 1] = NAN;
    expect_refused(l, b.z, bad.p, b.y, B, C, KD_ERR_NUMERIC, before, grad_before);
    /* logits passed as soft targets */
    expect_refused(l, b.z, b.z, b.y, B, C, KD_ERR_ARGUMENT, before, grad_before);

    bad = b;
    bad.y[1] = C;
    expect_refused(l, b.z, b.p, bad.y, B, C, KD_ERR_ARGUMENT, before, grad_before);
    ck_assert(strstr(kd_last_error(), "label") != NULL);
    bad.y[1] = -2;
    expect_refused(l, b.z, b.p, bad.y, B, C, KD_ERR_ARGUMENT, before, grad_before);
    ck_assert_int_eq(kd_loss_value(l, (kd_loss_part)3, &v), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_loss_value(l, KD_LOSS_PART_TOTAL, NULL), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_loss_backward(l, NULL), KD_ERR_ARGUMENT);
    kd_loss_destroy(l);
}
END_TEST

/* A forward with a new batch size after a failure and a success uses the new size. */
/* The trainer's path (kdi_loss_forward checks nothing) on logits that are not finite: the
 * cross-entropy of a model trained alone (alpha 0, kd train) names no student and no temperature;
 * the soft term of a distillation names the student. */
START_TEST(trainer_logits_not_finite)
{
    batch b;
    make_batch(&b, 2.0f, 9);
    b.z[7] = NAN; /* infinity alone may still give finite log-probabilities (wide rows) */
    float v = 0.0f;
    kd_loss *alone = hinton(1.0f, 0.0f), *soft = hinton(2.0f, 1.0f);
    ck_assert_int_eq(kdi_loss_forward(alone, b.z, NULL, 0, b.y, B, C, &v), KD_ERR_NUMERIC);
    ck_assert_str_eq(kd_last_error(), "the logits hold NaN or infinity");
    ck_assert_int_eq(kdi_loss_forward(soft, b.z, b.p, 0, b.y, B, C, &v), KD_ERR_NUMERIC);
    ck_assert_str_eq(kd_last_error(), "the student's logits hold NaN or infinity");
    kd_loss_destroy(alone);
    kd_loss_destroy(soft);
}
END_TEST

START_TEST(batch_size_changes)
{
    kd_loss *l = hinton(4.0f, 0.9f);
    /* the whole batch as the hard term's denominator, so every part scales with 1 / batch */
    ck_assert_int_eq(kd_loss_set_float(l, KD_LOSS_HARD_MEAN, 1.0f), KD_OK);
    batch b;
    make_batch(&b, 4.0f, 21);
    float v1, v2, g1[B * C], g2[2 * C];
    ck_assert_int_eq(kd_loss_forward(l, b.z, b.p, b.y, B, C, &v1), KD_OK);
    ck_assert_int_eq(kd_loss_backward(l, g1), KD_OK);
    ck_assert_int_eq(kd_loss_forward(l, b.z, b.p, b.y, 2, C, &v2), KD_OK);
    ck_assert_int_eq(kd_loss_backward(l, g2), KD_OK);
    /* the first two rows' gradients scale with 1 / batch */
    for (int i = 0; i < 2 * C; i++) ck_assert(fabsf(g2[i] - g1[i] * B / 2.0f) < 1e-6f);
    kd_loss_destroy(l);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("loss");
    TCase *t = tcase_create("loss");
    tcase_add_test(t, gradient_matches_finite_differences);
    tcase_add_test(t, hand_computed_two_classes);
    tcase_add_test(t, soft_part_scales_with_t_squared);
    tcase_add_test(t, loss_beyond_a_float_is_refused);
    tcase_add_test(t, identical_distributions_give_zero_kl);
    tcase_add_test(t, options_and_defaults);
    tcase_add_test(t, bad_input);
    tcase_add_test(t, trainer_logits_not_finite);
    tcase_add_test(t, batch_size_changes);
    suite_add_tcase(s, t);
    return kdt_run(s);
}
