/* The model behind kd_model: an input shape, a sequence of layers, and the flat list of named
 * parameters that optimizers and safetensors files see. */
#ifndef KDI_MODEL_H
#define KDI_MODEL_H

#include "sequence.h"

struct kd_model {
    kdi_seq seq;
    char *spec;          /* canonical, with the "input" layer */
    uint64_t seed;
    kdi_param_list params;
    kdi_buf input;       /* copy of the last training forward's x */
    kdi_buf eval;        /* logits of kd_model_evaluate */
};

/* Parameters in file order (trainable ones have grad != NULL); borrowed from m. */
const kdi_param_list *kdi_model_params(const kd_model *m);

#endif
