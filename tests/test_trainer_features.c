/* The trainer's distillation methods: feature terms with regressors (one step against the same
 * sequence through the public pieces), the FitNets hint-only stage, teachers run for features
 * when logits are cached, logit MSE from an ensemble's mean logits, per-teacher terms, an
 * unlabelled transfer set, the output-bias correction, and bad input. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "distill/losses/losses.h"
#include "distill/trainer.h"
#include "nn/model.h"
#include "testutil.h"

#define B 8
#define IN 6
#define C 3
#define STUDENT "input 6 | dense 5 | tanh | dense 3"
#define TEACHER "input 6 | dense 8 | tanh | dense 3"

static kd_model *model(const char *spec, uint64_t seed)
{
    kd_model *m;
    ck_assert_int_eq(kd_model_create(spec, seed, &m), KD_OK);
    return m;
}

typedef struct rig {
    kd_model *student, *teacher;
    kd_loss *loss;
    kd_optimizer *opt;
    kd_trainer *t;
} rig;

static rig make_rig(kd_loss_kind kind, float lr)
{
    rig r = {model(STUDENT, 1), model(TEACHER, 2), NULL, NULL, NULL};
    ck_assert_int_eq(kd_loss_create(kind, &r.loss), KD_OK);
    ck_assert_int_eq(kd_loss_set_float(r.loss, KD_LOSS_TEMPERATURE, 2.0f), KD_OK);
    if (kind == KD_LOSS_HINTON)
        ck_assert_int_eq(kd_loss_set_float(r.loss, KD_LOSS_ALPHA, 0.5f), KD_OK);
    ck_assert_int_eq(kd_optimizer_create(KD_OPTIMIZER_SGD, r.student, &r.opt), KD_OK);
    ck_assert_int_eq(kd_optimizer_set_float(r.opt, KD_OPT_LEARNING_RATE, lr), KD_OK);
    ck_assert_int_eq(kd_trainer_create(r.student, r.loss, r.opt, &r.t), KD_OK);
    ck_assert_int_eq(kd_trainer_add_teacher(r.t, r.teacher, 1.0f), KD_OK);
    return r;
}

static void free_rig(rig *r)
{
    kd_trainer_destroy(r->t);
    kd_optimizer_destroy(r->opt);
    kd_loss_destroy(r->loss);
    kd_model_destroy(r->student);
    kd_model_destroy(r->teacher);
}

static void make_data(float *x, int32_t *y, uint64_t seed)
{
    kdt_fill(x, B * IN, seed, -1.0f, 1.0f);
    for (int i = 0; i < B; i++) y[i] = (int32_t)((i * 5 + (int)seed) % C);
}

/* Largest difference between the parameters of two models of one spec. */
static double param_diff(const kd_model *a, const kd_model *b)
{
    const kdi_param_list *pa = kdi_model_params(a), *pb = kdi_model_params(b);
    double worst = 0.0;
    for (int32_t i = 0; i < pa->n; i++)
        for (int64_t j = 0; j < pa->items[i].p->count; j++)
            worst = fmax(worst, fabs((double)pa->items[i].p->value[j] - pb->items[i].p->value[j]));
    return worst;
}

/* SGD by hand: w -= lr * grad, for every trainable parameter. */
static void sgd(kd_model *m, float lr)
{
    const kdi_param_list *ps = kdi_model_params(m);
    for (int32_t i = 0; i < ps->n; i++) {
        kdi_param *p = ps->items[i].p;
        if (p->grad == NULL) continue;
        for (int64_t j = 0; j < p->count; j++) p->value[j] -= lr * p->grad[j];
    }
}

/* One trainer step with a hint term through a regressor equals the same sequence done by hand
 * with the public pieces: loss, teacher features, regressor, feature loss, feature backward. */
