/* libkd: knowledge distillation in C.
 *
 * The only public header. Every type here is an opaque handle, an enum with explicit values or a
 * fixed-width scalar, so the ABI stays stable and any FFI (ctypes included) can call it directly.
 *
 * Conventions
 * - Every fallible call returns kd_status (KD_OK == 0); results go through pointer arguments.
 *   kd_last_error() gives a sentence about the last failure on the calling thread.
 * - A failed call leaves its handles and files as they were.
 * - kd_x_create / kd_x_destroy pairs; kd_x_destroy(NULL) is a no-op. The library never frees what
 *   the caller allocated. Borrowed pointers say how long they live.
 * - Arrays are float32, row-major; images are NCHW. A "batch" is the number of examples.
 * - Distinct handles may be used from distinct threads at once; one handle needs the caller's lock.
 * - The library never prints, exits or aborts. It reads one environment variable: KD_KERNELS
 *   (ref|avx2|avx512) forces a kernel variant.
 */
#ifndef KD_H
#define KD_H

#include <stdint.h>

#include "kd_export.h"
#include "kd_version.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- errors and versions */

typedef enum kd_status {
    KD_OK = 0,
    KD_ERR_ARGUMENT = 1,    /* a NULL pointer, a value out of range, an unknown key */
    KD_ERR_SHAPE = 2,       /* sizes that do not fit the model or each other */
    KD_ERR_NOMEM = 3,       /* an allocation failed */
    KD_ERR_IO = 4,          /* a file could not be opened, read or written */
    KD_ERR_FORMAT = 5,      /* a file or spec string is malformed, truncated or hostile */
    KD_ERR_NUMERIC = 6,     /* NaN or infinity in an input, or a loss that became non-finite */
    KD_ERR_STATE = 7,       /* a call out of order (backward before forward, ...) */
    KD_ERR_UNSUPPORTED = 8  /* valid, but not available here (a kernel variant, a file feature) */
} kd_status;

/* The name of a status ("KD_ERR_SHAPE: sizes do not match"); never NULL, static storage. */
KD_API const char *kd_strerror(kd_status status);
/* A sentence about the calling thread's last failure; "" if none. Valid until that thread's next
 * failing call. */
KD_API const char *kd_last_error(void);
/* "MAJOR.MINOR.PATCH" of the library loaded at run time (compare with KD_VERSION_STRING). */
KD_API const char *kd_version(void);
/* MAJOR * 10000 + MINOR * 100 + PATCH, as KD_VERSION_NUMBER. */
KD_API int32_t kd_version_number(void);
/* The kernel variant in use: "ref", "avx2" or "avx512". Chosen once, at the first call that needs it. */
KD_API const char *kd_kernels_name(void);

/* ---------------------------------------------------------------- models */

typedef struct kd_model kd_model;

/* Builds a model from a spec, the one description of an architecture, for example
 *   "input 784 | dense 1200 | relu | dropout 0.5 | dense 10"
 * Layers: input N (or input CxHxW), dense N, relu, leakyrelu [slope], gelu, tanh, sigmoid,
 * dropout P. Weights are initialised as PyTorch does, from seed. */
KD_API kd_status kd_model_create(const char *spec, uint64_t seed, kd_model **out);
/* A deep copy: weights, buffers and spec; gradients and activations start empty. */
KD_API kd_status kd_model_clone(const kd_model *m, kd_model **out);
KD_API void kd_model_destroy(kd_model *m);

/* safetensors, with PyTorch nn.Sequential names ("0.weight" is [out, in]) and the spec in the
 * header's __metadata__ ("kd.spec"). Saving writes a temporary file and renames it over path. */
KD_API kd_status kd_model_load(const char *path, kd_model **out);
KD_API kd_status kd_model_save(const kd_model *m, const char *path);
/* Copies every tensor of a safetensors file into m; names, shapes and dtype (F32) must match. */
KD_API kd_status kd_model_load_weights(kd_model *m, const char *path);

