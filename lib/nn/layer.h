/* The layer interface: every layer (dense, activations, dropout, conv, norms, residual blocks) is a
 * kdi_layer with an ops table. A layer sees one batch at a time, NCHW, and owns its parameters. */
#ifndef KDI_LAYER_H
#define KDI_LAYER_H

#include "core/tensor.h"
#include "io/safetensors.h"
#include "nn/spec.h"

#define KDI_MAX_PARAMS 6
#define KDI_MAX_DIMS 4

/* A tensor a layer saves: a trainable parameter (grad != NULL) or a buffer such as a running mean
 * (grad == NULL). ivalue, when set instead of value, holds int64 data (BatchNorm's
 * num_batches_tracked). dims are PyTorch's layout for the safetensors file. */
typedef struct kdi_param {
    const char *name; /* "weight", "bias", "running_mean": static storage */
    float *value;
    float *grad;
    int64_t *ivalue;
    int64_t count;
    int32_t ndim;
    int64_t dims[KDI_MAX_DIMS];
    /* Int8 models' tensors: raw holds count values of dtype raw_type (KDI_ST_I8, KDI_ST_U8 or
     * KDI_ST_I32) instead of value; never trainable. */
    void *raw;
    kdi_st_dtype raw_type;
    /* A scale: a file's values must be finite and > 0 (checked before anything is copied). */
    int32_t positive;
} kdi_param;

/* The data of p, its dtype in files, and the bytes of one value. */
static inline void *kdi_param_data(const kdi_param *p)
{
    return p->raw != NULL ? p->raw : p->ivalue != NULL ? (void *)p->ivalue : (void *)p->value;
}
static inline kdi_st_dtype kdi_param_dtype(const kdi_param *p)
{
    return p->raw != NULL ? p->raw_type : p->ivalue != NULL ? KDI_ST_I64 : KDI_ST_F32;
}
static inline int64_t kdi_param_bytes(const kdi_param *p)
{
    return p->count * kdi_st_dtype_size(kdi_param_dtype(p));
}

/* A parameter with its full PyTorch name ("3.weight", "4.body.0.bias"). */
typedef struct kdi_named_param {
    char name[96];
    kdi_param *p;
} kdi_named_param;

typedef struct kdi_param_list {
    kdi_named_param *items;
    int32_t n, cap;
} kdi_param_list;

kd_status kdi_param_list_push(kdi_param_list *list, const char *prefix, kdi_param *p);
void kdi_param_list_free(kdi_param_list *list);

typedef struct kdi_layer kdi_layer;

/* A layer run plane by plane inside the forward of the layer before it (nn/sequence.c): after that
 * layer has made a plane (image b, channel c: plane b C + c) of its output (or of the ReLU's,
 * when one is fused), it calls l's forward_plane on it while it is in cache. y: l's output, whole.
 * lazy: the plane is made in the layer's own scratch, and its output (and the ReLU's) left
 * unwritten (nn/sequence.c writes them when something reads them). observe: l's observe_plane
 * instead (no ReLU), l's forward runs after. */
typedef struct kdi_then {
    kdi_layer *l;
    float *y;
    int lazy;
    int observe;
} kdi_then;

/* The gradient at a layer's output, handed plane by plane to its backward (backward_planes) by the
 * layer two after it, through the ReLU between (nn/sequence.c): l's backward_plane makes plane p of
 * its input gradient from y (l's outputs: the ReLU's mask) and dy (l's output gradient). */
typedef struct kdi_grad_src {
    kdi_layer *l;
    const float *y, *dy;
} kdi_grad_src;

enum { KDI_CODES_IN = 1, KDI_CODES_OUT = 2, KDI_CODES_PASS = 7 };
enum {
    KDI_FUSE_RELU_AFTER = 1,         /* forward_relu */
    KDI_FUSE_RELU_BEFORE = 2,        /* backward_thru_relu */
    KDI_FUSE_PLANES_AFTER = 4,       /* forward_relu's then */
    KDI_FUSE_PLANES = 8,             /* forward_plane */
    KDI_FUSE_OBSERVE = 16,           /* observe_begin, observe_plane */
    KDI_FUSE_GRAD_PLANES_AFTER = 32, /* backward_planes */
    KDI_FUSE_GRAD_PLANES = 64        /* backward_plane */
};

