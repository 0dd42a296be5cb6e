/* kd_trainer: kd_teacher_soft_targets -> kd_model_forward -> kd_loss_forward -> kd_loss_backward
 * -> kd_model_backward -> kd_optimizer_step, with every input checked once, here, before the
 * student is touched (so a refused step leaves the student as it was), then the same sequence
 * through the internal kdi_ entry points, which trust what was checked. */
#include "distill/trainer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "distill/soft_targets.h"
#include "distill/trainer_features.h"
#include "nn/model_state.h"

kd_status kd_trainer_create(kd_model *student, kd_loss *loss, kd_optimizer *opt, kd_trainer **out)
{
    KDI_CHECK_NULL(student);
    KDI_CHECK_NULL(loss);
    KDI_CHECK_NULL(opt);
    KDI_CHECK_NULL(out);
    if (opt->model != student)
        return kdi_fail(KD_ERR_ARGUMENT,
                        "the optimizer was built on another model; create it on the student");
    kd_trainer *t = kdi_calloc(1, sizeof *t);
    if (t == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot allocate a trainer");
    t->student = student;
    t->loss = loss;
    t->opt = opt;
    t->in = kdi_model_in(student);
    t->par.world = 1;
    t->par.bucket_floats = 262144;
    t->sync.share = 1.0f;
    kdi_model_rows(student, &t->rows, &t->classes);
    *out = t;
    return KD_OK;
}

void kd_trainer_destroy(kd_trainer *t)
{
    if (t == NULL) return;
    kdi_free(t->teachers);
    kdi_free(t->weights);
    kdi_buf_free(&t->soft);
    kdi_buf_free(&t->logits);
    kdi_buf_free(&t->grad);
    kdi_buf_free(&t->ws);
    kdi_buf_free(&t->undo);
    kdi_trainer_parallel_free(t);
    kdi_trainer_features_free(t);
    kdi_free(t);
}

static kd_status grow_teachers(kd_trainer *t)
{
    if (t->nteachers < t->cap) return KD_OK;
    int32_t cap = t->cap ? t->cap * 2 : 4;
    kd_model **teachers = kdi_realloc(t->teachers, (size_t)cap * sizeof *teachers);
    if (teachers == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot grow the list of teachers");
    t->teachers = teachers;
    float *weights = kdi_realloc(t->weights, (size_t)cap * sizeof *weights);
    if (weights == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot grow the list of teachers");
    t->weights = weights;
    t->cap = cap;
    return KD_OK;
}

kd_status kd_trainer_add_teacher(kd_trainer *t, kd_model *teacher, float weight)
{
    KDI_CHECK_NULL(t);
    KDI_CHECK_NULL(teacher);
    if (!(weight > 0.0f) || !isfinite(weight))
        return kdi_fail(KD_ERR_ARGUMENT, "teacher weight %g must be finite and greater than 0",
                        (double)weight);
    KDI_TRY(kdi_check_teacher_fits(teacher, t->student, "the teacher", "the student"));
    if (t->nteachers == INT32_MAX) return kdi_fail(KD_ERR_ARGUMENT, "too many teachers");
    KDI_TRY(grow_teachers(t));
    t->teachers[t->nteachers] = teacher;
    t->weights[t->nteachers] = weight;
    t->nteachers++;
    return KD_OK;
}

int32_t kdi_trainer_cached_teachers(const kd_trainer *t)
{
    return t->nteachers > 0 ? t->nteachers : 1;
}

/* Soft targets into t->soft, or *soft = NULL when the loss does not read them; *is_logits says
 * whether they are the teachers' (mean) logits or their mixed probabilities. */
static kd_status soft_targets(kd_trainer *t, const float *x, const float *teacher_logits,
                              int64_t batch, const float **soft, int *is_logits)
{
    *soft = NULL;
    *is_logits = 0;
    if (!kdi_loss_uses_soft(t->loss)) return KD_OK;
    int32_t n = teacher_logits != NULL ? kdi_trainer_cached_teachers(t) : t->nteachers;
    if (kdi_loss_prefers_logits(t->loss, n)) {
        *is_logits = 1;
        return kdi_trainer_mean_logits(t, x, teacher_logits, batch, soft);
    }
    float temp = kdi_loss_temperature(t->loss);
    int64_t count = batch * t->rows * t->classes;
    const float *w = t->nteachers > 0 ? t->weights : NULL;
    KDI_TRY(kdi_buf_reserve(&t->soft, count));
    if (teacher_logits != NULL) {
        int32_t n = kdi_trainer_cached_teachers(t);
        KDI_TRY(kdi_check_ensemble(w, n, temp));
        if (n > 1) KDI_TRY(kdi_buf_reserve(&t->ws, count));
        KDI_TRY(kdi_soft_targets_mix(teacher_logits, w, n, batch * t->rows, t->classes, temp,
                                     t->soft.data, t->ws.data));
    } else if (t->nteachers == 0) {
        float alpha = 0.0f;
        kd_loss_get_float(t->loss, KD_LOSS_ALPHA, &alpha);
        return kdi_fail(
            KD_ERR_STATE,
            "the loss needs soft targets (alpha %g) but the trainer has no teacher and "
            "teacher_logits is NULL; add a teacher, pass cached logits or set alpha to 0",
            (double)alpha);
    } else {
        KDI_TRY(kdi_check_ensemble(w, t->nteachers, temp));
        KDI_TRY(kdi_teacher_soft_targets(t->teachers, w, t->nteachers, x, batch, t->rows,
                                         t->classes, temp, t->soft.data, &t->ws));
        t->teachers_ran = 1;
    }
    *soft = t->soft.data;
    return KD_OK;
}

/* The public boundary of a step: x is scanned once here, and the batch size checked against every
 * model the step runs, so the models' internal entry points need no checks of their own. */
static kd_status check_batch(const kd_trainer *t, const float *x, int64_t batch)
{
    KDI_TRY(kdi_model_check_size(t->student, batch));
    for (int32_t i = 0; i < t->nteachers; i++) KDI_TRY(kdi_model_check_size(t->teachers[i], batch));
    KDI_TRY(kdi_trainer_features_check_size(t, batch));
    if (!kdi_all_finite(x, batch * t->in))
        return kdi_fail(KD_ERR_NUMERIC, "the input x holds NaN or infinity");
    /* A language model reads x as ids of its vocabulary, which every teacher shares (checked by
     * kd_trainer_add_teacher). */
    return kdi_model_check_tokens(t->student, x, batch);
}

/* The part of a step that changes the student; the caller clears the gradients if it fails. */
static kd_status learn(kd_trainer *t, const float *x, const float *soft, int is_logits,
                       const int32_t *labels, int64_t batch, float *loss)
{
    float value = 0.0f;
    const float *grad = t->grad.data;
    KDI_TRY(kdi_model_forward(t->student, x, batch, t->logits.data));
    if (t->hint_only) { /* FitNets stage 1: the feature terms alone */
        memset(t->grad.data, 0, (size_t)(batch * t->rows * t->classes) * sizeof *t->grad.data);
    } else {
        KDI_TRY(kdi_loss_forward(t->loss, t->logits.data, soft, is_logits, labels, batch * t->rows,
                                 t->classes, &value));
        grad = kdi_loss_grad(t->loss);
    }
    /* The step applies this batch's gradient alone, whatever a caller left accumulated. */
    kdi_model_zero_grad(t->student);
    KDI_TRY(kdi_trainer_features_forward(t, x, batch, &value));
    if (t->sync.fn != NULL) {
        /* Buckets are summed as the backward pass goes below their layers (parallel.c). */
        KDI_TRY(kdi_trainer_parallel_backward(t, grad, &value));
    } else {
        KDI_TRY(kdi_model_backward(t->student, grad));
    }
    /* The regressors' steps checked before the student's moves a weight: all step, or none. */
    KDI_TRY(kdi_trainer_features_ready(t));
    KDI_TRY(kdi_optimizer_step(t->opt));
    KDI_TRY(kdi_trainer_features_step(t));
    *loss = value;
    return KD_OK;
}

/* Saves (dir > 0) or puts back (dir < 0) the state a forward changes in the student and the
 * regressors: batch norm's running statistics and counters, dropout's random streams. */
static void undo_walk(kd_trainer *t, int dir)
{
    unsigned char *p = (unsigned char *)t->undo.data;
    if (p == NULL) return; /* nothing to keep: no buffer, no random stream */
    kd_model *m = t->student;
    kd_optimizer *o;
    for (int32_t k = -1; k < t->nterms; k++) {
        if (k >= 0 && !kdi_trainer_regressor(t, k, &m, &o)) continue;
        if (dir > 0)
            kdi_model_state_save(m, p);
        else
            kdi_model_state_restore(m, p);
        p += kdi_model_state_size(m);
    }
}

/* Room for undo_walk, reserved before anything changes. */
static kd_status undo_reserve(kd_trainer *t)
{
    int64_t bytes = kdi_model_state_size(t->student);
    kd_model *m;
    kd_optimizer *o;
    for (int32_t k = 0; k < t->nterms; k++)
        if (kdi_trainer_regressor(t, k, &m, &o)) bytes += kdi_model_state_size(m);
    return kdi_buf_reserve(&t->undo, (bytes + 3) / 4);
}

/* Everything a step checks and reserves before it changes anything: a process of a data-parallel
 * job that fails here still takes the step's first sum (kdi_trainer_parallel_begin). */
static kd_status prepare(kd_trainer *t, const float *x, const int32_t *labels,
                         const float *teacher_logits, int64_t batch, const float **soft,
                         int *is_logits)
{
    KDI_TRY(check_batch(t, x, batch));
    t->teachers_ran = 0;
    KDI_TRY(kdi_trainer_features_check(t));
    if (!t->hint_only) {
        KDI_TRY(soft_targets(t, x, teacher_logits, batch, soft, is_logits));
        KDI_TRY(kdi_loss_check(t->loss, *soft, *is_logits, labels, batch * t->rows, t->classes));
    }
    KDI_TRY(kdi_optimizer_check(t->opt));
    KDI_TRY(kdi_buf_reserve(&t->logits, batch * t->rows * t->classes));
    if (t->hint_only) KDI_TRY(kdi_buf_reserve(&t->grad, batch * t->rows * t->classes));
    /* A failure after the student's forward (a workspace of the loss or a feature term that
     * cannot grow, a refused regressor step) puts back what the forward moved: a failed step
     * leaves the trainer as it was. */
    KDI_TRY(undo_reserve(t));
    if (t->sync.fn != NULL) KDI_TRY(kdi_trainer_parallel_reserve(t));
    return KD_OK;
}

kd_status kd_trainer_step(kd_trainer *t, const float *x, const int32_t *labels,
                          const float *teacher_logits, int64_t batch, float *loss)
{
    KDI_CHECK_NULL(t);
    const float *soft = NULL;
    int is_logits = 0;
    kd_status st =
        x == NULL || loss == NULL
            ? kdi_fail(KD_ERR_ARGUMENT, "kd_trainer_step: %s is NULL", x == NULL ? "x" : "loss")
            : prepare(t, x, labels, teacher_logits, batch, &soft, &is_logits);
    /* last, after every local refusal: the job's sums start here */
    if (t->sync.fn != NULL) st = kdi_trainer_parallel_begin(t, batch, st);
    KDI_TRY(st);
    undo_walk(t, 1);
    st = learn(t, x, soft, is_logits, labels, batch, loss);
    if (st != KD_OK) {
        undo_walk(t, -1);
        kdi_model_zero_grad(t->student);
    }
    return st;
}
