/* The token-level losses (reverse KL, generalised JSD, skew KL and skew reverse KL, TVD): values
 * against tests/data/lm_losses_reference.py, gradients against finite differences, their limits
 * (JSD at beta 0 and 1, the skews at lambda 0) against forward and reverse KL, the padding mask
 * (KD_LOSS_MASK_UNLABELLED) for every kind, teacher zeros, options and defaults. */
#include <math.h>
#include <string.h>

#include "distill/loss.h"
#include "testutil.h"

#define B 6
#define C 5

static const kd_loss_kind kinds[] = {KD_LOSS_REVERSE_KL, KD_LOSS_JSD, KD_LOSS_SKEW_KL,
                                     KD_LOSS_SKEW_REVERSE_KL, KD_LOSS_TVD};
#define NKINDS 5

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
    const float *z, *p;
    const int32_t *y;
} fd_ctx;

static double objective(void *ctx)
{
    fd_ctx *c = ctx;
    float v;
    ck_assert_int_eq(kd_loss_forward(c->l, c->z, c->p, c->y, B, C, &v), KD_OK);
    return c->l->parts[KD_LOSS_PART_TOTAL];
}

/* Finite differences against backward on random logits, rows 2 and 4 labelled -1. */
static void gradcheck(kd_loss *l, float t)
{
    float z[B * C], tz[B * C], p[B * C], g[B * C], v;
    static const int32_t y[B] = {0, 3, -1, 4, -1, 2};
    kdt_fill(z, B * C, 3, -3.0f, 3.0f);
    kdt_fill(tz, B * C, 4, -4.0f, 4.0f);
    ck_assert_int_eq(kd_soft_targets_from_logits(tz, NULL, 1, B, C, t, p), KD_OK);
    ck_assert_int_eq(kd_loss_forward(l, z, p, y, B, C, &v), KD_OK);
    ck_assert_int_eq(kd_loss_backward(l, g), KD_OK);
    fd_ctx c = {l, z, p, y};
    double err = kdt_gradcheck(objective, &c, z, g, B * C, 1e-2, 100);
    ck_assert_msg(err < 1e-2, "%s: gradient error %g", l->ops->name, err);
}

START_TEST(gradients)
{
    static const float temps[] = {1.0f, 2.5f}, alphas[] = {0.3f, 1.0f},
                       weights[] = {0.0f, 0.3f, 1.0f};
    for (int k = 0; k < NKINDS; k++)
        for (int i = 0; i < 2; i++)
            for (int a = 0; a < 2; a++)
                for (int m = 0; m < 2; m++)
                    for (int w = 0; w < 3; w++) {
                        kd_loss *l = make(kinds[k]);
                        set(l, KD_LOSS_TEMPERATURE, temps[i]);
                        set(l, KD_LOSS_ALPHA, alphas[a]);
                        set(l, KD_LOSS_MASK_UNLABELLED, (float)m);
                        set(l, KD_LOSS_JSD_BETA, weights[w]);
                        set(l, KD_LOSS_SKEW, weights[w] * 0.9f);
                        gradcheck(l, temps[i]);
                        kd_loss_destroy(l);
                    }
}
END_TEST

/* tests/data/lm_losses_reference.py: three rows of four classes, labels {2, -1, 1}, T 2,
 * alpha 0.5, JSD beta 0.5, skew lambda 0.1; soft term with the -1 row masked (default) and not. */
static const float zs[12] = {1.0f,  -0.5f, 2.0f,  0.3f, 0.2f,  0.1f,
                             -1.0f, 1.5f,  -2.0f, 0.5f, 0.25f, 0.0f};
static const float zt[12] = {2.0f, 0.0f, 1.0f,  -1.0f, 0.5f, -0.3f,
                             0.0f, 2.5f, -1.0f, 1.5f,  0.5f, 0.2f};
static const int32_t ys[3] = {2, -1, 1};
#define HARD 0.3483437106

static const struct {
    kd_loss_kind kind;
    double soft_masked, soft_all;
} refs[] = {{KD_LOSS_HINTON, 0.1384843719, 0.1151446094},
            {KD_LOSS_REVERSE_KL, 0.1378368195, 0.1167533663},
            {KD_LOSS_JSD, 0.03419702175, 0.02871676291},
            {KD_LOSS_SKEW_KL, 0.1112961971, 0.09292933321},
            {KD_LOSS_SKEW_REVERSE_KL, 0.1109918302, 0.09370066402},
            {KD_LOSS_TVD, 0.3338728256, 0.3016849659}};

