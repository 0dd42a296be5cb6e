/* Shapes and growable float buffers: the tensor module. Storage is float32, row-major, NCHW. */
#ifndef KDI_TENSOR_H
#define KDI_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "kd.h"

/* The shape of one example; a flat vector of n values is {n, 1, 1}. */
typedef struct kdi_shape {
    int64_t c, h, w;
} kdi_shape;

static inline int64_t kdi_shape_size(kdi_shape s) { return s.c * s.h * s.w; }
static inline kdi_shape kdi_shape_flat(int64_t n) { return (kdi_shape){n, 1, 1}; }

/* A buffer that grows to the largest size asked of it and is then reused, so a training step
 * allocates only the first time it meets a batch size. */
typedef struct kdi_buf {
    float *data;
    int64_t capacity; /* in floats */
} kdi_buf;

/* 64-byte aligned, zeroed; NULL on failure or on an overflowing count. Freed by kdi_free_floats
 * only. */
float *kdi_alloc_floats(int64_t n);
/* The same, not zeroed: for a caller that writes every value before reading any (its pages are
 * touched only as it writes them). */
float *kdi_alloc_floats_raw(int64_t n);
void kdi_free_floats(void *p);
/* Ensures capacity for n floats; contents are not kept on growth. KD_ERR_NOMEM on failure. */
kd_status kdi_buf_reserve(kdi_buf *b, int64_t n);
void kdi_buf_free(kdi_buf *b);

/* n * m without overflow into *out, for sizes read from files; 0 on overflow. */
int kdi_mul_ok(int64_t n, int64_t m, int64_t *out);
/* 1 when every value is finite. */
int kdi_all_finite(const float *x, int64_t n);

#endif
