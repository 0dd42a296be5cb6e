/* The trainer on language models: the loss sees batch * T rows of V classes (checked against
 * kd_loss_forward on those rows by hand), soft targets per token, cached logits as live teachers,
 * students that learn from a teacher, and teachers of another vocabulary refused with nothing
 * changed. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "distill/trainer.h"
#include "nn/model.h"
#include "testutil.h"

#define V 11
#define T 5
#define B 3
#define ROWS (B * T)
#define TEACHER                                                                                    \
    "tokens 11 5 | embed 8 | posembed | residual(layernorm | attention 2 causal) | "               \
    "residual(layernorm | dense 16 | gelu | dense 8) | layernorm | lmhead 11 tied"
#define STUDENT                                                                                    \
    "tokens 11 5 | embed 4 | posembed | residual(layernorm | attention 2 causal) | lmhead 11"

static kd_model *model(const char *spec, uint64_t seed)
{
    kd_model *m;
    ck_assert_int_eq(kd_model_create(spec, seed, &m), KD_OK);
    return m;
}

/* Ids as floats [B, T] and next-token labels [B * T], two of them -1 (padding). */
static void make_data(uint64_t seed, float *x, int32_t *ids, int32_t *y)
{
    uint64_t s = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    for (int i = 0; i < ROWS; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        ids[i] = (int32_t)((s >> 33) % V);
        x[i] = (float)ids[i];
    }
    for (int i = 0; i < ROWS; i++) y[i] = ids[(i + 1) % ROWS];
    y[T - 1] = -1;
    y[2 * T + 2] = -1;
}

static kd_loss *make_loss(kd_loss_kind kind, float temp, float alpha)
{
    kd_loss *l;
    ck_assert_int_eq(kd_loss_create(kind, &l), KD_OK);
    ck_assert_int_eq(kd_loss_set_float(l, KD_LOSS_TEMPERATURE, temp), KD_OK);
    ck_assert_int_eq(kd_loss_set_float(l, KD_LOSS_ALPHA, alpha), KD_OK);
    ck_assert_int_eq(kd_loss_set_float(l, KD_LOSS_MASK_UNLABELLED, 1.0f), KD_OK);
    return l;
}

static void assert_close(const float *a, const float *b, int64_t n, float tol, const char *what)
{
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(fabsf(a[i] - b[i]) <= tol * (1.0f + fabsf(b[i])), "%s[%lld]: %.9g vs %.9g",
                      what, (long long)i, (double)a[i], (double)b[i]);
}

/* Per-token soft targets: the teachers' call equals kd_soft_targets_from_logits on [B * T, V]. */
START_TEST(soft_targets_per_token)
{
    kd_model *t = model(TEACHER, 1);
    float x[ROWS], z[ROWS * V], p[ROWS * V], q[ROWS * V];
    int32_t ids[ROWS], y[ROWS];
    make_data(1, x, ids, y);
    ck_assert_int_eq(kd_model_predict_tokens(t, ids, B, z), KD_OK);
    ck_assert_int_eq(kd_teacher_soft_targets(&t, NULL, 1, x, B, 2.0f, p), KD_OK);
    ck_assert_int_eq(kd_soft_targets_from_logits(z, NULL, 1, ROWS, V, 2.0f, q), KD_OK);
    assert_close(p, q, ROWS * V, 1e-6f, "probs");
    for (int r = 0; r < ROWS; r++) { /* each token a distribution */
        double sum = 0.0;
        for (int c = 0; c < V; c++) sum += p[r * V + c];
        ck_assert_msg(fabs(sum - 1.0) < 1e-5, "row %d sums to %g", r, sum);
    }
    x[4] = 11.0f; /* not an id of the vocabulary: refused, probs untouched */
    memcpy(q, p, sizeof p);
    ck_assert_int_eq(kd_teacher_soft_targets(&t, NULL, 1, x, B, 2.0f, p), KD_ERR_ARGUMENT);
    ck_assert(memcmp(p, q, sizeof p) == 0);
    kd_model_destroy(t);
}
END_TEST

/* One step's loss equals kd_loss_forward on [B * T, V] rows, and the step moves the student as a
 * hand-made forward, backward and SGD step on a clone does; cached logits give the same step. */
