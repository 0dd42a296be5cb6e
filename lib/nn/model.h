/* The model behind kd_model: an input shape, a sequence of layers, and the flat list of named
 * parameters that optimizers and safetensors files see. */
#ifndef KDI_MODEL_H
#define KDI_MODEL_H

#include "io/safetensors.h"
#include "nn/sequence.h"

/* Input normalisation (nn/normalize.c): channels 0 when none. */
typedef struct kdi_norm {
    int64_t channels; /* 1, or the input's c */
    float *mean, *std;
    kdi_buf buf; /* normalised inputs of predict and evaluate */
} kdi_norm;

#define KDI_NORM_MEAN_KEY "kd.normalize.mean"
#define KDI_NORM_STD_KEY "kd.normalize.std"
/* A training checkpoint (distill/checkpoint.c) says so in its metadata: the optimizer's kind under
 * KDI_CHECKPOINT_KEY, and from format 2 on "2" under KDI_CHECKPOINT_FORMAT_KEY (the student's input
 * normalisation is then in the file, under the model file's keys). */
#define KDI_CHECKPOINT_KEY "kd.checkpoint"
#define KDI_CHECKPOINT_FORMAT_KEY "kd.checkpoint.format"

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
    kdi_norm norm;
};

/* Parameters in file order (trainable ones have grad != NULL); borrowed from m. */
const kdi_param_list *kdi_model_params(const kd_model *m);

/* Internal entry points. The public kd_model_* calls check their arguments once and call these;
 * library code (the trainer, soft targets, feature terms) calls these directly with inputs it has
 * checked already: x finite and kdi_model_check_size(m, batch) passed; backward after a training
 * forward, with a gradient the library computed. */
static inline int64_t kdi_model_in(const kd_model *m) { return kdi_shape_size(m->seq.in); }
static inline int64_t kdi_model_out(const kd_model *m) { return kdi_shape_size(m->seq.out); }
/* How losses see the output (kd_model_output_rows): T rows of d for a sequence [T, d], else one
 * row of every output. */
static inline void kdi_model_rows(const kd_model *m, int64_t *rows, int64_t *classes)
{
    *rows = kdi_seq_rows(m->seq.out, m->seq.seq_out);
    *classes = kdi_seq_width(m->seq.out, m->seq.seq_out);
}
/* batch >= 1 and batch times the widest layer fits the library's sizes; reads no data. */
kd_status kdi_model_check_size(const kd_model *m, int64_t batch);
/* For a token model ('tokens V T'), that the float inputs x [batch, T] are ids in 0..V-1; OK for
 * any other model. */
kd_status kdi_model_check_tokens(const kd_model *m, const float *x, int64_t batch);
kd_status kdi_model_predict(kd_model *m, const float *x, int64_t batch, float *logits);
kd_status kdi_model_forward(kd_model *m, const float *x, int64_t batch, float *logits);
kd_status kdi_model_backward(kd_model *m, const float *grad_logits);
/* kdi_model_backward, calling after_layer(ctx, i) once layer i of the top-level chain has written
 * its gradients (i from the last layer down); its failure ends the backward pass. */
kd_status kdi_model_backward_each(kd_model *m, const float *grad_logits,
                                  kd_status (*after_layer)(void *ctx, int32_t layer), void *ctx);
/* Layer layer's output of the last forward (layer in range, a forward done). */
const float *kdi_model_feature(kd_model *m, int32_t layer);
kd_status kdi_model_feature_backward(kd_model *m, int32_t layer, const float *grad);
void kdi_model_zero_grad(kd_model *m);
/* Synchronised batch norm (nn/sync.c): every bn layer of m takes its training statistics through
 * s (borrowed; NULL: over its own batch again). Fails only with KD_ERR_NOMEM, changing nothing. */
struct kdi_sync;
kd_status kdi_model_set_sync(kd_model *m, const struct kdi_sync *s);
/* The k-th attention layer, depth first as kd_model_attention counts; NULL when k is out of range.
 * Read and feed it through nn/layers/attention.h. */
kdi_layer *kdi_model_attention_layer(const kd_model *m, int32_t k);

/* 1 when a layer of m's top-level chain is int8 (kd_model_quantize's; they only predict). */
int kdi_model_is_int8(const kd_model *m);

/* Tells every layer its parameter values were set from outside (ops->changed). */
void kdi_model_params_changed(kd_model *m);

/* Checks that file f (read from path) holds every parameter of m with its dtype and shape, finite;
 * with exact, nothing else. Changes nothing. */
kd_status kdi_model_check_file(const kd_model *m, const kdi_st_file *f, const char *path,
                               int exact);
/* Copies the parameters from a file that kdi_model_check_file accepted. */
void kdi_model_copy_file(kd_model *m, const kdi_st_file *f);

/* Normalisation: x [batch, in] into *out (m->input in place when x is it, else a workspace);
 * only when m->norm.channels > 0. */
kd_status kdi_model_normalize(kd_model *m, const float *x, int64_t batch, const float **out);
kd_status kdi_model_copy_normalization(kd_model *dst, const kd_model *src);
void kdi_norm_free(kdi_norm *n);
/* Comma-separated %.9g values (heap), and their reader for kd_model_load (KD_ERR_FORMAT). */
char *kdi_norm_format(const float *v, int64_t n);
kd_status kdi_norm_parse(kd_model *m, const char *mean_s, const char *std_s, const char *path);
/* Appends m's input normalisation, when it has one, to a file's metadata: keys[*n] and values[*n]
 * (KDI_NORM_MEAN_KEY, KDI_NORM_STD_KEY; room for two more), *n advanced. *mean and *std hold the
 * strings for the caller to kdi_free (NULL without normalisation); KD_ERR_NOMEM. Model files and
 * checkpoints write it alike, and kd_model_load reads it from both. */
kd_status kdi_norm_meta(const kd_model *m, const char **keys, const char **values, int32_t *n,
                        char **mean, char **std);

#endif
