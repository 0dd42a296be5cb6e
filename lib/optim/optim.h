/* Optimizers behind kd_optimizer: the options and schedule are shared; each kind is an ops table
 * with its per-parameter state (momentum for SGD; first and second moments for Adam). */
#ifndef KDI_OPTIM_H
#define KDI_OPTIM_H

#include "nn/model.h"

#define KDI_OPT_MAX_STATE 2 /* state buffers per trainable parameter, at most */

typedef struct kdi_optim_ops {
    const char *name;
    int32_t nstate;                             /* state buffers per trainable parameter */
    const char *state_names[KDI_OPT_MAX_STATE]; /* PyTorch's names: "momentum_buffer", ... */
    /* Option combinations that only a step can judge (set calls check each value alone). */
    kd_status (*check)(const kd_optimizer *o);
    /* Updates p->value from p->grad with rate lr, and zeroes p->grad; state holds nstate buffers
     * of p->count floats. */
    void (*update)(const kd_optimizer *o, kdi_param *p, float *const *state, float lr);
} kdi_optim_ops;

struct kd_optimizer {
    kd_optimizer_kind kind;
    const kdi_optim_ops *ops;
    kd_model *model; /* borrowed */
    float lr, momentum, weight_decay, min_lr;
    float beta1, beta2, eps; /* Adam, AdamW */
    int32_t nesterov;
    int32_t schedule;    /* a kd_schedule */
    int64_t total_steps; /* 0 until set */
    int64_t step;        /* steps taken */
    int64_t step_size;   /* STEP: 0 until set */
    float gamma;         /* STEP, MULTISTEP */
    int64_t milestones[KD_MAX_MILESTONES];
    int64_t nmilestones;
    int64_t warmup_steps;
    float warmup_start;
    float clip_norm;  /* 0: off */
    double grad_norm; /* of the last step, before clipping */
    /* state[i * ops->nstate + j]: buffer j of parameter i of kdi_model_params(model), NULL for
     * parameters without a gradient. Allocated (zeroed) at create, never in a step. */
    float **state;
    int32_t nparams;
};

/* Checks that a step can run now (option combinations, schedule), without changing anything. */
kd_status kdi_optimizer_check(const kd_optimizer *o);
/* Whether kd_optimizer_step would succeed now (options and finite gradients), changing nothing. */
kd_status kdi_optimizer_ready(const kd_optimizer *o);
/* kd_optimizer_step after kdi_optimizer_check passed (the gradients are still checked: all or
 * nothing). */
kd_status kdi_optimizer_step(kd_optimizer *o);
/* The rate the next step will use, from the schedule. */
double kdi_optimizer_lr(const kd_optimizer *o);

#endif
