/* The loss module: one kd_loss handle per loss, a small ops table per kind, so a new kind (logit
 * MSE, DKD, feature losses) is a new table and a case in kd_loss_create. */
#ifndef KDI_LOSS_H
#define KDI_LOSS_H

#include "core/tensor.h"

/* kd_loss_option keys are below KDI_LOSS_NOPTIONS; the gaps are not options (kdi_loss_option_known). */
#define KDI_LOSS_NOPTIONS 20
#define KDI_LOSS_NWS 4    /* workspaces per handle */
#define KDI_LOSS_NPARTS 3 /* kd_loss_part values */

typedef struct kdi_loss_ops {
    const char *name;
    /* Checks labels and whether soft targets are present when the options need them (the caller
     * checks the logits, and the soft targets' values: probabilities or finite logits). */
    kd_status (*check)(const kd_loss *l, const float *soft_targets, const int32_t *labels,
                       int64_t batch, int64_t classes);
    /* Computes parts[] and writes d loss / d logits into grad [batch, classes]; may fail
     * (KD_ERR_NUMERIC) with no side effect but on the workspaces. For a kind that is not
     * soft_is_logits, soft_targets are the teachers' LOG-probabilities at the temperature (the
     * generic layer makes them from probabilities or from logits, standardised when asked). */
    kd_status (*forward)(kd_loss *l, const float *logits, const float *soft_targets,
                         const int32_t *labels, int64_t batch, int64_t classes, double *parts,
                         float *grad);
    /* Whether the next forward reads soft targets with the current options. */
    int (*uses_soft)(const kd_loss *l);
    /* 1: soft_targets are the teachers' logits (their weighted mean for an ensemble), not their
     * probabilities (KD_LOSS_LOGIT_MSE). */
    int soft_is_logits;
    /* Optional: options that differ from the common defaults (losses/). */
    void (*defaults)(kd_loss *l);
    /* Token-level divergences (losses/divergence.c): one element's term of D(p, q) and its
     * derivative *g = dD/dq_j, from p, q, log q and the kind's weight w (log p, where needed, as
     * kdi_log_floor(p)). */
    double (*term)(double p, double q, double lq, double w, double *g);
} kdi_loss_ops;

struct kd_loss {
    kd_loss_kind kind;
    const kdi_loss_ops *ops;
    float opt[KDI_LOSS_NOPTIONS]; /* indexed by kd_loss_option */
    /* The last successful forward: its size, parts and gradient. grad is double-buffered so a
     * failing forward leaves the previous one intact; cur indexes the valid one. */
    int64_t batch, classes; /* batch == 0 before the first forward */
    double parts[KDI_LOSS_NPARTS];
    kdi_buf grad[2];
    int cur;
    kdi_buf ws[KDI_LOSS_NWS]; /* per-kind workspaces (log-probabilities) */
    kdi_buf tlp;              /* the teachers' log-probabilities handed to forward */
    kdi_buf tz;               /* the teachers' standardised logits */
    kdi_buf gs;               /* the soft term's gradient, doubles */
    /* KD_LOSS_MASK_UNLABELLED: the labelled rows gathered (logits, soft targets, labels as int32
     * in a float buffer) and their gradient. */
    kdi_buf pad[4];
};

/* Whether key is a kd_loss_option. */
int kdi_loss_option_known(int key);

/* Checks forward's inputs other than the logits, so the trainer can refuse a batch before it
 * touches the student. */
kd_status kdi_loss_check(const kd_loss *l, const float *soft_targets, int soft_is_logits,
                         const int32_t *labels, int64_t batch, int64_t classes);
/* kd_loss_forward (soft_is_logits 0) or kd_loss_forward_logits (1) for inputs kdi_loss_check
 * accepted and student logits the library computed: checks nothing. */
kd_status kdi_loss_forward(kd_loss *l, const float *student_logits, const float *soft_targets,
                           int soft_is_logits, const int32_t *labels, int64_t batch,
                           int64_t classes, float *loss);
/* Whether the trainer should hand this loss its teachers' (mean) logits rather than their mixed
 * probabilities: the kind reads logits (LOGIT_MSE), or standardises them, or is DKD with one
 * teacher (whose non-target term a confident teacher's probabilities lose to underflow; an
 * ensemble keeps its mixture of probabilities). */
int kdi_loss_prefers_logits(const kd_loss *l, int32_t teachers);
/* Whether the next forward reads soft targets (for Hinton: alpha > 0). */
int kdi_loss_uses_soft(const kd_loss *l);
/* Whether soft targets are the teachers' logits rather than probabilities (the ops' flag). */
int kdi_loss_soft_is_logits(const kd_loss *l);
/* The denominator of a hard (label) term: the labelled rows (KD_LOSS_HARD_MEAN 0, PyTorch's
 * ignore_index mean; 1 when none is labelled, the term being 0) or the batch (1). */
double kdi_loss_hard_count(const kd_loss *l, const int32_t *labels, int64_t batch);
/* The temperature soft targets must be made at. */
float kdi_loss_temperature(const kd_loss *l);
/* The last forward's gradient [batch, classes], borrowed until the forward after next. */
const float *kdi_loss_grad(const kd_loss *l);

#endif
