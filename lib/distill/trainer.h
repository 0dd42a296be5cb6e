/* The trainer behind kd_trainer: one distillation step packaged (soft targets, student forward,
 * loss, backward, optimizer step), with its own workspaces so a step allocates only when it first
 * meets a batch size. */
#ifndef KDI_TRAINER_H
#define KDI_TRAINER_H

#include "distill/loss.h"
#include "nn/layers/layers.h"
#include "nn/model.h"
#include "optim/optim.h"

struct kd_trainer {
    kd_model *student; /* borrowed, as are loss, opt and the teachers */
    kd_loss *loss;
    kd_optimizer *opt;
    kd_model **teachers;
    float *weights; /* ensemble weights, one per teacher, > 0 */
    int32_t nteachers, cap;
    int64_t in; /* the student's input size */
    /* The loss's rows an example and classes a row (kdi_model_rows): T and V for a language model,
     * whose loss sees batch * T rows; 1 and the output size otherwise. Buffers below hold
     * [batch * rows, classes]. */
    int64_t rows, classes;
    kdi_buf soft;   /* soft targets [batch * rows, classes] */
    kdi_buf logits; /* the student's logits */
    kdi_buf grad;   /* d loss / d logits */
    kdi_buf ws;     /* the teachers' logits and probabilities, 2 x [batch * rows, classes] */
    /* Distillation methods beyond the logit loss (trainer_features.c). */
    struct kdi_feature_term *terms; /* feature terms, nterms of them */
    int32_t nterms, term_cap;
    int32_t hint_only;    /* KD_TRAINER_HINT_ONLY */
    int32_t teachers_ran; /* every teacher ran on this step's x (live soft targets) */
    int32_t features_ran; /* a step has computed the feature terms */
    kdi_buf tlogits;      /* one teacher's logits [batch * rows, classes] */
    double feature_total; /* the weighted feature terms of the last step */
    /* The student's and the regressors' buffers and random streams before a step's forward, put
     * back when the step fails (nn/model_state.h). */
    kdi_buf undo;
    /* A data-parallel job (parallel.c); its all-reduce is sync.fn, NULL for a lone trainer. */
    struct {
        int32_t rank, world;
        kdi_buf bucket;        /* the packed buckets' gradients, and the loss */
        int64_t bucket_floats; /* KD_TRAINER_BUCKET_FLOATS */
        /* This step's plan: the gradients in summing order, cut into buckets. */
        kdi_param **order;
        int32_t norder, order_cap;
        struct kdi_grad_bucket *plan;
        int32_t nplan, plan_cap;
        int32_t next;    /* the next bucket to start */
        int32_t started; /* buckets started, 0 .. started-1, not all waited for yet */
    } par;
    kdi_sync sync; /* the all-reduce, the global batch and this slice's share (step, batch norm) */
    int32_t sync_bn; /* KD_TRAINER_SYNC_BATCHNORM */
};

/* How many teachers cached logits hold: the teachers added, or 1 when none were added (logits
 * cached from a teacher that is not loaded). */
int32_t kdi_trainer_cached_teachers(const kd_trainer *t);

/* Feature term k's regressor and its optimizer; 0 when the term has none. */
int kdi_trainer_regressor(const kd_trainer *t, int32_t k, kd_model **m, kd_optimizer **o);
/* Whether feature term k is CRD; then its loss (borrowed) and the size d of its embeddings. */
int kdi_trainer_crd(const kd_trainer *t, int32_t k, kd_feature_loss **loss, int64_t *dim);

/* Data-parallel training (parallel.c). */
kd_status kdi_trainer_set_sync_bn(kd_trainer *t, int64_t value);
kd_status kdi_trainer_parallel_reserve(kd_trainer *t);
/* The step's first sum over the job (the global batch); `refused` is this process's status so far:
 * not KD_OK, it still takes part and returns it, and every other process fails its step. */
kd_status kdi_trainer_parallel_begin(kd_trainer *t, int64_t batch, kd_status refused);
/* The student's backward pass from grad, summing the gradient buckets over the job as it goes,
 * then the last bucket with *loss; every started sum is waited for, even on failure. */
kd_status kdi_trainer_parallel_backward(kd_trainer *t, const float *grad, float *loss);
void kdi_trainer_parallel_free(kd_trainer *t);

#endif