/* The canonical spec; borrowed, lives as long as m. */
KD_API const char *kd_model_spec(const kd_model *m);
/* Values per example at the input (C*H*W) and at the output (classes). */
KD_API kd_status kd_model_input_size(const kd_model *m, int64_t *size);
KD_API kd_status kd_model_output_size(const kd_model *m, int64_t *size);
/* Trainable parameters (weights and biases; not running statistics). */
KD_API kd_status kd_model_param_count(const kd_model *m, int64_t *count);
/* Layers, as the spec lists them after "input". */
KD_API kd_status kd_model_layer_count(const kd_model *m, int32_t *count);
/* The kind ("dense"; borrowed, static), trainable parameter count and output size of layer i. */
KD_API kd_status kd_model_layer_info(const kd_model *m, int32_t i, const char **kind,
                                     int64_t *params, int64_t *output_size);

/* Inference (eval mode: dropout off). x is [batch, input], logits [batch, output]. */
KD_API kd_status kd_model_predict(kd_model *m, const float *x, int64_t batch, float *logits);
/* Training mode: keeps the activations for kd_model_backward. */
KD_API kd_status kd_model_forward(kd_model *m, const float *x, int64_t batch, float *logits);
/* Accumulates parameter gradients for the last kd_model_forward; grad_logits is [batch, output]. */
KD_API kd_status kd_model_backward(kd_model *m, const float *grad_logits);
KD_API kd_status kd_model_zero_grad(kd_model *m);
/* Counts correct top-1 predictions of n examples in eval mode, batch by batch. confusion may be
 * NULL, or [output * output] counts, row = label, column = prediction (added to, not cleared). */
KD_API kd_status kd_model_evaluate(kd_model *m, const float *x, const int32_t *labels, int64_t n,
                                   int64_t batch, int64_t *correct, int64_t *confusion);

/* Feature taps, for losses on intermediate layers (hints, attention, relations). Layer i counts as
 * kd_model_layer_info does. The output of layer i from the last kd_model_forward or
 * kd_model_predict: borrowed, valid until the next forward or predict on m, [batch, c*h*w]. */
KD_API kd_status kd_model_feature(const kd_model *m, int32_t layer, const float **data, int64_t *batch,
                                  int64_t *c, int64_t *h, int64_t *w);
/* Adds grad [batch, c*h*w] to the gradient at layer i's output; the next kd_model_backward takes
 * it through the layers below. Needs a kd_model_forward first; may be called several times. */
KD_API kd_status kd_model_feature_backward(kd_model *m, int32_t layer, const float *grad);

/* ---------------------------------------------------------------- the teachers' knowledge */

/* probs[batch, classes] = sum_i w_i softmax(teacher_i(x) / T) / sum_i w_i, teachers in eval mode.
 * weights may be NULL (equal weights). All teachers must share input and output sizes. */
KD_API kd_status kd_teacher_soft_targets(kd_model *const *teachers, const float *weights, int32_t n,
                                         const float *x, int64_t batch, float temperature,
                                         float *probs);
/* The same from cached logits: logits is [n][batch][classes], teacher-major. */
KD_API kd_status kd_soft_targets_from_logits(const float *logits, const float *weights, int32_t n,
                                             int64_t batch, int64_t classes, float temperature,
                                             float *probs);

/* ---------------------------------------------------------------- losses */

typedef struct kd_loss kd_loss;

typedef enum kd_loss_kind {
    /* alpha * T^2 * KL(p_teacher_T || p_student_T) + (1 - alpha) * CE(student, label), mean over
     * the batch (Hinton, Vinyals and Dean 2015). A label of -1 marks an unlabelled example: its row
     * adds only the soft term. soft_targets may be NULL when alpha == 0. */
    KD_LOSS_HINTON = 0
} kd_loss_kind;

typedef enum kd_loss_option {
    KD_LOSS_TEMPERATURE = 0, /* float > 0, default 4 */
    KD_LOSS_ALPHA = 1        /* float in [0, 1], default 0.9 */
} kd_loss_option;

typedef enum kd_loss_part {
    KD_LOSS_PART_TOTAL = 0,
    KD_LOSS_PART_SOFT = 1, /* alpha * T^2 * KL, batch mean */
    KD_LOSS_PART_HARD = 2  /* (1 - alpha) * CE, batch mean */
} kd_loss_part;

KD_API kd_status kd_loss_create(kd_loss_kind kind, kd_loss **out);
KD_API void kd_loss_destroy(kd_loss *l);
KD_API kd_status kd_loss_set_float(kd_loss *l, kd_loss_option key, float value);
KD_API kd_status kd_loss_get_float(const kd_loss *l, kd_loss_option key, float *value);
/* student_logits and soft_targets are [batch, classes]; soft_targets are the teachers' probabilities
 * at the loss's temperature. labels are in [0, classes) or -1; labels may be NULL when alpha == 1.
 * The loss keeps what backward needs (its own workspace); the inputs may change after the call. */
