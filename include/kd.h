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
 * - Arrays are float32, row-major; images are NCHW, sequences [batch, T, d] (token ids int32
 *   [batch, T]). A "batch" is the number of examples.
 * - Distinct handles may be used from distinct threads at once; one handle needs the caller's lock.
 * - The library never prints, exits or aborts. It reads two environment variables: KD_KERNELS
 *   (ref|avx2|avx512) forces a kernel variant; KD_THREADS (0: every core) sets the default of
 *   kd_set_threads.
 */
#ifndef KD_H
#define KD_H

#include <stddef.h>
#include <stdint.h>

#include "kd_export.h"
#include "kd_version.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- errors and versions */

typedef enum kd_status {
    KD_OK = 0,
    KD_ERR_ARGUMENT = 1,   /* a NULL pointer, a value out of range, an unknown key */
    KD_ERR_SHAPE = 2,      /* sizes that do not fit the model or each other */
    KD_ERR_NOMEM = 3,      /* an allocation failed */
    KD_ERR_IO = 4,         /* a file could not be opened, read or written */
    KD_ERR_FORMAT = 5,     /* a file or spec string is malformed, truncated or hostile */
    KD_ERR_NUMERIC = 6,    /* NaN or infinity in an input, or a loss that became non-finite */
    KD_ERR_STATE = 7,      /* a call out of order (backward before forward, ...) */
    KD_ERR_UNSUPPORTED = 8 /* valid, but not available here (a kernel variant, a file feature) */
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

/* ---------------------------------------------------------------- memory and limits */

/* A host's allocator: every allocation the library makes goes through these four (the C library's
 * own stdio buffers, zlib's gzip state and OpenBLAS's threads excepted), each given the user
 * pointer of kd_set_allocator. malloc, calloc and realloc return NULL on failure, as libc's do; the
 * library asks for at least one byte. */
typedef void *(*kd_malloc_fn)(void *user, size_t size);
typedef void *(*kd_calloc_fn)(void *user, size_t count, size_t size);
typedef void *(*kd_realloc_fn)(void *user, void *block, size_t size);
typedef void (*kd_free_fn)(void *user, void *block);

/* Sets the allocator of the whole process: all four functions, or all four NULL for libc's.
 * Process-wide and not thread-safe: call it before any other libkd call, or when no handle
 * exists and no call runs on any thread (a block is freed by the allocator that gave it).
 * KD_ERR_ARGUMENT when some but not all are NULL. */
KD_API kd_status kd_set_allocator(kd_malloc_fn malloc_fn, kd_calloc_fn calloc_fn,
                                  kd_realloc_fn realloc_fn, kd_free_fn free_fn, void *user);

/* Budgets that hostile or mistaken input cannot exceed, checked before anything is allocated;
 * input over one fails with KD_ERR_FORMAT. */
typedef enum kd_limit {
    /* The values (trainable parameters and buffers) one model may hold, checked as a spec is
     * built (kd_model_create, kd_model_load, regressors) before a layer allocates. Default 2^28
     * (1 GiB of float32). kd_model_load also refuses a spec that asks for more values than its
     * file holds data for, before allocating. Whatever this limit, one parameter tensor holds at
     * most 2^31 - 1 values: a layer asking for more is KD_ERR_SHAPE. */
    KD_LIMIT_MODEL_VALUES = 0,
    /* Bytes of one file a loader reads into memory (safetensors: the whole file; IDX: the data
     * its header announces, after decompression). Default 2^33 (8 GiB). */
    KD_LIMIT_FILE_BYTES = 1
} kd_limit;

/* Process-wide, safe to call from any thread at any time (a call already running keeps the value
 * it read). value >= 1. */
KD_API kd_status kd_set_limit(kd_limit key, int64_t value);
KD_API kd_status kd_get_limit(kd_limit key, int64_t *value);

/* ---------------------------------------------------------------- threads */

/* Sets the threads libkd computes with, process-wide: n >= 1, or 0 for every core the process may
 * run on. The default is KD_THREADS=N from the environment (read once, at the first call that needs
 * it), else 1 for libkd's own loops with OpenBLAS's count left as it is; this call wins over
 * KD_THREADS. (Not every core by default: GCC's OpenMP threads spin while idle unless
 * OMP_WAIT_POLICY=passive, and on a busy machine 2 threads measured slower than 1.)
 * libkd's own loops (im2col and col2im, the per-image loops of convolution, pooling, batch norm,
 * activations, optimizer updates) run on that many OpenMP threads when the work is large enough
 * to pay (about 32k floats; smaller work stays on the calling thread). Convolution and dense
 * layers split their GEMMs over those threads, each calling OpenBLAS on its own slice while
 * OpenBLAS is held at one thread, so that OpenBLAS's own pool stays asleep beside OpenMP's (two
 * pools taking turns on 2 cores: the MLP step had measured 4x slower on 2 threads than on 1); the
 * remaining GEMMs run on OpenBLAS's threads, whose count this call (or KD_THREADS) sets to n too
 * (openblas_set_num_threads, process-wide: a host that uses OpenBLAS itself sees it). On a busy
 * machine (more runnable threads than cores, counted every 50 ms from /proc) a loop wakes only the
 * cores other processes leave free, at least 1: each woken thread would otherwise wait for a time
 * slice at every loop (2 threads measured 10-15x slower than 1 at load 12 on 2 cores). The loop's
 * parts stay the same, so this changes speed, never results.
 * With n >= 2, a product of 1 or 2 rows against a layer's weights (64k to 1M multiply-adds: dense
 * layers at batch 1 or 2, attention's projections and the LM head when decoding token by token),
 * too short for an OpenMP region (about 3 us), goes half to one helper thread of libkd's own:
 * started at the first such call, it spins for 0.2 ms after its last part, then sleeps; a call
 * never waits for it to wake (it runs alone then); after a call waited for a helper that had lost
 * its core, calls run alone for 1 ms, doubled while such waits keep coming (a busy machine) up to
 * 0.1 s; not from a thread pinned to one CPU. It
 * blocks every signal and is joined when the library is unloaded (a fork's child starts its own).
 * So does a convolution of one image of at least 64k multiply-adds, by blocks of 8 output
 * channels (the whole product's tiles in each). Each output is the same sum either way: bitwise
 * one thread's values. (784-256-10 student at batch 1: 7.2-8.7 us on 1 thread, 4.7-5.5 us on 2;
 * a small CNN of two 3x3 convolutions, 16 and 32 channels on 28x28, on a Zen 3: 42-45 us on 1,
 * 28-31 us on 2 while both cores run at one speed, about one thread's time when they do not.)
 * Results: a given n gives bitwise the same results run after run. Across n they agree to float
 * rounding, not bitwise: libkd's elementwise, per-channel and per-image loops are bitwise
 * independent of n, but OpenBLAS's threaded GEMM rounds differently from its single-threaded one,
 * and so, in some shapes, does its GEMM on a slice of columns (a dense layer's GEMM splits in
 * slices of 64 outputs, a convolution's weight gradient in slices of channels).
 * tests/test_thread_count.c: predictions within 1e-4 of the largest logit after SGD steps on 1 and
 * 2 threads, 1e-3 after Adam's.
 * Safe to call from any thread at any time; a call running on another thread may take up the new
 * count from its next loop on. Convolutions keep a workspace a thread: a model that ran before n
 * was raised sizes them again (allocates) at its next forward pass.
 * A build without OpenMP (CMake option KD_OPENMP=OFF) runs its own loops on one thread and still
 * sets OpenBLAS's count. KD_ERR_ARGUMENT when n < 0 or n > 1024. */
KD_API kd_status kd_set_threads(int32_t n);
/* *n = the threads libkd uses now (>= 1; 0 resolved to the core count). */
KD_API kd_status kd_get_threads(int32_t *n);

/* ---------------------------------------------------------------- models */

typedef struct kd_model kd_model;

/* Builds a model from a spec, the one description of an architecture, for example
 *   "input 784 | dense 1200 | relu | dropout 0.5 | dense 10"
 *   "input 1x28x28 | conv 16 3 pad=1 bias=0 | bn | relu | residual(conv 16 3 pad=1 | bn) | relu
 *    | maxpool 2 | flatten | dense 10"
 *   "tokens 32 8 | embed 16 | posembed | residual(layernorm | attention 2 causal)
 *    | residual(layernorm | dense 64 | gelu | dense 16) | layernorm | lmhead 32 tied"
 * Inputs (the first layer): input N, input CxHxW, sequence T D (T vectors of D floats, [T, D] an
 * example), tokens V T (T token ids in 0..V-1; see kd_model_forward_tokens).
 * Layers: dense N, relu, leakyrelu [slope], gelu, tanh, sigmoid, dropout P,
 * conv OUT K [stride=S pad=P groups=G bias=0|1], maxpool K [stride=S], avgpool K [stride=S], gap,
 * bn [eps= momentum=], layernorm [eps=], flatten, residual(BODY) [(SHORTCUT)], and for sequences:
 * embed D, posembed, attention H [causal] [dropout=P], lmhead V [tied].
 * On a sequence [T, d] (after sequence T D or embed), dense, layernorm and the activations act on
 * every token: dense N maps [T, d] to [T, N] with weight [N, d] (nn.Linear on the last axis),
 * layernorm normalises each token over its d values (nn.LayerNorm(d), Ba et al. 2016); flatten
 * makes one vector of T*d values; conv, pools, gap and bn refuse a sequence.
 *   embed D: token embedding, nn.Embedding(V, D): "weight" [V, D], N(0, 1); first after tokens.
 *   posembed: learned positional embedding (GPT-2's wpe): y[t] = x[t] + "weight"[t], [T, d].
 *   attention H [causal] [dropout=P]: multi-head self-attention as nn.MultiheadAttention(d, H,
 *     batch_first=True) with query = key = value = x and, when causal, the mask that hides later
 *     positions: P = softmax(Q K^T / sqrt(d/H)) per head (Vaswani et al. 2017, eq. 1), dropout P on
 *     the probabilities; tensors "in_proj_weight" [3d, d] (rows: q, k, v), "in_proj_bias" [3d],
 *     "out_proj.weight" [d, d], "out_proj.bias" [d]; head h reads columns h*d/H..(h+1)*d/H-1.
 *   lmhead V [tied]: logits over the vocabulary for every token, x W^T with W [V, d], no bias
 *     (GPT-2's lm_head); tied: W is the earlier embed layer's weight (no tensor of its own).
 * A pre-norm transformer block (GPT-2, Radford et al. 2019) is two residual blocks:
 *   residual(layernorm | attention H causal) | residual(layernorm | dense 4d | gelu | dense d).
 * Weights are initialised as PyTorch does, from seed. */
KD_API kd_status kd_model_create(const char *spec, uint64_t seed, kd_model **out);
/* A deep copy: weights, buffers and spec; gradients and activations start empty. */
KD_API kd_status kd_model_clone(const kd_model *m, kd_model **out);
KD_API void kd_model_destroy(kd_model *m);

/* safetensors, with PyTorch nn.Sequential names ("0.weight" is [out, in]) and the spec in the
 * header's __metadata__ ("kd.spec"). Saving writes a temporary file PATH.tmp.XXXXXX beside path and
 * renames it over path; on any failure path is as it was and no temporary file remains. A path
 * that is (or links to) a pipe, a device, a socket or a directory is refused, KD_ERR_IO, and left
 * as it is: the rename would replace it with a regular file. A save also
 * removes what a killed save of the same path left: files named so that are regular, the user's,
 * and last written before this process first saved or resumed. Loading checks the file's sizes
 * against the file and the limits (kd_set_limit) before allocating: a spec asking for more values
 * than the file holds data for is KD_ERR_FORMAT.
 * A tied LM head ("lmhead V tied", at the spec's top level) has no tensor of its own: the file
 * holds the shared weight once, under the embedding's name ("0.weight"), as
 * safetensors.torch.save_model writes a tied PyTorch model (it keeps the first of the shared names
 * in sort order) and safetensors.torch.load_model reads back. A file that also holds the head's
 * name ("5.weight" for layer 5), as PyTorch's state_dict() lists both, is read when that tensor
 * equals the embedding's bit for bit, and refused otherwise (KD_ERR_FORMAT), here and in
 * kd_model_load_weights. Both share initial values: the embedding's N(0, 1), as nn.Embedding's
 * weight assigned to the head's nn.Linear (GPT-2's code re-initialises it to N(0, 0.02)).
 * Both also read the student out of a training checkpoint (kd_trainer_save), skipping the
 * trainer's tensors, as PyTorch users load a checkpoint's model state dict. kd_model_load refuses
 * (KD_ERR_FORMAT) a checkpoint written by libkd 0.1, which did not record the input normalisation
 * (kd_model_set_normalization): resume it with kd_trainer_load and save the model instead. */
KD_API kd_status kd_model_load(const char *path, kd_model **out);
KD_API kd_status kd_model_save(const kd_model *m, const char *path);
/* Copies every tensor of a safetensors file into m; names, shapes and dtype (F32) must match.
 * Everything is checked before the first value is copied: a failure leaves m as it was. */
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
/* The kind ("dense"; borrowed, static), trainable parameter count and output size of layer i;
 * kind, params and output_size may each be NULL when not wanted. */
KD_API kd_status kd_model_layer_info(const kd_model *m, int32_t i, const char **kind,
                                     int64_t *params, int64_t *output_size);

/* Per-channel input normalisation, part of the model: every float call (kd_model_predict,
 * kd_model_forward, kd_model_evaluate, and the trainer running teachers and student) computes
 * x' = (x - mean[c]) / std[c] before the first layer, as torchvision's transforms.Normalize, so a
 * teacher trained on normalised inputs is fed what it was trained on. channels is 1 (one pair for
 * every value) or the input's C ("input CxHxW": channel c is values c*H*W..(c+1)*H*W-1 of an
 * example; "input N": one pair a feature, as scikit-learn's StandardScaler); 0 removes it (mean
 * and std may then be NULL). Values finite, std > 0 (else KD_ERR_ARGUMENT, nothing changed);
 * sequence and token models: KD_ERR_UNSUPPORTED. kd_model_save writes it to the file's metadata
 * ("kd.normalize.mean", "kd.normalize.std": comma-separated decimals that read back exactly),
 * kd_model_load applies it (KD_ERR_FORMAT when malformed), kd_model_clone copies it;
 * kd_model_load_weights leaves it alone. */
KD_API kd_status kd_model_set_normalization(kd_model *m, const float *mean, const float *std,
                                            int64_t channels);
/* *channels: 0 when none; mean and std (room for *channels values each; either may be NULL) get
 * the values. Call once with NULL arrays to learn the count. */
KD_API kd_status kd_model_get_normalization(const kd_model *m, float *mean, float *std,
                                            int64_t *channels);

/* Inference (eval mode: dropout off). x is [batch, input], logits [batch, output]. */
KD_API kd_status kd_model_predict(kd_model *m, const float *x, int64_t batch, float *logits);
/* Training mode: keeps the activations for kd_model_backward. Everything a forward could fail on
 * is checked, and its workspaces grown, before the first layer runs: a failed forward leaves batch
 * norm's statistics and the dropout streams as they were. */
KD_API kd_status kd_model_forward(kd_model *m, const float *x, int64_t batch, float *logits);
/* Token models (spec "tokens V T | embed D | ..."): ids is [batch, T], each in 0..V-1 (else
 * KD_ERR_ARGUMENT, nothing run); logits is [batch, T, out] -- with an lmhead, [batch * T, V] rows,
 * one per position, so the logit losses apply per token (call them with batch * T rows and V
 * classes). kd_model_predict_tokens runs in eval mode, kd_model_forward_tokens in training mode
 * (for kd_model_backward). A model of float inputs refuses them (KD_ERR_UNSUPPORTED). A token
 * model's float calls (kd_model_predict, kd_model_forward) take the ids as floats, whole numbers
 * in 0..V-1 (else KD_ERR_ARGUMENT); kd_model_input_size is T, kd_model_output_size T * out;
 * kd_model_evaluate refuses a token model (KD_ERR_UNSUPPORTED). */
KD_API kd_status kd_model_predict_tokens(kd_model *m, const int32_t *ids, int64_t batch,
                                         float *logits);
KD_API kd_status kd_model_forward_tokens(kd_model *m, const int32_t *ids, int64_t batch,
                                         float *logits);
/* The vocabulary V and sequence length T of a token model; 0 and 0 for a model of floats. Either
 * pointer may be NULL. */
KD_API kd_status kd_model_tokens(const kd_model *m, int64_t *vocab, int64_t *length);
/* How the losses and the trainer see the output of one example: *rows rows of *classes logits. A
 * model whose output is a sequence [T, d] (a language model "tokens V T | ... | lmhead V": T rows
 * of V) has T rows of d, so kd_trainer_step takes labels [batch * T]; any other model has 1 row of
 * kd_model_output_size classes. Either pointer may be NULL. */
KD_API kd_status kd_model_output_rows(const kd_model *m, int64_t *rows, int64_t *classes);
/* Incremental decoding of a token model (every layer token by token, attention causal; else
 * KD_ERR_UNSUPPORTED): runs token id at position pos in eval mode and writes that position's
 * logits [out] (out = V with an lmhead), reusing the keys and values the attention layers cached
 * at positions 0..pos-1 in the steps before; pos 0 starts a new sequence, and steps go in order
 * (else KD_ERR_STATE). The logits equal those of kd_model_predict_tokens at pos (to float
 * rounding). A step overwrites workspaces: kd_model_backward then needs a new forward. The cache
 * does not follow weight changes: start again at 0 after an optimizer step. Logits that hold NaN
 * or infinity (the weights or activations overflow) are KD_ERR_NUMERIC, logits untouched. */
KD_API kd_status kd_model_decode_step(kd_model *m, int32_t id, int64_t pos, float *logits);
/* Generates count tokens after prompt [prompt_len] (prompt_len >= 1, count >= 1,
 * prompt_len + count <= T) into out [count],
 * through kd_model_decode_step. Each token is drawn from softmax(logits / temperature) restricted
 * to the top_k most probable tokens (0: no limit) and to the smallest set of most probable tokens
 * whose probability reaches top_p (nucleus sampling, Holtzman et al. 2020; 1: no limit), with a
 * random stream from seed (the same arguments, the same tokens); temperature 0 takes the most
 * probable token (greedy). The model's output must be V logits a token. Logits that hold NaN or
 * infinity at any position are KD_ERR_NUMERIC (there is nothing to sample from). out is written
 * only on success. */
KD_API kd_status kd_model_generate(kd_model *m, const int32_t *prompt, int64_t prompt_len,
                                   int64_t count, float temperature, int32_t top_k, float top_p,
                                   uint64_t seed, int32_t *out);
/* Accumulates parameter gradients for the last kd_model_forward; grad_logits is [batch, output]. */
KD_API kd_status kd_model_backward(kd_model *m, const float *grad_logits);
KD_API kd_status kd_model_zero_grad(kd_model *m);
/* Counts correct top-1 predictions of n examples in eval mode, batch by batch. confusion may be
 * NULL, or [output * output] counts, row = label, column = prediction (added to, not cleared; on
 * failure, untouched). */
KD_API kd_status kd_model_evaluate(kd_model *m, const float *x, const int32_t *labels, int64_t n,
                                   int64_t batch, int64_t *correct, int64_t *confusion);

/* Feature taps, for losses on intermediate layers (hints, attention, relations). Layer i counts as
 * kd_model_layer_info does. The output of layer i from the last kd_model_forward or
 * kd_model_predict: borrowed, valid until the next forward or predict on m, [batch, c*h*w]; a
 * sequence layer's output [batch, T, d] has c = T, h = d, w = 1. In "conv | relu | maxpool" the
 * forward leaves the conv's and the ReLU's outputs unwritten until read: the first read of one
 * runs that conv again (and the ReLU), and every later forward writes it. */
KD_API kd_status kd_model_feature(const kd_model *m, int32_t layer, const float **data,
                                  int64_t *batch, int64_t *c, int64_t *h, int64_t *w);
/* Adds grad [batch, c*h*w] to the gradient at layer i's output; the next kd_model_backward takes
 * it through the layers below. Needs a kd_model_forward first; may be called several times. */
KD_API kd_status kd_model_feature_backward(kd_model *m, int32_t layer, const float *grad);
/* Attention taps, for attention distillation (MiniLM, Wang et al. 2020; TinyBERT, Jiao et al.
 * 2020). Attention layers count from 0 in spec order, depth first (inside residual blocks too).
 * kd_model_attention gives layer k's probabilities of the last forward or predict, before
 * dropout: probs [batch, heads, T, T], row i the distribution of position i over the positions
 * (causal: 0 beyond i). Borrowed, valid until the next forward or predict on m. Any output pointer
 * but probs may be NULL. */
KD_API kd_status kd_model_attention_count(const kd_model *m, int32_t *count);
KD_API kd_status kd_model_attention(const kd_model *m, int32_t k, const float **probs,
                                    int64_t *batch, int64_t *heads, int64_t *length);
/* Adds grad [batch, heads, T, T], d loss / d probs, for the next kd_model_backward (which takes
 * it through the softmax and the layers below). Needs a kd_model_forward first; may be called
 * several times. */
KD_API kd_status kd_model_attention_backward(kd_model *m, int32_t k, const float *grad);

/* ---------------------------------------------------------------- the teachers' knowledge */

/* probs[batch, classes] = sum_i w_i softmax(teacher_i(x) / T) / sum_i w_i, teachers in eval mode.
 * weights may be NULL (equal weights). All teachers must share input and output sizes, and token
 * models one vocabulary (KD_ERR_SHAPE). For a model whose output is a sequence (a language model:
 * "tokens V T | ... | lmhead V") the softmax is per position: x holds the ids [batch, T] as floats
 * and probs is [batch * T, V], one distribution a token (the same memory as [batch, T * V]). */
KD_API kd_status kd_teacher_soft_targets(kd_model *const *teachers, const float *weights, int32_t n,
                                         const float *x, int64_t batch, float temperature,
                                         float *probs);
/* The same from cached logits: logits is [n][batch][classes], teacher-major. */
KD_API kd_status kd_soft_targets_from_logits(const float *logits, const float *weights, int32_t n,
                                             int64_t batch, int64_t classes, float temperature,
                                             float *probs);

/* Sparse teacher caches, for vocabularies too large to keep every logit of every token: per row,
 * the teacher's k largest logits, their classes and the log-sum-exp of the V - k others, i.e.
 * k int32 + k + 1 floats instead of V floats. One teacher per cache (for an ensemble, cache the
 * weighted mean of the teachers' logits). */
typedef enum kd_topk_tail {
    /* The mass outside the top k is spread evenly over the other V - k classes: each gets the
     * logit rest - log(V - k), so at T = 1 the tail keeps its exact total mass, at other T it is
     * softened as one flat logit would be; no class gets probability 0 (reverse KL, JSD need
     * that). The "other" bucket of DistillKit's symmetric_uniform, spread over its classes. */
    KD_TOPK_TAIL_UNIFORM = 0,
    /* The tail is dropped: softmax over the top k alone, 0 elsewhere (DistillKit's "zero"
     * handling, its only one for cached logits). rest may be NULL. */
    KD_TOPK_TAIL_NONE = 1
} kd_topk_tail;

/* From logits [rows, classes] (one teacher, temperature 1): indices [rows, k] the classes of the k
 * largest logits of each row, largest first (ties: the lower class first), values [rows, k] those
 * logits, rest [rows] log(sum of exp(logit) over the other classes), -INFINITY when k == classes.
 * rest may be NULL. 1 <= k <= classes; KD_ERR_NUMERIC for a logit that is not finite. */
KD_API kd_status kd_topk_from_logits(const float *logits, int64_t rows, int64_t classes, int32_t k,
                                     int32_t *indices, float *values, float *rest);
/* Dense teacher logits [rows, classes] from a top-k cache with KD_TOPK_TAIL_UNIFORM: the cached
 * logits at their classes, rest - log(V - k) elsewhere. softmax(logits / T) is then
 * kd_topk_soft_targets at T, so these can be a trainer's teacher_logits (kd_trainer_step). */
KD_API kd_status kd_topk_logits(const int32_t *indices, const float *values, const float *rest,
                                int64_t rows, int64_t classes, int32_t k, float *logits);
/* Dense soft targets from a top-k cache: probs [rows, classes] = softmax(z / T), z the cached
 * logits at their classes and the tail as `tail` says. With k == classes this is
 * kd_soft_targets_from_logits of the full logits. Indices must be in [0, classes) and distinct
 * within a row (KD_ERR_ARGUMENT). probs may feed any loss that takes probabilities. */
KD_API kd_status kd_topk_soft_targets(const int32_t *indices, const float *values,
                                      const float *rest, int64_t rows, int64_t classes, int32_t k,
                                      float temperature, kd_topk_tail tail, float *probs);

/* ---------------------------------------------------------------- losses */

typedef struct kd_loss kd_loss;

typedef enum kd_loss_kind {
    /* alpha * T^2 * KL(p_teacher_T || p_student_T) + (1 - alpha) * CE(student, label)
     * (Hinton, Vinyals and Dean 2015): the soft term a mean over the batch, the hard term a mean
     * over the labelled rows (see KD_LOSS_HARD_MEAN). A label of -1 marks an unlabelled example:
     * its row adds only the soft term. soft_targets may be NULL when alpha == 0. With
     * KD_LOSS_LOGIT_STANDARDIZE, both sides' logits are z-scored before the temperature. This is
     * also the forward KL of language-model distillation, token by token; padding there is
     * KD_LOSS_MASK_UNLABELLED set to 1, so rows labelled -1 add nothing. */
    KD_LOSS_HINTON = 0,
    /* alpha * MSE(student logits, teacher logits) + (1 - alpha) * CE(student, label): the soft
     * term is the squared difference averaged over batch and classes (PyTorch's mse_loss; Ba and
     * Caruana 2014 regress the teacher's logits), the hard term as Hinton's. Default alpha 1.
     * soft_targets holds the teachers' LOGITS, not probabilities (for an ensemble, the weighted
     * mean of the teachers' logits), with kd_loss_forward as with kd_loss_forward_logits; the
     * temperature is not used. The trainer passes logits to this kind by itself. */
    KD_LOSS_LOGIT_MSE = 1,
    /* Decoupled KD (Zhao et al. 2022, eq. 7, as their reference code mdistiller):
     *   CE_WEIGHT * CE(student, label) + T^2 * (alpha * TCKD + BETA * NCKD),  where
     *   TCKD = KL(b_teacher || b_student), b = [p_t, 1 - p_t] (target class t vs the others),
     *   NCKD = KL(p^_teacher || p^_student), p^_j = p_j / (1 - p_t) over the classes j != t,
     * from probabilities at temperature T; the KD terms are batch means, CE as Hinton's hard
     * term. Give the teachers' LOGITS with kd_loss_forward_logits (the trainer does, for one
     * teacher): p^ is then the softmax of the non-target logits, as mdistiller computes it, and
     * stays finite for a teacher so confident that 1 - p_t underflows in float (teacher logits
     * [120, 10, 5, 0], student [2, 1, 0, -1], label 0, T 1: BETA * NCKD = 8 * 0.373715); from
     * probabilities (kd_loss_forward) such a row loses its NCKD. Defaults: alpha 1, BETA 8,
     * CE_WEIGHT 1, T 4 (mdistiller's CIFAR settings; its warm-up of the KD terms over the first
     * epochs is the host's: raise alpha and BETA itself). A row labelled -1 takes the teacher's
     * most probable class as t and adds no CE term; labels may be NULL when CE_WEIGHT is 0.
     * Needs 2 classes or more. KD_LOSS_LOGIT_STANDARDIZE applies (Sun et al. 2024's DKD + LS). */
    KD_LOSS_DKD = 2,
    /* DIST (Huang, You, Wang, Qian and Xu, "Knowledge Distillation from A Stronger Teacher",
     * NeurIPS 2022, eqs. 6-10, as the authors' code): with Y_s, Y_t [batch, classes] the
     * student's and teachers' probabilities at temperature tau (KD_LOSS_TEMPERATURE) and
     *   rho(a, b) = <a - mean a, b - mean b> / (|a - mean a| |b - mean b| + 1e-8),
     *   inter = 1 - mean over rows i of rho(Y_s[i, :], Y_t[i, :]),
     *   intra = 1 - mean over classes j of rho(Y_s[:, j], Y_t[:, j]) (over the batch),
     *   L = tau^2 (BETA * inter + GAMMA * intra) + CE_WEIGHT * CE(student, label).
     * The intra term couples the rows: it needs a batch of 2 or more to say anything. Defaults:
     * BETA 1, GAMMA 1, T 1, CE_WEIGHT 1 (the authors' code; their CIFAR-100 setting is BETA 2,
     * GAMMA 2, T 4). soft_targets are the teachers' probabilities at T (kd_loss_forward) or their
     * logits (kd_loss_forward_logits). labels may be NULL when CE_WEIGHT is 0. */
    KD_LOSS_DIST = 3,
    /* Token-level divergences, for language models (logits [batch * T, V], one row a token) and
     * any classifier. With p the teacher's probabilities at temperature T (soft_targets, as for
     * Hinton) and q = softmax(z / T) the student's, each is
     *   L = alpha * T^2 * mean_rows D(p, q) + (1 - alpha) * CE(z, y),
     * the soft term a mean over the rows, the hard term CE (at temperature 1) as the other kinds'
     * (a mean over the labelled rows, KD_LOSS_HARD_MEAN). T^2 as Hinton's keeps the gradient's size as T
     * changes; at T = 1 (these kinds' default, as the papers) it is the papers' loss. Defaults:
     * alpha 1 (distillation alone, as MiniLLM, GKD and DistiLLM), T 1, KD_LOSS_MASK_UNLABELLED 1:
     * a row labelled -1 is padding and adds nothing, neither term (as TRL's GKDTrainer and
     * DistiLLM mask their -100 tokens); both terms are then means over the labelled rows. labels
     * may be NULL when alpha == 1 (every row counts). log p is taken as log(max(p, FLT_TRUE_MIN)),
     * so a teacher probability that underflowed to 0 stays finite (about -103.3, below any
     * log-probability a float softmax can give). */
    /* Reverse KL, KL(q || p) = sum q (log q - log p) (MiniLLM, Gu et al. ICLR 2024; its token-level
     * form as DistiLLM's reverse_kl): mode seeking. */
    KD_LOSS_REVERSE_KL = 10,
    /* Generalised Jensen-Shannon divergence (GKD, Agarwal et al. ICLR 2024):
     *   JSD(beta) = beta KL(p || m) + (1 - beta) KL(q || m),  m = beta p + (1 - beta) q,
     * beta = KD_LOSS_JSD_BETA, as TRL's GKDTrainer.generalized_jsd_loss, including its end points:
     * beta 0 is the forward KL(p || q) and beta 1 the reverse KL(q || p) (the limits of
     * JSD(beta) / beta and JSD(beta) / (1 - beta)). TRL divides both logits by its temperature
     * and has no T^2: equal at T = 1. */
    KD_LOSS_JSD = 11,
    /* Skew KL (DistiLLM, Ko et al. ICML 2024): SKL = KL(p || lambda p + (1 - lambda) q),
     * lambda = KD_LOSS_SKEW. Lambda 0 is the forward KL. DistiLLM's code (skewed_forward_kl)
     * drops the teacher's entropy sum p log p, a constant: its value is this minus that, its
     * gradient the same. */
    KD_LOSS_SKEW_KL = 12,
    /* Skew reverse KL (DistiLLM): SRKL = KL(q || (1 - lambda) p + lambda q), lambda =
     * KD_LOSS_SKEW, as their skewed_reverse_kl. Lambda 0 is the reverse KL. */
    KD_LOSS_SKEW_REVERSE_KL = 13,
    /* Total variation distance, TVD = 0.5 sum |p - q| (Wen et al. ACL 2023, among their
     * f-divergences for KD; as DistiLLM's tv_distance). Not differentiable where p_j == q_j: the
     * subgradient taken there is 0, i.e. dTVD/dq_j = 0.5 sign(q_j - p_j) with sign(0) = 0. */
    KD_LOSS_TVD = 14
} kd_loss_kind;

typedef enum kd_loss_option {
    KD_LOSS_TEMPERATURE = 0, /* float > 0, default 4 (1 for DIST) */
    KD_LOSS_ALPHA = 1,       /* float in [0, 1], default 0.9 (Hinton), 1 (LOGIT_MSE, DKD) */
    KD_LOSS_BETA = 2,        /* DKD: the NCKD weight, default 8; DIST: the inter weight, default
                              * 1; float >= 0 */
    KD_LOSS_CE_WEIGHT = 3,   /* DKD, DIST: the cross-entropy weight, float >= 0, default 1 */
    /* Logit standardisation (Sun, Ren, Li, Wang and Cao, CVPR 2024, eq. 8, as their code's
     * normalize()): float 0 (off, default) or 1, for HINTON and DKD (KD_ERR_ARGUMENT for other
     * kinds). Each row of the student's and the teachers' logits becomes its z-score
     *   z' = (z - mean(z)) / (std(z) + 1e-7),  std unbiased (divides by classes - 1),
     * before the division by T; the soft term keeps its T^2 factor, the cross-entropy reads the
     * raw logits. The teachers' logits are needed: kd_loss_forward_logits (kd_loss_forward with
     * probabilities fails, KD_ERR_ARGUMENT); the trainer passes them by itself (an ensemble's
     * weighted mean logits). The paper pairs it with a lower T (2 on CIFAR-100) and a larger
     * soft weight. Needs 2 classes or more. */
    KD_LOSS_LOGIT_STANDARDIZE = 4,
    KD_LOSS_GAMMA = 5, /* DIST: the intra-class weight, float >= 0, default 1 */
    /* The denominator of the hard (label) term of every kind, when some labels are -1:
     * float 0 (default): the number of labelled rows, as PyTorch's cross_entropy with
     *   ignore_index=-1 and reduction 'mean' (a batch with no labelled row gives 0, not NaN);
     * float 1: the whole batch, labelled or not (libkd 0.1's convention: the hard term then
     *   weighs less when fewer rows are labelled).
     * The soft terms are always means over the whole batch. */
    KD_LOSS_HARD_MEAN = 6,
    KD_LOSS_JSD_BETA = 10, /* JSD: beta in [0, 1], default 0.5 (TRL's GKDConfig) */
    KD_LOSS_SKEW = 11,     /* the skew kinds: lambda in [0, 1], default 0.1 (DistiLLM) */
    /* 0 or 1, any kind. 1: rows labelled -1 are padding: they are left out of the batch, add
     * neither term, get a zero gradient, and every term is a mean over the labelled rows (all 0
     * when none is). 0: a row labelled -1 is an unlabelled example and adds the soft term.
     * Default 0 for HINTON, LOGIT_MSE, DKD and DIST, 1 for the token-level kinds (10-14). Ignored when
     * labels is NULL. */
    KD_LOSS_MASK_UNLABELLED = 12
} kd_loss_option;

typedef enum kd_loss_part {
    KD_LOSS_PART_TOTAL = 0,
    /* The teacher term: Hinton alpha * T^2 * KL; LOGIT_MSE alpha * MSE; DKD
     * T^2 * (alpha * TCKD + BETA * NCKD); DIST T^2 * (BETA * inter + GAMMA * intra); the
     * token-level kinds (10-14) alpha * T^2 * D. */
    KD_LOSS_PART_SOFT = 1,
    /* The label term: (1 - alpha) * CE, or CE_WEIGHT * CE; a mean over the labelled rows (or the
     * batch, as KD_LOSS_HARD_MEAN says). */
    KD_LOSS_PART_HARD = 2
} kd_loss_part;

KD_API kd_status kd_loss_create(kd_loss_kind kind, kd_loss **out);
KD_API void kd_loss_destroy(kd_loss *l);
KD_API kd_status kd_loss_set_float(kd_loss *l, kd_loss_option key, float value);
KD_API kd_status kd_loss_get_float(const kd_loss *l, kd_loss_option key, float *value);
/* student_logits and soft_targets are [batch, classes]; soft_targets are the teachers' probabilities
 * at the loss's temperature (Hinton, DKD, DIST, the token-level kinds) or their logits
 * (LOGIT_MSE). labels are in [0, classes) or -1; labels may be NULL when alpha == 1 (Hinton,
 * LOGIT_MSE, the token-level kinds) or CE_WEIGHT == 0 (DKD, DIST). The loss keeps what backward
 * needs (its own workspace); the inputs may change after the call. */
KD_API kd_status kd_loss_forward(kd_loss *l, const float *student_logits, const float *soft_targets,
                                 const int32_t *labels, int64_t batch, int64_t classes,
                                 float *loss);
/* The same with the teachers' LOGITS [batch, classes] (for an ensemble, their weighted mean) in
 * place of probabilities, for every kind: the loss makes the probabilities at its temperature
 * itself, in double where it matters. Needed by KD_LOSS_LOGIT_STANDARDIZE; preferred for DKD (a
 * confident teacher keeps its non-target term). teacher_logits may be NULL where soft_targets
 * may. KD_ERR_NUMERIC when a teacher logit is not finite. Any finite logits and temperature are
 * accepted: a log-probability below -FLT_MAX (which a float cannot hold) counts as -FLT_MAX. */
KD_API kd_status kd_loss_forward_logits(kd_loss *l, const float *student_logits,
                                        const float *teacher_logits, const int32_t *labels,
                                        int64_t batch, int64_t classes, float *loss);
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
    KD_OPT_NESTEROV = 3,      /* SGD: int 0 or 1, default 0; needs momentum > 0, which
                               * kd_optimizer_step checks (KD_ERR_STATE): set them in any order */
    KD_OPT_SCHEDULE = 4,      /* int, a kd_schedule; default KD_SCHEDULE_CONSTANT */
    KD_OPT_TOTAL_STEPS = 5,   /* int > 0, the steps over which a schedule runs */
    KD_OPT_MIN_LR = 6,        /* float >= 0, where cosine decay ends; default 0 */
    KD_OPT_CURRENT_LR = 7,    /* float, read only: the rate the next step will use */
    KD_OPT_STEP = 8,          /* int: steps taken; settable to resume a schedule */
    KD_OPT_BETA1 = 9,         /* Adam, AdamW: float in [0, 1), default 0.9 */
    KD_OPT_BETA2 = 10,        /* Adam, AdamW: float in [0, 1), default 0.999 */
    KD_OPT_EPSILON = 11,      /* Adam, AdamW: float > 0, default 1e-8 */
    KD_OPT_STEP_SIZE = 12,    /* STEP schedule: int > 0, the steps between decays */
    KD_OPT_GAMMA = 13,        /* STEP, MULTISTEP: float in (0, 1], a decay's factor (0.1) */
    /* Linear warm-up, as PyTorch's LinearLR chained with the schedule: the schedule's rate times
     * WARMUP_START + (1 - WARMUP_START) * step / WARMUP_STEPS while step < WARMUP_STEPS; the
     * schedule itself counts every step, warm-up included. */
    KD_OPT_WARMUP_STEPS = 14, /* int >= 0, default 0 (no warm-up) */
    KD_OPT_WARMUP_START = 15, /* float in [0, 1], step 0's factor; 1/3 as LinearLR */
    /* Clipping by global norm, as torch.nn.utils.clip_grad_norm_: when the L2 norm of all the
     * gradients together exceeds CLIP_NORM, they are scaled by CLIP_NORM / (norm + 1e-6). A
     * trainer's regressors (feature terms) follow the student's options, clipped by their own norm. */
    KD_OPT_CLIP_NORM = 16, /* float >= 0, default 0 (off) */
    KD_OPT_GRAD_NORM = 17  /* float, read only: the last step's global norm, before clipping */
} kd_optimizer_option;

