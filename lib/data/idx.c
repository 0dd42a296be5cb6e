/* IDX reader. zlib's gzread reads gzip and plain files alike. The header is checked before any
 * allocation, and the data buffer grows with what the file really holds, so a short file that
 * announces 2^31 values costs no more memory than its own size. */
#include "data/idx.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/limits.h"
#include "core/tensor.h"

#define FIRST_CHUNK (1LL << 16)

/* Reads up to n bytes; the count read, or -1 on a read or gzip error. */
static int64_t read_some(gzFile gz, void *buf, int64_t n)
{
    unsigned char *p = buf;
    int64_t done = 0;
    while (done < n) {
        int64_t left = n - done;
        int got = gzread(gz, p + done, left > (1 << 30) ? (1u << 30) : (unsigned)left);
        if (got < 0) return -1;
        if (got == 0) break;
        done += got;
    }
    return done;
}

static kd_status read_header(gzFile gz, const char *path, int32_t min_dims, int32_t max_dims,
                             kdi_idx *idx)
{
    unsigned char magic[4];
    if (read_some(gz, magic, 4) != 4)
        return kdi_fail(KD_ERR_FORMAT, "%s is too short for an IDX header (4 bytes)", path);
    if (magic[0] != 0 || magic[1] != 0)
        return kdi_fail(KD_ERR_FORMAT,
                        "%s is not an IDX file: its magic starts %02x %02x, not 00 00", path,
                        magic[0], magic[1]);
    if (magic[2] != 0x08)
        return kdi_fail(KD_ERR_FORMAT,
                        "%s holds IDX type 0x%02x; only unsigned bytes (0x08) are read", path,
                        magic[2]);
    idx->ndim = magic[3];
    if (idx->ndim < min_dims || idx->ndim > max_dims)
        return kdi_fail(KD_ERR_FORMAT, "%s has %d dimensions, expected %d to %d", path,
                        (int)idx->ndim, (int)min_dims, (int)max_dims);
    idx->count = 1;
    for (int32_t d = 0; d < idx->ndim; d++) {
        unsigned char b[4];
        if (read_some(gz, b, 4) != 4)
            return kdi_fail(KD_ERR_FORMAT, "%s: the IDX header is truncated in dimension %d", path,
                            (int)d);
        idx->dims[d] = (int64_t)b[0] << 24 | (int64_t)b[1] << 16 | (int64_t)b[2] << 8 | b[3];
        if (idx->dims[d] == 0)
            return kdi_fail(KD_ERR_FORMAT, "%s: dimension %d is 0", path, (int)d);
        if (!kdi_mul_ok(idx->count, idx->dims[d], &idx->count) || idx->count > KDI_IDX_MAX_VALUES)
            return kdi_fail(KD_ERR_FORMAT, "%s announces more than 2^31 values", path);
        if (idx->count > kdi_limit(KD_LIMIT_FILE_BYTES))
            return kdi_fail(KD_ERR_FORMAT,
                            "%s announces %lld data bytes, above the limit of %lld "
                            "(KD_LIMIT_FILE_BYTES)",
                            path, (long long)idx->count, (long long)kdi_limit(KD_LIMIT_FILE_BYTES));
    }
    return KD_OK;
}

/* The announced count bytes, in a buffer doubled as the data arrives. */
static kd_status read_data(gzFile gz, const char *path, kdi_idx *idx)
{
    int64_t cap = idx->count < FIRST_CHUNK ? idx->count : FIRST_CHUNK, have = 0;
    uint8_t *data = NULL;
    for (;;) {
        uint8_t *grown = kdi_realloc(data, (size_t)cap);
        if (grown == NULL) {
            kdi_free(data);
            return kdi_fail(KD_ERR_NOMEM, "cannot allocate %lld bytes for %s", (long long)cap,
                            path);
        }
        data = grown;
        int64_t got = read_some(gz, data + have, cap - have);
        if (got < 0 || have + got < cap) {
            kdi_free(data);
            int err;
            const char *why = got < 0 ? gzerror(gz, &err) : "the file ends";
            return kdi_fail(KD_ERR_FORMAT,
                            "%s is truncated or corrupt: its header announces %lld data bytes, %s "
                            "after %lld",
                            path, (long long)idx->count, why,
                            (long long)(have + (got > 0 ? got : 0)));
        }
        have = cap;
        if (have == idx->count) break;
        cap = idx->count - cap < cap ? idx->count : 2 * cap;
    }
    idx->data = data;
    return KD_OK;
}

/* Nothing may follow the announced values (a longer file is another file), and a gzip stream
 * must end whole: gzread reports a missing trailer (its CRC and length) only through gzerror. */
static kd_status check_end(gzFile gz, const char *path, const kdi_idx *idx)
{
    unsigned char extra;
    int got = gzread(gz, &extra, 1), err;
    const char *why = gzerror(gz, &err);
    if (got == 0 && err == Z_OK) return KD_OK;
    return kdi_fail(KD_ERR_FORMAT, "%s: %s after its announced %lld data bytes", path,
                    got > 0 ? "more bytes" : why, (long long)idx->count);
}

static kd_status open_idx(const char *path, gzFile *gz)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) return kdi_fail(KD_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return kdi_fail(KD_ERR_IO, "%s is not a regular file", path);
    }
    *gz = gzdopen(fd, "rb");
    if (*gz == NULL) {
        close(fd);
        return kdi_fail(KD_ERR_NOMEM, "cannot start reading %s", path);
    }
    gzbuffer(*gz, 1 << 17);
    return KD_OK;
}

kd_status kdi_idx_read(const char *path, int32_t min_dims, int32_t max_dims, kdi_idx *out)
{
    KDI_CHECK_NULL(path);
    KDI_CHECK_NULL(out);
    gzFile gz;
    KDI_TRY(open_idx(path, &gz));
    kdi_idx idx = {0};
    kd_status st = read_header(gz, path, min_dims, max_dims, &idx);
    if (st == KD_OK) st = read_data(gz, path, &idx);
    if (st == KD_OK) st = check_end(gz, path, &idx);
    gzclose(gz);
    if (st != KD_OK) {
        kdi_free(idx.data);
        return st;
    }
    *out = idx;
    return KD_OK;
}

void kdi_idx_free(kdi_idx *idx)
{
    if (idx == NULL) return;
    kdi_free(idx->data);
    memset(idx, 0, sizeof *idx);
}
