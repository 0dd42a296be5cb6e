/* The trainer: steps that learn, cached logits against live teachers, refused steps that leave the
 * student bit-identical, training without a teacher. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "distill/trainer.h"
#include "nn/model.h"
#include "testutil.h"

#define B 16
#define IN 8
#define C 4
#define STUDENT "input 8 | dense 16 | relu | dense 4"

static kd_model *model(const char *spec, uint64_t seed)
{
    kd_model *m;
    ck_assert_int_eq(kd_model_create(spec, seed, &m), KD_OK);
    return m;
}

/* A student with its loss and SGD optimizer, and a trainer over them. */
typedef struct rig {
    kd_model *student;
    kd_loss *loss;
    kd_optimizer *opt;
    kd_trainer *t;
} rig;

static rig make_rig(kd_model *student, float t, float alpha, float lr)
{
    rig r = {student, NULL, NULL, NULL};
    ck_assert_int_eq(kd_loss_create(KD_LOSS_HINTON, &r.loss), KD_OK);
    ck_assert_int_eq(kd_loss_set_float(r.loss, KD_LOSS_TEMPERATURE, t), KD_OK);
    ck_assert_int_eq(kd_loss_set_float(r.loss, KD_LOSS_ALPHA, alpha), KD_OK);
    ck_assert_int_eq(kd_optimizer_create(KD_OPTIMIZER_SGD, student, &r.opt), KD_OK);
    ck_assert_int_eq(kd_optimizer_set_float(r.opt, KD_OPT_LEARNING_RATE, lr), KD_OK);
    ck_assert_int_eq(kd_optimizer_set_float(r.opt, KD_OPT_MOMENTUM, 0.9f), KD_OK);
    ck_assert_int_eq(kd_trainer_create(student, r.loss, r.opt, &r.t), KD_OK);
    return r;
}

static void free_rig(rig *r)
{
    kd_trainer_destroy(r->t);
    kd_optimizer_destroy(r->opt);
    kd_loss_destroy(r->loss);
    kd_model_destroy(r->student);
}

typedef struct data {
    float x[B * IN];
    int32_t y[B];
} data;

static void make_data(data *d, uint64_t seed)
{
    kdt_fill(d->x, B * IN, seed, -1.0f, 1.0f);
    for (int i = 0; i < B; i++) d->y[i] = (int32_t)((i * 7 + (int)seed) % C);
    d->y[3] = -1; /* an unlabelled example */
}

/* Every value of every parameter of m, concatenated (heap, caller frees). */
static float *weights_of(const kd_model *m, int64_t *n)
{
    const kdi_param_list *pl = kdi_model_params(m);
    int64_t total = 0;
    for (int32_t i = 0; i < pl->n; i++) total += pl->items[i].p->count;
    float *w = malloc(sizeof(float) * total), *at = w;
    for (int32_t i = 0; i < pl->n; i++) {
        memcpy(at, pl->items[i].p->value, sizeof(float) * pl->items[i].p->count);
        at += pl->items[i].p->count;
    }
    *n = total;
    return w;
}

static int same_weights(const kd_model *a, const kd_model *b)
{
    int64_t na, nb;
    float *wa = weights_of(a, &na), *wb = weights_of(b, &nb);
    int same = na == nb && memcmp(wa, wb, sizeof(float) * na) == 0;
    free(wa);
    free(wb);
    return same;
}