/* Schedules count optimizer steps (not epochs); KD_OPT_STEP is the count so far. */
typedef enum kd_schedule {
    KD_SCHEDULE_CONSTANT = 0,
    KD_SCHEDULE_COSINE = 1,   /* lr_min + (lr - lr_min) * (1 + cos(pi * step / total)) / 2 */
    KD_SCHEDULE_STEP = 2,     /* lr * GAMMA^floor(step / STEP_SIZE), as PyTorch's StepLR */
    KD_SCHEDULE_MULTISTEP = 3 /* lr * GAMMA^(milestones <= step), as PyTorch's MultiStepLR */
} kd_schedule;

#define KD_MAX_MILESTONES 64

/* The optimizer borrows m, which must outlive it. Errors: KD_ERR_ARGUMENT (NULL, kind not a
 * kd_optimizer_kind), KD_ERR_UNSUPPORTED (an int8 model: kd_model_quantize's models only predict). */
KD_API kd_status kd_optimizer_create(kd_optimizer_kind kind, kd_model *m, kd_optimizer **out);
KD_API void kd_optimizer_destroy(kd_optimizer *o);
KD_API kd_status kd_optimizer_set_float(kd_optimizer *o, kd_optimizer_option key, float value);
KD_API kd_status kd_optimizer_get_float(const kd_optimizer *o, kd_optimizer_option key,
                                        float *value);
