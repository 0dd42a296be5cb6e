/* The logit losses beyond Hinton's: logit MSE (Ba and Caruana 2014) and DKD (Zhao et al. 2022):
 * values against hand-computed ones, gradients against finite differences, the DKD decomposition
 * of KD, options and bad input; and Hinton's loss on an unlabelled transfer set. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "distill/loss.h"
#include "testutil.h"

#define B 6
#define C 5

static kd_loss *make(kd_loss_kind kind)
{
    kd_loss *l;
    ck_assert_int_eq(kd_loss_create(kind, &l), KD_OK);
    return l;
}

typedef struct fd_ctx {
    kd_loss *l;
    const float *z, *soft;
    const int32_t *y;
    int64_t batch, classes;
} fd_ctx;

static double objective(void *p)
{
    fd_ctx *c = p;
    float v;
    ck_assert_int_eq(kd_loss_forward(c->l, c->z, c->soft, c->y, c->batch, c->classes, &v), KD_OK);
    return c->l->parts[KD_LOSS_PART_TOTAL];
}

/* Finite differences of the loss against its backward, on random logits with unlabelled rows. */
static void gradcheck(kd_loss *l, int teacher_probs, float t)
{
    float z[B * C], tz[B * C], p[B * C], g[B * C], v;
    static const int32_t y[B] = {0, 3, -1, 4, -1, 2};
    kdt_fill(z, B * C, 3, -3.0f, 3.0f);
    kdt_fill(tz, B * C, 4, -4.0f, 4.0f);
    if (teacher_probs)
        ck_assert_int_eq(kd_soft_targets_from_logits(tz, NULL, 1, B, C, t, p), KD_OK);
    const float *soft = teacher_probs ? p : tz;
    ck_assert_int_eq(kd_loss_forward(l, z, soft, y, B, C, &v), KD_OK);
    ck_assert_int_eq(kd_loss_backward(l, g), KD_OK);
    fd_ctx c = {l, z, soft, y, B, C};
    double err = kdt_gradcheck(objective, &c, z, g, B * C, 1e-2, 100);
    ck_assert_msg(err < 1e-2, "%s: gradient error %g", l->ops->name, err);
}

/* ---------------------------------------------------------------- logit MSE */

START_TEST(mse_gradient)
{
    static const float alphas[] = {0.0f, 0.3f, 1.0f};
    for (int i = 0; i < 3; i++) {
        kd_loss *l = make(KD_LOSS_LOGIT_MSE);
        ck_assert_int_eq(kd_loss_set_float(l, KD_LOSS_ALPHA, alphas[i]), KD_OK);
        gradcheck(l, 0, 1.0f);
        kd_loss_destroy(l);
    }
}
END_TEST

/* Three rows of four classes (zs, zt below), labels {2, -1, 1}, alpha 0.5; from Python's math
 * module: MSE = 0.691041667 over 12 values, so soft = 0.345520833; CE over the two labelled rows
 * = 1.393374843, hard = 0.5 * CE / 2 = 0.348343711 (a mean over the labelled rows, PyTorch's
 * ignore_index), or 0.5 * CE / 3 = 0.232229140 over the batch (KD_LOSS_HARD_MEAN 1). */
static const float zs[12] = {1.0f,  -0.5f, 2.0f,  0.3f, 0.2f,  0.1f,
                             -1.0f, 1.5f,  -2.0f, 0.5f, 0.25f, 0.0f};
static const float zt[12] = {2.0f, 0.0f, 1.0f,  -1.0f, 0.5f, -0.3f,
                             0.0f, 2.5f, -1.0f, 1.5f,  0.5f, 0.2f};