typedef struct kdi_layer_ops {
    const char *kind; /* the spec keyword */
    /* y = f(x) for batch examples; train selects training behaviour (dropout, batch statistics). */
    kd_status (*forward)(kdi_layer *l, const float *x, float *y, int64_t batch, int train);
    /* Given x, y of the last training forward and dy, accumulates parameter gradients and writes dx
     * (dx is NULL when nothing below needs it). */
    kd_status (*backward)(kdi_layer *l, const float *x, const float *y, const float *dy, float *dx,
                          int64_t batch);
    /* Optional: grows per-batch workspaces before a forward, so forward and backward never allocate. */
    kd_status (*reserve)(kdi_layer *l, int64_t batch);
    /* Optional: refuses a forward that would fail, before any layer of the model runs, so a failed
     * forward never leaves earlier layers' running statistics moved. Containers prepare their
     * children here (workspaces included). */
    kd_status (*check)(kdi_layer *l, int64_t batch, int train);
    /* Optional: lists parameters under prefix ("4."); the default lists l->params. Containers
     * (residual blocks) list their children's. */
    kd_status (*collect)(kdi_layer *l, const char *prefix, kdi_param_list *list);
    /* Optional: called once after the layer is built, with the layers before it in its chain
     * (layers[0..n-1]), for weights shared with an earlier layer (a tied LM head). */
    kd_status (*link)(kdi_layer *l, kdi_layer *before, int32_t n);
    /* Optional: a container's k-th inner sequence and its name ("body"), NULL past the last, so
     * walks over every layer (the checkpoints' random streams) reach inside residual blocks. */
    struct kdi_seq *(*child)(kdi_layer *l, int32_t k, const char **name);
    /* Optional: incremental decoding, eval mode, one token of one sequence at position pos: y is
     * the output row at pos given the rows of positions 0..pos-1 stepped before (attention's
     * key/value cache; pos 0 starts afresh). Per-token layers need none: the chain runs their
     * forward on a one-token view of them. */
    kd_status (*step)(kdi_layer *l, const float *x, float *y, int64_t pos);
    /* Optional: the parameter values were set from outside (a file, a clone, the quantiser):
     * recomputes what the layer derives from them (int8 layers: requantisation multipliers, the
     * input zero point's correction). Cannot fail: its buffers are allocated at create. */
    void (*changed)(kdi_layer *l);
    /* Optional: a ReLU next to this layer taken along (nn/sequence.c decides when; l->fuse says
     * which apply). Both give the values of the two layers run one after the other, bit for bit.
     * forward_relu (KDI_FUSE_RELU_AFTER): forward, and r = relu(y), the output of the ReLU after
     * this layer, written while y is in cache; then, when not NULL, the layer after the ReLU on
     * each plane of r (KDI_FUSE_PLANES_AFTER), y and r left unwritten if then->lazy.
     * backward_thru_relu (KDI_FUSE_RELU_BEFORE): backward, and through the ReLU before this
     * layer: dx is the gradient at the ReLU's input (max pooling: y > 0 where the ReLU passed the
     * winner, so dy is masked on the quarter-size side instead of a pass over dx). */
    kd_status (*forward_relu)(kdi_layer *l, const float *x, float *y, float *r,
                              const kdi_then *then, int64_t batch, int train);
    /* Optional (KDI_FUSE_PLANES): output plane p of the forward into y (whole), from its input
     * plane xp (a per-channel layer: pooling); forward equals it on every plane. Such a layer's
     * backward must not read x: its input may be left unwritten (kdi_then's lazy). */
    void (*forward_plane)(kdi_layer *l, const float *xp, float *y, int64_t p);
    /* Optional (KDI_FUSE_OBSERVE): the next training forward's input, plane by plane, as the layer
     * before makes it (kdi_then's observe), after observe_begin(l, batch) from the calling thread:
     * batch norm takes each plane's sums there instead of in a pass of its own over the batch. */
    void (*observe_begin)(kdi_layer *l, int64_t batch);
    void (*observe_plane)(kdi_layer *l, const float *xp, int64_t p);
    kd_status (*backward_thru_relu)(kdi_layer *l, const float *x, const float *y, const float *dy,
                                    float *dx, int64_t batch);
    /* Optional (KDI_FUSE_GRAD_PLANES): plane p of backward_thru_relu's dx (whole h x w plane) into
     * dxp, from y (its outputs in the last training forward) and dy (the gradient at those
     * outputs); backward_thru_relu equals it on every plane.
     * Called from several threads at once on distinct planes. */
    void (*backward_plane)(kdi_layer *l, const float *y, const float *dy, int64_t p, float *dxp);
    /* Optional (KDI_FUSE_GRAD_PLANES_AFTER): backward, its dy taken plane by plane from src (the
     * layer after the ReLU after this one) as it is read, instead of from memory: max pooling's
     * gradient, 4x its input, was written whole and read back (9% of the small CNN's step). The
     * same values as backward on the planes written out, bit for bit. */
    kd_status (*backward_planes)(kdi_layer *l, const float *x, const kdi_grad_src *src, float *dx,
                                 int64_t batch);
    /* Int8 layers: KDI_CODES_IN when the input is uint8 codes, KDI_CODES_OUT when the output is,
     * KDI_CODES_PASS for layers passing codes through with their scale (qmaxpool); 0 for float
     * layers. The chain builder refuses codes flowing into a float layer and the reverse. */
    int32_t codes;
    void (*destroy)(kdi_layer *l); /* frees priv and parameters; optional */
} kdi_layer_ops;

