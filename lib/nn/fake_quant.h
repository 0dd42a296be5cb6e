/* Fake quantisation for quantisation-aware training (kd_model_set_fake_quant): a chain's forward
 * and backward simulate the int8 model kd_model_quantize_trained will make of it. Weights of the
 * marked layers are rounded per output channel to symmetric int8 (s_w[o] = max|W[o,:]| / 127), the
 * marked activations (the input and block outputs) to asymmetric uint8 with ranges tracked by an
 * exponential moving average of each training batch's min and max. Gradients pass by the
 * straight-through estimator (Bengio et al. 2013, arXiv:1308.3432; Jacob et al. 2018,
 * arXiv:1712.05877, sec. 3): identity where the value lies inside the clip range, zero outside. The
 * master weights stay float; only the layer's forward and backward see the rounded copy. */
#ifndef KDI_FAKE_QUANT_H
#define KDI_FAKE_QUANT_H

#include "nn/layer.h"

/* The EMA's constant: range += c (batch range - range), PyTorch's MovingAverageMinMaxObserver. */
#define KDI_FQ_MOMENTUM 0.01f

typedef struct kdi_fq {
    int32_t n;        /* layers of the chain */
    uint8_t *weights; /* weights[i]: layer i's params[0] is rounded per output channel */
    uint8_t *point;   /* point[p]: activation p is rounded; p = 0 the input, p = i + 1 layer i's
                        * output */
    float *lo, *hi;   /* tracked range of every point */
    uint8_t *seen;    /* whether a training batch has set the range */
    float *scale;     /* scale and zero point of the last forward, for the backward's mask */
    float *zero;
    kdi_buf *act;   /* the rounded activation of every point */
    kdi_buf *wq;    /* the rounded weights of every marked layer */
    float **master; /* the float weights while a layer runs on the rounded copy */
} kdi_fq;

/* Builds the state for a chain of n layers with the given marks (copied); NULL on NOMEM. */
kdi_fq *kdi_fq_create(int32_t n, const uint8_t *weights, const uint8_t *point);
void kdi_fq_free(kdi_fq *f);
/* scale and zero point of a range widened to hold 0, as kd_model_quantize computes them. */
void kdi_fq_scale(float lo, float hi, float *scale, float *zero);
/* Rounds activation p of batch values x (count of them) into f->act[p]; with train, the range first
 * follows the batch. Untracked ranges outside training leave x as it is (*out = x). */
kd_status kdi_fq_activation(kdi_fq *f, int32_t p, const float *x, int64_t count, int train,
                            const float **out);
/* The straight-through mask of point p: g[j] = 0 where x[j] was clipped in the last forward. */
void kdi_fq_mask(const kdi_fq *f, int32_t p, const float *x, float *g, int64_t count);
/* Layer i computes on rounded weights between begin and end (the float ones are kept aside). */
kd_status kdi_fq_weights_begin(kdi_fq *f, kdi_layer *l, int32_t i, int round);
void kdi_fq_weights_end(kdi_fq *f, kdi_layer *l, int32_t i);
/* Rounds w [out, k] per output channel into q (symmetric int8 steps). */
void kdi_fq_round_weights(const float *w, float *q, int64_t out, int64_t k);

#endif