START_TEST(steps_decrease_the_loss)
{
    kd_model *teacher = model("input 8 | dense 32 | relu | dense 4", 9);
    rig r = make_rig(model(STUDENT, 1), 4.0f, 0.5f, 0.1f);
    ck_assert_int_eq(kd_trainer_add_teacher(r.t, teacher, 1.0f), KD_OK);
    data d;
    make_data(&d, 3);
    /* labels the teacher agrees with, so both terms pull the same way */
    float tz[B * C];
    ck_assert_int_eq(kd_model_predict(teacher, d.x, B, tz), KD_OK);
    for (int i = 0; i < B; i++)
        for (int c = 0; c < C && d.y[i] >= 0; c++)
            if (tz[i * C + c] > tz[i * C + d.y[i]]) d.y[i] = c;
    float first = 0.0f, last = 0.0f, every10 = INFINITY;
    const float *soft = NULL, *logits = NULL, *lg0 = NULL, *lg1 = NULL;
    for (int i = 0; i < 100; i++) {
        ck_assert_int_eq(kd_trainer_step(r.t, d.x, d.y, NULL, B, &last), KD_OK);
        if (i == 0) {
            first = last;
            soft = r.t->soft.data;
            logits = r.t->logits.data;
            lg0 = r.loss->grad[0].data;
            lg1 = r.loss->grad[1].data;
        }
        if (i % 10 == 0) {
            ck_assert_msg(last < every10, "step %d: loss %g after %g", i, (double)last,
                          (double)every10);
            every10 = last;
        }
    }
    /* the workspaces were allocated once */
    ck_assert_ptr_eq(soft, r.t->soft.data);
    ck_assert_ptr_eq(logits, r.t->logits.data);
    ck_assert_ptr_eq(lg0, r.loss->grad[0].data);
    ck_assert_ptr_eq(lg1, r.loss->grad[1].data);
    ck_assert_msg(last < 0.6f * first, "loss %g -> %g", (double)first, (double)last);
    float total, soft_part, hard_part;
    ck_assert_int_eq(kd_loss_value(r.loss, KD_LOSS_PART_TOTAL, &total), KD_OK);
    ck_assert_int_eq(kd_loss_value(r.loss, KD_LOSS_PART_SOFT, &soft_part), KD_OK);
    ck_assert_int_eq(kd_loss_value(r.loss, KD_LOSS_PART_HARD, &hard_part), KD_OK);
    ck_assert(total == last);
    ck_assert_float_eq_tol(soft_part + hard_part, total, 1e-6f);
    int64_t step;
    ck_assert_int_eq(kd_optimizer_get_int(r.opt, KD_OPT_STEP, &step), KD_OK);
    ck_assert_int_eq(step, 100);
    free_rig(&r);
    kd_model_destroy(teacher);
}
END_TEST

/* Two identical students, one distilled from live teachers, one from their cached logits. */
START_TEST(cached_logits_equal_live_teachers)
{
    kd_model *t1 = model("input 8 | dense 12 | tanh | dense 4", 5),
             *t2 = model("input 8 | dense 4", 6);
    kd_model *s = model(STUDENT, 2), *s2;
    ck_assert_int_eq(kd_model_clone(s, &s2), KD_OK);
    rig live = make_rig(s, 3.0f, 0.7f, 0.05f), cached = make_rig(s2, 3.0f, 0.7f, 0.05f);
    ck_assert_int_eq(kd_trainer_add_teacher(live.t, t1, 1.0f), KD_OK);
    ck_assert_int_eq(kd_trainer_add_teacher(live.t, t2, 3.0f), KD_OK);
    ck_assert_int_eq(kd_trainer_add_teacher(cached.t, t1, 1.0f), KD_OK);
    ck_assert_int_eq(kd_trainer_add_teacher(cached.t, t2, 3.0f), KD_OK);
    data d;
    float logits[2 * B * C], a, b;
    for (int i = 0; i < 5; i++) {
        make_data(&d, 10 + i);
        ck_assert_int_eq(kd_model_predict(t1, d.x, B, logits), KD_OK);
        ck_assert_int_eq(kd_model_predict(t2, d.x, B, logits + B * C), KD_OK);
        ck_assert_int_eq(kd_trainer_step(live.t, d.x, d.y, NULL, B, &a), KD_OK);
        ck_assert_int_eq(kd_trainer_step(cached.t, d.x, d.y, logits, B, &b), KD_OK);
        ck_assert(a == b);
        ck_assert(same_weights(s, s2));
    }
    free_rig(&live);
    free_rig(&cached);
    kd_model_destroy(t1);
    kd_model_destroy(t2);
}
END_TEST

/* Logits cached from a teacher that is not loaded: one teacher is implied. */
START_TEST(cached_logits_without_teachers)
{
    kd_model *teacher = model("input 8 | dense 4", 4), *s = model(STUDENT, 3), *s2;
    ck_assert_int_eq(kd_model_clone(s, &s2), KD_OK);
    rig with = make_rig(s, 2.0f, 0.9f, 0.05f), without = make_rig(s2, 2.0f, 0.9f, 0.05f);
    ck_assert_int_eq(kd_trainer_add_teacher(with.t, teacher, 2.0f), KD_OK);
    data d;
    make_data(&d, 8);
    float logits[B * C], a, b;
    ck_assert_int_eq(kd_model_predict(teacher, d.x, B, logits), KD_OK);
    ck_assert_int_eq(kd_trainer_step(with.t, d.x, d.y, NULL, B, &a), KD_OK);
    ck_assert_int_eq(kd_trainer_step(without.t, d.x, d.y, logits, B, &b), KD_OK);
    ck_assert(a == b);
    ck_assert(same_weights(s, s2));
    free_rig(&with);
    free_rig(&without);
    kd_model_destroy(teacher);
}
END_TEST