START_TEST(step_matches_manual_sequence)
{
    rig r = make_rig(KD_LOSS_HINTON, 0.1f);
    kd_feature_loss *hint;
    ck_assert_int_eq(kd_feature_loss_create(KD_FEATURE_HINT, &hint), KD_OK);
    ck_assert_int_eq(kd_trainer_add_feature_loss(r.t, hint, 1, 0, 1, "dense 8", 0.7f), KD_OK);
    kd_model *reg, *s2, *r2;
    ck_assert_int_eq(kd_trainer_regressor(r.t, 0, &reg), KD_OK);
    ck_assert_ptr_nonnull(reg);
    ck_assert_str_eq(kd_model_spec(reg), "input 5 | dense 8");
    ck_assert_int_eq(kd_model_clone(r.student, &s2), KD_OK);
    ck_assert_int_eq(kd_model_clone(reg, &r2), KD_OK);
    float x[B * IN], p[B * C], z[B * C], gz[B * C], rout[B * 8], gf[B * 8], dx[B * 5], v, lv, fv;
    int32_t y[B];
    make_data(x, y, 3);

    float total;
    ck_assert_int_eq(kd_trainer_step(r.t, x, y, NULL, B, &total), KD_OK);

    /* by hand */
    kd_model *ts[1] = {r.teacher};
    ck_assert_int_eq(kd_teacher_soft_targets(ts, NULL, 1, x, B, 2.0f, p), KD_OK);
    ck_assert_int_eq(kd_model_forward(s2, x, B, z), KD_OK);
    ck_assert_int_eq(kd_loss_forward(r.loss, z, p, y, B, C, &lv), KD_OK);
    ck_assert_int_eq(kd_loss_backward(r.loss, gz), KD_OK);
    const float *sf, *tf;
    ck_assert_int_eq(kd_model_feature(s2, 1, &sf, NULL, NULL, NULL, NULL), KD_OK);
    ck_assert_int_eq(kd_model_forward(r2, sf, B, rout), KD_OK);
    ck_assert_int_eq(kd_model_feature(r.teacher, 1, &tf, NULL, NULL, NULL, NULL), KD_OK);
    kd_feature_loss *h2;
    ck_assert_int_eq(kd_feature_loss_create(KD_FEATURE_HINT, &h2), KD_OK);
    ck_assert_int_eq(kd_feature_loss_forward(h2, rout, 8, 1, 1, tf, 8, 1, 1, B, &fv), KD_OK);
    ck_assert_int_eq(kd_feature_loss_backward(h2, gf), KD_OK);
    for (int i = 0; i < B * 8; i++) gf[i] *= 0.7f;
    ck_assert_int_eq(kdi_seq_backward(&r2->seq, gf, dx), KD_OK);
    ck_assert_int_eq(kd_model_feature_backward(s2, 1, dx), KD_OK);
    ck_assert_int_eq(kd_model_backward(s2, gz), KD_OK);
    sgd(s2, 0.1f);
    sgd(r2, 0.1f);

    ck_assert_msg(fabs(total - (lv + 0.7 * fv)) < 1e-5, "step %g, by hand %g", (double)total,
                  lv + 0.7 * fv);
    ck_assert_int_eq(kd_trainer_feature_value(r.t, 0, &v), KD_OK);
    ck_assert(fabs(v - 0.7 * fv) < 1e-6);
    ck_assert_int_eq(kd_trainer_feature_value(r.t, -1, &v), KD_OK);
    ck_assert(fabs(v - 0.7 * fv) < 1e-6);
    ck_assert_msg(param_diff(r.student, s2) < 1e-6, "student differs by %g",
                  param_diff(r.student, s2));
    ck_assert_msg(param_diff(reg, r2) < 1e-6, "regressor differs by %g", param_diff(reg, r2));
    kd_feature_loss_destroy(h2);
    kd_model_destroy(s2);
    kd_model_destroy(r2);
    free_rig(&r);
    kd_feature_loss_destroy(hint);
}
END_TEST

/* FitNets stage 1: the feature terms alone; the layer above the hint does not move, labels and
 * soft targets are not read. Stage 2 is a normal step again. */
