/* Soft targets (Hinton, Vinyals and Dean 2015, eq. 1): q_i = exp(z_i / T) / sum_j exp(z_j / T),
 * averaged over an ensemble of teachers with weights. */
#include "distill/soft_targets.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "kernels/kernels.h"
#include "nn/model.h"

kd_status kdi_check_ensemble(const float *weights, int32_t n, float temperature)
{
    if (n < 1) return kdi_fail(KD_ERR_ARGUMENT, "n is %d teachers; it must be 1 or more", (int)n);
    if (!(temperature > 0.0f) || !isfinite(temperature) || !isfinite(1.0f / temperature))
        return kdi_fail(KD_ERR_ARGUMENT, "temperature %g must be finite and greater than 0",
                        (double)temperature);
    if (weights == NULL) return KD_OK;
    double sum = 0.0;
    for (int32_t i = 0; i < n; i++) {
        if (!isfinite(weights[i]) || weights[i] < 0.0f)
            return kdi_fail(KD_ERR_ARGUMENT, "weight %d is %g; weights must be finite and >= 0",
                            (int)i, (double)weights[i]);
        sum += weights[i];
    }
    if (!(sum > 0.0))
        return kdi_fail(KD_ERR_ARGUMENT, "the teachers' weights sum to 0; give one > 0");
    return KD_OK;
}

kd_status kdi_check_teacher_fits(const kd_model *teacher, const kd_model *ref, const char *who,
                                 const char *ref_who)
{
    int64_t tr, tc, rr, rc;
    kdi_model_rows(teacher, &tr, &tc);
    kdi_model_rows(ref, &rr, &rc);
    if (teacher->seq.vocab != ref->seq.vocab)
        return kdi_fail(
            KD_ERR_SHAPE,
            "%s reads %s%lld%s; %s %s%lld%s: a teacher and its student must "
            "share one vocabulary",
            who, teacher->seq.vocab ? "token ids of a vocabulary of " : "",
            (long long)(teacher->seq.vocab ? teacher->seq.vocab : kdi_model_in(teacher)),
            teacher->seq.vocab ? "" : " floats", ref_who, ref->seq.vocab ? "token ids of " : "",
            (long long)(ref->seq.vocab ? ref->seq.vocab : kdi_model_in(ref)),
            ref->seq.vocab ? "" : " floats");
    if (kdi_model_in(teacher) != kdi_model_in(ref))
        return kdi_fail(KD_ERR_SHAPE, "%s takes %lld %s an example; %s %lld", who,
                        (long long)kdi_model_in(teacher),
                        ref->seq.vocab ? "tokens (its context)" : "inputs", ref_who,
                        (long long)kdi_model_in(ref));
    if (tr != rr)
        return kdi_fail(KD_ERR_SHAPE, "%s gives %lld output rows an example (positions); %s %lld",
                        who, (long long)tr, ref_who, (long long)rr);
    if (tc != rc)
        return kdi_fail(KD_ERR_SHAPE, "%s gives %lld classes%s; %s %lld%s", who, (long long)tc,
                        tr > 1 || teacher->seq.seq_out ? " a position" : "", ref_who, (long long)rc,
                        teacher->seq.vocab ? " (the output vocabularies must match)" : "");
    return KD_OK;
}

kd_status kdi_check_teachers(kd_model *const *teachers, int32_t n, int64_t *in, int64_t *rows,
                             int64_t *classes)
{
    KDI_CHECK_NULL(teachers);
    char who[32];
    for (int32_t i = 0; i < n; i++) {
        if (teachers[i] == NULL) return kdi_fail(KD_ERR_ARGUMENT, "teacher %d is NULL", (int)i);
        snprintf(who, sizeof who, "teacher %d", (int)i);
        if (i > 0) KDI_TRY(kdi_check_teacher_fits(teachers[i], teachers[0], who, "teacher 0"));
    }
    if (n < 1) return KD_OK;
    *in = kdi_model_in(teachers[0]);
    kdi_model_rows(teachers[0], rows, classes);
    return KD_OK;
}

/* The factor of teacher i in the average: w_i / sum w, or 1 / n. */
static float share(const float *weights, int32_t n, int32_t i)
{
    if (weights == NULL) return 1.0f / (float)n;
    double sum = 0.0;
    for (int32_t j = 0; j < n; j++) sum += weights[j];
    return (float)(weights[i] / sum);
}

/* Adds teacher i's softened probabilities to probs. The first contributing teacher writes probs
 * directly (so one teacher gives exactly its softmax); the others go through tmp. */
static void add_teacher(const float *logits, float factor, int first, int64_t batch,
                        int64_t classes, float temperature, float *probs, float *tmp)
{
    const kdi_kernels *k = kdi_kernels_get();
    int64_t count = batch * classes;
    if (first) {
        k->softmax_rows(probs, logits, batch, classes, 1.0f / temperature);
        if (factor != 1.0f) k->scale(probs, factor, count);
        return;
    }
    k->softmax_rows(tmp, logits, batch, classes, 1.0f / temperature);
    k->axpy(probs, factor, tmp, count);
}