struct kdi_layer {
    const kdi_layer_ops *ops;
    kdi_shape in, out;
    char *spec; /* canonical text of this layer, heap */
    kdi_param params[KDI_MAX_PARAMS];
    int32_t nparams;
    void *priv;
    struct kdi_rng *rng; /* the layer's random stream (dropout), saved in checkpoints; or NULL */
    /* Whether the output is a sequence [T = out.c, d = out.h * out.w]: create leaves 0 to follow
     * the input (elementwise layers), sets 1 (embeddings) or -1 (flatten); the chain builder then
     * resolves 0 to the input's state. */
    int32_t seq;
    /* KDI_FUSE_* bits: which of the fusion ops (forward_relu and its then, forward_plane,
     * observe_begin/observe_plane, backward_thru_relu, backward_plane, backward_planes)
     * nn/sequence.c may use on this layer. */
    int32_t fuse;
};

/* Rows and row width of a layer's input: T and d for a sequence, 1 and C*H*W otherwise. */
static inline int64_t kdi_seq_rows(kdi_shape s, int seq) { return seq ? s.c : 1; }
static inline int64_t kdi_seq_width(kdi_shape s, int seq)
{
    return seq ? s.h * s.w : kdi_shape_size(s);
}

/* Builds a layer of kind args->kind for input shape in into *l (zeroed by the caller). Sub-streams
 * of seed initialise weights and drive dropout. */
typedef kd_status (*kdi_layer_create_fn)(const kdi_args *args, kdi_shape in, uint64_t seed,
                                         kdi_layer *l);

/* The registry (layers/registry.c): NULL when kind is unknown. */
kdi_layer_create_fn kdi_layer_find(const char *kind);

/* Helpers shared by layer implementations. */
/* Adds a parameter with value (and grad when trainable) allocated, zeroed. */
kd_status kdi_layer_add_param(kdi_layer *l, const char *name, int trainable, int32_t ndim,
                              const int64_t *dims);
/* Adds an untrainable parameter of dtype (KDI_ST_I8, KDI_ST_U8, KDI_ST_I32), zeroed. */
kd_status kdi_layer_add_raw_param(kdi_layer *l, const char *name, kdi_st_dtype dtype, int32_t ndim,
                                  const int64_t *dims);
/* Sets l->spec from a printf format. */
kd_status kdi_layer_set_spec(kdi_layer *l, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Frees parameters, spec and, through ops->destroy, priv. */
void kdi_layer_free(kdi_layer *l);
/* Trainable values of l (and children, through collect). */
int64_t kdi_layer_param_count(kdi_layer *l);
/* PyTorch's default init for Linear and Conv: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and
 * bias (kaiming_uniform with a = sqrt(5)). */
void kdi_init_uniform(float *w, int64_t n, int64_t fan_in, uint64_t seed);

#endif
