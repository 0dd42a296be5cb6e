/* What the model reaches inside attention layers: the probabilities tap and its gradient. */
#ifndef KDI_ATTENTION_H
#define KDI_ATTENTION_H

#include "nn/layer.h"

/* 1 when l is an attention layer. */
int kdi_attention_is(const kdi_layer *l);
/* The probabilities [batch, heads, t, t] of the last forward (before dropout), borrowed; NULL
 * before any forward. */
const float *kdi_attention_probs(const kdi_layer *l, int64_t *batch, int64_t *heads, int64_t *t);
/* Adds g [batch, heads, t, t] to the gradient on the probabilities for the next backward. */
kd_status kdi_attention_add_grad(kdi_layer *l, const float *g);

#endif
