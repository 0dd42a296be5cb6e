/* A chain of layers with its activations and gradient buffers: the body of a model and of every
 * container layer (residual blocks). */
#ifndef KDI_SEQUENCE_H
#define KDI_SEQUENCE_H

#include "nn/layer.h"

typedef struct kdi_seq {
    kdi_layer *layers;
    int32_t n;
    kdi_shape in, out;
    kdi_buf *acts;       /* acts[i]: output of layer i, n of them (read through kdi_seq_output) */
    uint8_t *stale;      /* acts[i] left unwritten by the last forward (a lazy chain, sequence.c) */
    uint8_t *keep;       /* acts[i] was read from outside: later forwards write it */
    kdi_buf xcopy;       /* the input of the last forward, when a lazy chain starts at layer 0 */
    kdi_buf *wcopy;      /* wcopy[i]: layer i's parameters in the last forward, if it left its
                          * output unwritten (an optimizer step may move them before a read) */
    kdi_buf *extra_grad; /* extra_grad[i]: gradient added at layer i's output (feature losses) */
    uint8_t *has_extra;  /* whether extra_grad[i] holds something for the next backward */
    kdi_buf grad[2];     /* ping-pong gradient buffers */
    const float *x;      /* input of the last forward (the caller keeps it alive until backward) */
    int64_t batch;       /* batch of the last forward; 0 before any */
    int64_t reserved;    /* batch the buffers are sized for */
    int reserved_threads; /* kdi_threads() then: layers' per-thread workspaces follow it */
    int trained;          /* the last forward was in training mode */
    int32_t seq_in;       /* the input is a sequence [T = in.c, d = in.h * in.w] */
    int32_t seq_out;      /* the output is a sequence */
    int64_t vocab;        /* > 0: the input is token ids in 0..vocab-1, carried as floats */
    kdi_buf row[2];       /* one token's activations in kdi_seq_step */
    /* Called after each layer's backward, top-level sequences only (data-parallel buckets). */
    kd_status (*after_layer)(void *ctx, int32_t layer);
    void *after_ctx;
    struct kdi_fq *fq; /* fake quantisation (nn/fake_quant.h), or NULL; owned */
} kdi_seq;

/* Builds the layers of spec (no "input" layer) for input shape in. */
kd_status kdi_seq_build(kdi_seq *s, const char *spec, kdi_shape in, uint64_t seed);
/* The same for an input that is a sequence (seq = 1), of token ids when vocab > 0. */
kd_status kdi_seq_build_as(kdi_seq *s, const char *spec, kdi_shape in, int32_t seq, int64_t vocab,
                           uint64_t seed);
void kdi_seq_free(kdi_seq *s);
/* Everything a forward of batch could fail on, done or checked before any layer runs: workspaces
 * and the layers' own checks. kdi_seq_forward starts with it. */
kd_status kdi_seq_prepare(kdi_seq *s, int64_t batch, int train);
/* Runs the layers; *out points at the last activation (owned by s) or at x when there are no layers. */
kd_status kdi_seq_forward(kdi_seq *s, const float *x, int64_t batch, int train, const float **out);
/* Backpropagates dy (batch of the last training forward); dx may be NULL. */
kd_status kdi_seq_backward(kdi_seq *s, const float *dy, float *dx);
/* The output of layer i in the last forward, [batch, out]: written first if the forward left it
 * unwritten, and from then on written by every forward (feature taps, probes). */
const float *kdi_seq_output(kdi_seq *s, int32_t i);
/* Accumulates g into the gradient at layer i's output for the next backward (feature losses). */
kd_status kdi_seq_add_output_grad(kdi_seq *s, int32_t i, const float *g);
/* Whether every layer can decode one token at a time (kdi_seq_step); KD_ERR_UNSUPPORTED with the
 * reason if not. */
kd_status kdi_seq_can_step(const kdi_seq *s);
/* Incremental decoding of a sequence chain: x is the row of position pos, *out the output row
 * (owned by s, valid until the next step). Overwrites layer workspaces: a training forward before
 * it can no longer be backpropagated. */
kd_status kdi_seq_step(kdi_seq *s, const float *x, int64_t pos, const float **out);
kd_status kdi_seq_collect(kdi_seq *s, const char *prefix, kdi_param_list *list);
/* Tests: whether layers take a following ReLU along, and leave outputs unwritten until read (on by
 * default); the results are the same. */
void kdi_seq_set_fusion(int on);
/* Tests: how many backwards (of any sequence) have fed a convolution its dY plane by plane from the
 * pooling after its ReLU, so far. */
int64_t kdi_seq_planes_backwards(void);
/* The canonical spec of the layers joined by " | "; heap, caller frees. NULL on NOMEM. */
char *kdi_seq_spec(const kdi_seq *s);

#endif
