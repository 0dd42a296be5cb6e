/* IDX files (LeCun's MNIST format): a 4-byte magic 0x00 0x00 <type> <ndim>, ndim big-endian u32
 * sizes, then the values. Only unsigned bytes (type 0x08) are read; plain or gzip. */
#ifndef KDI_IDX_H
#define KDI_IDX_H

#include <stdint.h>

#include "kd.h"

#define KDI_IDX_MAX_DIMS 4
#define KDI_IDX_MAX_VALUES (1LL << 31)

typedef struct kdi_idx {
    int32_t ndim;
    int64_t dims[KDI_IDX_MAX_DIMS];
    int64_t count; /* product of dims */
    uint8_t *data; /* heap (kdi_idx_read) */
    float *values; /* kdi_alloc_floats (kdi_idx_read_floats) */
} kdi_idx;

/* Reads path, whose dimension count must be within [min_dims, max_dims]. The file must hold
 * exactly the announced bytes: a short file or trailing bytes are KD_ERR_FORMAT. */
kd_status kdi_idx_read(const char *path, int32_t min_dims, int32_t max_dims, kdi_idx *out);
/* kdi_idx_read's checks, the values read as floats, byte / divisor (> 0), into out->values; the
 * bytes are not kept (out->data is NULL). */
kd_status kdi_idx_read_floats(const char *path, int32_t min_dims, int32_t max_dims, float divisor,
                              kdi_idx *out);
void kdi_idx_free(kdi_idx *idx);

#endif
