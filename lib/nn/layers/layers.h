/* The create functions of the built-in layers, gathered by registry.c. */
#ifndef KDI_LAYERS_H
#define KDI_LAYERS_H

#include "nn/layer.h"

kd_status kdi_dense_create(const kdi_args *a, kdi_shape in, uint64_t seed, kdi_layer *l);
kd_status kdi_relu_create(const kdi_args *a, kdi_shape in, uint64_t seed, kdi_layer *l);
kd_status kdi_leakyrelu_create(const kdi_args *a, kdi_shape in, uint64_t seed, kdi_layer *l);
kd_status kdi_gelu_create(const kdi_args *a, kdi_shape in, uint64_t seed, kdi_layer *l);
kd_status kdi_tanh_create(const kdi_args *a, kdi_shape in, uint64_t seed, kdi_layer *l);
kd_status kdi_sigmoid_create(const kdi_args *a, kdi_shape in, uint64_t seed, kdi_layer *l);
kd_status kdi_dropout_create(const kdi_args *a, kdi_shape in, uint64_t seed, kdi_layer *l);
kd_status kdi_conv_create(const kdi_args *a, kdi_shape in, uint64_t seed, kdi_layer *l);
kd_status kdi_maxpool_create(const kdi_args *a, kdi_shape in, uint64_t seed, kdi_layer *l);
kd_status kdi_avgpool_create(const kdi_args *a, kdi_shape in, uint64_t seed, kdi_layer *l);
kd_status kdi_gap_create(const kdi_args *a, kdi_shape in, uint64_t seed, kdi_layer *l);
kd_status kdi_bn_create(const kdi_args *a, kdi_shape in, uint64_t seed, kdi_layer *l);
kd_status kdi_layernorm_create(const kdi_args *a, kdi_shape in, uint64_t seed, kdi_layer *l);
kd_status kdi_flatten_create(const kdi_args *a, kdi_shape in, uint64_t seed, kdi_layer *l);
kd_status kdi_embed_create(const kdi_args *a, kdi_shape in, uint64_t seed, kdi_layer *l);
kd_status kdi_posembed_create(const kdi_args *a, kdi_shape in, uint64_t seed, kdi_layer *l);
kd_status kdi_attention_create(const kdi_args *a, kdi_shape in, uint64_t seed, kdi_layer *l);
kd_status kdi_lmhead_create(const kdi_args *a, kdi_shape in, uint64_t seed, kdi_layer *l);
kd_status kdi_residual_create(const kdi_args *a, kdi_shape in, uint64_t seed, kdi_layer *l);
/* The int8 layers (int8.c). */
kd_status kdi_quantize_create(const kdi_args *a, kdi_shape in, uint64_t seed, kdi_layer *l);
kd_status kdi_dequantize_create(const kdi_args *a, kdi_shape in, uint64_t seed, kdi_layer *l);
kd_status kdi_qdense_create(const kdi_args *a, kdi_shape in, uint64_t seed, kdi_layer *l);
kd_status kdi_qconv_create(const kdi_args *a, kdi_shape in, uint64_t seed, kdi_layer *l);
kd_status kdi_qmaxpool_create(const kdi_args *a, kdi_shape in, uint64_t seed, kdi_layer *l);
kd_status kdi_qflatten_create(const kdi_args *a, kdi_shape in, uint64_t seed, kdi_layer *l);

/* A data-parallel job's all-reduce as batch norm sees it (KD_TRAINER_SYNC_BATCHNORM): the
 * trainer owns it and sets batch (the global batch) and share (this process's b_r / B) before
 * each step. */
typedef struct kdi_sync {
    kd_allreduce_fn fn; /* blocking; with start/wait, an adapter over them */
    void *user;
    kd_allreduce_start_fn start; /* non-blocking host (kd_trainer_set_allreduce_async), or NULL */
    kd_allreduce_wait_fn wait;
    void *host; /* start's and wait's user */
    int64_t batch;
    float share;
} kdi_sync;

/* Whether l is a bn layer; kdi_bn_set_sync makes it take training statistics over the job
 * (s borrowed, NULL: its own batch again). KD_ERR_NOMEM leaves it as it was. */
int kdi_is_bn(const kdi_layer *l);
/* Sums v [n] over the job through s (nn/sync.c); a failure names what was summed. */
kd_status kdi_sync_sum(const kdi_sync *s, float *v, int64_t n, const char *what);
/* The blocking all-reduce over a non-blocking host: user is the kdi_sync; tag
 * KD_ALLREDUCE_TAG_NOW, started and waited for at once. */
kd_status kdi_sync_now(float *data, int64_t count, void *user);
/* A sum in two halves under tag: the host's start and wait, or (a blocking host) the whole sum in
 * kdi_sync_start and nothing in kdi_sync_wait. Failures name what was summed. */
kd_status kdi_sync_start(const kdi_sync *s, float *v, int64_t n, int32_t tag, const char *what);
kd_status kdi_sync_wait(const kdi_sync *s, int32_t tag, const char *what, int64_t n);
kd_status kdi_bn_set_sync(kdi_layer *l, const kdi_sync *s);

#endif