START_TEST(mse_hand_computed)
{
    kd_loss *l = make(KD_LOSS_LOGIT_MSE);
    float v, soft, hard, a;
    ck_assert_int_eq(kd_loss_get_float(l, KD_LOSS_ALPHA, &a), KD_OK);
    ck_assert(a == 1.0f); /* Ba and Caruana: logits alone by default */
    ck_assert_int_eq(kd_loss_set_float(l, KD_LOSS_ALPHA, 0.5f), KD_OK);
    static const int32_t y[3] = {2, -1, 1};
    ck_assert_int_eq(kd_loss_forward(l, zs, zt, y, 3, 4, &v), KD_OK);
    ck_assert_int_eq(kd_loss_value(l, KD_LOSS_PART_SOFT, &soft), KD_OK);
    ck_assert_int_eq(kd_loss_value(l, KD_LOSS_PART_HARD, &hard), KD_OK);
    ck_assert_msg(fabs(soft - 0.345520833) < 1e-6, "soft %g", (double)soft);
    ck_assert_msg(fabs(hard - 0.348343711) < 1e-6, "hard %g", (double)hard);
    ck_assert_msg(fabs(v - (0.345520833 + 0.348343711)) < 1e-6, "total %g", (double)v);
    ck_assert_int_eq(kd_loss_set_float(l, KD_LOSS_HARD_MEAN, 1.0f), KD_OK);
    ck_assert_int_eq(kd_loss_forward(l, zs, zt, y, 3, 4, &v), KD_OK);
    ck_assert_int_eq(kd_loss_value(l, KD_LOSS_PART_HARD, &hard), KD_OK);
    ck_assert_msg(fabs(hard - 0.232229140) < 1e-6, "hard %g", (double)hard);
    ck_assert_int_eq(kd_loss_set_float(l, KD_LOSS_HARD_MEAN, 0.0f), KD_OK);
    /* alpha 1: the gradient is 2 (z - z_t) / (B C) exactly */
    float g[12];
    ck_assert_int_eq(kd_loss_set_float(l, KD_LOSS_ALPHA, 1.0f), KD_OK);
    ck_assert_int_eq(kd_loss_forward(l, zs, zt, NULL, 3, 4, &v), KD_OK);
    ck_assert_int_eq(kd_loss_backward(l, g), KD_OK);
    for (int i = 0; i < 12; i++) ck_assert(fabsf(g[i] - 2.0f * (zs[i] - zt[i]) / 12.0f) < 1e-7f);
    kd_loss_destroy(l);
}
END_TEST

START_TEST(mse_bad_input)
{
    kd_loss *l = make(KD_LOSS_LOGIT_MSE);
    float v, g[12], g2[12], nan_t[12];
    static const int32_t y[3] = {2, -1, 1}, bad_y[3] = {2, 4, 1};
    ck_assert_int_eq(kd_loss_set_float(l, KD_LOSS_ALPHA, 0.5f), KD_OK);
    ck_assert_int_eq(kd_loss_forward(l, zs, zt, y, 3, 4, &v), KD_OK);
    ck_assert_int_eq(kd_loss_backward(l, g), KD_OK);
    memcpy(nan_t, zt, sizeof nan_t);
    nan_t[5] = NAN;
    ck_assert_int_eq(kd_loss_forward(l, zs, NULL, y, 3, 4, &v), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_loss_forward(l, zs, zt, NULL, 3, 4, &v), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_loss_forward(l, zs, nan_t, y, 3, 4, &v), KD_ERR_NUMERIC);
    ck_assert_int_eq(kd_loss_forward(l, zs, zt, bad_y, 3, 4, &v), KD_ERR_ARGUMENT);
    /* logits are not probabilities: rows that do not sum to 1 are fine here */
    ck_assert_int_eq(kd_loss_backward(l, g2), KD_OK);
    ck_assert(memcmp(g, g2, sizeof g) == 0); /* the failed forwards changed nothing */
    kd_loss_destroy(l);
}
END_TEST

/* ---------------------------------------------------------------- DKD */