KD_API kd_status kd_optimizer_set_int(kd_optimizer *o, kd_optimizer_option key, int64_t value);
KD_API kd_status kd_optimizer_get_int(const kd_optimizer *o, kd_optimizer_option key,
                                      int64_t *value);
/* The MULTISTEP schedule's milestones: count (0 to KD_MAX_MILESTONES) strictly increasing step
 * numbers > 0, copied. */
KD_API kd_status kd_optimizer_set_milestones(kd_optimizer *o, const int64_t *steps, int64_t count);
/* Copies up to capacity milestones to steps (which may be NULL when capacity is 0); *count gets
 * how many there are. */
KD_API kd_status kd_optimizer_get_milestones(const kd_optimizer *o, int64_t *steps,
                                             int64_t capacity, int64_t *count);
/* Applies the model's accumulated gradients (clipped first when CLIP_NORM is set), advances the
 * schedule and clears the gradients. A gradient holding NaN or infinity refuses the step
 * (KD_ERR_NUMERIC) and changes nothing. */
KD_API kd_status kd_optimizer_step(kd_optimizer *o);

/* ---------------------------------------------------------------- the trainer */

typedef struct kd_trainer kd_trainer;

/* Borrows student, loss and optimizer (built on the student); they must outlive the trainer. */
KD_API kd_status kd_trainer_create(kd_model *student, kd_loss *loss, kd_optimizer *opt,
                                   kd_trainer **out);