static void check_step(kd_loss_kind kind, float temp, float alpha)
{
    kd_model *teacher = model(TEACHER, 3), *s = model(STUDENT, 4), *hand, *cached;
    ck_assert_int_eq(kd_model_clone(s, &hand), KD_OK);
    ck_assert_int_eq(kd_model_clone(s, &cached), KD_OK);
    kd_loss *l = make_loss(kind, temp, alpha), *l2 = make_loss(kind, temp, alpha);
    float x[ROWS], z[ROWS * V], p[ROWS * V], zs[ROWS * V], g[ROWS * V], want, got, got2;
    int32_t ids[ROWS], y[ROWS];
    make_data(7, x, ids, y);

    kd_optimizer *o, *oh, *oc;
    kd_trainer *tr, *tc;
    ck_assert_int_eq(kd_optimizer_create(KD_OPTIMIZER_SGD, s, &o), KD_OK);
    ck_assert_int_eq(kd_optimizer_create(KD_OPTIMIZER_SGD, hand, &oh), KD_OK);
    ck_assert_int_eq(kd_optimizer_create(KD_OPTIMIZER_SGD, cached, &oc), KD_OK);
    ck_assert_int_eq(kd_trainer_create(s, l, o, &tr), KD_OK);
    ck_assert_int_eq(kd_trainer_add_teacher(tr, teacher, 1.0f), KD_OK);
    ck_assert_int_eq(kd_trainer_create(cached, l2, oc, &tc), KD_OK);

    /* By hand: the loss on B * T rows of V classes. */
    kd_loss *lh = make_loss(kind, temp, alpha);
    ck_assert_int_eq(kd_model_predict_tokens(teacher, ids, B, z), KD_OK);
    ck_assert_int_eq(kd_soft_targets_from_logits(z, NULL, 1, ROWS, V, temp, p), KD_OK);
    ck_assert_int_eq(kd_model_forward_tokens(hand, ids, B, zs), KD_OK);
    ck_assert_int_eq(kd_loss_forward(lh, zs, p, y, ROWS, V, &want), KD_OK);
    ck_assert_int_eq(kd_loss_backward(lh, g), KD_OK);
    ck_assert_int_eq(kd_model_zero_grad(hand), KD_OK);
    ck_assert_int_eq(kd_model_backward(hand, g), KD_OK);
    ck_assert_int_eq(kd_optimizer_step(oh), KD_OK);

    ck_assert_int_eq(kd_trainer_step(tr, x, y, NULL, B, &got), KD_OK);
    ck_assert_int_eq(kd_trainer_step(tc, x, y, z, B, &got2), KD_OK);
    ck_assert_msg(fabsf(got - want) <= 1e-5f * (1.0f + fabsf(want)), "loss %.9g, by hand %.9g",
                  (double)got, (double)want);
    ck_assert_msg(fabsf(got2 - want) <= 1e-5f * (1.0f + fabsf(want)),
                  "loss from cached logits %.9g, by hand %.9g", (double)got2, (double)want);

    /* After the step the three students predict alike. */
    float a[ROWS * V], b[ROWS * V], c[ROWS * V];
    ck_assert_int_eq(kd_model_predict_tokens(s, ids, B, a), KD_OK);
    ck_assert_int_eq(kd_model_predict_tokens(hand, ids, B, b), KD_OK);
    ck_assert_int_eq(kd_model_predict_tokens(cached, ids, B, c), KD_OK);
    ck_assert(memcmp(a, zs, sizeof a) != 0); /* the step moved the student */
    assert_close(a, b, ROWS * V, 1e-5f, "trainer vs hand");
    assert_close(c, b, ROWS * V, 1e-5f, "cached vs hand");

    kd_trainer_destroy(tc);
    kd_trainer_destroy(tr);
    kd_optimizer_destroy(oc);
    kd_optimizer_destroy(oh);
    kd_optimizer_destroy(o);
    kd_loss_destroy(lh);
    kd_loss_destroy(l2);
    kd_loss_destroy(l);
    kd_model_destroy(cached);
    kd_model_destroy(hand);
    kd_model_destroy(s);
    kd_model_destroy(teacher);
}

START_TEST(step_forward_kl) { check_step(KD_LOSS_HINTON, 2.0f, 0.7f); }
END_TEST

