/* The teachers' knowledge: softened, ensemble-averaged probabilities, from cached logits or from
 * running the teachers. The public calls validate and allocate per call; the trainer calls the
 * kdi_ forms below with its own workspace so that a training step does not allocate. */
#ifndef KDI_SOFT_TARGETS_H
#define KDI_SOFT_TARGETS_H

#include "core/tensor.h"

/* Checks an ensemble: n >= 1, temperature > 0 and finite (1/T too), weights NULL or n finite
 * values >= 0 with a positive sum. */
kd_status kdi_check_ensemble(const float *weights, int32_t n, float temperature);

/* Whether teacher can teach a student shaped like ref: the same input size, token vocabulary
 * (0 for float inputs), output rows and classes a row; KD_ERR_SHAPE naming the first difference.
 * who names the teacher in the sentence ("the teacher", "teacher 2"), ref_who ref ("the student",
 * "teacher 0"). */
kd_status kdi_check_teacher_fits(const kd_model *teacher, const kd_model *ref, const char *who,
                                 const char *ref_who);

/* Checks teachers: non-NULL, all shaped alike (kdi_check_teacher_fits against teacher 0); *in gets
 * their input size, *rows and *classes their output rows. */
kd_status kdi_check_teachers(kd_model *const *teachers, int32_t n, int64_t *in, int64_t *rows,
                             int64_t *classes);

/* probs = sum_i w_i softmax(logits_i / T) / sum_i w_i for logits [n][batch][classes]; the
 * arguments must have passed kdi_check_ensemble. tmp holds batch * classes floats when n > 1
 * (unused, may be NULL, when n == 1). KD_ERR_NUMERIC when a logit is not finite. */
kd_status kdi_soft_targets_mix(const float *logits, const float *weights, int32_t n, int64_t batch,
                               int64_t classes, float temperature, float *probs, float *tmp);

/* The same from running each teacher (kd_model_predict) on x [batch, in], the softmax taken over
 * each of the batch * rows rows of classes (kdi_model_rows); ws grows to 2 * batch * rows *
 * classes floats and is reused. The arguments must have passed both checks above. */
kd_status kdi_teacher_soft_targets(kd_model *const *teachers, const float *weights, int32_t n,
                                   const float *x, int64_t batch, int64_t rows, int64_t classes,
                                   float temperature, float *probs, kdi_buf *ws);

#endif