START_TEST(reference_values)
{
    float p[12], v, soft, hard;
    ck_assert_int_eq(kd_soft_targets_from_logits(zt, NULL, 1, 3, 4, 2.0f, p), KD_OK);
    for (int i = 0; i < 6; i++)
        for (int m = 1; m >= 0; m--) {
            kd_loss *l = make(refs[i].kind);
            set(l, KD_LOSS_TEMPERATURE, 2.0f);
            set(l, KD_LOSS_ALPHA, 0.5f);
            set(l, KD_LOSS_MASK_UNLABELLED, (float)m);
            ck_assert_int_eq(kd_loss_forward(l, zs, p, ys, 3, 4, &v), KD_OK);
            ck_assert_int_eq(kd_loss_value(l, KD_LOSS_PART_SOFT, &soft), KD_OK);
            ck_assert_int_eq(kd_loss_value(l, KD_LOSS_PART_HARD, &hard), KD_OK);
            double want = m ? refs[i].soft_masked : refs[i].soft_all;
            ck_assert_msg(fabs(soft - want) < 2e-6 * want + 1e-7,
                          "%s mask %d: soft %.9g, want %.9g", l->ops->name, m, (double)soft, want);
            /* Hinton's hard term is the wins branch's business; with the mask it is labelled rows'
             * mean anyway */
            if (refs[i].kind != KD_LOSS_HINTON || m)
                ck_assert_msg(fabs(hard - HARD) < 1e-6, "%s: hard %.9g", l->ops->name,
                              (double)hard);
            kd_loss_destroy(l);
        }
}
END_TEST

/* The gradient of JSD (alpha 0.5, T 2, beta 0.5, the -1 row masked) against PyTorch's autograd
 * through TRL's formula (tests/data/lm_losses_reference.py, run with python3-torch). */
START_TEST(reference_gradient)
{
    static const double want[12] = {
        0.0338027488,  0.00660072855, -0.0787139402, 0.0383104628, 0, 0, 0, 0,
        0.00566146295, -0.157947824,  0.0848451344,  0.0674412263};
    float p[12], g[12], v;
    ck_assert_int_eq(kd_soft_targets_from_logits(zt, NULL, 1, 3, 4, 2.0f, p), KD_OK);
    kd_loss *l = make(KD_LOSS_JSD);
    set(l, KD_LOSS_TEMPERATURE, 2.0f);
    set(l, KD_LOSS_ALPHA, 0.5f);
    ck_assert_int_eq(kd_loss_forward(l, zs, p, ys, 3, 4, &v), KD_OK);
    ck_assert_int_eq(kd_loss_backward(l, g), KD_OK);
    for (int i = 0; i < 12; i++)
        ck_assert_msg(fabs(g[i] - want[i]) < 1e-6, "[%d] %.9g, autograd %.9g", i, (double)g[i],
                      want[i]);
    kd_loss_destroy(l);
}
END_TEST

/* Value and gradient of loss a against loss b on the same random input. */
static void same(kd_loss *a, kd_loss *b, float t)
{
    float z[B * C], tz[B * C], p[B * C], ga[B * C], gb[B * C], va, vb;
    kdt_fill(z, B * C, 11, -3.0f, 3.0f);
    kdt_fill(tz, B * C, 12, -3.0f, 3.0f);
    ck_assert_int_eq(kd_soft_targets_from_logits(tz, NULL, 1, B, C, t, p), KD_OK);
    ck_assert_int_eq(kd_loss_forward(a, z, p, NULL, B, C, &va), KD_OK);
    ck_assert_int_eq(kd_loss_backward(a, ga), KD_OK);
    ck_assert_int_eq(kd_loss_forward(b, z, p, NULL, B, C, &vb), KD_OK);
    ck_assert_int_eq(kd_loss_backward(b, gb), KD_OK);
    ck_assert_msg(fabsf(va - vb) < 1e-5f * fabsf(va), "%s %g, %s %g", a->ops->name, (double)va,
                  b->ops->name, (double)vb);
    for (int i = 0; i < B * C; i++) ck_assert(fabsf(ga[i] - gb[i]) < 1e-6f);
}