START_TEST(dkd_gradient)
{
    static const float temps[] = {1.0f, 4.0f};
    static const float ab[][3] = {
        {1.0f, 8.0f, 1.0f}, {0.0f, 1.0f, 0.0f}, {0.5f, 0.0f, 2.0f}, {1.0f, 2.0f, 0.0f}};
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 4; j++) {
            kd_loss *l = make(KD_LOSS_DKD);
            ck_assert_int_eq(kd_loss_set_float(l, KD_LOSS_TEMPERATURE, temps[i]), KD_OK);
            ck_assert_int_eq(kd_loss_set_float(l, KD_LOSS_ALPHA, ab[j][0]), KD_OK);
            ck_assert_int_eq(kd_loss_set_float(l, KD_LOSS_BETA, ab[j][1]), KD_OK);
            ck_assert_int_eq(kd_loss_set_float(l, KD_LOSS_CE_WEIGHT, ab[j][2]), KD_OK);
            gradcheck(l, 1, temps[i]);
            kd_loss_destroy(l);
        }
}
END_TEST

/* The rows above with labels {2, 0, 1}, T 4, alpha 1, beta 8, CE weight 1, computed in Python as
 * mdistiller's dkd_loss (softmax at T, cat_mask into [p_t, 1 - p_t], the non-target softmax with
 * the target masked out): TCKD = 0.0665806479 and NCKD = 0.231851413 (both times T^2, batch
 * means), soft = TCKD + 8 NCKD = 1.92139195, hard = 1.05471226, total 2.97610421. */
START_TEST(dkd_hand_computed)
{
    kd_loss *l = make(KD_LOSS_DKD);
    float p[12], v, soft, hard, opt;
    ck_assert_int_eq(kd_loss_get_float(l, KD_LOSS_ALPHA, &opt), KD_OK);
    ck_assert(opt == 1.0f);
    ck_assert_int_eq(kd_loss_get_float(l, KD_LOSS_BETA, &opt), KD_OK);
    ck_assert(opt == 8.0f);
    ck_assert_int_eq(kd_loss_get_float(l, KD_LOSS_CE_WEIGHT, &opt), KD_OK);
    ck_assert(opt == 1.0f);
    ck_assert_int_eq(kd_soft_targets_from_logits(zt, NULL, 1, 3, 4, 4.0f, p), KD_OK);
    static const int32_t y[3] = {2, 0, 1};
    ck_assert_int_eq(kd_loss_forward(l, zs, p, y, 3, 4, &v), KD_OK);
    ck_assert_int_eq(kd_loss_value(l, KD_LOSS_PART_SOFT, &soft), KD_OK);
    ck_assert_int_eq(kd_loss_value(l, KD_LOSS_PART_HARD, &hard), KD_OK);
    ck_assert_msg(fabs(soft - 1.92139195) < 2e-5, "soft %.9g", (double)soft);
    ck_assert_msg(fabs(hard - 1.05471226) < 2e-6, "hard %.9g", (double)hard);
    ck_assert_msg(fabs(v - 2.97610421) < 2e-5, "total %.9g", (double)v);
    /* the parts alone */
    ck_assert_int_eq(kd_loss_set_float(l, KD_LOSS_BETA, 0.0f), KD_OK);
    ck_assert_int_eq(kd_loss_set_float(l, KD_LOSS_CE_WEIGHT, 0.0f), KD_OK);
    ck_assert_int_eq(kd_loss_forward(l, zs, p, y, 3, 4, &v), KD_OK);
    ck_assert_msg(fabs(v - 0.0665806479) < 1e-6, "TCKD %.9g", (double)v);
    ck_assert_int_eq(kd_loss_set_float(l, KD_LOSS_ALPHA, 0.0f), KD_OK);
    ck_assert_int_eq(kd_loss_set_float(l, KD_LOSS_BETA, 1.0f), KD_OK);
    ck_assert_int_eq(kd_loss_forward(l, zs, p, y, 3, 4, &v), KD_OK);
    ck_assert_msg(fabs(v - 0.231851413) < 2e-6, "NCKD %.9g", (double)v);
    kd_loss_destroy(l);
}
END_TEST