START_TEST(hint_only_stage)
{
    rig r = make_rig(KD_LOSS_HINTON, 0.1f);
    kd_feature_loss *hint;
    int64_t mode;
    ck_assert_int_eq(kd_feature_loss_create(KD_FEATURE_HINT, &hint), KD_OK);
    ck_assert_int_eq(kd_trainer_set_int(r.t, KD_TRAINER_HINT_ONLY, 1), KD_ERR_STATE);
    ck_assert_int_eq(kd_trainer_get_int(r.t, KD_TRAINER_HINT_ONLY, &mode), KD_OK);
    ck_assert_int_eq(mode, 0);
    ck_assert_int_eq(kd_trainer_add_feature_loss(r.t, hint, 1, 0, 1, "dense 8", 1.0f), KD_OK);
    ck_assert_int_eq(kd_trainer_set_int(r.t, KD_TRAINER_HINT_ONLY, 2), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_trainer_set_int(r.t, (kd_trainer_option)1, 1), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_trainer_set_int(r.t, KD_TRAINER_HINT_ONLY, 1), KD_OK);
    ck_assert_int_eq(kd_trainer_get_int(r.t, KD_TRAINER_HINT_ONLY, &mode), KD_OK);
    ck_assert_int_eq(mode, 1);
    kd_model *before;
    ck_assert_int_eq(kd_model_clone(r.student, &before), KD_OK);
    float x[B * IN], first = 0.0f, v = 0.0f, fv;
    int32_t y[B];
    for (int s = 0; s < 40; s++) {
        make_data(x, y, (uint64_t)s % 4);
        ck_assert_int_eq(kd_trainer_step(r.t, x, NULL, NULL, B, &v), KD_OK);
        ck_assert_int_eq(kd_trainer_feature_value(r.t, -1, &fv), KD_OK);
        ck_assert(fv == v); /* the step's loss is the feature part alone */
        if (s == 0) first = v;
    }
    ck_assert_msg(v < 0.7f * first, "hint loss %g -> %g", (double)first, (double)v);
    const kdi_param_list *pa = kdi_model_params(r.student), *pb = kdi_model_params(before);
    /* parameters 2 and 3 are the top dense layer: untouched; 0 and 1 (below the hint) moved */
    for (int32_t i = 2; i < 4; i++)
        ck_assert(memcmp(pa->items[i].p->value, pb->items[i].p->value,
                         (size_t)pa->items[i].p->count * sizeof(float)) == 0);
    ck_assert(memcmp(pa->items[0].p->value, pb->items[0].p->value,
                     (size_t)pa->items[0].p->count * sizeof(float)) != 0);
    /* stage 2 needs labels again */
    ck_assert_int_eq(kd_trainer_set_int(r.t, KD_TRAINER_HINT_ONLY, 0), KD_OK);
    ck_assert_int_eq(kd_trainer_step(r.t, x, NULL, NULL, B, &v), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_trainer_step(r.t, x, y, NULL, B, &v), KD_OK);
    kd_model_destroy(before);
    free_rig(&r);
    kd_feature_loss_destroy(hint);
}
END_TEST

/* Cached logits do not carry features: the trainer runs the teacher for its terms, and the step
 * equals a live one. */
START_TEST(cached_logits_run_teachers_for_features)
{
    rig a = make_rig(KD_LOSS_HINTON, 0.1f), b = make_rig(KD_LOSS_HINTON, 0.1f);
    kd_feature_loss *sp;
    ck_assert_int_eq(kd_feature_loss_create(KD_FEATURE_SIMILARITY, &sp), KD_OK);
    ck_assert_int_eq(kd_trainer_add_feature_loss(a.t, sp, 1, 0, 1, NULL, 2.0f), KD_OK);
    ck_assert_int_eq(kd_trainer_add_feature_loss(b.t, sp, 1, 0, 1, NULL, 2.0f), KD_OK);
    float x[B * IN], z[B * C], va, vb;
    int32_t y[B];
    for (int s = 0; s < 3; s++) {
        make_data(x, y, (uint64_t)s);
        ck_assert_int_eq(kd_model_predict(b.teacher, x, B, z), KD_OK);
        /* leave the teacher's activations on another input, so a stale feature would show */
        float other[B * IN], junk[B * C];
        kdt_fill(other, B * IN, 99, -1.0f, 1.0f);
        ck_assert_int_eq(kd_model_predict(b.teacher, other, B, junk), KD_OK);
        ck_assert_int_eq(kd_trainer_step(a.t, x, y, NULL, B, &va), KD_OK);
        ck_assert_int_eq(kd_trainer_step(b.t, x, y, z, B, &vb), KD_OK);
        ck_assert_msg(fabsf(va - vb) < 1e-6f, "live %g, cached %g", (double)va, (double)vb);
    }
    ck_assert(param_diff(a.student, b.student) < 1e-6);
    free_rig(&a);
    free_rig(&b);
    kd_feature_loss_destroy(sp);
}
END_TEST