/* A refused step leaves the student bit-identical, the optimizer's step count and the gradients
 * as they were, and the next good step works. */
START_TEST(refused_steps_leave_the_student_unchanged)
{
    kd_model *teacher = model("input 8 | dense 4", 7),
             *s = model("input 8 | dropout 0.2 | dense 16 | relu | dense 4", 4);
    kd_model *copy;
    ck_assert_int_eq(kd_model_clone(s, &copy), KD_OK);
    rig r = make_rig(s, 4.0f, 0.5f, 0.1f);
    ck_assert_int_eq(kd_trainer_add_teacher(r.t, teacher, 1.0f), KD_OK);
    data d, bad;
    make_data(&d, 5);
    float loss = 42.0f, logits[B * C];
    ck_assert_int_eq(kd_model_predict(teacher, d.x, B, logits), KD_OK);

    bad = d;
    bad.x[17] = NAN;
    ck_assert_int_eq(kd_trainer_step(r.t, bad.x, d.y, NULL, B, &loss), KD_ERR_NUMERIC);
    ck_assert_int_eq(kd_trainer_step(r.t, bad.x, d.y, logits, B, &loss), KD_ERR_NUMERIC);
    bad = d;
    bad.y[5] = C;
    ck_assert_int_eq(kd_trainer_step(r.t, d.x, bad.y, NULL, B, &loss), KD_ERR_ARGUMENT);
    ck_assert(strstr(kd_last_error(), "label") != NULL);
    bad.y[5] = -7;
    ck_assert_int_eq(kd_trainer_step(r.t, d.x, bad.y, logits, B, &loss), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_trainer_step(r.t, d.x, NULL, NULL, B, &loss), KD_ERR_ARGUMENT);
    float bad_logits[B * C];
    memcpy(bad_logits, logits, sizeof logits);
    bad_logits[9] = INFINITY;
    ck_assert_int_eq(kd_trainer_step(r.t, d.x, d.y, bad_logits, B, &loss), KD_ERR_NUMERIC);
    ck_assert_int_eq(kd_trainer_step(r.t, d.x, d.y, NULL, 0, &loss), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_trainer_step(r.t, d.x, d.y, NULL, -1, &loss), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_trainer_step(r.t, NULL, d.y, NULL, B, &loss), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_trainer_step(r.t, d.x, d.y, NULL, B, NULL), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_trainer_step(NULL, d.x, d.y, NULL, B, &loss), KD_ERR_ARGUMENT);
    /* an optimizer that cannot step refuses the batch before the student runs */
    ck_assert_int_eq(kd_optimizer_set_int(r.opt, KD_OPT_SCHEDULE, KD_SCHEDULE_COSINE), KD_OK);
    ck_assert_int_eq(kd_trainer_step(r.t, d.x, d.y, NULL, B, &loss), KD_ERR_STATE);
    ck_assert_int_eq(kd_optimizer_set_int(r.opt, KD_OPT_SCHEDULE, KD_SCHEDULE_CONSTANT), KD_OK);
    ck_assert(loss == 42.0f);
    ck_assert(same_weights(s, copy));
    int64_t step;
    ck_assert_int_eq(kd_optimizer_get_int(r.opt, KD_OPT_STEP, &step), KD_OK);
    ck_assert_int_eq(step, 0);

    /* the student diverged: its logits overflow; the step fails after the forward and must undo
     * nothing but leave zero gradients */
    kdi_param *w_last = kdi_model_params(s)->items[2].p;
    float *keep = malloc(sizeof(float) * w_last->count);
    memcpy(keep, w_last->value, sizeof(float) * w_last->count);
    for (int64_t j = 0; j < w_last->count; j++) w_last->value[j] = 3e38f;
    data big = d;
    for (int i = 0; i < B * IN; i++) big.x[i] = 1e3f;
    float *before = NULL;
    int64_t n;
    before = weights_of(s, &n);
    ck_assert_int_eq(kd_trainer_step(r.t, big.x, d.y, NULL, B, &loss), KD_ERR_NUMERIC);
    float *after = weights_of(s, &n);
    ck_assert(memcmp(before, after, sizeof(float) * n) == 0);
    free(before);
    free(after);
    for (int64_t j = 0; j < w_last->count; j++) ck_assert(w_last->grad[j] == 0.0f);
    memcpy(w_last->value, keep, sizeof(float) * w_last->count);
    free(keep);

    ck_assert_int_eq(kd_trainer_step(r.t, d.x, d.y, NULL, B, &loss), KD_OK);
    ck_assert(isfinite(loss));
    ck_assert(!same_weights(s, copy));
    free_rig(&r);
    kd_model_destroy(copy);
    kd_model_destroy(teacher);
}
END_TEST

