/* safetensors (https://github.com/huggingface/safetensors): an 8-byte little-endian header length, a
 * JSON header {"name": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}, "__metadata__":
 * {"k": "v"}}, then the raw little-endian data. Reading validates everything before trusting it. */
#ifndef KDI_SAFETENSORS_H
#define KDI_SAFETENSORS_H

#include <stdint.h>

#include "kd.h"

#define KDI_ST_MAX_DIMS 8

typedef enum kdi_st_dtype {
    KDI_ST_F32 = 0,
    KDI_ST_I64 = 1,
    KDI_ST_OTHER = 2,
    KDI_ST_I32 = 3,
    KDI_ST_I8 = 4,
    KDI_ST_U8 = 5
} kdi_st_dtype;

typedef struct kdi_st_tensor {
    const char *name;
    kdi_st_dtype dtype;
    int32_t ndim;
    int64_t dims[KDI_ST_MAX_DIMS];
    const void *data; /* little-endian, possibly unaligned: read with memcpy */
    int64_t nbytes;
} kdi_st_tensor;

typedef struct kdi_st_file {
    kdi_st_tensor *tensors;
    int32_t n;
    char **meta_keys, **meta_values;
    int32_t nmeta;
    void *storage; /* everything above points into this */
} kdi_st_file;

/* Reads and validates path: header length within the file and below 100 MB, JSON well formed,
 * offsets in range, contiguous and non-overlapping, nbytes == product(dims) * dtype size, names
 * unique. KD_ERR_IO when unreadable, KD_ERR_FORMAT with a sentence otherwise. */
kd_status kdi_st_read(const char *path, kdi_st_file *out);
const kdi_st_tensor *kdi_st_find(const kdi_st_file *f, const char *name);
const char *kdi_st_meta(const kdi_st_file *f, const char *key); /* NULL when absent */
/* 1 when p[0 .. n-1] is well-formed UTF-8 (RFC 3629). */
int kdi_utf8_valid(const void *p, size_t n);
void kdi_st_free(kdi_st_file *f);

/* Bytes of one value of dtype (0 for KDI_ST_OTHER). */
int64_t kdi_st_dtype_size(kdi_st_dtype d);

/* Writes F32, I32, I64, I8 and U8 tensors (in the given order) and metadata atomically (io/atomic.h): a
 * temporary file beside path, fsync, rename; stale temporary files of path removed first. On
 * failure path is untouched and the temporary file removed. */
kd_status kdi_st_write(const char *path, const kdi_st_tensor *tensors, int32_t n,
                       const char *const *meta_keys, const char *const *meta_values, int32_t nmeta);

#endif