/* Logit MSE takes the ensemble's weighted mean logits, live or cached. */
START_TEST(logit_mse_uses_mean_logits)
{
    rig r = make_rig(KD_LOSS_LOGIT_MSE, 0.05f);
    kd_model *t2 = model(TEACHER, 7);
    ck_assert_int_eq(kd_trainer_add_teacher(r.t, t2, 3.0f), KD_OK);
    float x[B * IN], z[2 * B * C], zs[B * C], v, want = 0.0f, v2;
    int32_t y[B];
    make_data(x, y, 5);
    ck_assert_int_eq(kd_model_predict(r.teacher, x, B, z), KD_OK);
    ck_assert_int_eq(kd_model_predict(t2, x, B, z + B * C), KD_OK);
    ck_assert_int_eq(kd_model_predict(r.student, x, B, zs), KD_OK);
    double sum = 0.0;
    for (int i = 0; i < B * C; i++) {
        double mean = 0.25 * z[i] + 0.75 * z[B * C + i], d = zs[i] - mean;
        sum += d * d;
    }
    want = (float)(sum / (B * C));
    kd_model *copy;
    ck_assert_int_eq(kd_model_clone(r.student, &copy), KD_OK);
    ck_assert_int_eq(kd_trainer_step(r.t, x, NULL, NULL, B, &v), KD_OK); /* alpha 1: no labels */
    ck_assert_msg(fabsf(v - want) < 1e-5f, "live %g, expected %g", (double)v, (double)want);
    /* the same from cached logits, on a fresh trainer over the copy */
    kd_optimizer *o2;
    kd_trainer *tr2;
    ck_assert_int_eq(kd_optimizer_create(KD_OPTIMIZER_SGD, copy, &o2), KD_OK);
    ck_assert_int_eq(kd_optimizer_set_float(o2, KD_OPT_LEARNING_RATE, 0.05f), KD_OK);
    ck_assert_int_eq(kd_trainer_create(copy, r.loss, o2, &tr2), KD_OK);
    ck_assert_int_eq(kd_trainer_add_teacher(tr2, r.teacher, 1.0f), KD_OK);
    ck_assert_int_eq(kd_trainer_add_teacher(tr2, t2, 3.0f), KD_OK);
    ck_assert_int_eq(kd_trainer_step(tr2, x, NULL, z, B, &v2), KD_OK);
    ck_assert(fabsf(v2 - want) < 1e-5f);
    ck_assert(param_diff(r.student, copy) < 1e-6);
    /* no teacher and nothing cached: refused */
    kd_trainer *bare;
    ck_assert_int_eq(kd_trainer_create(copy, r.loss, o2, &bare), KD_OK);
    ck_assert_int_eq(kd_trainer_step(bare, x, NULL, NULL, B, &v2), KD_ERR_STATE);
    ck_assert_int_eq(kd_trainer_step(bare, x, NULL, z, B, &v2), KD_OK); /* one cached teacher */
    float nanz[B * C];
    memcpy(nanz, z, sizeof nanz);
    nanz[3] = NAN;
    kd_model *keep;
    ck_assert_int_eq(kd_model_clone(copy, &keep), KD_OK);
    ck_assert_int_eq(kd_trainer_step(bare, x, NULL, nanz, B, &v2), KD_ERR_NUMERIC);
    ck_assert(param_diff(copy, keep) == 0.0);
    kd_model_destroy(keep);
    kd_trainer_destroy(bare);
    kd_trainer_destroy(tr2);
    kd_optimizer_destroy(o2);
    kd_model_destroy(copy);
    kd_model_destroy(t2);
    free_rig(&r);
}
END_TEST

/* Terms on two teachers: a teacher that is a copy of the student (no dropout) matches its hint
 * exactly, the other does not. */
START_TEST(per_teacher_terms)
{
    rig r = make_rig(KD_LOSS_HINTON, 0.01f);
    kd_model *twin;
    ck_assert_int_eq(kd_model_clone(r.student, &twin), KD_OK);
    ck_assert_int_eq(kd_trainer_add_teacher(r.t, twin, 1.0f), KD_OK);
    kd_feature_loss *hint, *rkd;
    ck_assert_int_eq(kd_feature_loss_create(KD_FEATURE_HINT, &hint), KD_OK);
    ck_assert_int_eq(kd_feature_loss_create(KD_FEATURE_RKD, &rkd), KD_OK);
    ck_assert_int_eq(kd_trainer_add_feature_loss(r.t, rkd, 1, 0, 1, NULL, 1.0f), KD_OK);
    ck_assert_int_eq(kd_trainer_add_feature_loss(r.t, hint, 1, 1, 1, NULL, 1.0f), KD_OK);
    ck_assert_int_eq(kd_trainer_add_feature_loss(r.t, hint, 0, 1, 0, NULL, 0.5f), KD_OK);
    kd_model *none;
    ck_assert_int_eq(kd_trainer_regressor(r.t, 1, &none), KD_OK);
    ck_assert_ptr_null(none);
    float x[B * IN], v, v0, v1, v2, total;
    int32_t y[B];
    make_data(x, y, 8);
    ck_assert_int_eq(kd_trainer_feature_value(r.t, 0, &v), KD_ERR_STATE);
    ck_assert_int_eq(kd_trainer_step(r.t, x, y, NULL, B, &v), KD_OK);
    ck_assert_int_eq(kd_trainer_feature_value(r.t, 0, &v0), KD_OK);
    ck_assert_int_eq(kd_trainer_feature_value(r.t, 1, &v1), KD_OK);
    ck_assert_int_eq(kd_trainer_feature_value(r.t, 2, &v2), KD_OK);
    ck_assert_int_eq(kd_trainer_feature_value(r.t, -1, &total), KD_OK);
    ck_assert(v0 > 1e-3f);
    ck_assert(v1 == 0.0f && v2 == 0.0f);
    ck_assert(fabsf(total - (v0 + v1 + v2)) < 1e-6f);
    ck_assert_int_eq(kd_trainer_feature_value(r.t, 3, &v), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_trainer_feature_value(r.t, -2, &v), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_trainer_regressor(r.t, -1, &none), KD_ERR_ARGUMENT);
    kd_model_destroy(twin);
    free_rig(&r);
    kd_feature_loss_destroy(hint);
    kd_feature_loss_destroy(rkd);
}
END_TEST

