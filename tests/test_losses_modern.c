/* The modern logit methods and conventions: logit standardisation (Sun et al. 2024) with Hinton's
 * loss and DKD, DIST (Huang et al. 2022), DKD from a confident teacher's logits, and the hard
 * term's mean over labelled rows (PyTorch's ignore_index). Reference values come from
 * tests/reference/modern_logit_losses.py (the authors' formulas, line by line). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "distill/loss.h"
#include "testutil.h"

#define B 6
#define C 5

/* The script's example: three rows of four classes, labels {2, -1, 1}. */
static const float zs[12] = {1.0f,  -0.5f, 2.0f,  0.3f, 0.2f,  0.1f,
                             -1.0f, 1.5f,  -2.0f, 0.5f, 0.25f, 0.0f};
static const float zt[12] = {2.0f, 0.0f, 1.0f,  -1.0f, 0.5f, -0.3f,
                             0.0f, 2.5f, -1.0f, 1.5f,  0.5f, 0.2f};
static const int32_t y3[3] = {2, -1, 1};

static kd_loss *make(kd_loss_kind kind)
{
    kd_loss *l;
    ck_assert_int_eq(kd_loss_create(kind, &l), KD_OK);
    return l;
}

static void set(kd_loss *l, kd_loss_option key, float value)
{
    ck_assert_int_eq(kd_loss_set_float(l, key, value), KD_OK);
}

typedef struct fd_ctx {
    kd_loss *l;
    const float *z, *t;
    const int32_t *y;
    int logits;
} fd_ctx;

static double objective(void *p)
{
    fd_ctx *c = p;
    float v;
    kd_status st = c->logits ? kd_loss_forward_logits(c->l, c->z, c->t, c->y, B, C, &v)
                             : kd_loss_forward(c->l, c->z, c->t, c->y, B, C, &v);
    ck_assert_int_eq(st, KD_OK);
    return c->l->parts[KD_LOSS_PART_TOTAL];
}

/* Finite differences against backward on random logits with unlabelled rows; the teacher side
 * given as logits, or as probabilities at the loss's temperature. */
static void gradcheck(kd_loss *l, int logits)
{
    float z[B * C], tz[B * C], p[B * C], g[B * C], t;
    static const int32_t y[B] = {0, 3, -1, 4, -1, 2};
    kdt_fill(z, B * C, 3, -3.0f, 3.0f);
    kdt_fill(tz, B * C, 4, -4.0f, 4.0f);
    ck_assert_int_eq(kd_loss_get_float(l, KD_LOSS_TEMPERATURE, &t), KD_OK);
    ck_assert_int_eq(kd_soft_targets_from_logits(tz, NULL, 1, B, C, t, p), KD_OK);
    const float *teacher = logits ? tz : p;
    fd_ctx c = {l, z, teacher, y, logits};
    objective(&c);
    ck_assert_int_eq(kd_loss_backward(l, g), KD_OK);
    double err = kdt_gradcheck(objective, &c, z, g, B * C, 1e-2, 100);
    ck_assert_msg(err < 1e-2, "%s: gradient error %g", l->ops->name, err);
}

/* ---------------------------------------------------------------- logit standardisation */