KD_API kd_status kd_loss_forward(kd_loss *l, const float *student_logits, const float *soft_targets,
                                 const int32_t *labels, int64_t batch, int64_t classes, float *loss);
/* d loss / d student_logits for the last forward, [batch, classes]. */
KD_API kd_status kd_loss_backward(kd_loss *l, float *grad_student_logits);
/* A part of the last forward's loss. */
KD_API kd_status kd_loss_value(const kd_loss *l, kd_loss_part part, float *value);

/* ---------------------------------------------------------------- optimizers */

typedef struct kd_optimizer kd_optimizer;

typedef enum kd_optimizer_kind {
    KD_OPTIMIZER_SGD = 0,  /* momentum, Nesterov, L2 weight decay as PyTorch's SGD */
    KD_OPTIMIZER_ADAM = 1, /* PyTorch's Adam: weight decay added to the gradient (L2) */
    KD_OPTIMIZER_ADAMW = 2 /* PyTorch's AdamW: decoupled weight decay, w *= 1 - lr * wd */
} kd_optimizer_kind;

typedef enum kd_optimizer_option {
    /* Setting an option that does not apply to the optimizer's kind fails (KD_ERR_ARGUMENT). */
    KD_OPT_LEARNING_RATE = 0, /* float > 0, the base rate; default 0.01 (SGD), 0.001 (Adam(W)) */
    KD_OPT_MOMENTUM = 1,      /* SGD: float in [0, 1), default 0 */
    KD_OPT_WEIGHT_DECAY = 2,  /* float >= 0, default 0 (SGD, Adam), 0.01 (AdamW) */
    KD_OPT_NESTEROV = 3,      /* SGD: int 0 or 1, default 0; needs momentum > 0 */
    KD_OPT_SCHEDULE = 4,      /* int, a kd_schedule; default KD_SCHEDULE_CONSTANT */
    KD_OPT_TOTAL_STEPS = 5,   /* int > 0, the steps over which a schedule runs */
    KD_OPT_MIN_LR = 6,        /* float >= 0, where cosine decay ends; default 0 */
    KD_OPT_CURRENT_LR = 7,    /* float, read only: the rate the next step will use */
    KD_OPT_STEP = 8,          /* int: steps taken; settable to resume a schedule */
    KD_OPT_BETA1 = 9,         /* Adam, AdamW: float in [0, 1), default 0.9 */
    KD_OPT_BETA2 = 10,        /* Adam, AdamW: float in [0, 1), default 0.999 */
    KD_OPT_EPSILON = 11       /* Adam, AdamW: float > 0, default 1e-8 */
} kd_optimizer_option;

typedef enum kd_schedule {
    KD_SCHEDULE_CONSTANT = 0,
    KD_SCHEDULE_COSINE = 1 /* lr_min + (lr - lr_min) * (1 + cos(pi * step / total)) / 2 */
} kd_schedule;

/* The optimizer borrows m, which must outlive it. */
KD_API kd_status kd_optimizer_create(kd_optimizer_kind kind, kd_model *m, kd_optimizer **out);
KD_API void kd_optimizer_destroy(kd_optimizer *o);
KD_API kd_status kd_optimizer_set_float(kd_optimizer *o, kd_optimizer_option key, float value);
KD_API kd_status kd_optimizer_get_float(const kd_optimizer *o, kd_optimizer_option key, float *value);
KD_API kd_status kd_optimizer_set_int(kd_optimizer *o, kd_optimizer_option key, int64_t value);
KD_API kd_status kd_optimizer_get_int(const kd_optimizer *o, kd_optimizer_option key, int64_t *value);
/* Applies the model's accumulated gradients, advances the schedule and clears the gradients. */
KD_API kd_status kd_optimizer_step(kd_optimizer *o);

/* ---------------------------------------------------------------- the trainer */

typedef struct kd_trainer kd_trainer;

/* Borrows student, loss and optimizer (built on the student); they must outlive the trainer. */
KD_API kd_status kd_trainer_create(kd_model *student, kd_loss *loss, kd_optimizer *opt,
                                   kd_trainer **out);