START_TEST(alpha_zero_trains_without_teacher)
{
    rig r = make_rig(model(STUDENT, 6), 4.0f, 0.0f, 0.1f);
    data d;
    make_data(&d, 2);
    float first = 0.0f, last = 0.0f;
    for (int i = 0; i < 100; i++) {
        ck_assert_int_eq(kd_trainer_step(r.t, d.x, d.y, NULL, B, &last), KD_OK);
        if (i == 0) first = last;
    }
    ck_assert_msg(last < 0.5f * first, "loss %g -> %g", (double)first, (double)last);
    float soft;
    ck_assert_int_eq(kd_loss_value(r.loss, KD_LOSS_PART_SOFT, &soft), KD_OK);
    ck_assert(soft == 0.0f);
    /* alpha > 0 with neither teachers nor cached logits cannot run */
    ck_assert_int_eq(kd_loss_set_float(r.loss, KD_LOSS_ALPHA, 0.5f), KD_OK);
    ck_assert_int_eq(kd_trainer_step(r.t, d.x, d.y, NULL, B, &last), KD_ERR_STATE);
    ck_assert(strstr(kd_last_error(), "teacher") != NULL);
    free_rig(&r);
}
END_TEST

/* Dropout inside a residual block: its random stream goes into the checkpoint, so a resumed run
 * draws the same masks and ends bit-identical. */
START_TEST(checkpoint_keeps_inner_dropout_streams)
{
    const char *spec = "input 8 | residual(dense 8 | relu | dropout 0.5) | dense 4";
    char path[256];
    snprintf(path, sizeof path, "%s/inner-dropout.safetensors", kdt_tmpdir());
    rig a = make_rig(model(spec, 3), 4.0f, 0.0f, 0.05f),
        b = make_rig(model(spec, 4), 4.0f, 0.0f, 0.05f);
    data d;
    float value;
    for (uint64_t s = 0; s < 3; s++) {
        make_data(&d, s);
        ck_assert_int_eq(kd_trainer_step(a.t, d.x, d.y, NULL, B, &value), KD_OK);
    }
    ck_assert_int_eq(kd_trainer_save(a.t, path), KD_OK);
    ck_assert_msg(kd_trainer_load(b.t, path) == KD_OK, "%s", kd_last_error());
    for (uint64_t s = 3; s < 6; s++) {
        make_data(&d, s);
        ck_assert_int_eq(kd_trainer_step(a.t, d.x, d.y, NULL, B, &value), KD_OK);
        ck_assert_int_eq(kd_trainer_step(b.t, d.x, d.y, NULL, B, &value), KD_OK);
    }
    ck_assert(same_weights(a.student, b.student));
    free_rig(&b);
    free_rig(&a);
}
END_TEST

/* kd_model_load reads the student out of a checkpoint (format 2), normalisation included, and skips
 * the trainer's tensors; a format-1 checkpoint (no kd.checkpoint.format: its normalisation was not
 * recorded) is refused by kd_model_load, and kd_model_load_weights still reads its weights. */
START_TEST(model_load_reads_a_checkpoint)
{
    char path[256], old[256];
    snprintf(path, sizeof path, "%s/student.ckpt", kdt_tmpdir());
    snprintf(old, sizeof old, "%s/student-format1.ckpt", kdt_tmpdir());
    rig a = make_rig(model(STUDENT, 3), 4.0f, 0.0f, 0.05f);
    const float mean[1] = {0.25f}, std[1] = {2.0f};
    ck_assert_int_eq(kd_model_set_normalization(a.student, mean, std, 1), KD_OK);
    data d;
    float value;
    make_data(&d, 1);
    ck_assert_int_eq(kd_trainer_step(a.t, d.x, d.y, NULL, B, &value), KD_OK);
    ck_assert_int_eq(kd_trainer_save(a.t, path), KD_OK);
    kd_model *m = NULL;
    ck_assert_msg(kd_model_load(path, &m) == KD_OK, "%s", kd_last_error());
    ck_assert(same_weights(a.student, m));
    float want[B * C], got[B * C];
    ck_assert_int_eq(kd_model_predict(a.student, d.x, B, want), KD_OK);
    ck_assert_int_eq(kd_model_predict(m, d.x, B, got), KD_OK);
    ck_assert_mem_eq(want, got, sizeof want);
    kd_model_destroy(m);

    /* the same file without its format and normalisation keys: what libkd 0.1 wrote */
    kd_tensors *h;
    ck_assert_int_eq(kd_tensors_load(path, &h), KD_OK);
    ck_assert_int_eq(kd_tensors_remove_meta(h, "kd.checkpoint.format"), KD_OK);
    ck_assert_int_eq(kd_tensors_remove_meta(h, "kd.normalize.mean"), KD_OK);
    ck_assert_int_eq(kd_tensors_remove_meta(h, "kd.normalize.std"), KD_OK);
    ck_assert_int_eq(kd_tensors_save(h, old), KD_OK);
    kd_tensors_destroy(h);
    m = NULL;
    ck_assert_int_eq(kd_model_load(old, &m), KD_ERR_FORMAT);
    ck_assert_ptr_null(m);
    ck_assert_ptr_nonnull(strstr(kd_last_error(), "older libkd"));
    m = model(STUDENT, 9);
    ck_assert_msg(kd_model_load_weights(m, old) == KD_OK, "%s", kd_last_error());
    ck_assert(same_weights(a.student, m));
    kd_model_destroy(m);
    /* and a resume from it still works */
    rig b = make_rig(model(STUDENT, 4), 4.0f, 0.0f, 0.05f);
    ck_assert_msg(kd_trainer_load(b.t, old) == KD_OK, "%s", kd_last_error());
    ck_assert(same_weights(a.student, b.student));
    free_rig(&b);
    free_rig(&a);
}
END_TEST