START_TEST(ls_reference_values)
{
    float v;
    kd_loss *l = make(KD_LOSS_HINTON);
    set(l, KD_LOSS_ALPHA, 1.0f);
    set(l, KD_LOSS_TEMPERATURE, 2.0f);
    /* without standardisation, logits and probabilities give the same loss */
    ck_assert_int_eq(kd_loss_forward_logits(l, zs, zt, NULL, 3, 4, &v), KD_OK);
    ck_assert_msg(fabs(v - 0.230289219) < 1e-6, "KD from logits %g", (double)v);
    float p[12];
    ck_assert_int_eq(kd_soft_targets_from_logits(zt, NULL, 1, 3, 4, 2.0f, p), KD_OK);
    ck_assert_int_eq(kd_loss_forward(l, zs, p, NULL, 3, 4, &v), KD_OK);
    ck_assert_msg(fabs(v - 0.230289219) < 1e-6, "KD from probabilities %g", (double)v);
    set(l, KD_LOSS_LOGIT_STANDARDIZE, 1.0f);
    ck_assert_int_eq(kd_loss_forward_logits(l, zs, zt, NULL, 3, 4, &v), KD_OK);
    ck_assert_msg(fabs(v - 0.163037947) < 1e-6, "KD + LS, T 2: %g", (double)v);
    set(l, KD_LOSS_TEMPERATURE, 1.0f);
    ck_assert_int_eq(kd_loss_forward_logits(l, zs, zt, NULL, 3, 4, &v), KD_OK);
    ck_assert_msg(fabs(v - 0.152540011) < 1e-6, "KD + LS, T 1: %g", (double)v);
    /* z-scores do not change when the logits are shifted and scaled */
    float zs2[12], zt2[12], w;
    for (int i = 0; i < 12; i++) {
        zs2[i] = 3.0f * zs[i] + 7.0f;
        zt2[i] = 0.5f * zt[i] - 2.0f;
    }
    ck_assert_int_eq(kd_loss_forward_logits(l, zs2, zt2, NULL, 3, 4, &w), KD_OK);
    ck_assert_msg(fabs(w - v) < 1e-5, "LS not invariant: %g vs %g", (double)w, (double)v);
    /* probabilities cannot be standardised */
    ck_assert_int_eq(kd_loss_forward(l, zs, p, NULL, 3, 4, &v), KD_ERR_ARGUMENT);
    ck_assert(strstr(kd_last_error(), "kd_loss_forward_logits") != NULL);
    ck_assert_int_eq(kd_loss_forward_logits(l, zs, zt, NULL, 12, 1, &v), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_loss_set_float(l, KD_LOSS_LOGIT_STANDARDIZE, 0.5f), KD_ERR_ARGUMENT);
    kd_loss_destroy(l);
    l = make(KD_LOSS_LOGIT_MSE);
    ck_assert_int_eq(kd_loss_set_float(l, KD_LOSS_LOGIT_STANDARDIZE, 1.0f), KD_ERR_ARGUMENT);
    kd_loss_destroy(l);
}
END_TEST

START_TEST(ls_gradients)
{
    static const float alphas[] = {1.0f, 0.6f};
    for (int i = 0; i < 2; i++) {
        kd_loss *l = make(KD_LOSS_HINTON);
        set(l, KD_LOSS_ALPHA, alphas[i]);
        set(l, KD_LOSS_TEMPERATURE, 2.0f);
        set(l, KD_LOSS_LOGIT_STANDARDIZE, 1.0f);
        gradcheck(l, 1);
        kd_loss_destroy(l);
    }
    kd_loss *l = make(KD_LOSS_DKD);
    set(l, KD_LOSS_TEMPERATURE, 2.0f);
    set(l, KD_LOSS_LOGIT_STANDARDIZE, 1.0f);
    gradcheck(l, 1);
    kd_loss_destroy(l);
}
END_TEST

/* ---------------------------------------------------------------- DKD from logits */

/* The example: from the logits, as mdistiller, beta * NCKD = 2.989716577; from float
 * probabilities 1 - p_t is 0 and the row has no NCKD. */
START_TEST(dkd_confident_teacher)
{
    static const float s[4] = {2, 1, 0, -1}, t[4] = {120, 10, 5, 0};
    static const int32_t y[1] = {0};
    float v, p[4];
    kd_loss *l = make(KD_LOSS_DKD);
    set(l, KD_LOSS_ALPHA, 0.0f);
    set(l, KD_LOSS_BETA, 8.0f);
    set(l, KD_LOSS_TEMPERATURE, 1.0f);
    set(l, KD_LOSS_CE_WEIGHT, 0.0f);
    ck_assert_int_eq(kd_loss_forward_logits(l, s, t, y, 1, 4, &v), KD_OK);
    ck_assert_msg(fabs(v - 2.989716577) < 1e-5, "beta * NCKD %g", (double)v);
    ck_assert_int_eq(kd_soft_targets_from_logits(t, NULL, 1, 1, 4, 1.0f, p), KD_OK);
    ck_assert_int_eq(kd_loss_forward(l, s, p, y, 1, 4, &v), KD_OK);
    ck_assert(v == 0.0f);
    kd_loss_destroy(l);
}
END_TEST