KD_API void kd_trainer_destroy(kd_trainer *t);
/* Adds a borrowed teacher with an ensemble weight > 0. Its input size, token vocabulary (if any)
 * and output (rows and classes a row, see kd_trainer_step) must be the student's (KD_ERR_SHAPE,
 * nothing added). */
KD_API kd_status kd_trainer_add_teacher(kd_trainer *t, kd_model *teacher, float weight);
/* One step: soft targets (from teacher_logits, [teachers][batch][classes] cached logits, or, when
 * NULL, from running the teachers), student forward, loss, backward, optimizer step. With no
 * teacher and teacher_logits NULL, only the hard term is possible (alpha must be 0). *loss gets the
 * total; kd_loss_value gives the parts.
 * Language models (any student whose output is a sequence [T, V], e.g. "tokens V T | ... |
 * lmhead V"; kd_model_output_rows says which): the loss sees batch * T rows of V classes, one a
 * token, as kd_loss_forward on [batch * T, V] would: x is the ids [batch, T] as floats (whole
 * numbers in 0..V-1), labels int32 [batch * T] (the next tokens, kd_text_batch's targets; -1
 * marks a token without a label: with KD_LOSS_MASK_UNLABELLED 1, the token-level kinds' default,
 * it is padding and adds nothing), teacher_logits [teachers][batch * T][V], and the soft targets
 * are softmax per token at the loss's temperature. Teachers must read the same vocabulary and length and give V classes a
 * token too (kd_trainer_add_teacher refuses others with KD_ERR_SHAPE). */
KD_API kd_status kd_trainer_step(kd_trainer *t, const float *x, const int32_t *labels,
                                 const float *teacher_logits, int64_t batch, float *loss);
/* A failed step (an allocation, a refused optimizer or regressor step, ...) leaves everything a
 * checkpoint holds as it was: the student's and regressors' weights, their buffers (batch norm's
 * running statistics and counts) and random streams (dropout), the optimizers' state and step
 * count. What the failed attempt computed (activations, kd_loss_value, kd_trainer_feature_value)
 * is not kept either way. The first step at a batch size grows workspaces; a later one at the
 * same size allocates nothing. */

/* Checkpoints: what a training run carries between steps -- the student's weights and buffers, the
 * optimizer's step count and per-parameter state (momentum), the student's random streams
 * (dropout), the feature terms' regressors and their optimizer state, CRD terms' memory of teacher
 * embeddings ("crd.<k>.memory", "crd.<k>.next"; a checkpoint without them leaves the memory as it
 * is) -- in one safetensors file written to a temporary name and renamed. Loading into a trainer built the same way (same student
 * spec, optimizer kind and options, feature terms) continues bit for bit as if never stopped; a
 * failed load changes nothing. Teachers are not saved. The student's tensors keep the model file's
 * names, and its input normalisation is in the metadata ("kd.checkpoint.format" 2), so
 * kd_model_load reads the student straight from a checkpoint. */
KD_API kd_status kd_trainer_save(const kd_trainer *t, const char *path);
/* Also removes what a killed save of path left, as kd_model_save does. */
KD_API kd_status kd_trainer_load(kd_trainer *t, const char *path);

/* ---------------------------------------------------------------- distillation methods */

/* Feature losses compare a student's hidden feature [batch, cs, hs, ws] with a teacher's
 * [batch, ct, ht, wt] (a dense layer's output is c x 1 x 1). The teacher side is a constant: only
 * the student receives a gradient. */
typedef struct kd_feature_loss kd_feature_loss;

typedef enum kd_feature_loss_kind {
    /* FitNets hint (Romero et al. 2015): mean over batch and values of (s - t)^2 (PyTorch's
     * mse_loss); equal shapes (a regressor makes them equal). */
    KD_FEATURE_HINT = 0,
    /* Attention transfer (Zagoruyko and Komodakis 2017), as their code's at_loss: per example
     * a = mean over channels of F^2 (p = 2), a^ = a / max(||a||_2, 1e-12) over the h*w positions,
     * loss = mean over batch and positions of (a^_s - a^_t)^2. Equal h x w (> 1), any channels.
     * Their code adds beta * at_loss per layer group with beta = 1000: use that as the weight. */
    KD_FEATURE_ATTENTION = 1,
    /* Relational KD (Park et al. 2019), on flattened features, as their code: distance-wise, the
     * pairwise distances of the batch divided by their mean over pairs i != j, compared with
     * smooth-L1 (Huber, threshold 1) averaged over the batch^2 entries; angle-wise, the cosines of
     * the angles (e_j - e_i, e_k - e_i) over all batch^3 triplets, smooth-L1, averaged. Loss =
     * DISTANCE_WEIGHT * distance + ANGLE_WEIGHT * angle (25 and 50 as the paper). Any sizes;
     * a batch of one example has no relation and gives 0. */
    KD_FEATURE_RKD = 2,
    /* Similarity preserving (Tung and Mori 2019, eq. 4): G = F F^T over flattened features, rows
     * L2-normalised, loss = ||G_s - G_t||_F^2 / batch^2. Any sizes. Their CIFAR weight: 3000. */
    KD_FEATURE_SIMILARITY = 3,
    /* Probabilistic knowledge transfer (Passalis and Tefas 2018), as the authors' code: cosine
     * similarities K = (cos + 1) / 2 between the batch's flattened features, rows normalised to
     * conditional probabilities, loss = mean over the batch^2 entries of
     * p_t * log((p_t + 1e-7) / (p_s + 1e-7)), a KL(teacher || student). Any sizes. */
    KD_FEATURE_PKT = 4,
    /* Cosine embedding (DistilBERT, Sanh et al. 2019): mean over the batch of 1 - cos(s, t),
     * cos = <s, t> / sqrt((|s|^2 + 1e-12)(|t|^2 + 1e-12)) as PyTorch's cosine_embedding_loss;
     * equal sizes. For DistilBERT's per-token loss on hidden states [batch, T, d], pass batch * T
     * rows of d (the trainer's feature terms do so on sequence layers). */
    KD_FEATURE_COSINE = 5,
    /* Self-attention distribution transfer (MiniLM, Wang et al. 2020, their L_AT): on attention
     * probabilities [batch, H, T, T] (kd_model_attention; pass c = H, h = w = T), the mean over
     * batch, heads and query positions of KL(teacher row || student row) =
     * sum_j a_t log(a_t / max(a_s, 1e-12)); entries where the teacher is 0 add nothing. Equal
     * shapes. Its gradient goes back through kd_model_attention_backward; in a trainer, through
     * kd_trainer_add_attention_loss. Values must lie in [0, 1] (KD_ERR_ARGUMENT). */
    KD_FEATURE_ATTENTION_KL = 10,

    /* ---- wins (issue 12): contrastive representation distillation */
    /* CRD (Tian, Krishnan and Isola, ICLR 2020), the InfoNCE form of their critic (eq. 17-18,
     * the softmax over one positive and K negatives): u = s / |s| the student's embedding (its
     * projection head is the trainer's regressor, e.g. "dense 128" to a 128-wide teacher layer),
     * v = t / |t| the teacher's (identity head; the paper also learns one), m_1..m_K unit rows
     * of a memory of past teacher embeddings, tau the temperature:
     *   L = 1/B sum_b -log( exp(<u_b, v_b>/tau) / (exp(<u_b, v_b>/tau) + sum_k exp(<u_b, m_k>/tau)) ).
     * After each finite forward the memory takes the batch's teacher embeddings, one slot an
     * example in turn: m <- normalise(mu m + (1 - mu) v) (momentum mu, their nce_m = 0.5; mu = 1
     * freezes it). It starts as uniform random unit rows from KD_FEATURE_CRD_SEED and is rebuilt
     * when the size or K changes. Equal sizes. The memory is state of the handle: one handle a
     * term, and kd_trainer_save does not keep it (a resumed run refills it). */
    KD_FEATURE_CRD = 20
} kd_feature_loss_kind;

