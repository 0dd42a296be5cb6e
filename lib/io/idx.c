#include "idx.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "error.h"
#include "tensor.h"

/* Reads exactly n bytes; gzread takes at most INT_MAX at a time. */
static int read_exact(gzFile gz, void *buf, int64_t n)
{
    unsigned char *p = buf;
    while (n > 0) {
        unsigned chunk = n > (1 << 30) ? (1u << 30) : (unsigned)n;
        int got = gzread(gz, p, chunk);
        if (got <= 0) return 0;
        p += got;
        n -= got;
    }
    return 1;
}

static kd_status read_header(gzFile gz, const char *path, int32_t min_dims, int32_t max_dims,
                             kdi_idx *idx)
{
    unsigned char magic[4];
    if (!read_exact(gz, magic, 4))
        return kdi_fail(KD_ERR_FORMAT, "%s is too short for an IDX header", path);
    if (magic[0] != 0 || magic[1] != 0)
        return kdi_fail(KD_ERR_FORMAT, "%s is not an IDX file (bad magic)", path);
    if (magic[2] != 0x08)
        return kdi_fail(KD_ERR_FORMAT, "%s holds IDX type 0x%02x; only unsigned bytes (0x08) are read",
                        path, magic[2]);
    idx->ndim = magic[3];
    if (idx->ndim < min_dims || idx->ndim > max_dims)
        return kdi_fail(KD_ERR_FORMAT, "%s has %d dimensions, expected %d to %d", path,
                        (int)idx->ndim, (int)min_dims, (int)max_dims);
    idx->count = 1;
    for (int32_t d = 0; d < idx->ndim; d++) {
        unsigned char b[4];
        if (!read_exact(gz, b, 4)) return kdi_fail(KD_ERR_FORMAT, "%s: truncated IDX header", path);
        idx->dims[d] = (int64_t)b[0] << 24 | (int64_t)b[1] << 16 | (int64_t)b[2] << 8 | b[3];
        if (idx->dims[d] == 0) return kdi_fail(KD_ERR_FORMAT, "%s: dimension %d is 0", path, (int)d);
        if (!kdi_mul_ok(idx->count, idx->dims[d], &idx->count) || idx->count > KDI_IDX_MAX_VALUES)
            return kdi_fail(KD_ERR_FORMAT, "%s announces more than 2^31 values", path);
    }
    return KD_OK;
}

kd_status kdi_idx_read(const char *path, int32_t min_dims, int32_t max_dims, kdi_idx *out)
{
    KDI_CHECK_NULL(path);
    gzFile gz = gzopen(path, "rb");
    if (gz == NULL) return kdi_fail(KD_ERR_IO, "cannot open %s", path);
    kdi_idx idx = {0};
    kd_status st = read_header(gz, path, min_dims, max_dims, &idx);
    if (st == KD_OK && (idx.data = malloc((size_t)idx.count)) == NULL)
        st = kdi_fail(KD_ERR_NOMEM, "cannot allocate %lld bytes for %s", (long long)idx.count, path);
    if (st == KD_OK && !read_exact(gz, idx.data, idx.count))
        st = kdi_fail(KD_ERR_FORMAT, "%s is truncated: it announces %lld data bytes", path,
                      (long long)idx.count);
    unsigned char extra;
    if (st == KD_OK && gzread(gz, &extra, 1) != 0)
        st = kdi_fail(KD_ERR_FORMAT, "%s has bytes after its announced %lld values (or a gzip error)",
                      path, (long long)idx.count);
    gzclose(gz);
    if (st != KD_OK) {
        free(idx.data);
        return st;
    }
    *out = idx;
    return KD_OK;
}

void kdi_idx_free(kdi_idx *idx)
{
    free(idx->data);
    memset(idx, 0, sizeof *idx);
}