START_TEST(bad_terms_change_nothing)
{
    rig r = make_rig(KD_LOSS_HINTON, 0.1f);
    kd_feature_loss *hint, *at;
    ck_assert_int_eq(kd_feature_loss_create(KD_FEATURE_HINT, &hint), KD_OK);
    ck_assert_int_eq(kd_feature_loss_create(KD_FEATURE_ATTENTION, &at), KD_OK);
    kd_model *m;
    ck_assert_int_eq(kd_trainer_add_feature_loss(NULL, hint, 1, 0, 1, NULL, 1.0f), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_trainer_add_feature_loss(r.t, NULL, 1, 0, 1, NULL, 1.0f), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_trainer_add_feature_loss(r.t, hint, 1, 1, 1, NULL, 1.0f), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_trainer_add_feature_loss(r.t, hint, 1, -1, 1, NULL, 1.0f), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_trainer_add_feature_loss(r.t, hint, 3, 0, 1, NULL, 1.0f), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_trainer_add_feature_loss(r.t, hint, 1, 0, -1, NULL, 1.0f), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_trainer_add_feature_loss(r.t, hint, 1, 0, 1, NULL, 0.0f), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_trainer_add_feature_loss(r.t, hint, 1, 0, 1, NULL, NAN), KD_ERR_ARGUMENT);
    /* 5 values against 8 without a regressor; a regressor to the wrong size; a wrong input */
    ck_assert_int_eq(kd_trainer_add_feature_loss(r.t, hint, 1, 0, 1, NULL, 1.0f), KD_ERR_SHAPE);
    ck_assert_int_eq(kd_trainer_add_feature_loss(r.t, hint, 1, 0, 1, "dense 7", 1.0f),
                     KD_ERR_SHAPE);
    ck_assert_int_eq(kd_trainer_add_feature_loss(r.t, hint, 1, 0, 1, "input 4 | dense 8", 1.0f),
                     KD_ERR_SHAPE);
    ck_assert_int_eq(kd_trainer_add_feature_loss(r.t, hint, 1, 0, 1, "dense x", 1.0f),
                     KD_ERR_FORMAT);
    ck_assert_int_eq(kd_trainer_add_feature_loss(r.t, at, 1, 0, 1, "dense 8", 1.0f), KD_ERR_SHAPE);
    ck_assert_int_eq(kd_trainer_regressor(r.t, 0, &m), KD_ERR_ARGUMENT); /* still no term */
    ck_assert_int_eq(kd_trainer_add_feature_loss(r.t, hint, 1, 0, 1, " input 5 | dense 8", 1.0f),
                     KD_OK);
    ck_assert_int_eq(kd_trainer_regressor(r.t, 0, &m), KD_OK);
    ck_assert_int_eq(kd_trainer_regressor(r.t, 1, &m), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_trainer_get_int(r.t, KD_TRAINER_HINT_ONLY, NULL), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_trainer_feature_value(r.t, -1, NULL), KD_ERR_ARGUMENT);
    free_rig(&r);
    kd_feature_loss_destroy(hint);
    kd_feature_loss_destroy(at);
}
END_TEST