START_TEST(limits)
{
    kd_loss *fkl = make(KD_LOSS_HINTON), *rkl = make(KD_LOSS_REVERSE_KL);
    set(fkl, KD_LOSS_TEMPERATURE, 2.0f);
    set(fkl, KD_LOSS_ALPHA, 1.0f);
    set(rkl, KD_LOSS_TEMPERATURE, 2.0f);
    kd_loss *j0 = make(KD_LOSS_JSD), *j1 = make(KD_LOSS_JSD);
    kd_loss *s0 = make(KD_LOSS_SKEW_KL), *r0 = make(KD_LOSS_SKEW_REVERSE_KL);
    kd_loss *ls[] = {j0, j1, s0, r0};
    for (int i = 0; i < 4; i++) set(ls[i], KD_LOSS_TEMPERATURE, 2.0f);
    set(j0, KD_LOSS_JSD_BETA, 0.0f);
    set(j1, KD_LOSS_JSD_BETA, 1.0f);
    set(s0, KD_LOSS_SKEW, 0.0f);
    set(r0, KD_LOSS_SKEW, 0.0f);
    same(j0, fkl, 2.0f); /* TRL: beta 0 is the forward KL */
    same(j1, rkl, 2.0f); /* and beta 1 the reverse KL */
    same(s0, fkl, 2.0f);
    same(r0, rkl, 2.0f);
    /* JSD(beta) / beta tends to the forward KL as beta -> 0 (Agarwal et al.) */
    float z[C], tz[C], p[C], vj, vf;
    kdt_fill(z, C, 13, -2.0f, 2.0f);
    kdt_fill(tz, C, 14, -2.0f, 2.0f);
    ck_assert_int_eq(kd_soft_targets_from_logits(tz, NULL, 1, 1, C, 2.0f, p), KD_OK);
    set(j0, KD_LOSS_JSD_BETA, 1e-3f);
    ck_assert_int_eq(kd_loss_forward(j0, z, p, NULL, 1, C, &vj), KD_OK);
    ck_assert_int_eq(kd_loss_forward(fkl, z, p, NULL, 1, C, &vf), KD_OK);
    ck_assert_msg(fabs(vj / 1e-3 - vf) < 1e-2 * vf, "JSD/beta %g, KL %g", vj / 1e-3, (double)vf);
    kd_loss_destroy(fkl);
    kd_loss_destroy(rkl);
    for (int i = 0; i < 4; i++) kd_loss_destroy(ls[i]);
}
END_TEST

/* A padded row (-1 with the mask on) adds nothing and gets no gradient, for every kind (Hinton,
 * logit MSE and DKD included): the batch equals the labelled rows alone. */