/* Zhao et al. 2022, eq. 6: KD = TCKD + (1 - p_t) NCKD, row by row. */
START_TEST(dkd_decomposes_kd)
{
    float z[C], tz[C], p[C], kd, tckd, nckd;
    kdt_fill(z, C, 21, -3.0f, 3.0f);
    kdt_fill(tz, C, 22, -3.0f, 3.0f);
    ck_assert_int_eq(kd_soft_targets_from_logits(tz, NULL, 1, 1, C, 2.0f, p), KD_OK);
    int32_t y = 3;
    kd_loss *h = make(KD_LOSS_HINTON), *d = make(KD_LOSS_DKD);
    ck_assert_int_eq(kd_loss_set_float(h, KD_LOSS_TEMPERATURE, 2.0f), KD_OK);
    ck_assert_int_eq(kd_loss_set_float(h, KD_LOSS_ALPHA, 1.0f), KD_OK);
    ck_assert_int_eq(kd_loss_forward(h, z, p, NULL, 1, C, &kd), KD_OK);
    ck_assert_int_eq(kd_loss_set_float(d, KD_LOSS_TEMPERATURE, 2.0f), KD_OK);
    ck_assert_int_eq(kd_loss_set_float(d, KD_LOSS_BETA, 0.0f), KD_OK);
    ck_assert_int_eq(kd_loss_set_float(d, KD_LOSS_CE_WEIGHT, 0.0f), KD_OK);
    ck_assert_int_eq(kd_loss_forward(d, z, p, &y, 1, C, &tckd), KD_OK);
    ck_assert_int_eq(kd_loss_set_float(d, KD_LOSS_ALPHA, 0.0f), KD_OK);
    ck_assert_int_eq(kd_loss_set_float(d, KD_LOSS_BETA, 1.0f), KD_OK);
    ck_assert_int_eq(kd_loss_forward(d, z, p, &y, 1, C, &nckd), KD_OK);
    double sum = (double)tckd + (1.0 - (double)p[y]) * (double)nckd;
    ck_assert_msg(fabs(sum - kd) < 1e-5 * fabs(kd), "KD %g, TCKD + (1 - p_t) NCKD %g", (double)kd,
                  sum);
    kd_loss_destroy(h);
    kd_loss_destroy(d);
}
END_TEST

/* An unlabelled row takes the teacher's top class as its target and adds no CE. */
START_TEST(dkd_unlabelled_row)
{
    kd_loss *l = make(KD_LOSS_DKD);
    float p[12], v1, v2, g1[12], g2[12];
    ck_assert_int_eq(kd_soft_targets_from_logits(zt, NULL, 1, 3, 4, 4.0f, p), KD_OK);
    static const int32_t unl[3] = {-1, -1, -1};
    static const int32_t top[3] = {0, 3, 1}; /* the teacher's argmax of each row */
    ck_assert_int_eq(kd_loss_forward(l, zs, p, unl, 3, 4, &v1), KD_OK);
    ck_assert_int_eq(kd_loss_backward(l, g1), KD_OK);
    ck_assert_int_eq(kd_loss_set_float(l, KD_LOSS_CE_WEIGHT, 0.0f), KD_OK);
    ck_assert_int_eq(kd_loss_forward(l, zs, p, top, 3, 4, &v2), KD_OK);
    ck_assert_int_eq(kd_loss_backward(l, g2), KD_OK);
    ck_assert(fabsf(v1 - v2) < 1e-6f);
    for (int i = 0; i < 12; i++) ck_assert(fabsf(g1[i] - g2[i]) < 1e-6f);
    kd_loss_destroy(l);
}
END_TEST