START_TEST(step_token_kinds)
{
    check_step(KD_LOSS_REVERSE_KL, 1.0f, 1.0f);
    check_step(KD_LOSS_JSD, 1.5f, 0.5f);
    check_step(KD_LOSS_TVD, 1.0f, 1.0f);
}
END_TEST

/* A tiny student learns from a tiny teacher: its divergence from the teacher falls. */
START_TEST(student_learns)
{
    const kd_loss_kind kinds[] = {KD_LOSS_HINTON, KD_LOSS_SKEW_REVERSE_KL};
    for (int k = 0; k < 2; k++) {
        kd_model *teacher = model(TEACHER, 5), *s = model(STUDENT, 6);
        kd_loss *l = make_loss(kinds[k], 1.0f, 1.0f);
        kd_optimizer *o;
        kd_trainer *tr;
        ck_assert_int_eq(kd_optimizer_create(KD_OPTIMIZER_ADAM, s, &o), KD_OK);
        ck_assert_int_eq(kd_optimizer_set_float(o, KD_OPT_LEARNING_RATE, 0.03f), KD_OK);
        ck_assert_int_eq(kd_trainer_create(s, l, o, &tr), KD_OK);
        ck_assert_int_eq(kd_trainer_add_teacher(tr, teacher, 1.0f), KD_OK);
        float x[ROWS], v0 = 0.0f, v = 0.0f;
        int32_t ids[ROWS], y[ROWS];
        make_data(11, x, ids, y);
        for (int i = 0; i < 60; i++) {
            ck_assert_int_eq(kd_trainer_step(tr, x, NULL, NULL, B, &v), KD_OK);
            if (i == 0) v0 = v;
        }
        ck_assert_msg(v < 0.5f * v0, "kind %d: %g after 60 steps, %g at the first", (int)kinds[k],
                      (double)v, (double)v0);
        kd_trainer_destroy(tr);
        kd_optimizer_destroy(o);
        kd_loss_destroy(l);
        kd_model_destroy(s);
        kd_model_destroy(teacher);
    }
}
END_TEST

/* Teachers of another vocabulary, output vocabulary or length are refused, nothing added; a label
 * outside the vocabulary refuses the step with the student unchanged. */
START_TEST(mismatch_refused)
{
    const char *bad[] = {"tokens 12 5 | embed 8 | lmhead 12", "tokens 11 5 | embed 8 | lmhead 12",
                         "tokens 11 6 | embed 8 | lmhead 11", "input 5 | dense 55",
                         "tokens 11 5 | embed 8 | flatten | dense 55"};
    kd_model *s = model(STUDENT, 4);
    kd_loss *l = make_loss(KD_LOSS_REVERSE_KL, 1.0f, 1.0f);
    kd_optimizer *o;
    kd_trainer *tr;
    ck_assert_int_eq(kd_optimizer_create(KD_OPTIMIZER_SGD, s, &o), KD_OK);
    ck_assert_int_eq(kd_trainer_create(s, l, o, &tr), KD_OK);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        kd_model *t = model(bad[i], 2);
        ck_assert_int_eq(kd_trainer_add_teacher(tr, t, 1.0f), KD_ERR_SHAPE);
        ck_assert_msg(strlen(kd_last_error()) > 0, "%s", bad[i]);
        ck_assert_int_eq(tr->nteachers, 0);
        if (i == 0) ck_assert_ptr_nonnull(strstr(kd_last_error(), "vocabulary"));
        /* kd_teacher_soft_targets refuses the pair too, probs untouched. */
        kd_model *good = model(TEACHER, 1), *pair[2] = {good, t};
        float x[ROWS] = {0}, p[ROWS * V], before[ROWS * V];
        kdt_fill(p, ROWS * V, 3, 0.0f, 1.0f);
        memcpy(before, p, sizeof p);
        if (i < 3) {
            ck_assert_int_eq(kd_teacher_soft_targets(pair, NULL, 2, x, B, 1.0f, p), KD_ERR_SHAPE);
            ck_assert(memcmp(p, before, sizeof p) == 0);
        }
        kd_model_destroy(good);
        kd_model_destroy(t);
    }
    /* No teacher was added: a step that needs one is refused. */
    float x[ROWS], a[ROWS * V], b[ROWS * V], v = 0.0f;
    int32_t ids[ROWS], y[ROWS];
    make_data(2, x, ids, y);
    ck_assert_int_eq(kd_trainer_step(tr, x, y, NULL, B, &v), KD_ERR_STATE);
    /* Labels are [B * T] and must be tokens of the vocabulary. */
    ck_assert_int_eq(kd_loss_set_float(l, KD_LOSS_ALPHA, 0.0f), KD_OK);
    ck_assert_int_eq(kd_model_predict_tokens(s, ids, B, a), KD_OK);
    y[ROWS - 1] = V;
    ck_assert_int_eq(kd_trainer_step(tr, x, y, NULL, B, &v), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_model_predict_tokens(s, ids, B, b), KD_OK);
    ck_assert(memcmp(a, b, sizeof a) == 0);
    y[ROWS - 1] = 0;
    ck_assert_int_eq(kd_trainer_step(tr, x, y, NULL, B, &v), KD_OK); /* cross-entropy alone */
    ck_assert(isfinite(v) && v > 0.0f);
    kd_trainer_destroy(tr);
    kd_optimizer_destroy(o);
    kd_loss_destroy(l);
    kd_model_destroy(s);
}
END_TEST