/* Attention transfer through the trainer on convolutional maps, with a 1x1 conv regressor. */
START_TEST(attention_with_conv)
{
    kd_model *s = model("input 1x6x6 | conv 2 3 pad=1 | relu | flatten | dense 3", 1);
    kd_model *t = model("input 1x6x6 | conv 4 3 pad=1 | relu | flatten | dense 3", 2);
    kd_loss *loss;
    kd_optimizer *opt;
    kd_trainer *tr;
    kd_feature_loss *at, *hint;
    ck_assert_int_eq(kd_loss_create(KD_LOSS_HINTON, &loss), KD_OK);
    ck_assert_int_eq(kd_optimizer_create(KD_OPTIMIZER_SGD, s, &opt), KD_OK);
    ck_assert_int_eq(kd_optimizer_set_float(opt, KD_OPT_LEARNING_RATE, 0.05f), KD_OK);
    ck_assert_int_eq(kd_trainer_create(s, loss, opt, &tr), KD_OK);
    ck_assert_int_eq(kd_trainer_add_teacher(tr, t, 1.0f), KD_OK);
    ck_assert_int_eq(kd_feature_loss_create(KD_FEATURE_ATTENTION, &at), KD_OK);
    ck_assert_int_eq(kd_feature_loss_create(KD_FEATURE_HINT, &hint), KD_OK);
    ck_assert_int_eq(kd_trainer_add_feature_loss(tr, at, 1, 0, 1, NULL, 100.0f), KD_OK);
    ck_assert_int_eq(kd_trainer_add_feature_loss(tr, hint, 1, 0, 1, NULL, 1.0f), KD_ERR_SHAPE);
    ck_assert_int_eq(kd_trainer_add_feature_loss(tr, hint, 1, 0, 1, "conv 4 1", 1.0f), KD_OK);
    kd_model *reg;
    ck_assert_int_eq(kd_trainer_regressor(tr, 1, &reg), KD_OK);
    ck_assert_str_eq(kd_model_spec(reg), "input 2x6x6 | conv 4 1");
    float x[4 * 36], first = 0.0f, v = 0.0f;
    int32_t y[4] = {0, 1, 2, -1};
    kdt_fill(x, 4 * 36, 5, 0.0f, 1.0f);
    ck_assert_int_eq(kd_trainer_set_int(tr, KD_TRAINER_HINT_ONLY, 1), KD_OK);
    for (int i = 0; i < 30; i++) {
        ck_assert_int_eq(kd_trainer_step(tr, x, y, NULL, 4, &v), KD_OK);
        if (i == 0) first = v;
    }
    ck_assert_msg(v < first, "attention + hint %g -> %g", (double)first, (double)v);
    kd_trainer_destroy(tr);
    kd_optimizer_destroy(opt);
    kd_loss_destroy(loss);
    kd_feature_loss_destroy(at);
    kd_feature_loss_destroy(hint);
    kd_model_destroy(s);
    kd_model_destroy(t);
}
END_TEST

/* An unlabelled transfer set (every label -1): the student learns to agree with the teacher. */
START_TEST(unlabelled_transfer_set)
{
    kd_model *teacher = model("input 6 | dense 16 | tanh | dense 3", 11);
    kd_model *student = model("input 6 | dense 12 | tanh | dense 3", 12);
    kd_loss *loss;
    kd_optimizer *opt;
    kd_trainer *tr;
    ck_assert_int_eq(kd_loss_create(KD_LOSS_HINTON, &loss), KD_OK);
    ck_assert_int_eq(kd_loss_set_float(loss, KD_LOSS_TEMPERATURE, 2.0f), KD_OK);
    ck_assert_int_eq(kd_loss_set_float(loss, KD_LOSS_ALPHA, 0.9f), KD_OK); /* no label anyway */
    ck_assert_int_eq(kd_optimizer_create(KD_OPTIMIZER_ADAM, student, &opt), KD_OK);
    ck_assert_int_eq(kd_optimizer_set_float(opt, KD_OPT_LEARNING_RATE, 0.01f), KD_OK);
    ck_assert_int_eq(kd_trainer_create(student, loss, opt, &tr), KD_OK);
    ck_assert_int_eq(kd_trainer_add_teacher(tr, teacher, 1.0f), KD_OK);
    enum { N = 512, TB = 32 };
    float *x = malloc(sizeof(float) * N * IN), zt[N * C], zs[N * C], v;
    int32_t y[TB];
    for (int i = 0; i < TB; i++) y[i] = -1;
    kdt_fill(x, N * IN, 13, -2.0f, 2.0f);
    for (int e = 0; e < 30; e++)
        for (int s = 0; s < N; s += TB) {
            ck_assert_int_eq(kd_trainer_step(tr, x + s * IN, y, NULL, TB, &v), KD_OK);
            float hard;
            ck_assert_int_eq(kd_loss_value(loss, KD_LOSS_PART_HARD, &hard), KD_OK);
            ck_assert(hard == 0.0f);
        }
    ck_assert_int_eq(kd_model_predict(teacher, x, N, zt), KD_OK);
    ck_assert_int_eq(kd_model_predict(student, x, N, zs), KD_OK);
    int agree = 0;
    for (int i = 0; i < N; i++) {
        int a = 0, b = 0;
        for (int c = 1; c < C; c++) {
            if (zt[i * C + c] > zt[i * C + a]) a = c;
            if (zs[i * C + c] > zs[i * C + b]) b = c;
        }
        agree += a == b;
    }
    ck_assert_msg(agree > N * 9 / 10, "student agrees with the teacher on %d of %d", agree, N);
    free(x);
    kd_trainer_destroy(tr);
    kd_optimizer_destroy(opt);
    kd_loss_destroy(loss);
    kd_model_destroy(student);
    kd_model_destroy(teacher);
}
END_TEST