START_TEST(dkd_bad_input)
{
    kd_loss *l = make(KD_LOSS_DKD);
    float p[12], v, g[12], g2[12];
    static const int32_t y[3] = {2, 0, 1};
    ck_assert_int_eq(kd_soft_targets_from_logits(zt, NULL, 1, 3, 4, 4.0f, p), KD_OK);
    ck_assert_int_eq(kd_loss_backward(l, g), KD_ERR_STATE);
    ck_assert_int_eq(kd_loss_forward(l, zs, p, y, 3, 4, &v), KD_OK);
    ck_assert_int_eq(kd_loss_backward(l, g), KD_OK);
    ck_assert_int_eq(kd_loss_forward(l, zs, zt, y, 3, 4, &v), KD_ERR_ARGUMENT); /* logits */
    ck_assert_int_eq(kd_loss_forward(l, zs, NULL, y, 3, 4, &v), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_loss_forward(l, zs, p, NULL, 3, 4, &v), KD_ERR_ARGUMENT); /* CE on */
    ck_assert_int_eq(kd_loss_forward(l, zs, p, y, 12, 1, &v), KD_ERR_ARGUMENT);   /* 1 class */
    ck_assert_int_eq(kd_loss_set_float(l, KD_LOSS_BETA, -1.0f), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_loss_set_float(l, KD_LOSS_CE_WEIGHT, NAN), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_loss_set_float(l, KD_LOSS_BETA, INFINITY), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_loss_create((kd_loss_kind)99, &l), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_loss_backward(l, g2), KD_OK);
    ck_assert(memcmp(g, g2, sizeof g) == 0);
    float beta;
    ck_assert_int_eq(kd_loss_get_float(l, KD_LOSS_BETA, &beta), KD_OK);
    ck_assert(beta == 8.0f);
    kd_loss_destroy(l);
}
END_TEST

/* ---------------------------------------------------------------- Hinton, unlabelled */

/* A transfer set without labels: every row -1, alpha < 1. The loss is the soft term alone and its
 * gradient alpha T (q_T - p) / B, whatever alpha says about the hard term. */
START_TEST(hinton_unlabelled_transfer_set)
{
    float z[B * C], tz[B * C], p[B * C], q[B * C], g[B * C], v, hard;
    int32_t y[B];
    for (int i = 0; i < B; i++) y[i] = -1;
    kdt_fill(z, B * C, 31, -3.0f, 3.0f);
    kdt_fill(tz, B * C, 32, -3.0f, 3.0f);
    ck_assert_int_eq(kd_soft_targets_from_logits(tz, NULL, 1, B, C, 3.0f, p), KD_OK);
    ck_assert_int_eq(kd_soft_targets_from_logits(z, NULL, 1, B, C, 3.0f, q), KD_OK);
    kd_loss *l = make(KD_LOSS_HINTON);
    ck_assert_int_eq(kd_loss_set_float(l, KD_LOSS_TEMPERATURE, 3.0f), KD_OK);
    ck_assert_int_eq(kd_loss_set_float(l, KD_LOSS_ALPHA, 0.7f), KD_OK);
    ck_assert_int_eq(kd_loss_forward(l, z, p, y, B, C, &v), KD_OK);
    ck_assert_int_eq(kd_loss_value(l, KD_LOSS_PART_HARD, &hard), KD_OK);
    ck_assert(hard == 0.0f);
    ck_assert_int_eq(kd_loss_backward(l, g), KD_OK);
    for (int i = 0; i < B * C; i++)
        ck_assert(fabsf(g[i] - 0.7f * 3.0f * (q[i] - p[i]) / B) < 1e-6f);
    kd_loss_destroy(l);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("losses_logit");
    TCase *t = tcase_create("core");
    tcase_add_test(t, mse_gradient);
    tcase_add_test(t, mse_hand_computed);
    tcase_add_test(t, mse_bad_input);
    tcase_add_test(t, dkd_gradient);
    tcase_add_test(t, dkd_hand_computed);
    tcase_add_test(t, dkd_decomposes_kd);
    tcase_add_test(t, dkd_unlabelled_row);
    tcase_add_test(t, dkd_bad_input);
    tcase_add_test(t, hinton_unlabelled_transfer_set);
    suite_add_tcase(s, t);
    return s;
}

int main(void) { return kdt_run(suite()); }