START_TEST(dkd_logits_match_probabilities)
{
    float z[B * C], tz[B * C], p[B * C], v1, v2, g1[B * C], g2[B * C];
    static const int32_t y[B] = {0, 3, -1, 4, -1, 2};
    kdt_fill(z, B * C, 7, -3.0f, 3.0f);
    kdt_fill(tz, B * C, 8, -4.0f, 4.0f);
    ck_assert_int_eq(kd_soft_targets_from_logits(tz, NULL, 1, B, C, 4.0f, p), KD_OK);
    kd_loss *l = make(KD_LOSS_DKD);
    ck_assert_int_eq(kd_loss_forward(l, z, p, y, B, C, &v1), KD_OK);
    ck_assert_int_eq(kd_loss_backward(l, g1), KD_OK);
    ck_assert_int_eq(kd_loss_forward_logits(l, z, tz, y, B, C, &v2), KD_OK);
    ck_assert_int_eq(kd_loss_backward(l, g2), KD_OK);
    ck_assert_msg(fabsf(v1 - v2) < 1e-5f * (1 + fabsf(v1)), "%g vs %g", (double)v1, (double)v2);
    for (int i = 0; i < B * C; i++) ck_assert(fabsf(g1[i] - g2[i]) < 1e-5f);
    gradcheck(l, 1);
    kd_loss_destroy(l);
}
END_TEST

/* The trainer hands DKD the teacher's logits: a step on the confident teacher's cached logits has
 * the finite NCKD of kd_loss_forward_logits on the student's logits before the step. */
START_TEST(dkd_trainer_uses_logits)
{
    static const float x[4] = {0.5f, -1.0f, 2.0f, 0.25f}, t[4] = {120, 10, 5, 0};
    static const int32_t y[1] = {0};
    kd_model *m;
    kd_optimizer *o;
    kd_trainer *tr;
    float z[4], want, got;
    ck_assert_int_eq(kd_model_create("input 4 | dense 4", 3, &m), KD_OK);
    ck_assert_int_eq(kd_model_predict(m, x, 1, z), KD_OK);
    kd_loss *l = make(KD_LOSS_DKD), *ref = make(KD_LOSS_DKD);
    kd_loss *both[2] = {l, ref};
    for (int i = 0; i < 2; i++) {
        set(both[i], KD_LOSS_ALPHA, 0.0f);
        set(both[i], KD_LOSS_TEMPERATURE, 1.0f);
        set(both[i], KD_LOSS_CE_WEIGHT, 0.0f);
    }
    ck_assert_int_eq(kd_loss_forward_logits(ref, z, t, y, 1, 4, &want), KD_OK);
    ck_assert(want > 0.0f);
    ck_assert_int_eq(kd_optimizer_create(KD_OPTIMIZER_SGD, m, &o), KD_OK);
    ck_assert_int_eq(kd_trainer_create(m, l, o, &tr), KD_OK);
    ck_assert_int_eq(kd_trainer_step(tr, x, y, t, 1, &got), KD_OK);
    ck_assert_msg(fabsf(got - want) < 1e-5f * (1 + want), "%g vs %g", (double)got, (double)want);
    kd_trainer_destroy(tr);
    kd_optimizer_destroy(o);
    kd_loss_destroy(l);
    kd_loss_destroy(ref);
    kd_model_destroy(m);
}
END_TEST

/* ---------------------------------------------------------------- DIST */