typedef enum kd_feature_loss_option {
    KD_FEATURE_RKD_DISTANCE_WEIGHT = 0, /* RKD: float >= 0, default 25 */
    KD_FEATURE_RKD_ANGLE_WEIGHT = 1,    /* RKD: float >= 0, default 50 */

    /* ---- wins (issue 12): CRD's options */
    KD_FEATURE_CRD_TEMPERATURE = 10, /* CRD: tau > 0, default 0.07 (their nce_t) */
    KD_FEATURE_CRD_NEGATIVES = 11,   /* CRD: K, an integer in [1, 1048576], default 4096 */
    KD_FEATURE_CRD_MOMENTUM = 12,    /* CRD: mu in [0, 1], default 0.5 (their nce_m) */
    KD_FEATURE_CRD_SEED = 13 /* CRD: the memory's seed, an integer in [0, 2^24], default 0 */
} kd_feature_loss_option;

KD_API kd_status kd_feature_loss_create(kd_feature_loss_kind kind, kd_feature_loss **out);
KD_API void kd_feature_loss_destroy(kd_feature_loss *l);
KD_API kd_status kd_feature_loss_set_float(kd_feature_loss *l, kd_feature_loss_option key,
                                           float value);
KD_API kd_status kd_feature_loss_get_float(const kd_feature_loss *l, kd_feature_loss_option key,
                                           float *value);
/* The loss between student [batch, sc*sh*sw] and teacher [batch, tc*th*tw] features. The handle
 * keeps what backward needs; the inputs may change after the call. */
KD_API kd_status kd_feature_loss_forward(kd_feature_loss *l, const float *student, int64_t sc,
                                         int64_t sh, int64_t sw, const float *teacher, int64_t tc,
                                         int64_t th, int64_t tw, int64_t batch, float *loss);
/* d loss / d student for the last forward, [batch, sc*sh*sw]. */
KD_API kd_status kd_feature_loss_backward(kd_feature_loss *l, float *grad_student);

/* Feature terms in the trainer: term k (numbered from 0 in the order added) adds
 * weight * loss(regressor(student layer student_layer), teacher `teacher` layer teacher_layer)
 * to every step's loss, its gradient taken into the student through kd_model_feature_backward.
 * teacher indexes the teachers added with kd_trainer_add_teacher (0 first); layers count as
 * kd_model_layer_info does. regressor_spec (NULL: none) builds an adaptation layer owned and
 * trained by the trainer, e.g. "dense 1200" or "conv 64 1" ("input ..." may be omitted: the
 * student layer's shape is put in front); it is initialised from the student's seed and k, and
 * trained with the student's optimizer kind and options (learning rate and schedule included)
 * in an optimizer of its own. The loss handle is borrowed (it may serve several terms).
 * Sequence layers ([batch, T, d]: after embed, attention, a transformer block): "sequence T d" is
 * put in front of the regressor's spec, so "dense D" is a learned projection of each token
 * (nn.Linear(d, D) on the last axis, as TinyBERT's W_h), not of the whole sequence; and a
 * pointwise loss (KD_FEATURE_HINT, KD_FEATURE_COSINE) between two sequences of the same T compares
 * token by token, its batch the batch * T tokens: the cosine term is DistilBERT's hidden-state
 * loss, the mean over tokens of 1 - cos(s_token, t_token). Other kinds see one row an example.
 * A step runs every teacher a term names, even when teacher_logits are given (those still give
 * the soft targets): features cannot be cached. Regressors are in kd_trainer_save's file. */
KD_API kd_status kd_trainer_add_feature_loss(kd_trainer *t, kd_feature_loss *loss,
                                             int32_t student_layer, int32_t teacher,
                                             int32_t teacher_layer, const char *regressor_spec,
                                             float weight);
/* weight * loss of term k in the last step, or with k == -1 the sum over the terms (the part of
 * the step's *loss the feature terms make). */
KD_API kd_status kd_trainer_feature_value(const kd_trainer *t, int32_t k, float *value);
/* The regressor of term k (borrowed, lives as long as t), or NULL when it has none. */
KD_API kd_status kd_trainer_regressor(const kd_trainer *t, int32_t k, kd_model **regressor);

typedef enum kd_trainer_option {
    /* int 0 or 1, default 0. 1: steps train on the feature terms alone -- the first stage of
     * FitNets (the student's layers up to the hint and the regressors learn the hint; the layers
     * above get zero gradients, only weight decay moves them); labels and soft targets are not
     * read. Needs a feature term. Set back to 0 for the second stage, normal distillation. */
    KD_TRAINER_HINT_ONLY = 0,
    /* Synchronised batch norm (PyTorch's SyncBatchNorm) in a data-parallel job (see
     * kd_trainer_set_allreduce), int 0 or 1, default 0: in training, every bn layer of the student
     * takes its mean and variance over the global batch, so the running statistics and the step
     * equal a lone trainer's on the global batch. Each forward sums 2 C + 1 values a layer of C
     * channels (the sums of x - K and (x - K)^2, K the job's mean at the step before, and a flag),
     * plus C more when some process's batch mean is over 4 deviations from K (the first step: the
     * deviations from the job's mean, so the variance stays as precise as a lone trainer's); each
     * backward, 2 C values. A process's slice may hold a single value a channel (one row before a
     * bn on flat input): the job's batch must hold two, else every process fails the step alike
     * (KD_ERR_SHAPE). Every process must turn it on at the same step. Without it each process's bn
     * layers normalise by, and keep the running statistics of, their own slice, so the processes'
     * models predict apart (PyTorch's DistributedDataParallel instead broadcasts rank 0's buffers
     * at each forward): save or evaluate rank 0's. */
    KD_TRAINER_SYNC_BATCHNORM = 50,
    /* Gradient buckets of a data-parallel job, int >= 0 values (floats), default 262144 (1 MiB,
     * PyTorch DistributedDataParallel's first bucket; Li et al., "PyTorch Distributed", VLDB 2020).
     * The student's gradients are summed in the backward order of its top-level layers: a
     * parameter of at least this many values is summed in place as a bucket of its own, smaller
     * ones are packed together until a bucket holds this many; each bucket is summed as soon as
     * the backward pass has gone below its layers (with kd_trainer_set_allreduce_async, while the
     * rest of the backward runs). The regressors' gradients and the loss go in the last bucket,
     * after the backward pass; at most KD_ALLREDUCE_MAX_BUCKETS buckets, the rest in the last.
     * 0: one bucket after the backward pass. Every process must use the same value. */
    KD_TRAINER_BUCKET_FLOATS = 51
} kd_trainer_option;

KD_API kd_status kd_trainer_set_int(kd_trainer *t, kd_trainer_option key, int64_t value);
KD_API kd_status kd_trainer_get_int(const kd_trainer *t, kd_trainer_option key, int64_t *value);

/* Adds delta to the bias of output class cls in the model's last layer, which must be dense
 * (KD_ERR_UNSUPPORTED otherwise): the correction Hinton et al. (2015, section 3) made for a class
 * left out of the transfer set, with delta chosen on held-out data. */
KD_API kd_status kd_model_adjust_output_bias(kd_model *m, int32_t cls, float delta);

/* ---------------------------------------------------------------- attention maps in the trainer */

/* How an attention term pairs the student's heads with the teacher's. */
typedef enum kd_attention_heads {
    /* Head h of the student against head h of the teacher (MiniLM, Wang et al. 2020, eq. 7;
     * TinyBERT, Jiao et al. 2020, eq. 7): equal head counts (KD_ERR_SHAPE). The loss sees
     * [batch, H, T, T]. */
    KD_ATTENTION_HEADS_MATCHED = 0,
    /* Each side's mean over its heads, (1/H) sum_h P_h, a distribution per query row again: any
     * head counts. The loss sees [batch, 1, T, T]; each student head receives 1/H_s of the
     * gradient on the mean. */
    KD_ATTENTION_HEADS_MEAN = 1
} kd_attention_heads;

/* Attention-map term in the trainer: adds weight * loss(A_s, A_t) to every step's loss, where A_s
 * are the probabilities [batch, H_s, T, T] of the student's attention layer student_attention and
 * A_t the teacher's attention layer teacher_attention (teacher as in kd_trainer_add_feature_loss;
 * attention layers counted as kd_model_attention_count does), paired by heads
 * (kd_attention_heads). The gradient goes back through the student's softmax, projections and
 * the layers below (as kd_model_attention_backward). With KD_FEATURE_ATTENTION_KL this is MiniLM's
 * self-attention distribution transfer, KL(teacher row || student row) averaged over batch,
 * heads and query positions; KD_FEATURE_HINT gives the mean squared error between the maps
 * (TinyBERT, eq. 7, here on the probabilities). Both attention layers must see the same T
 * (KD_ERR_SHAPE); the loss must accept [H, T, T] maps (KD_ERR_SHAPE otherwise). The term is
 * numbered with the feature terms (kd_trainer_feature_value, k in the order added), has no
 * regressor, and runs the named teacher each step as feature terms do. Errors: KD_ERR_ARGUMENT
 * for an attention index out of range, a teacher not added, an unknown heads value or a weight
 * that is not finite and > 0. */
KD_API kd_status kd_trainer_add_attention_loss(kd_trainer *t, kd_feature_loss *loss,
                                               int32_t student_attention, int32_t teacher,
                                               int32_t teacher_attention, kd_attention_heads heads,
                                               float weight);

/* ---------------------------------------------------------------- files of named tensors */

/* A set of named arrays with string metadata, kept in memory and saved as safetensors
 * (https://github.com/huggingface/safetensors), the format PyTorch's and NumPy's safetensors
 * packages read and write (safetensors.torch.load_file, safetensors.numpy.save_file): the tool's
 * logit caches, or any arrays to exchange. Arrays are row-major and little-endian; names are
 * non-empty UTF-8 and unique, "__metadata__" is reserved. Metadata is string to string (the
 * header's __metadata__). The set owns copies of everything given to it. */
typedef struct kd_tensors kd_tensors;

typedef enum kd_dtype {
    KD_DTYPE_F32 = 0, /* float, safetensors "F32" */
    KD_DTYPE_I32 = 1, /* int32_t, "I32" */
    KD_DTYPE_I64 = 2, /* int64_t, "I64" */
    KD_DTYPE_I8 = 3,  /* int8_t, "I8" (int8 weights) */
    KD_DTYPE_U8 = 4   /* uint8_t, "U8" (activation zero points) */
} kd_dtype;