START_TEST(padding)
{
    static const kd_loss_kind all[] = {KD_LOSS_HINTON,          KD_LOSS_LOGIT_MSE, KD_LOSS_DKD,
                                       KD_LOSS_REVERSE_KL,      KD_LOSS_JSD,       KD_LOSS_SKEW_KL,
                                       KD_LOSS_SKEW_REVERSE_KL, KD_LOSS_TVD};
    float z[B * C], tz[B * C], p[B * C], g[B * C], v;
    float z2[3 * C], p2[3 * C], tz2[3 * C], g2[3 * C], v2;
    static const int32_t y[B] = {1, -1, 0, -1, -1, 4}, y2[3] = {1, 0, 4},
                         none[B] = {-1, -1, -1, -1, -1, -1};
    static const int keep[3] = {0, 2, 5};
    kdt_fill(z, B * C, 15, -3.0f, 3.0f);
    kdt_fill(tz, B * C, 16, -3.0f, 3.0f);
    for (int k = 0; k < 3; k++) {
        memcpy(z2 + k * C, z + keep[k] * C, sizeof(float) * C);
        memcpy(tz2 + k * C, tz + keep[k] * C, sizeof(float) * C);
    }
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        kd_loss *l = make(all[i]);
        int logits = all[i] == KD_LOSS_LOGIT_MSE;
        float mask;
        ck_assert_int_eq(kd_loss_get_float(l, KD_LOSS_MASK_UNLABELLED, &mask), KD_OK);
        ck_assert(mask == (all[i] >= KD_LOSS_REVERSE_KL ? 1.0f : 0.0f));
        set(l, KD_LOSS_MASK_UNLABELLED, 1.0f);
        set(l, KD_LOSS_ALPHA, 0.6f);
        ck_assert_int_eq(kd_soft_targets_from_logits(tz, NULL, 1, B, C, 4.0f, p), KD_OK);
        ck_assert_int_eq(kd_soft_targets_from_logits(tz2, NULL, 1, 3, C, 4.0f, p2), KD_OK);
        set(l, KD_LOSS_TEMPERATURE, 4.0f);
        ck_assert_int_eq(kd_loss_forward(l, z, logits ? tz : p, y, B, C, &v), KD_OK);
        ck_assert_int_eq(kd_loss_backward(l, g), KD_OK);
        ck_assert_int_eq(kd_loss_forward(l, z2, logits ? tz2 : p2, y2, 3, C, &v2), KD_OK);
        ck_assert_int_eq(kd_loss_backward(l, g2), KD_OK);
        ck_assert_msg(v == v2, "%s: %g padded, %g without the padding", l->ops->name, (double)v,
                      (double)v2);
        for (int r = 0, k = 0; r < B; r++) {
            for (int c = 0; c < C; c++)
                ck_assert(g[r * C + c] == (y[r] < 0 ? 0.0f : g2[k * C + c]));
            k += y[r] >= 0;
        }
        /* every row padded: 0 and a zero gradient, as TRL's clamped denominator */
        ck_assert_int_eq(kd_loss_forward(l, z, logits ? tz : p, none, B, C, &v), KD_OK);
        ck_assert(v == 0.0f);
        ck_assert_int_eq(kd_loss_backward(l, g), KD_OK);
        for (int j = 0; j < B * C; j++) ck_assert(g[j] == 0.0f);
        kd_loss_destroy(l);
    }
}
END_TEST

/* A teacher probability of exactly 0 (a sparse cache, an underflow) keeps the divergences
 * finite. */
START_TEST(teacher_zeros)
{
    float p[C] = {0.0f, 0.5f, 0.0f, 0.5f, 0.0f}, z[C] = {0.3f, 1.0f, -2.0f, 0.5f, 0.0f}, g[C], v;
    for (int k = 0; k < NKINDS; k++)
        for (int w = 0; w < 3; w++) {
            kd_loss *l = make(kinds[k]);
            set(l, KD_LOSS_JSD_BETA, 0.5f * (float)w);
            set(l, KD_LOSS_SKEW, 0.5f * (float)w);
            ck_assert_int_eq(kd_loss_forward(l, z, p, NULL, 1, C, &v), KD_OK);
            ck_assert_msg(isfinite(v) && v >= 0.0f, "%s: %g", l->ops->name, (double)v);
            ck_assert_int_eq(kd_loss_backward(l, g), KD_OK);
            for (int j = 0; j < C; j++) ck_assert(isfinite(g[j]));
            kd_loss_destroy(l);
        }
}
END_TEST