/* ---------------------------------------------------------------- bias correction */

START_TEST(adjust_output_bias)
{
    kd_model *m = model(STUDENT, 4), *flat = model("input 6 | dense 3 | tanh", 4);
    float x[2 * IN], z0[2 * C], z1[2 * C];
    kdt_fill(x, 2 * IN, 1, -1.0f, 1.0f);
    ck_assert_int_eq(kd_model_predict(m, x, 2, z0), KD_OK);
    ck_assert_int_eq(kd_model_adjust_output_bias(m, 2, 1.5f), KD_OK);
    ck_assert_int_eq(kd_model_predict(m, x, 2, z1), KD_OK);
    for (int i = 0; i < 2 * C; i++)
        ck_assert(fabsf(z1[i] - z0[i] - (i % C == 2 ? 1.5f : 0.0f)) < 1e-6f);
    ck_assert_int_eq(kd_model_adjust_output_bias(m, 3, 1.0f), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_model_adjust_output_bias(m, -1, 1.0f), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_model_adjust_output_bias(m, 0, NAN), KD_ERR_NUMERIC);
    ck_assert_int_eq(kd_model_adjust_output_bias(m, 0, 3e38f), KD_OK);
    ck_assert_int_eq(kd_model_adjust_output_bias(m, 0, 3e38f), KD_ERR_NUMERIC);
    ck_assert_int_eq(kd_model_adjust_output_bias(NULL, 0, 1.0f), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_model_adjust_output_bias(flat, 0, 1.0f), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_model_predict(m, x, 2, z0), KD_OK);
    ck_assert(fabsf(z0[2] - z1[2]) < 1e-6f); /* the failed calls changed nothing there */
    kd_model_destroy(m);
    kd_model_destroy(flat);
}
END_TEST

/* A checkpoint carries the regressors and their momentum: saved after 3 steps and loaded into a
 * fresh rig (regressor weights disturbed), 3 more steps on each give bit-identical student and
 * regressor. A trainer without the term refuses the file. */
START_TEST(checkpoint_with_regressor)
{
    char path[256];
    snprintf(path, sizeof path, "%s/regressor-ckpt.safetensors", kdt_tmpdir());
    kd_feature_loss *hint;
    ck_assert_int_eq(kd_feature_loss_create(KD_FEATURE_HINT, &hint), KD_OK);
    rig a = make_rig(KD_LOSS_HINTON, 0.1f), b = make_rig(KD_LOSS_HINTON, 0.1f);
    rig *rigs[2] = {&a, &b};
    for (int k = 0; k < 2; k++) {
        ck_assert_int_eq(kd_optimizer_set_float(rigs[k]->opt, KD_OPT_MOMENTUM, 0.9f), KD_OK);
        ck_assert_int_eq(kd_trainer_add_feature_loss(rigs[k]->t, hint, 1, 0, 1, "dense 8", 0.7f),
                         KD_OK);
    }
    float x[B * IN], value;
    int32_t y[B];
    for (uint64_t s = 0; s < 3; s++) {
        make_data(x, y, s);
        ck_assert_int_eq(kd_trainer_step(a.t, x, y, NULL, B, &value), KD_OK);
    }
    ck_assert_int_eq(kd_trainer_save(a.t, path), KD_OK);
    kd_model *ra, *rb;
    ck_assert_int_eq(kd_trainer_regressor(a.t, 0, &ra), KD_OK);
    ck_assert_int_eq(kd_trainer_regressor(b.t, 0, &rb), KD_OK);
    kdi_model_params(rb)->items[0].p->value[0] += 1.0f;
    ck_assert_msg(kd_trainer_load(b.t, path) == KD_OK, "%s", kd_last_error());
    ck_assert(param_diff(ra, rb) == 0.0);
    for (uint64_t s = 3; s < 6; s++) {
        make_data(x, y, s);
        ck_assert_int_eq(kd_trainer_step(a.t, x, y, NULL, B, &value), KD_OK);
        ck_assert_int_eq(kd_trainer_step(b.t, x, y, NULL, B, &value), KD_OK);
    }
    ck_assert(param_diff(a.student, b.student) == 0.0);
    ck_assert(param_diff(ra, rb) == 0.0);
    rig c = make_rig(KD_LOSS_HINTON, 0.1f);
    ck_assert_int_eq(kd_optimizer_set_float(c.opt, KD_OPT_MOMENTUM, 0.9f), KD_OK);
    ck_assert_int_eq(kd_trainer_load(c.t, path), KD_ERR_FORMAT);
    ck_assert(strstr(kd_last_error(), "tensors") != NULL);
    free_rig(&c);
    free_rig(&b);
    free_rig(&a);
    kd_feature_loss_destroy(hint);
}
END_TEST