#define KD_TENSORS_MAX_DIMS 8 /* dimensions of one array; 0 is a scalar */

/* An empty set. */
KD_API kd_status kd_tensors_create(kd_tensors **out);
KD_API void kd_tensors_destroy(kd_tensors *t);
/* Adds array name [dims[0], ..., dims[ndim-1]] of dtype, copying prod(dims) values from data (data
 * may be NULL only when that product is 0); an array of the same name is replaced, keeping its
 * place in the order. Errors (nothing changed): KD_ERR_ARGUMENT for a bad name, dtype, ndim
 * outside 0..KD_TENSORS_MAX_DIMS, a negative dimension or a size above 2^62 bytes; KD_ERR_NUMERIC
 * for NaN or infinity in F32 data (a cache of logits must be finite). */
KD_API kd_status kd_tensors_set(kd_tensors *t, const char *name, kd_dtype dtype, int32_t ndim,
                                const int64_t *dims, const void *data);
/* Removes array name; KD_ERR_ARGUMENT when there is none. */
KD_API kd_status kd_tensors_remove(kd_tensors *t, const char *name);
/* Arrays in the set, in the order added (a loaded file: the order of its header). */
KD_API kd_status kd_tensors_count(const kd_tensors *t, int32_t *count);
/* The name of array i, 0 <= i < count; borrowed, valid until the array is removed or replaced. */
KD_API kd_status kd_tensors_name(const kd_tensors *t, int32_t i, const char **name);
/* Whether array name exists: *found 1 or 0. */
KD_API kd_status kd_tensors_has(const kd_tensors *t, const char *name, int32_t *found);
/* Dtype, dimension count and dims (KD_TENSORS_MAX_DIMS entries of room; unused ones set to 0) of
 * array name; KD_ERR_ARGUMENT when there is none. Any output pointer may be NULL. */
KD_API kd_status kd_tensors_info(const kd_tensors *t, const char *name, kd_dtype *dtype,
                                 int32_t *ndim, int64_t *dims);
/* The values of array name (borrowed, aligned for its dtype, valid until the array is removed or
 * replaced) and their size in bytes. nbytes may be NULL. */
KD_API kd_status kd_tensors_data(const kd_tensors *t, const char *name, const void **data,
                                 int64_t *nbytes);
/* Sets (or replaces) metadata key to value, both UTF-8 (else KD_ERR_ARGUMENT, nothing changed). */
KD_API kd_status kd_tensors_set_meta(kd_tensors *t, const char *key, const char *value);
/* Removes metadata key; KD_ERR_ARGUMENT when there is none. */
KD_API kd_status kd_tensors_remove_meta(kd_tensors *t, const char *key);
/* *value is the metadata of key (borrowed, valid until it is set again) or NULL when absent. */
KD_API kd_status kd_tensors_get_meta(const kd_tensors *t, const char *key, const char **value);
/* Metadata entries, and the key of entry i (borrowed), to list them. */
KD_API kd_status kd_tensors_meta_count(const kd_tensors *t, int32_t *count);
KD_API kd_status kd_tensors_meta_key(const kd_tensors *t, int32_t i, const char **key);
/* Writes the set to path as safetensors, metadata first, arrays in order: a temporary file beside
 * path, flushed, renamed over it, so path holds the old file or the whole new one. KD_ERR_IO when
 * it cannot be written. */
KD_API kd_status kd_tensors_save(const kd_tensors *t, const char *path);
/* Reads a safetensors file. Everything is checked before it is trusted: the header length against
 * the file size and the format's limit (100 MB) before anything is allocated, the JSON, shapes,
 * data offsets that tile the data exactly, unique names. KD_ERR_IO when unreadable, KD_ERR_FORMAT
 * (with a sentence naming the problem) when malformed, KD_ERR_UNSUPPORTED when an array has a dtype
 * other than the kd_dtype ones, F32, I32, I64, I8 and U8 (convert it in PyTorch or NumPy first). */
KD_API kd_status kd_tensors_load(const char *path, kd_tensors **out);

/* ---------------------------------------------------------------- data */

typedef struct kd_dataset kd_dataset;
typedef struct kd_batcher kd_batcher;

/* Reads an IDX image file (u8, [n, h, w] or [n, c, h, w]) and its IDX label file (u8, [n]); plain
 * or gzip. Pixels become floats in [0, 1]. labels_path may be NULL for an unlabelled set. */
KD_API kd_status kd_dataset_load_idx(const char *images_path, const char *labels_path,
                                     kd_dataset **out);
/* The same from a prefix: PREFIX-images-idx3-ubyte and PREFIX-labels-idx1-ubyte (LeCun's names)
 * or PREFIX-images.idx3-ubyte and PREFIX-labels.idx1-ubyte (Kaggle's), each plain or .gz (gzip
 * preferred), e.g. prefix "data/train" or "data/t10k". KD_ERR_IO naming the expected files when
 * either is missing. */
KD_API kd_status kd_dataset_load_idx_prefix(const char *prefix, kd_dataset **out);
/* NumPy arrays saved by numpy.save: x_path a .npy of examples, float32, float64 or uint8, shaped
 * [n] (one value an example), [n, features] (tabular; shape features x 1 x 1), [n, h, w] (1 x h x w)
 * or [n, c, h, w] (NCHW images); y_path (NULL: unlabelled) a .npy of n integer labels, uint8, int32
 * or int64, each in 0..2^31-1. float64 becomes float32; uint8 examples become floats in [0, 1]
 * (divided by 255, as IDX pixels and torchvision's ToTensor), floats are kept as they are. Files
 * are .npy versions 1.0 to 3.0, little-endian, C order, at most 2^31 values. Errors: KD_ERR_IO
 * when a file cannot be read; KD_ERR_FORMAT, with a sentence naming the file and the problem, for
 * a malformed or truncated file, a Fortran-order or big-endian array, another dtype, float or
 * out-of-range labels; KD_ERR_SHAPE when the counts of x and y differ; KD_ERR_NUMERIC for NaN or
 * infinity in x. */
KD_API kd_status kd_dataset_load_npy(const char *x_path, const char *y_path, kd_dataset **out);
/* The same from two arrays of a .npz archive (numpy.savez or savez_compressed, read through
 * libzip): x_name and y_name are the names given to savez (members x_name.npy, y_name.npy);
 * y_name NULL for an unlabelled set. A member that announces more bytes than its compressed size
 * can hold is KD_ERR_FORMAT before anything is allocated; a compression other than stored or
 * deflate is KD_ERR_UNSUPPORTED. */
KD_API kd_status kd_dataset_load_npz(const char *path, const char *x_name, const char *y_name,
                                     kd_dataset **out);
/* A CSV table (RFC 4180: commas, fields optionally in double quotes with "" for a quote, no line
 * break inside a field; "\n" or "\r\n" lines, a UTF-8 byte-order mark skipped, blank lines
 * ignored): line 1 names the columns; every other column than label_column holds numbers (as
 * strtod reads them, in the C locale's format, finite in float32), which become the features of
 * each row in column order (shape features x 1 x 1). label_column (NULL: an unlabelled set) names
 * the column of labels, any non-empty text, mapped to classes 0..K-1 in sorted order -- by value
 * when every label is an integer (so "10" follows "9"), else by strcmp, as torchvision's
 * ImageFolder and scikit-learn's LabelEncoder sort -- and kept: kd_dataset_class_name(d, i) is
 * the text of class i. Errors: KD_ERR_IO when unreadable; KD_ERR_FORMAT, with a sentence giving
 * the line and the column, for a row with more or fewer cells than the header (ragged), a cell
 * that is not a number, an empty label, an unclosed quote, a missing label column, or a table
 * with no rows. */
KD_API kd_status kd_dataset_load_csv(const char *path, const char *label_column, kd_dataset **out);
/* Images in torchvision's ImageFolder layout: root/CLASS/IMAGE, one sub-folder a class, classes
 * numbered 0..K-1 in strcmp order of their folder names and images taken in strcmp order of their
 * file names within each, as ImageFolder does (only files directly in a class folder, named
 * .png, .jpg or .jpeg in any case; names starting with '.' skipped). PNG is decoded by libpng,
 * JPEG by libjpeg, recognised by content. Each image becomes channels (1: gray, as PIL's
 * convert("L") with ITU-R 601 luma; 3: RGB; alpha dropped) x height x width floats in [0, 1]
 * (divided by 255, as ToTensor), NCHW. Images are not resized: every one must be height x width
 * (both 0: the size of the first image), else KD_ERR_SHAPE naming the file and its size. Errors:
 * KD_ERR_IO when root or a file cannot be opened; KD_ERR_FORMAT naming the file for an image
 * that cannot be decoded (corrupt, truncated, neither PNG nor JPEG), a root without class folders
 * or images, or more than 2^31 values. Class names: kd_dataset_class_name. */
KD_API kd_status kd_dataset_load_image_folder(const char *root, int64_t channels, int64_t height,
                                              int64_t width, kd_dataset **out);
/* Per-channel mean and standard deviation of a dataset's examples, mean [c] and std [c] (c from
 * kd_dataset_shape; a tabular set's features are its channels), over all n * h * w values of each
 * channel, in double: std = sqrt(mean of (x - mean)^2), the population value (torch.std with
 * correction=0, numpy.std). A channel that never varies gets std 1 (as scikit-learn's
 * StandardScaler), so kd_model_set_normalization accepts the result. Compute them on the
 * training set and use them for every split. */
KD_API kd_status kd_dataset_channel_stats(const kd_dataset *d, float *mean, float *std);
/* Writes one array [dims[0], ..., dims[ndim-1]] (ndim 0..8) of dtype from data as a NumPy .npy
 * file (version 1.0, little-endian, C order; numpy.load reads it), atomically (a temporary file
 * renamed over path): examples or labels for NumPy, or for kd_dataset_load_npy. KD_ERR_ARGUMENT
 * for a bad dtype, ndim or dimension, KD_ERR_IO when it cannot be written. */
KD_API kd_status kd_npy_save(const char *path, kd_dtype dtype, int32_t ndim, const int64_t *dims,
                             const void *data);
/* Class names of a set whose labels were read as names (kd_dataset_load_csv,
 * kd_dataset_load_image_folder): label i is the class named kd_dataset_class_name(d, i)
 * (borrowed, lives as long as d). count is 0 for other sets. */
KD_API kd_status kd_dataset_class_count(const kd_dataset *d, int32_t *count);
KD_API kd_status kd_dataset_class_name(const kd_dataset *d, int32_t label, const char **name);
KD_API void kd_dataset_destroy(kd_dataset *d);
KD_API kd_status kd_dataset_size(const kd_dataset *d, int64_t *n);
/* Shape of one example: channels, height, width. */
KD_API kd_status kd_dataset_shape(const kd_dataset *d, int64_t *c, int64_t *h, int64_t *w);
/* Borrowed, live as long as d: images [n, c*h*w]; labels [n] (NULL when unlabelled, -1 never). */
KD_API const float *kd_dataset_images(const kd_dataset *d);
KD_API const int32_t *kd_dataset_labels(const kd_dataset *d);

/* Splits d into two new datasets (copies; d is unchanged): *held_out gets round(fraction * n)
 * examples drawn by a seeded shuffle, *rest the others, each in d's order -- a validation split
 * of a training set. fraction in (0, 1), and neither part may be empty (KD_ERR_ARGUMENT). The
 * caller destroys both. */
KD_API kd_status kd_dataset_split(const kd_dataset *d, float fraction, uint64_t seed,
                                  kd_dataset **rest, kd_dataset **held_out);

/* Shuffled mini-batches of a borrowed dataset, from an explicit seed. */
KD_API kd_status kd_batcher_create(const kd_dataset *d, int64_t batch, uint64_t seed,
                                   kd_batcher **out);
KD_API void kd_batcher_destroy(kd_batcher *b);
/* Copies the next batch into x [batch, c*h*w] and labels [batch] (labels may be NULL; -1 when the
 * set is unlabelled); *rows gets its size, the last batch of an epoch may be short. At the end of an
 * epoch *rows is 0 and the next call starts a new epoch in a new order. An epoch's order is drawn
 * for the dataset's size at its start: after kd_dataset_hold_out shrinks the dataset during an
 * epoch, every call fails with KD_ERR_STATE (create a new batcher); between epochs, or before the
 * first call, the next epoch simply covers the new size. */
