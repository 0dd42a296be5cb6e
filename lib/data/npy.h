/* NumPy .npy arrays (numpy.lib.format, versions 1.0, 2.0 and 3.0): the magic "\x93NUMPY", a
 * version, a little-endian header length (2 bytes in 1.0, 4 after), a Python dict literal
 * {'descr': '<f4', 'fortran_order': False, 'shape': (n, d), } padded to a newline, then the
 * values in C order. Read from memory, so that .npy files and .npz members share one parser. */
#ifndef KDI_NPY_H
#define KDI_NPY_H

#include <stddef.h>
#include <stdint.h>

#include "kd.h"

#define KDI_NPY_MAX_DIMS 8
#define KDI_NPY_MAX_VALUES (INT64_C(1) << 31)

typedef enum kdi_npy_type {
    KDI_NPY_F32,
    KDI_NPY_F64,
    KDI_NPY_U8,
    KDI_NPY_I32,
    KDI_NPY_I64
} kdi_npy_type;

typedef struct kdi_npy {
    kdi_npy_type type;
    int32_t ndim;
    int64_t dims[KDI_NPY_MAX_DIMS];
    int64_t count;             /* product of dims */
    const unsigned char *data; /* into the caller's buffer, possibly unaligned */
} kdi_npy;

/* Parses buf[0, size) strictly: one of the five dtypes above, little-endian ('|' for bytes), C
 * order, at most KDI_NPY_MAX_VALUES values, and exactly count values after the header (a short or
 * long file is KD_ERR_FORMAT). what names the array in messages. */
kd_status kdi_npy_parse(const unsigned char *buf, size_t size, const char *what, kdi_npy *out);
/* The values as floats (u8 divided by 255 when scale_bytes), out [count]. */
void kdi_npy_floats(const kdi_npy *a, int scale_bytes, float *out);
/* The values as labels in [0, 2^31): integer types only, else KD_ERR_FORMAT naming what. */
kd_status kdi_npy_labels(const kdi_npy *a, const char *what, int32_t *out);
/* A whole file in memory (malloc'd). */
kd_status kdi_read_file(const char *path, unsigned char **buf, size_t *size);

#endif
