/* The trainer's distillation methods beyond the logit loss (trainer_features.c): feature terms
 * with their regressors, the FitNets hint-only stage, and teacher logits for losses that compare
 * logits. trainer.c calls these at fixed points of a step. */
#ifndef KDI_TRAINER_FEATURES_H
#define KDI_TRAINER_FEATURES_H

#include "distill/trainer.h"

/* Frees the feature terms and their regressors (kd_trainer_destroy). */
void kdi_trainer_features_free(kd_trainer *t);
/* Whether a step can run with the current terms and options; changes nothing. */
kd_status kdi_trainer_features_check(const kd_trainer *t);
/* kdi_model_check_size of every regressor at this batch. */
kd_status kdi_trainer_features_check_size(const kd_trainer *t, int64_t batch);
/* Soft targets for a loss that takes logits: the ensemble's weighted mean of the teachers' logits,
 * from cached [teachers][batch][classes] logits or from running the teachers, into t->soft. */
kd_status kdi_trainer_mean_logits(kd_trainer *t, const float *x, const float *cached, int64_t batch,
                                  const float **out);
/* After the student's forward on x: runs the teachers the terms need, the regressors and the
 * feature losses, puts their gradients into the student (kd_model_feature_backward) and the
 * regressors, and adds the weighted terms to *loss. */
kd_status kdi_trainer_features_forward(kd_trainer *t, const float *x, int64_t batch, float *loss);
/* Whether every regressor's optimizer step would succeed (finite gradients), changing nothing. */
kd_status kdi_trainer_features_ready(const kd_trainer *t);
/* After the student's optimizer step: steps the regressors' optimizers. */
kd_status kdi_trainer_features_step(kd_trainer *t);

#endif