KD_API kd_status kd_batcher_next(kd_batcher *b, float *x, int32_t *labels, int64_t *rows);
/* The dataset indices of the last batch (borrowed, valid until the next kd_batcher_next), so cached
 * per-example data such as teacher logits can follow the shuffle. */
KD_API kd_status kd_batcher_indices(const kd_batcher *b, const int64_t **indices, int64_t *rows);

/* ---------------------------------------------------------------- text */

/* A text corpus for language models, with byte-level tokens: token = byte, so KD_TEXT_VOCAB = 256
 * classes and no tokenizer (as byte-level models, e.g. ByT5, and char-level nanoGPT). The file is
 * read whole and must be non-empty, valid UTF-8 (RFC 3629: no overlong forms, surrogates or code
 * points above U+10FFFF) and at most max_bytes long. */
typedef struct kd_text kd_text;

#define KD_TEXT_VOCAB 256
#define KD_TEXT_MAX_BYTES (INT64_C(1) << 30) /* the size limit when max_bytes is 0: 1 GiB */

typedef enum kd_text_part {
    KD_TEXT_TRAIN = 0,     /* the first bytes of the file */
    KD_TEXT_VALIDATION = 1 /* the last bytes (kd_text_split) */
} kd_text_part;

/* Reads path. max_bytes > 0 is the largest file accepted, 0 means KD_TEXT_MAX_BYTES. Errors:
 * KD_ERR_IO when the file cannot be opened or read, KD_ERR_FORMAT when it is empty, longer than the
 * limit, or not UTF-8 (the sentence gives the byte offset of the first bad sequence). The split
 * starts at 0.1: the last tenth of the bytes is the validation part (as nanoGPT's
 * shakespeare_char). */
KD_API kd_status kd_text_open(const char *path, int64_t max_bytes, kd_text **out);
KD_API void kd_text_destroy(kd_text *t);
/* Bytes (tokens) in the whole corpus, or in one part. */
KD_API kd_status kd_text_size(const kd_text *t, int64_t *bytes);
KD_API kd_status kd_text_part_size(const kd_text *t, kd_text_part part, int64_t *bytes);
/* A contiguous split: the last floor(bytes * validation_fraction) bytes are the validation part,
 * the others the training part. validation_fraction in [0, 1). The boundary is a byte offset, not
 * aligned to characters (tokens are bytes). */
KD_API kd_status kd_text_split(kd_text *t, float validation_fraction);
/* batch random windows of T + 1 consecutive tokens from a part, each starting uniformly in
 * [0, part size - T - 1] from seed (the same seed, the same batch): ids [batch, T] the first T
 * tokens of each window, targets [batch, T] the next T (targets[b][i] = ids[b][i + 1] for
 * i < T - 1), as int32 in [0, 256). KD_ERR_SHAPE when the part is shorter than T + 1 bytes. */
KD_API kd_status kd_text_batch(const kd_text *t, kd_text_part part, int64_t batch, int64_t T,
                               uint64_t seed, int32_t *ids, int32_t *targets);
/* Copies count tokens of a part from offset on into ids (int32), for evaluation in order. */
KD_API kd_status kd_text_tokens(const kd_text *t, kd_text_part part, int64_t offset, int64_t count,
                                int32_t *ids);

/* Language-model metrics from a mean cross-entropy ce in nats per token (the hard term over the
 * tokens, e.g. KD_LOSS_PART_HARD with alpha 0): perplexity = exp(ce); bits per byte =
 * ce * tokens / (bytes * ln 2), tokens / bytes the tokenizer's compression (1 for byte-level
 * tokens, where bits per byte = ce / ln 2). ce must be finite and >= 0, tokens and bytes >= 1;
 * a perplexity beyond float's range (ce above about 88.7) is +infinity. */
KD_API kd_status kd_perplexity(float ce, float *perplexity);
KD_API kd_status kd_bits_per_byte(float ce, int64_t tokens, int64_t bytes, float *bpb);

/* ---------------------------------------------------------------- int8 quantisation (issue 14) */

/* How kd_model_quantize picks each activation's range [lo, hi] (lo <= 0 <= hi) from the
 * calibration examples:
 *   MINMAX: the smallest and largest value seen (Jacob et al. 2018, arXiv:1712.05877, sec. 3);
 *   PERCENTILE: the p-th and (100 - p)-th percentiles of the values seen, read from a 2048-bin
 *     histogram over [min, max] (Wu et al. 2020, "Integer Quantization for Deep Learning Inference",
 *     arXiv:2004.09602, sec. 4.1), so rare outliers are clipped and the common values get finer
 *     steps. */
typedef enum kd_calibration {
    KD_CALIBRATION_MINMAX = 0,
    KD_CALIBRATION_PERCENTILE = 1
} kd_calibration;

/* Post-training int8 quantisation: *out is a new model computing with int8 weights and uint8
 * activations and int32 accumulation, whose kd_model_predict, kd_model_evaluate, kd_model_save and
 * kd_model_load work as for float models (it cannot be trained: kd_model_forward and backward on it
 * are KD_ERR_UNSUPPORTED). m is not changed.
 *
 * Scheme (Jacob et al. 2018, eqs. 1-7; the ONNX QLinearConv / QuantizeLinear conventions):
 *   activations per tensor, uint8: real = s * (q - z), q = saturate(round(x / s) + z) in 0..255,
 *     s = (hi - lo) / 255, z = round(-lo / s);
 *   weights per output channel o, symmetric int8: real = s_w[o] * w, s_w[o] = max|W[o,:]| / 127,
 *     w = round(W / s_w[o]) in -127..127; BatchNorm is folded into the conv before it first
 *     (W' = W g / sqrt(var + eps), b' = (b - mean) g / sqrt(var + eps) + beta);
 *   bias int32 of scale s_x s_w[o]; acc[o] = bias[o] + sum_k (x_q - z_x) w[o, k] in int32;
 *   requantisation with ReLU fused: y_q = clamp(round(acc * (s_x s_w[o] / s_y)) + z_y, lo, 255),
 *     lo = z_y after a ReLU, else 0; the last layer returns float logits acc * s_x s_w[o].
 * Rounding is half to even throughout. Layers: dense and conv (each with a following bn and relu
 * fused in), maxpool, flatten, dropout (dropped, as at inference); any other layer is
 * KD_ERR_UNSUPPORTED naming it. The model's input normalisation is kept, applied before quantising.
 *
 * x [n, in] are calibration examples (a few hundred from the transfer set are typical), run through
 * m in batches of 64 to find the ranges; percentile in (50, 100] is used by PERCENTILE (99.99 is a
 * common choice), ignored by MINMAX. Errors: KD_ERR_ARGUMENT (NULL, n < 1, method or percentile out
 * of range), KD_ERR_NUMERIC (x not finite), KD_ERR_UNSUPPORTED (a layer without an int8 form, a model
 * already quantised, a token model), KD_ERR_NOMEM.
 *
 * Files: the spec names the int8 layers (quantize, qconv, qdense, qmaxpool, qflatten, dequantize)
 * and the tensors are, for layer I: quantize: I.scale F32 [1], I.zero_point U8 [1]; qconv and
 * qdense: I.weight I8 ([C, Cin, K, K] or [N, in], PyTorch's layout), I.weight_scale F32 [C],
 * I.bias I32 [C] (scale s_x s_w[o]), and unless it returns floats (dequant=1) I.output_scale F32 [1]
 * and I.output_zero_point U8 [1]. A layer's input scale is the output scale of the nearest int8
 * layer before it. kd_model_load refuses, before building anything, a scale that is NaN, infinite,
 * zero or negative (KD_ERR_NUMERIC), a dtype other than these (KD_ERR_FORMAT) and a shape that
 * disagrees with the spec or with the tensor's data (KD_ERR_SHAPE / KD_ERR_FORMAT), naming the
 * tensor. Metadata "kd.quant" is "int8". The format in full: docs/QUANTIZATION.md. */
KD_API kd_status kd_model_quantize(const kd_model *m, const float *x, int64_t n,
                                   kd_calibration method, float percentile, kd_model **out);
/* *quantized = 1 when m computes with int8 layers (made by kd_model_quantize or loaded from such a
 * file), else 0. kd_model_param_count of such a model counts its int8 weights and int32 biases
 * (as many as the float model's parameters). The activations kd_model_feature returns for an int8
 * layer are its uint8 codes (channels-last for images), not floats. */
KD_API kd_status kd_model_is_quantized(const kd_model *m, int32_t *quantized);

/* ---------------------------------------------------------------- quantisation-aware training (qat) */

/* Fake quantisation (on = 1): from now on m's forward and backward simulate the int8 model
 * kd_model_quantize would make of it, so that training (distillation from a float teacher
 * included: Jacob et al. 2018, arXiv:1712.05877, sec. 3; NVIDIA Model Optimizer's
 * quantisation-aware distillation) adapts the weights to int8. In every forward, training or not:
 *   the weights of every dense and conv layer are rounded per output channel o to symmetric int8
 *     steps, W_q = s_w[o] clamp(round(W / s_w[o]), -127, 127), s_w[o] = max|W[o,:]| / 127;
 *   the input (after normalisation) and the output of every block (dense or conv, with the bn and
 *     relu after it) except a last block without relu are rounded to uint8 steps,
 *     x_q = s (clamp(round(x / s) + z, 0, 255) - z), with s and z from a range [lo, hi] widened to
 *     hold 0 as kd_model_quantize computes them; each range follows the training batches' min and
 *     max by an exponential moving average, range += 0.01 (batch range - range), starting at the
 *     first training batch's (PyTorch's MovingAverageMinMaxObserver). Until a training forward has
 *     set a range, forwards outside training leave that activation unrounded.
 * Backward uses the straight-through estimator (Bengio et al. 2013, arXiv:1308.3432): the gradient
 * passes a rounded activation unchanged where round(x / s) + z lies in 0..255 and is zero where the
 * value was clipped; the weight gradient is the gradient at W_q, applied by the optimizer to the
 * float weights. BatchNorm stays unfolded in training: rounding the conv's weights per output
 * channel gives the same int8 codes as rounding the folded ones, since folding scales each output
 * channel by one factor. The layers allowed are those of kd_model_quantize (dense, conv, bn, relu,
 * maxpool, flatten, dropout); any other is KD_ERR_UNSUPPORTED naming it.
 * on = 0 removes fake quantisation and its tracked ranges; setting the state m already has does
 * nothing (the ranges are kept). A training forward before the call cannot be backpropagated after
 * it. The state is not saved by kd_model_save nor copied by kd_model_clone (the float weights are).
 * Errors: KD_ERR_ARGUMENT (NULL, on not 0 or 1), KD_ERR_UNSUPPORTED (a layer without an int8 form,
 * an int8 model, a token model), KD_ERR_NOMEM. */
KD_API kd_status kd_model_set_fake_quant(kd_model *m, int32_t on);
/* *on = 1 when m is fake-quantised (kd_model_set_fake_quant), else 0. */
KD_API kd_status kd_model_fake_quant(const kd_model *m, int32_t *on);
/* The int8 model of a fake-quantised model trained with it: as kd_model_quantize, with the
 * activation ranges the training tracked instead of calibrated ones, so its forward equals m's
 * forward outside training within one quantisation step at every activation (bias rounding to
 * int32 and float summation order differ). m is not changed. Errors: KD_ERR_ARGUMENT (NULL),
 * KD_ERR_STATE (m not fake-quantised, or never trained since: no ranges), KD_ERR_NOMEM. */
KD_API kd_status kd_model_quantize_trained(const kd_model *m, kd_model **out);

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

/* ---------------------------------------------------------------- data-parallel training */