START_TEST(bad_setup)
{
    kd_model *s = model(STUDENT, 1), *other = model(STUDENT, 2);
    kd_model *wide = model("input 8 | dense 5", 3), *narrow = model("input 7 | dense 4", 3);
    kd_loss *loss;
    kd_optimizer *opt, *other_opt;
    kd_trainer *t = NULL;
    ck_assert_int_eq(kd_loss_create(KD_LOSS_HINTON, &loss), KD_OK);
    ck_assert_int_eq(kd_optimizer_create(KD_OPTIMIZER_SGD, s, &opt), KD_OK);
    ck_assert_int_eq(kd_optimizer_create(KD_OPTIMIZER_SGD, other, &other_opt), KD_OK);
    ck_assert_int_eq(kd_trainer_create(s, loss, other_opt, &t), KD_ERR_ARGUMENT);
    ck_assert(strstr(kd_last_error(), "optimizer") != NULL);
    ck_assert_ptr_null(t);
    ck_assert_int_eq(kd_trainer_create(NULL, loss, opt, &t), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_trainer_create(s, NULL, opt, &t), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_trainer_create(s, loss, NULL, &t), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_trainer_create(s, loss, opt, NULL), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_trainer_create(s, loss, opt, &t), KD_OK);
    ck_assert_int_eq(kd_trainer_add_teacher(t, wide, 1.0f), KD_ERR_SHAPE);
    ck_assert_int_eq(kd_trainer_add_teacher(t, narrow, 1.0f), KD_ERR_SHAPE);
    ck_assert_int_eq(kd_trainer_add_teacher(t, NULL, 1.0f), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_trainer_add_teacher(NULL, other, 1.0f), KD_ERR_ARGUMENT);
    const float bad_w[] = {0.0f, -1.0f, NAN, INFINITY};
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(kd_trainer_add_teacher(t, other, bad_w[i]), KD_ERR_ARGUMENT);
    ck_assert_int_eq(t->nteachers, 0);
    for (int i = 0; i < 9; i++) ck_assert_int_eq(kd_trainer_add_teacher(t, other, 1.0f + i), KD_OK);
    ck_assert_int_eq(t->nteachers, 9);
    kd_trainer_destroy(t);
    kd_trainer_destroy(NULL);
    kd_optimizer_destroy(opt);
    kd_optimizer_destroy(other_opt);
    kd_loss_destroy(loss);
    kd_model_destroy(s);
    kd_model_destroy(other);
    kd_model_destroy(wide);
    kd_model_destroy(narrow);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("trainer");
    TCase *t = tcase_create("trainer");
    tcase_add_test(t, steps_decrease_the_loss);
    tcase_add_test(t, cached_logits_equal_live_teachers);
    tcase_add_test(t, cached_logits_without_teachers);
    tcase_add_test(t, refused_steps_leave_the_student_unchanged);
    tcase_add_test(t, alpha_zero_trains_without_teacher);
    tcase_add_test(t, bad_setup);
    tcase_add_test(t, checkpoint_keeps_inner_dropout_streams);
    tcase_add_test(t, model_load_reads_a_checkpoint);
    suite_add_tcase(s, t);
    return kdt_run(s);
}