/* CRD's memory of teacher embeddings goes into the checkpoint: a trainer with a fresh CRD loss
 * resumes bit for bit; a 'crd.0.next' outside the memory's rows is refused. */
START_TEST(checkpoint_with_crd_memory)
{
    char path[256], bad[256];
    snprintf(path, sizeof path, "%s/crd-ckpt.safetensors", kdt_tmpdir());
    snprintf(bad, sizeof bad, "%s/crd-bad.safetensors", kdt_tmpdir());
    kd_feature_loss *crd[2];
    rig a = make_rig(KD_LOSS_HINTON, 0.1f), b = make_rig(KD_LOSS_HINTON, 0.1f);
    rig *rigs[2] = {&a, &b};
    for (int k = 0; k < 2; k++) {
        ck_assert_int_eq(kd_feature_loss_create(KD_FEATURE_CRD, &crd[k]), KD_OK);
        ck_assert_int_eq(kd_feature_loss_set_float(crd[k], KD_FEATURE_CRD_NEGATIVES, 5.0f), KD_OK);
        ck_assert_int_eq(kd_trainer_add_feature_loss(rigs[k]->t, crd[k], 1, 0, 1, "dense 8", 0.5f),
                         KD_OK);
    }
    float x[B * IN], va, vb;
    int32_t y[B];
    for (uint64_t s = 0; s < 3; s++) { /* 3 batches of 8 into 5 slots: the memory wraps */
        make_data(x, y, s);
        ck_assert_int_eq(kd_trainer_step(a.t, x, y, NULL, B, &va), KD_OK);
    }
    ck_assert_int_eq(kd_trainer_save(a.t, path), KD_OK);
    kd_tensors *ts;
    ck_assert_int_eq(kd_tensors_load(path, &ts), KD_OK);
    int32_t found = 0;
    ck_assert_int_eq(kd_tensors_has(ts, "crd.0.memory", &found), KD_OK);
    ck_assert_int_eq(found, 1);
    ck_assert_msg(kd_trainer_load(b.t, path) == KD_OK, "%s", kd_last_error());
    for (uint64_t s = 3; s < 6; s++) {
        make_data(x, y, s);
        ck_assert_int_eq(kd_trainer_step(a.t, x, y, NULL, B, &va), KD_OK);
        ck_assert_int_eq(kd_trainer_step(b.t, x, y, NULL, B, &vb), KD_OK);
        ck_assert(va == vb);
    }
    ck_assert(param_diff(a.student, b.student) == 0.0);
    int64_t next = 5, dims[1] = {1};
    ck_assert_int_eq(kd_tensors_set(ts, "crd.0.next", KD_DTYPE_I64, 1, dims, &next), KD_OK);
    ck_assert_int_eq(kd_tensors_save(ts, bad), KD_OK);
    ck_assert(param_diff(a.student, b.student) == 0.0);
    ck_assert_int_eq(kd_trainer_load(b.t, bad), KD_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(kd_last_error(), "not a row of 0..4"));
    ck_assert(param_diff(a.student, b.student) == 0.0); /* refused before any copy */
    kd_tensors_destroy(ts);
    free_rig(&b);
    free_rig(&a);
    kd_feature_loss_destroy(crd[0]);
    kd_feature_loss_destroy(crd[1]);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("trainer_features");
    TCase *t = tcase_create("core");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, step_matches_manual_sequence);
    tcase_add_test(t, hint_only_stage);
    tcase_add_test(t, cached_logits_run_teachers_for_features);
    tcase_add_test(t, logit_mse_uses_mean_logits);
    tcase_add_test(t, per_teacher_terms);
    tcase_add_test(t, bad_terms_change_nothing);
    tcase_add_test(t, attention_with_conv);
    tcase_add_test(t, unlabelled_transfer_set);
    tcase_add_test(t, adjust_output_bias);
    tcase_add_test(t, checkpoint_with_regressor);
    tcase_add_test(t, checkpoint_with_crd_memory);
    suite_add_tcase(s, t);
    return s;
}

int main(void) { return kdt_run(suite()); }
