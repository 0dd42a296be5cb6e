/* The model behind kd_model: an input shape, a sequence of layers, and the flat list of named
 * parameters that optimizers and safetensors files see. */
#ifndef KDI_MODEL_H
#define KDI_MODEL_H

#include "io/safetensors.h"
#include "nn/sequence.h"

struct kd_model {
    kdi_seq seq;
    char *spec; /* canonical, with the "input" layer */
    uint64_t seed;
    kdi_param_list params;
    kdi_buf input; /* copy of the last training forward's x */
    kdi_buf eval;  /* logits of kd_model_evaluate */
    kdi_buf ids;   /* kd_model_predict_tokens' ids as floats */
    /* A backward may have accumulated gradients since they were last cleared (by
     * kd_model_zero_grad or an optimizer step), so clearing again is work only when this is set. */
    int grads_dirty;
    int64_t decoded; /* positions kd_model_decode_step has cached, in order from 0 */
};

/* Parameters in file order (trainable ones have grad != NULL); borrowed from m. */
const kdi_param_list *kdi_model_params(const kd_model *m);

/* Checks that file f (read from path) holds every parameter of m with its dtype and shape, finite;
 * with exact, nothing else. Changes nothing. */
kd_status kdi_model_check_file(const kd_model *m, const kdi_st_file *f, const char *path,
                               int exact);
/* Copies the parameters from a file that kdi_model_check_file accepted. */
void kdi_model_copy_file(kd_model *m, const kdi_st_file *f);

#endif