/* libkd itself knows no transport: a host that runs one trainer in each of several processes (MPI
 * ranks, say) hands every trainer an all-reduce, and the trainers then take the same optimizer
 * step from their slices of one global batch, as PyTorch's DistributedDataParallel does. The
 * optional component kd_mpi (include/kd_mpi.h, built when CMake finds MPI) provides one over
 * MPI_Allreduce.
 *
 * A host's all-reduce: replaces data[0 .. count-1] by its element-wise sum over every process of
 * the job, in place (MPI_Allreduce with MPI_IN_PLACE, MPI_FLOAT, MPI_SUM is one). Every process
 * calls it with the same count in the same order. It returns KD_OK, or any other status to fail
 * the step (the trainer then says which all-reduce failed). user is the pointer given with it. */
typedef kd_status (*kd_allreduce_fn)(float *data, int64_t count, void *user);

/* Makes t the trainer of process rank (0 .. world - 1) of a job of world processes, summing
 * through fn; fn NULL (with world 1, rank 0) makes it a lone trainer again. Each process then
 * passes kd_trainer_step its slice of every global batch (slices may differ in size, none may be
 * empty), and every step:
 *   - sums the slices' sizes b_r into the global batch B (one all-reduce of 3 values, the last
 *     counting processes that refused their slices);
 *   - during and after the backward pass, sums (b_r / B) * gradient over the processes, in
 *     buckets (KD_TRAINER_BUCKET_FLOATS): every trainable parameter of the student and of the
 *     feature terms' regressors, and the loss (*loss is then the global batch's loss on every
 *     process);
 *   - takes the same optimizer step everywhere (clipping sees the summed gradient).
 * So a step equals one lone trainer's step on the global batch up to the order of float sums,
 * for losses that are means over rows (every kd_loss_kind; with unlabelled rows (-1) the hard
 * term's mean is over each slice's labelled rows, weighted by b_r / B). Batch norm uses each
 * slice's statistics unless KD_TRAINER_SYNC_BATCHNORM is set (kd_trainer_set_int); dropout masks differ from a lone
 * trainer's (each process draws its own). The models, optimizer states and cached teacher logits
 * are the host's to make identical: same seeds, or kd_trainer_broadcast.
 * A process whose step is refused before the sums (x NULL or holding NaN, a label out of range,
 * an empty slice, no memory) still takes part in that first all-reduce and returns its own error;
 * every other process's step then fails with KD_ERR_STATE ("... refused their slices ..."), and
 * no student moves. So no process waits in the sums of a step another never takes, and the next
 * step of every process is taken together.
 * Errors: KD_ERR_ARGUMENT for world < 1, rank outside 0 .. world - 1, fn NULL with world > 1. */
KD_API kd_status kd_trainer_set_allreduce(kd_trainer *t, kd_allreduce_fn fn, void *user,
                                          int32_t rank, int32_t world);
/* Makes every process's student parameters and buffers (float ones), regressors and optimizer
 * state equal to process 0's, through the all-reduce (the others contribute zeros): call it on
 * every process after building or loading, before the first step. A lone trainer: nothing to do.
 * On failure the values may be partly replaced; call it again or rebuild. */
KD_API kd_status kd_trainer_broadcast(kd_trainer *t);

/* ---------------------------------------------------------------- overlapped all-reduce (issue 15) */

/* Tags of a non-blocking all-reduce: 0 .. KD_ALLREDUCE_MAX_BUCKETS - 1 name a step's gradient
 * buckets, KD_ALLREDUCE_TAG_NOW the trainer's other sums (global batch, synchronised batch norm,
 * broadcast), which it waits for at once. A host keeps KD_ALLREDUCE_TAGS requests. */
typedef enum kd_allreduce_tag {
    KD_ALLREDUCE_MAX_BUCKETS = 64,
    KD_ALLREDUCE_TAG_NOW = 64,
    KD_ALLREDUCE_TAGS = 65
} kd_allreduce_tag;

/* A host's non-blocking all-reduce, in two halves (MPI_Iallreduce and MPI_Wait are one): start
 * begins replacing data [count] by its element-wise sum over the job and returns; wait returns
 * once the sum started with that tag is complete. The trainer has at most one sum in flight per
 * tag, leaves data alone until it has waited, and waits for every sum it started before its step
 * returns, failed or not. Every process starts the same sums (counts, tags) in the same order.
 * Both return KD_OK, or any other status to fail the step. user is the pointer given with them. */
typedef kd_status (*kd_allreduce_start_fn)(float *data, int64_t count, int32_t tag, void *user);
typedef kd_status (*kd_allreduce_wait_fn)(int32_t tag, void *user);

/* kd_trainer_set_allreduce with a non-blocking all-reduce: each gradient bucket
 * (KD_TRAINER_BUCKET_FLOATS) is started as soon as the backward pass has gone below its layers and
 * waited for before the optimizer step, so the sums overlap the rest of the backward pass wherever
 * the transport moves data on its own (a network card; MPI's progress). The same step, to the
 * order of float sums, as kd_trainer_set_allreduce. start and wait both NULL, with world 1 and
 * rank 0, make t a lone trainer again.
 * Errors: KD_ERR_ARGUMENT as kd_trainer_set_allreduce, and for only one of start, wait NULL. */
KD_API kd_status kd_trainer_set_allreduce_async(kd_trainer *t, kd_allreduce_start_fn start,
                                                kd_allreduce_wait_fn wait, void *user, int32_t rank,
                                                int32_t world);

/* ---------------------------------------------------------------- memory of datasets (gemm, issue 11) */

/* kd_dataset_split without the copy of the rest: moves the examples kd_dataset_split(d, fraction,
 * seed, ...) would hold out into a new dataset *held_out, and d keeps the others in its order --
 * the same two parts, so a validation split of a training set costs the held-out part's memory,
 * not the whole set's again. fraction in (0, 1), neither part empty (KD_ERR_ARGUMENT); on any
 * failure d is unchanged and *held_out untouched. Pointers from kd_dataset_images and
 * kd_dataset_labels of d stay valid (d's buffers are compacted in place) and its size shrinks; a
 * batcher of d in the middle of an epoch can no longer go on (kd_batcher_next). The caller
 * destroys *held_out. */
KD_API kd_status kd_dataset_hold_out(kd_dataset *d, float fraction, uint64_t seed,
                                     kd_dataset **held_out);
/* ---------------------------------------------------------------- ONNX export (issue 14) */

/* Writes m as an ONNX model (https://onnx.ai, IR version 8, default-domain operator set 17; runs in
 * ONNX Runtime >= 1.12), atomically as kd_model_save. The graph has one float input "input":
 * [N, C, H, W] for 'input CxHxW' (H or W > 1), [N, F] for 'input F', [N, T, D] for 'sequence T D'
 * and [N, T] for 'tokens V T' (the ids as floats, as kd_model_predict takes them; cast to int64
 * inside), N symbolic ("batch"); and one output "logits" shaped as the last layer's output
 * ([N, classes] after dense, [N, T, V] after lmhead). It computes what kd_model_predict does
 * (evaluation mode): the input normalisation (Sub, Div), then dense as Gemm (transB = 1; MatMul
 * with the transposed weight on a sequence), conv as Conv, maxpool/avgpool/gap as MaxPool/
 * AveragePool/GlobalAveragePool, bn as BatchNormalization with the running estimates, layernorm
 * as LayerNormalization (axis 1; -1 on a sequence), flatten as Flatten, residual blocks as Add of
 * their branches, dropout as nothing, relu/leakyrelu/tanh/sigmoid as their operators, gelu as
 * x * 0.5 * (1 + Erf(x / sqrt 2)) (Hendrycks and Gimpel 2016), embed as Gather, posembed as Add,
 * attention as MatMul, Slice, Reshape, Transpose, Softmax (Vaswani et al. 2017, eq. 1; the causal
 * mask an additive -inf constant), lmhead as MatMul with its own or the tied embedding's weight.
 * Initializers keep the safetensors names ("0.weight", with a "_N" suffix to make them unique);
 * metadata_props "kd.spec" holds the spec. Int8 models (kd_model_quantize) give the same numbers
 * bit for bit, in integer operators: quantize as QuantizeLinear (uint8 codes), qdense as
 * MatMulInteger (the int8 weights transposed, stored as uint8 w + 128 with zero point 128: ONNX
 * Runtime's uint8 x int8 product saturates on x86 CPUs without VNNI) + int32 bias, qconv as Conv
 * over the codes minus their
 * zero point and the int8 weights cast to float (exact integers while |sum| < 2^24, always when
 * Cin*K*K <= 518), then the requantisation float(acc) * M[o] rounded by QuantizeLinear (scale 1,
 * the output zero point; Relu before it when fused), or the float logits (dequant=1); qmaxpool and
 * qflatten as MaxPool and Flatten on the codes, dequantize as DequantizeLinear.
 * Errors: KD_ERR_ARGUMENT (NULL), KD_ERR_NOMEM,
 * KD_ERR_IO (path as it was), KD_ERR_UNSUPPORTED for a file over protobuf's 2 GiB. */
KD_API kd_status kd_model_export_onnx(const kd_model *m, const char *path);

/* ---------------------------------------------------------------- pruning (issue 14) */

/* Magnitude pruning with a schedule. A pruner masks every trainable weight tensor of m with two or
 * more dims (dense and conv weights, attention projections, embeddings; biases and norms' scales
 * are kept), each tensor layer-wise to the same sparsity (Han et al. 2015): at the steps the
 * schedule names, the smallest |w| are masked; every kd_pruner_step zeroes the masked weights
 * again, so training (call it after each optimizer step or kd_trainer_step) keeps them at zero.
 * The sparsity at step t rises from 0 to the target as Zhu and Gupta 2017 ("To prune, or not to
 * prune", eq. 1): s_t = s (1 - (1 - (t - begin) / (end - begin))^3) for begin <= t < end, s from
 * end on; masks change every FREQUENCY steps. With the defaults (0, 0, 1) the first step prunes
 * to s at once (one-shot); with end <= begin, pruning jumps to s at begin. The pruner borrows m,
 * which must outlive it; a step allocates nothing.
 * sparsity in [0, 1) (KD_ERR_ARGUMENT); KD_ERR_ARGUMENT too when m has no weight to prune. */
typedef struct kd_pruner kd_pruner;
typedef enum kd_pruner_option {
    KD_PRUNER_BEGIN_STEP = 0, /* the step pruning starts at (0) */
    KD_PRUNER_END_STEP = 1,   /* the step the target sparsity is reached at (0) */
    KD_PRUNER_FREQUENCY = 2   /* steps between mask updates, >= 1 (1) */
} kd_pruner_option;
KD_API kd_status kd_pruner_create(kd_model *m, float sparsity, kd_pruner **out);
KD_API kd_status kd_pruner_set_int(kd_pruner *p, kd_pruner_option key, int64_t value);
/* Updates the masks if the schedule says so at step (>= 0), then zeroes the masked weights. */
KD_API kd_status kd_pruner_step(kd_pruner *p, int64_t step);
/* The sparsity the masks were last set to (0 before any step). */
KD_API kd_status kd_pruner_sparsity(const kd_pruner *p, float *sparsity);
KD_API void kd_pruner_destroy(kd_pruner *p);
/* The fraction of zeros among the weights a pruner would mask (0 when there are none). */
KD_API kd_status kd_model_sparsity(const kd_model *m, float *sparsity);

/* Structured pruning: a new model (*out, the caller's) with round(fraction * n) of the n output
 * neurons of every dense layer, and output channels of every conv layer (groups = 1), removed, the
 * ones of smallest L1 norm of their weights (Li et al. 2017, "Pruning Filters for Efficient
 * ConvNets", sec. 3.1), at least one kept. The layers reading them shrink too: bn between keeps
 * the kept channels' parameters and statistics, the next dense or conv layer the kept inputs
 * (a flattened channel's H*W inputs together). A layer is pruned only when its outputs reach the
 * next dense or conv layer through activations, dropout, bn, pooling or flatten, so the model's
 * last layer and layers before a residual block or layernorm keep their sizes. The spec of *out
 * names the new sizes; normalisation is kept; m is unchanged. fraction in [0, 1)
 * (KD_ERR_ARGUMENT); KD_ERR_UNSUPPORTED for sequence models, int8 models (prune before
 * kd_model_quantize) or when no layer can be pruned. */
KD_API kd_status kd_model_prune_channels(const kd_model *m, float fraction, kd_model **out);

#ifdef __cplusplus
}
#endif
#endif /* KD_H */