/* Hidden-state distillation (DistilBERT): a cosine term between the student's block output [T, 4],
 * projected token by token by a "dense 8" regressor, and the teacher's [T, 8]: the term is the mean
 * over the batch's tokens of 1 - cos, and training on it alone (FitNets' first stage) lowers it. */
START_TEST(hidden_state_cosine)
{
    kd_model *teacher = model(TEACHER, 3), *s = model(STUDENT, 4), *r;
    kd_loss *l = make_loss(KD_LOSS_HINTON, 1.0f, 0.5f);
    kd_feature_loss *cos;
    kd_optimizer *o;
    kd_trainer *tr;
    ck_assert_int_eq(kd_feature_loss_create(KD_FEATURE_COSINE, &cos), KD_OK);
    ck_assert_int_eq(kd_optimizer_create(KD_OPTIMIZER_ADAM, s, &o), KD_OK);
    ck_assert_int_eq(kd_optimizer_set_float(o, KD_OPT_LEARNING_RATE, 0.02f), KD_OK);
    ck_assert_int_eq(kd_trainer_create(s, l, o, &tr), KD_OK);
    ck_assert_int_eq(kd_trainer_add_teacher(tr, teacher, 1.0f), KD_OK);
    ck_assert_int_eq(kd_trainer_add_feature_loss(tr, cos, 2, 0, 3, "dense 8", 2.0f), KD_OK);
    ck_assert_int_eq(kd_trainer_regressor(tr, 0, &r), KD_OK);
    ck_assert_str_eq(kd_model_spec(r), "sequence 5 4 | dense 8");
    int64_t params;
    ck_assert_int_eq(kd_model_param_count(r, &params), KD_OK);
    ck_assert_int_eq(params, 8 * 4 + 8); /* one projection shared by the tokens */

    /* By hand, before the step: regressor(student layer 2) against teacher layer 3, token by
     * token. */
    float x[ROWS], z[ROWS * V], proj[ROWS * 8], v = 0.0f, term = 0.0f, direct = 0.0f;
    int32_t ids[ROWS], y[ROWS];
    const float *sf, *tf;
    int64_t c, h, w;
    make_data(5, x, ids, y);
    ck_assert_int_eq(kd_model_predict_tokens(s, ids, B, z), KD_OK);
    ck_assert_int_eq(kd_model_feature(s, 2, &sf, NULL, &c, &h, &w), KD_OK);
    ck_assert(c == T && h == 4 && w == 1);
    ck_assert_int_eq(kd_model_predict(r, sf, B, proj), KD_OK);
    ck_assert_int_eq(kd_model_predict_tokens(teacher, ids, B, z), KD_OK);
    ck_assert_int_eq(kd_model_feature(teacher, 3, &tf, NULL, &c, &h, &w), KD_OK);
    ck_assert(c == T && h == 8 && w == 1);
    double want = 0.0;
    for (int i = 0; i < ROWS; i++) {
        double dot = 0.0, ss = 1e-12, tt = 1e-12;
        for (int j = 0; j < 8; j++) {
            dot += (double)proj[i * 8 + j] * tf[i * 8 + j];
            ss += (double)proj[i * 8 + j] * proj[i * 8 + j];
            tt += (double)tf[i * 8 + j] * tf[i * 8 + j];
        }
        want += 1.0 - dot / sqrt(ss * tt);
    }
    want = 2.0 * want / ROWS;
    kd_feature_loss *c2;
    ck_assert_int_eq(kd_feature_loss_create(KD_FEATURE_COSINE, &c2), KD_OK);
    ck_assert_int_eq(kd_feature_loss_forward(c2, proj, 8, 1, 1, tf, 8, 1, 1, ROWS, &direct), KD_OK);
    kd_feature_loss_destroy(c2);
    ck_assert_msg(fabs(2.0 * direct - want) < 1e-5, "%g vs %g", 2.0 * direct, want);

    ck_assert_int_eq(kd_trainer_set_int(tr, KD_TRAINER_HINT_ONLY, 1), KD_OK);
    ck_assert_int_eq(kd_trainer_step(tr, x, y, NULL, B, &v), KD_OK);
    ck_assert_int_eq(kd_trainer_feature_value(tr, 0, &term), KD_OK);
    ck_assert_msg(fabs(term - want) < 1e-5 * (1.0 + want), "term %g, by hand %g", (double)term,
                  want);
    ck_assert_msg(fabsf(v - term) < 1e-6f, "hint-only loss %g is the term %g", (double)v,
                  (double)term);
    for (int i = 0; i < 80; i++) ck_assert_int_eq(kd_trainer_step(tr, x, y, NULL, B, &v), KD_OK);
    ck_assert_msg(v < 0.5f * term, "the cosine term went from %g to %g", (double)term, (double)v);

    /* Then normal distillation with the term: the step's loss adds it to the logit loss. */
    ck_assert_int_eq(kd_trainer_set_int(tr, KD_TRAINER_HINT_ONLY, 0), KD_OK);
    ck_assert_int_eq(kd_trainer_step(tr, x, y, NULL, B, &v), KD_OK);
    float logit_part = 0.0f;
    ck_assert_int_eq(kd_loss_value(l, KD_LOSS_PART_TOTAL, &logit_part), KD_OK);
    ck_assert_int_eq(kd_trainer_feature_value(tr, -1, &term), KD_OK);
    ck_assert_msg(fabsf(v - (logit_part + term)) < 1e-5f, "%g != %g + %g", (double)v,
                  (double)logit_part, (double)term);
    kd_trainer_destroy(tr);
    kd_optimizer_destroy(o);
    kd_feature_loss_destroy(cos);
    kd_loss_destroy(l);
    kd_model_destroy(s);
    kd_model_destroy(teacher);
}
END_TEST