START_TEST(options)
{
    float v, g[12], g2[12], p[12];
    ck_assert_int_eq(kd_soft_targets_from_logits(zt, NULL, 1, 3, 4, 1.0f, p), KD_OK);
    for (int k = 0; k < NKINDS; k++) {
        kd_loss *l = make(kinds[k]);
        ck_assert_int_eq(kd_loss_get_float(l, KD_LOSS_ALPHA, &v), KD_OK);
        ck_assert(v == 1.0f);
        ck_assert_int_eq(kd_loss_get_float(l, KD_LOSS_TEMPERATURE, &v), KD_OK);
        ck_assert(v == 1.0f);
        ck_assert_int_eq(kd_loss_get_float(l, KD_LOSS_JSD_BETA, &v), KD_OK);
        ck_assert(v == 0.5f);
        ck_assert_int_eq(kd_loss_get_float(l, KD_LOSS_SKEW, &v), KD_OK);
        ck_assert(v == 0.1f);
        ck_assert_int_eq(kd_loss_set_float(l, KD_LOSS_JSD_BETA, 1.5f), KD_ERR_ARGUMENT);
        ck_assert_int_eq(kd_loss_set_float(l, KD_LOSS_SKEW, -0.1f), KD_ERR_ARGUMENT);
        ck_assert_int_eq(kd_loss_set_float(l, KD_LOSS_SKEW, NAN), KD_ERR_ARGUMENT);
        ck_assert_int_eq(kd_loss_set_float(l, KD_LOSS_MASK_UNLABELLED, 0.5f), KD_ERR_ARGUMENT);
        ck_assert_int_eq(kd_loss_set_float(l, (kd_loss_option)13, 0.0f), KD_ERR_ARGUMENT);
        ck_assert_int_eq(kd_loss_get_float(l, (kd_loss_option)20, &v), KD_ERR_ARGUMENT);
        ck_assert_int_eq(kd_loss_forward(l, zs, p, ys, 3, 4, &v), KD_OK);
        ck_assert_int_eq(kd_loss_backward(l, g), KD_OK);
        ck_assert_int_eq(kd_loss_forward(l, zs, NULL, ys, 3, 4, &v), KD_ERR_ARGUMENT);
        ck_assert_int_eq(kd_loss_forward(l, zs, zt, ys, 3, 4, &v), KD_ERR_ARGUMENT); /* logits */
        set(l, KD_LOSS_ALPHA, 0.5f);
        ck_assert_int_eq(kd_loss_forward(l, zs, p, NULL, 3, 4, &v), KD_ERR_ARGUMENT);
        ck_assert_int_eq(kd_loss_backward(l, g2), KD_OK);
        ck_assert(memcmp(g, g2, sizeof g) == 0); /* the failed forwards changed nothing */
        kd_loss_destroy(l);
    }
    kd_loss *l;
    ck_assert_int_eq(kd_loss_create((kd_loss_kind)15, &l), KD_ERR_ARGUMENT);
}
END_TEST

/* Through the trainer: each kind trains a student towards a teacher, token rows labelled -1 as
 * padding included. */
START_TEST(trainer_steps)
{
    float x[8 * 6], v0 = 0.0f, v = 0.0f;
    int32_t y[8] = {0, 1, 2, -1, 3, 0, -1, 2};
    kdt_fill(x, 8 * 6, 51, -1.0f, 1.0f);
    for (int k = 0; k < NKINDS; k++) {
        kd_model *t, *s;
        kd_optimizer *o;
        kd_trainer *tr;
        kd_loss *l = make(kinds[k]);
        set(l, KD_LOSS_ALPHA, 0.8f);
        ck_assert_int_eq(kd_model_create("input 6 | dense 16 | tanh | dense 4", 1, &t), KD_OK);
        ck_assert_int_eq(kd_model_create("input 6 | dense 4", 2, &s), KD_OK);
        ck_assert_int_eq(kd_optimizer_create(KD_OPTIMIZER_ADAM, s, &o), KD_OK);
        ck_assert_int_eq(kd_optimizer_set_float(o, KD_OPT_LEARNING_RATE, 0.02f), KD_OK);
        ck_assert_int_eq(kd_trainer_create(s, l, o, &tr), KD_OK);
        ck_assert_int_eq(kd_trainer_add_teacher(tr, t, 1.0f), KD_OK);
        for (int i = 0; i < 60; i++) {
            ck_assert_int_eq(kd_trainer_step(tr, x, y, NULL, 8, &v), KD_OK);
            if (i == 0) v0 = v;
        }
        ck_assert_msg(v < 0.8f * v0, "%s: %g after 60 steps, %g at the first", l->ops->name,
                      (double)v, (double)v0);
        kd_trainer_destroy(tr);
        kd_optimizer_destroy(o);
        kd_model_destroy(s);
        kd_model_destroy(t);
        kd_loss_destroy(l);
    }
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("losses_token");
    TCase *t = tcase_create("core");
    tcase_add_test(t, gradients);
    tcase_add_test(t, reference_values);
    tcase_add_test(t, reference_gradient);
    tcase_add_test(t, limits);
    tcase_add_test(t, padding);
    tcase_add_test(t, teacher_zeros);
    tcase_add_test(t, options);
    tcase_add_test(t, trainer_steps);
    suite_add_tcase(s, t);
    return s;
}

int main(void) { return kdt_run(suite()); }
