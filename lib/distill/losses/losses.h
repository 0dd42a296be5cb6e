/* Distillation methods beyond Hinton's loss: the logit kinds behind kd_loss (logit MSE, DKD) and
 * the feature losses behind kd_feature_loss (FitNets hints, attention transfer, RKD, similarity
 * preserving, PKT, cosine embedding). One method a file; the shared pieces are in common.c. */
#ifndef KDI_LOSSES_H
#define KDI_LOSSES_H

#include "core/tensor.h"
#include "distill/loss.h"

/* ---------------------------------------------------------------- logit kinds (kd_loss) */

extern const kdi_loss_ops kdi_logit_mse_ops; /* KD_LOSS_LOGIT_MSE, logit_mse.c */
extern const kdi_loss_ops kdi_dkd_ops;       /* KD_LOSS_DKD, dkd.c */
/* Token-level divergences: the driver in divergence.c, one element term a file. */
extern const kdi_loss_ops kdi_reverse_kl_ops;      /* KD_LOSS_REVERSE_KL, reverse_kl.c */
extern const kdi_loss_ops kdi_jsd_ops;             /* KD_LOSS_JSD, jsd.c */
extern const kdi_loss_ops kdi_skew_kl_ops;         /* KD_LOSS_SKEW_KL, skew_kl.c */
extern const kdi_loss_ops kdi_skew_reverse_kl_ops; /* KD_LOSS_SKEW_REVERSE_KL, skew_kl.c */
extern const kdi_loss_ops kdi_tvd_ops;             /* KD_LOSS_TVD, tvd.c */
/* The shared parts of their ops tables. */
kd_status kdi_divergence_forward(kd_loss *l, const float *z, const float *p, const int32_t *y,
                                 int64_t batch, int64_t classes, double *parts, float *grad);
int kdi_divergence_uses_soft(const kd_loss *l);
void kdi_divergence_defaults(kd_loss *l);
/* log(max(x, FLT_TRUE_MIN)): a probability that underflowed to 0 keeps a finite log. */
double kdi_log_floor(double x);
extern const kdi_loss_ops kdi_dist_ops; /* KD_LOSS_DIST, dist.c */

/* Logit standardisation (standardize.c): s [batch, classes] = the rows of z as z-scores, sigma
 * [batch] (may be NULL) their unbiased standard deviations; classes >= 2. */
void kdi_standardize_rows(const float *z, int64_t batch, int64_t classes, float *s, double *sigma);
/* Turns g = dL/ds [batch, classes] into dL/dz in place, from the s and sigma of the forward. */
void kdi_standardize_backward(double *g, const float *s, const double *sigma, int64_t batch,
                              int64_t classes);
/* The student's log_softmax(x / t) into l->ws[0], x being z, or z standardised (into l->ws[2],
 * its sigma into l->ws[3]) when KD_LOSS_LOGIT_STANDARDIZE is set. */
kd_status kdi_student_soft_log_probs(kd_loss *l, const float *z, int64_t batch, int64_t classes,
                                     float **out);
/* A zeroed double buffer [batch, classes] (l->gs) for the soft term's gradient with respect to
 * the logits it read (z, or z standardised). */
kd_status kdi_student_soft_grad(kd_loss *l, int64_t batch, int64_t classes, double **gs);
/* grad = d soft / dz from gs (changed in place): through the standardisation when it is set. */
void kdi_student_soft_finish(kd_loss *l, double *gs, int64_t batch, int64_t classes, float *grad);
/* Whether KD_LOSS_LOGIT_STANDARDIZE is set. */
int kdi_loss_standardizes(const kd_loss *l);

/* Each row of p [batch, classes] is a distribution (finite, >= 0, sums to 1 within 1e-3). */
kd_status kdi_check_probabilities(const float *p, int64_t batch, int64_t classes);
/* Every label is in [0, classes) or -1. */
kd_status kdi_check_labels(const int32_t *labels, int64_t batch, int64_t classes);
/* The inputs of a loss whose soft term weighs alpha and hard term 1 - alpha (Hinton's, the
 * token-level kinds): soft targets unless alpha is 0, labels unless alpha is 1, labels in range. */
kd_status kdi_check_alpha_inputs(const kd_loss *l, const float *soft, const int32_t *labels,
                                 int64_t batch, int64_t classes);
/* Row-wise log_softmax(z / t) into ws; KD_ERR_NUMERIC when z / t overflows. soft: z are a
 * student's logits at the distillation temperature t, else any model's for its cross-entropy (the
 * failure's message says which). */
