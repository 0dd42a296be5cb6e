/* How a float model maps onto int8 layers: blocks of float layers (dense or conv, then an optional
 * bn folded into the conv, then an optional relu fused into the requantisation), each becoming one
 * int8 layer. Shared by the post-training quantiser and by fake quantisation, so that the layers
 * trained on rounded weights and the activations trained on rounded values are the int8 model's. */
#ifndef KDI_QUANT_PLAN_H
#define KDI_QUANT_PLAN_H

#include "nn/model.h"

enum { B_DENSE, B_CONV, B_MAXPOOL, B_FLATTEN };

/* One block of float layers and the int8 layer it becomes. */
typedef struct block {
    int kind;
    int32_t first, last; /* float layer indices; last's output is the block's output */
    int32_t bn;          /* the bn folded into a conv, or -1 */
    int relu;
    char spec[160]; /* the int8 layer's spec */
} block;

/* The blocks of m's layers (b holds m->seq.n + 1), or KD_ERR_UNSUPPORTED naming the first layer
 * without an int8 form. The last block returns floats (dequant=1) unless it ends in relu. */
kd_status kdi_quant_plan(const kd_model *m, block *b, int32_t *nb);

#endif