KD_API void kd_trainer_destroy(kd_trainer *t);
/* Adds a borrowed teacher with an ensemble weight > 0. */
KD_API kd_status kd_trainer_add_teacher(kd_trainer *t, kd_model *teacher, float weight);
/* One step: soft targets (from teacher_logits, [teachers][batch][classes] cached logits, or, when
 * NULL, from running the teachers), student forward, loss, backward, optimizer step. With no
 * teacher and teacher_logits NULL, only the hard term is possible (alpha must be 0). *loss gets the
 * total; kd_loss_value gives the parts. */
KD_API kd_status kd_trainer_step(kd_trainer *t, const float *x, const int32_t *labels,
                                 const float *teacher_logits, int64_t batch, float *loss);

/* Checkpoints: what a training run carries between steps -- the student's weights and buffers, the
 * optimizer's step count and per-parameter state (momentum), the student's random streams
 * (dropout) -- in one safetensors file written to a temporary name and renamed. Loading into a
 * trainer built the same way (same student spec, optimizer kind and options) continues bit for bit
 * as if never stopped; a failed load changes nothing. Teachers are not saved. */
KD_API kd_status kd_trainer_save(const kd_trainer *t, const char *path);
KD_API kd_status kd_trainer_load(kd_trainer *t, const char *path);

/* ---------------------------------------------------------------- data */

typedef struct kd_dataset kd_dataset;
typedef struct kd_batcher kd_batcher;

/* Reads an IDX image file (u8, [n, h, w] or [n, c, h, w]) and its IDX label file (u8, [n]); plain
 * or gzip. Pixels become floats in [0, 1]. labels_path may be NULL for an unlabelled set. */
KD_API kd_status kd_dataset_load_idx(const char *images_path, const char *labels_path,
                                     kd_dataset **out);
KD_API void kd_dataset_destroy(kd_dataset *d);
KD_API kd_status kd_dataset_size(const kd_dataset *d, int64_t *n);
/* Shape of one example: channels, height, width. */
KD_API kd_status kd_dataset_shape(const kd_dataset *d, int64_t *c, int64_t *h, int64_t *w);
/* Borrowed, live as long as d: images [n, c*h*w]; labels [n] (NULL when unlabelled, -1 never). */
KD_API const float *kd_dataset_images(const kd_dataset *d);
KD_API const int32_t *kd_dataset_labels(const kd_dataset *d);

/* Shuffled mini-batches of a borrowed dataset, from an explicit seed. */
KD_API kd_status kd_batcher_create(const kd_dataset *d, int64_t batch, uint64_t seed,
                                   kd_batcher **out);
KD_API void kd_batcher_destroy(kd_batcher *b);
/* Copies the next batch into x [batch, c*h*w] and labels [batch] (labels may be NULL; -1 when the
 * set is unlabelled); *rows gets its size, the last batch of an epoch may be short. At the end of an
 * epoch *rows is 0 and the next call starts a new epoch in a new order. */
KD_API kd_status kd_batcher_next(kd_batcher *b, float *x, int32_t *labels, int64_t *rows);
/* The dataset indices of the last batch (borrowed, valid until the next kd_batcher_next), so cached
 * per-example data such as teacher logits can follow the shuffle. */
KD_API kd_status kd_batcher_indices(const kd_batcher *b, const int64_t **indices, int64_t *rows);

/* ---------------------------------------------------------------- augmentation */

typedef enum kd_augment_kind {
    KD_AUGMENT_TRANSLATE = 0, /* shift each image by up to amount pixels along each axis, zero fill
                               * (the jitter of Hinton et al. 2015) */
    KD_AUGMENT_CROP = 1,      /* pad by amount with zeros and crop back at a random place: the same
                               * distribution as TRANSLATE, named as the CIFAR recipes name it */
    KD_AUGMENT_HFLIP = 2      /* mirror each image left-right with probability 1/2; amount unused */
} kd_augment_kind;

/* Transforms a batch of images x [batch, c, h, w] in place, each image drawing its own offsets from
 * seed (the same seed, the same result). Allocates nothing. */
KD_API kd_status kd_augment_images(float *x, int64_t batch, int64_t c, int64_t h, int64_t w,
                                   kd_augment_kind kind, int32_t amount, uint64_t seed);

#ifdef __cplusplus
}
#endif
#endif /* KD_H */