kd_status kdi_log_probs(kdi_buf *ws, const float *z, int64_t batch, int64_t classes, float t,
                        int soft, float **out);

/* ---------------------------------------------------------------- feature losses */

#define KDI_FEATURE_NOPTIONS 14 /* kd_feature_loss_option keys (2-9 unused) */
#define KDI_FEATURE_NWS 4       /* workspaces per handle */

typedef struct kdi_feature_ops {
    const char *name;
    /* Whether a student feature of shape s (one example) can be compared with a teacher feature
     * of shape t; KD_ERR_SHAPE with a sentence when not. */
    kd_status (*check)(kdi_shape s, kdi_shape t);
    /* The batch's loss into *loss and d loss / d student into grad [batch, size(ss)]; uses only
     * l->ws and l->opt, so a failure (KD_ERR_NUMERIC, KD_ERR_NOMEM) changes nothing else. */
    kd_status (*forward)(kd_feature_loss *l, const float *s, kdi_shape ss, const float *t,
                         kdi_shape ts, int64_t batch, double *loss, float *grad);
} kdi_feature_ops;

struct kd_feature_loss {
    kd_feature_loss_kind kind;
    const kdi_feature_ops *ops;
    float opt[KDI_FEATURE_NOPTIONS]; /* indexed by kd_feature_loss_option */
    /* The last successful forward: batch (0 before any), student size per example, value, and
     * its gradient, double-buffered (cur) so a failing forward keeps the previous one. */
    int64_t batch, size;
    double value;
    kdi_buf grad[2];
    int cur;
    kdi_buf ws[KDI_FEATURE_NWS];
    /* CRD's memory of teacher embeddings: crd_k rows of crd_dim (0 before the first forward),
     * the next slot to write. */
    kdi_buf crd_memory;
    int64_t crd_k, crd_dim, crd_next;
};

extern const kdi_feature_ops kdi_hint_ops;         /* hint.c */
extern const kdi_feature_ops kdi_attention_ops;    /* attention.c */
extern const kdi_feature_ops kdi_rkd_ops;          /* rkd.c */
extern const kdi_feature_ops kdi_similarity_ops;   /* similarity.c */
extern const kdi_feature_ops kdi_pkt_ops;          /* pkt.c */
extern const kdi_feature_ops kdi_cosine_ops;       /* cosine.c */
extern const kdi_feature_ops kdi_attention_kl_ops; /* attention_kl.c */
extern const kdi_feature_ops kdi_crd_ops;          /* crd.c */

/* CRD's memory for k rows of d, built from the seed if missing or of another size (crd.c); a
 * checkpoint saves and restores it with the slot to write next. */
kd_status kdi_crd_memory_ready(kd_feature_loss *l, int64_t k, int64_t d);

/* The handle's generic part (feature_loss.c), for the trainer: checks batch and shapes, runs a
 * forward (keeping its gradient, kdi_feature_loss_grad) without the public argument checks. */
kd_status kdi_feature_loss_check(const kd_feature_loss *l, kdi_shape s, kdi_shape t, int64_t batch);
kd_status kdi_feature_loss_run(kd_feature_loss *l, const float *student, kdi_shape s,
                               const float *teacher, kdi_shape t, int64_t batch, double *value);
const float *kdi_feature_loss_grad(const kd_feature_loss *l);

/* Checks shared by the feature kinds. */
kd_status kdi_check_same_size(const char *what, kdi_shape s, kdi_shape t);
kd_status kdi_check_any_size(kdi_shape s, kdi_shape t);

/* A workspace of n doubles carved from a float buffer (64-byte aligned). */
kd_status kdi_ws_doubles(kdi_buf *b, int64_t n, double **out);
/* k[i][j] = <x_i, x_j> in double for the rows of x [batch, dim] (both triangles filled). */
void kdi_gram(const float *x, int64_t batch, int64_t dim, double *k);
/* grad [batch, dim] = (dk + dk^T) x for dk [batch, batch] (double), through tmp [batch, batch]
 * floats: the gradient of a function of k = x x^T. */
void kdi_gram_backward(const double *dk, const float *x, int64_t batch, int64_t dim, float *tmp,
                       float *grad);
/* Huber loss with threshold 1 (PyTorch's smooth_l1_loss, beta = 1) and its derivative. */
double kdi_smooth_l1(double x);
double kdi_smooth_l1_grad(double x);

#endif