kd_status kdi_soft_targets_mix(const float *logits, const float *weights, int32_t n, int64_t batch,
                               int64_t classes, float temperature, float *probs, float *tmp)
{
    int64_t count = batch * classes;
    if (!kdi_all_finite(logits, count * n))
        return kdi_fail(KD_ERR_NUMERIC, "the teachers' logits hold NaN or infinity");
    int first = 1;
    for (int32_t i = 0; i < n; i++) {
        float factor = share(weights, n, i);
        if (factor == 0.0f) continue; /* a teacher with weight 0 takes no part */
        add_teacher(logits + i * count, factor, first, batch, classes, temperature, probs, tmp);
        first = 0;
    }
    return KD_OK;
}

kd_status kdi_teacher_soft_targets(kd_model *const *teachers, const float *weights, int32_t n,
                                   const float *x, int64_t batch, int64_t rows, int64_t classes,
                                   float temperature, float *probs, kdi_buf *ws)
{
    int64_t count = batch * rows * classes;
    KDI_TRY(kdi_buf_reserve(ws, 2 * count));
    float *logits = ws->data, *tmp = ws->data + count;
    int first = 1;
    for (int32_t i = 0; i < n; i++) {
        float factor = share(weights, n, i);
        if (factor == 0.0f) continue;
        KDI_TRY(kdi_model_predict(teachers[i], x, batch, logits));
        if (!kdi_all_finite(logits, count))
            return kdi_fail(KD_ERR_NUMERIC, "teacher %d produced NaN or infinite logits", (int)i);
        add_teacher(logits, factor, first, batch * rows, classes, temperature, probs, tmp);
        first = 0;
    }
    return KD_OK;
}

/* batch >= 1 and batch * classes * factor fits in memory arithmetic. */
static kd_status check_sizes(int64_t batch, int64_t classes, int64_t factor)
{
    int64_t count;
    if (batch < 1)
        return kdi_fail(KD_ERR_ARGUMENT, "batch is %lld; it must be 1 or more", (long long)batch);
    if (classes < 1)
        return kdi_fail(KD_ERR_ARGUMENT, "classes is %lld; it must be 1 or more",
                        (long long)classes);
    if (!kdi_mul_ok(batch, classes, &count) || !kdi_mul_ok(count, factor, &count) ||
        count > (1LL << 40))
        return kdi_fail(KD_ERR_ARGUMENT, "batch %lld x classes %lld is too large", (long long)batch,
                        (long long)classes);
    return KD_OK;
}

/* Stateless, so it allocates its workspace (2 * batch * classes floats) on every call; the trainer
 * keeps one instead. */
kd_status kd_teacher_soft_targets(kd_model *const *teachers, const float *weights, int32_t n,
                                  const float *x, int64_t batch, float temperature, float *probs)
{
    KDI_CHECK_NULL(teachers);
    KDI_CHECK_NULL(x);
    KDI_CHECK_NULL(probs);
    KDI_TRY(kdi_check_ensemble(weights, n, temperature));
    int64_t in = 0, rows = 1, classes = 0;
    KDI_TRY(kdi_check_teachers(teachers, n, &in, &rows, &classes));
    KDI_TRY(check_sizes(batch, in > rows * classes ? in : rows * classes, 2));
    if (!kdi_all_finite(x, batch * in))
        return kdi_fail(KD_ERR_NUMERIC, "the input x holds NaN or infinity");
    if (n > 0) KDI_TRY(kdi_model_check_tokens(teachers[0], x, batch));
    kdi_buf ws = {0};
    kd_status st = kdi_teacher_soft_targets(teachers, weights, n, x, batch, rows, classes,
                                            temperature, probs, &ws);
    kdi_buf_free(&ws);
    return st;
}

kd_status kd_soft_targets_from_logits(const float *logits, const float *weights, int32_t n,
                                      int64_t batch, int64_t classes, float temperature,
                                      float *probs)
{
    KDI_CHECK_NULL(logits);
    KDI_CHECK_NULL(probs);
    KDI_TRY(kdi_check_ensemble(weights, n, temperature));
    KDI_TRY(check_sizes(batch, classes, n));
    float *tmp = NULL;
    if (n > 1 && (tmp = kdi_alloc_floats(batch * classes)) == NULL)
        return kdi_fail(KD_ERR_NOMEM, "cannot allocate %lld floats for the ensemble",
                        (long long)(batch * classes));
    kd_status st =
        kdi_soft_targets_mix(logits, weights, n, batch, classes, temperature, probs, tmp);
    kdi_free_floats(tmp);
    return st;
}