START_TEST(dist_reference_values)
{
    float v, p[12], t, b, g;
    kd_loss *l = make(KD_LOSS_DIST);
    ck_assert_int_eq(kd_loss_get_float(l, KD_LOSS_TEMPERATURE, &t), KD_OK);
    ck_assert_int_eq(kd_loss_get_float(l, KD_LOSS_BETA, &b), KD_OK);
    ck_assert_int_eq(kd_loss_get_float(l, KD_LOSS_GAMMA, &g), KD_OK);
    ck_assert(t == 1.0f && b == 1.0f && g == 1.0f); /* the authors' code's defaults */
    set(l, KD_LOSS_CE_WEIGHT, 0.0f);
    ck_assert_int_eq(kd_loss_forward_logits(l, zs, zt, NULL, 3, 4, &v), KD_OK);
    ck_assert_msg(fabs(v - 0.408162575) < 1e-6, "DIST %g", (double)v);
    set(l, KD_LOSS_BETA, 2.0f);
    set(l, KD_LOSS_GAMMA, 2.0f);
    set(l, KD_LOSS_TEMPERATURE, 4.0f);
    ck_assert_int_eq(kd_soft_targets_from_logits(zt, NULL, 1, 3, 4, 4.0f, p), KD_OK);
    ck_assert_int_eq(kd_loss_forward(l, zs, p, NULL, 3, 4, &v), KD_OK);
    ck_assert_msg(fabs(v - 10.350188612) < 1e-4, "DIST (CIFAR settings) %g", (double)v);
    /* with the label term: CE over the labelled rows, 0.696687421 */
    set(l, KD_LOSS_CE_WEIGHT, 1.0f);
    ck_assert_int_eq(kd_loss_forward(l, zs, p, y3, 3, 4, &v), KD_OK);
    ck_assert_msg(fabs(v - (10.350188612 + 0.696687421)) < 1e-4, "DIST + CE %g", (double)v);
    ck_assert_int_eq(kd_loss_forward(l, zs, NULL, y3, 3, 4, &v), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_loss_set_float(l, KD_LOSS_GAMMA, -1.0f), KD_ERR_ARGUMENT);
    kd_loss_destroy(l);
}
END_TEST

START_TEST(dist_gradients)
{
    static const float temps[] = {1.0f, 4.0f};
    for (int i = 0; i < 2; i++) {
        kd_loss *l = make(KD_LOSS_DIST);
        set(l, KD_LOSS_TEMPERATURE, temps[i]);
        set(l, KD_LOSS_BETA, 2.0f);
        set(l, KD_LOSS_GAMMA, 3.0f);
        gradcheck(l, i);
        kd_loss_destroy(l);
    }
}
END_TEST

/* ---------------------------------------------------------------- the hard term's mean */

/* F.cross_entropy(zs, y, ignore_index=-1) = 0.696687421: the mean over the 2 labelled rows. */
START_TEST(hard_mean_ignore_index)
{
    static const kd_loss_kind kinds[] = {KD_LOSS_HINTON, KD_LOSS_LOGIT_MSE, KD_LOSS_DKD,
                                         KD_LOSS_DIST};
    static const int32_t none[3] = {-1, -1, -1};
    for (int k = 0; k < 4; k++) {
        kd_loss *l = make(kinds[k]);
        float v, hard;
        if (kinds[k] == KD_LOSS_HINTON || kinds[k] == KD_LOSS_LOGIT_MSE)
            set(l, KD_LOSS_ALPHA, 0.0f);
        else {
            set(l, KD_LOSS_ALPHA, 0.0f);
            set(l, KD_LOSS_BETA, 0.0f);
            set(l, KD_LOSS_GAMMA, 0.0f);
        }
        ck_assert_int_eq(kd_loss_forward_logits(l, zs, NULL, y3, 3, 4, &v), KD_OK);
        ck_assert_msg(fabs(v - 0.696687421) < 1e-6, "%s: %g", l->ops->name, (double)v);
        ck_assert_int_eq(kd_loss_value(l, KD_LOSS_PART_HARD, &hard), KD_OK);
        ck_assert(hard == v);
        set(l, KD_LOSS_HARD_MEAN, 1.0f);
        ck_assert_int_eq(kd_loss_forward_logits(l, zs, NULL, y3, 3, 4, &v), KD_OK);
        ck_assert_msg(fabs(v - 0.696687421 * 2 / 3) < 1e-6, "%s: %g", l->ops->name, (double)v);
        set(l, KD_LOSS_HARD_MEAN, 0.0f);
        ck_assert_int_eq(kd_loss_forward_logits(l, zs, NULL, none, 3, 4, &v), KD_OK);
        ck_assert(v == 0.0f); /* PyTorch gives NaN for a batch with no label */
        kd_loss_destroy(l);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("losses_modern");
    TCase *t = tcase_create("core");
    tcase_add_test(t, ls_reference_values);
    tcase_add_test(t, ls_gradients);
    tcase_add_test(t, dkd_confident_teacher);
    tcase_add_test(t, dkd_logits_match_probabilities);
    tcase_add_test(t, dkd_trainer_uses_logits);
    tcase_add_test(t, dist_reference_values);
    tcase_add_test(t, dist_gradients);
    tcase_add_test(t, hard_mean_ignore_index);
    suite_add_tcase(s, t);
    return kdt_run(s);
}