/* kd_model_output_rows: how the trainer sees an example's output. */
START_TEST(output_rows)
{
    const struct {
        const char *spec;
        int64_t rows, classes;
    } cases[] = {{STUDENT, T, V},
                 {"tokens 11 5 | embed 8 | flatten | dense 3", 1, 3},
                 {"input 4 | dense 3", 1, 3},
                 {"sequence 4 6 | dense 5", 4, 5},
                 {"input 1x4x4 | conv 2 3", 1, 8}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        kd_model *m = model(cases[i].spec, 1);
        int64_t rows = 0, classes = 0, out = 0;
        ck_assert_int_eq(kd_model_output_rows(m, &rows, &classes), KD_OK);
        ck_assert_int_eq(kd_model_output_size(m, &out), KD_OK);
        ck_assert_msg(rows == cases[i].rows && classes == cases[i].classes, "%s: %lld rows of %lld",
                      cases[i].spec, (long long)rows, (long long)classes);
        ck_assert_int_eq(rows * classes, out);
        ck_assert_int_eq(kd_model_output_rows(m, NULL, NULL), KD_OK);
        kd_model_destroy(m);
    }
    ck_assert_int_eq(kd_model_output_rows(NULL, NULL, NULL), KD_ERR_ARGUMENT);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("trainer_tokens");
    TCase *t = tcase_create("core");
    tcase_add_test(t, output_rows);
    tcase_add_test(t, soft_targets_per_token);
    tcase_add_test(t, step_forward_kl);
    tcase_add_test(t, step_token_kinds);
    tcase_add_test(t, student_learns);
    tcase_add_test(t, mismatch_refused);
    tcase_add_test(t, hidden_state_cosine);
    suite_add_tcase(s, t);
    return s;
}

int main(void) { return kdt_run(suite()); }
