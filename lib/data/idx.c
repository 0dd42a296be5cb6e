/* IDX reader. zlib's gzread reads gzip and plain files alike. The header is checked before any
 * allocation. The data buffer is allocated whole only when the file's own size vouches for the
 * announced count (a plain file's length, a gzip stream's length trailer); otherwise it grows with
 * what the file really holds, so a short file that announces 2^31 values costs no more memory than
 * its own size. */
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

/* zlib's reason for the last error, without the "<fd:N>: " it names a gzdopen'ed file by (the
 * messages name the path themselves). */
static const char *gz_reason(gzFile gz)
{
    int err;
    const char *why = gzerror(gz, &err);
    const char *colon = strncmp(why, "<fd:", 4) == 0 ? strstr(why, ": ") : NULL;
    return colon != NULL ? colon + 2 : why;
}

static kd_status read_header(gzFile gz, const char *path, int32_t min_dims, int32_t max_dims,
                             kdi_idx *idx)
{
    unsigned char magic[4];
    int64_t got = read_some(gz, magic, 4);
    if (got < 0) /* zlib inflates ahead: a small stream's damage shows at the first read */
        return kdi_fail(KD_ERR_FORMAT, "%s is corrupt: %s", path, gz_reason(gz));
    if (got != 4)
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

/* have: the data bytes read; failed: a read error (zlib's reason), not the file's end. */
static kd_status truncated(gzFile gz, const char *path, const kdi_idx *idx, int64_t have,
                           int failed)
{
    const char *why = failed ? gz_reason(gz) : "the file ends";
    return kdi_fail(KD_ERR_FORMAT,
                    "%s is truncated or corrupt: its header announces %lld data bytes, %s after "
                    "%lld",
                    path, (long long)idx->count, why, (long long)have);
}

/* The announced count bytes, in a buffer doubled as the data arrives (from the whole count when
 * the file vouches for it and that much can be had: else a forged trailer would turn a format
 * error into an allocation failure). */
static kd_status read_data(gzFile gz, const char *path, int vouched, kdi_idx *idx)
{
    uint8_t *data = vouched ? kdi_malloc((size_t)idx->count) : NULL;
    int64_t cap = data != NULL || idx->count < FIRST_CHUNK ? idx->count : FIRST_CHUNK, have = 0;
    for (int whole = data != NULL;; whole = 0) {
        uint8_t *grown = whole ? data : kdi_realloc(data, (size_t)cap);
        if (grown == NULL) {
            kdi_free(data);
            return kdi_fail(KD_ERR_NOMEM, "cannot allocate %lld bytes for %s", (long long)cap,
                            path);
        }
        data = grown;
        int64_t got = read_some(gz, data + have, cap - have);
        if (got < 0 || have + got < cap) {
            kdi_free(data);
            return truncated(gz, path, idx, have + (got > 0 ? got : 0), got < 0);
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
    gzerror(gz, &err);
    if (got == 0 && err == Z_OK) return KD_OK;
    return kdi_fail(KD_ERR_FORMAT, "%s: %s after its announced %lld data bytes", path,
                    got > 0 ? "more bytes" : gz_reason(gz), (long long)idx->count);
}

static kd_status open_idx(const char *path, gzFile *gz, int *fd_out)
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
    *fd_out = fd;
    return KD_OK;
}

/* Whether the file (fd, read by zlib from offset 0) holds the header and count bytes the header
 * announces: a plain file's size, or a gzip stream's ISIZE trailer (its length mod 2^32). Only
 * the first allocation depends on it; the data is checked as it arrives either way. */
static int size_vouches(int fd, const kdi_idx *idx)
{
    int64_t bytes = 4 + 4 * (int64_t)idx->ndim + idx->count;
    struct stat sb;
    unsigned char m[4];
    if (fstat(fd, &sb) != 0 || pread(fd, m, 2, 0) != 2) return 0;
    if (m[0] != 0x1f || m[1] != 0x8b) return (int64_t)sb.st_size == bytes;
    /* deflate expands at most 1032 times: a trailer that claims more is not believed */
    if (sb.st_size < 18 || (bytes + 1031) / 1032 > (int64_t)sb.st_size ||
        pread(fd, m, 4, sb.st_size - 4) != 4)
        return 0;
    uint32_t isize =
        (uint32_t)m[0] | (uint32_t)m[1] << 8 | (uint32_t)m[2] << 16 | (uint32_t)m[3] << 24;
    return isize == (uint32_t)bytes;
}

/* v[i] = b[i] / divisor: a division, not a multiplication by 1 / divisor, so the same floats as
 * PyTorch's ToTensor. */
static void to_floats(float *v, const uint8_t *b, int64_t n, float divisor)
{
    for (int64_t i = 0; i < n; i++) v[i] = (float)b[i] / divisor;
}

/* The announced count values as floats, byte / divisor, converted a chunk at a time into v, one
 * allocation of count floats, which it owns: the bytes are never held whole (Fashion-MNIST's
 * 47 MB). Its pages are touched only as the data arrives, so a forged gzip trailer costs address
 * space, not memory. */
static kd_status read_floats(gzFile gz, const char *path, float divisor, float *v, kdi_idx *idx)
{
    unsigned char chunk[1 << 14];
    for (int64_t have = 0; have < idx->count;) {
        int64_t want =
            idx->count - have < (int64_t)sizeof chunk ? idx->count - have : (int64_t)sizeof chunk;
        int64_t got = read_some(gz, chunk, want);
        if (got < want) {
            kdi_free_floats(v);
            return truncated(gz, path, idx, have + (got > 0 ? got : 0), got < 0);
        }
        to_floats(v + have, chunk, got, divisor);
        have += got;
    }
    idx->values = v;
    return KD_OK;
}

static kd_status read_idx(const char *path, int32_t min_dims, int32_t max_dims, float divisor,
                          kdi_idx *out)
{
    KDI_CHECK_NULL(path);
    KDI_CHECK_NULL(out);
    gzFile gz;
    int fd = -1;
    KDI_TRY(open_idx(path, &gz, &fd));
    kdi_idx idx = {0};
    kd_status st = read_header(gz, path, min_dims, max_dims, &idx);
    int vouched = st == KD_OK && size_vouches(fd, &idx);
    /* NULL: the whole count cannot be had before any data came; the growing buffer decides */
    float *v = st == KD_OK && divisor > 0.0f && vouched ? kdi_alloc_floats_raw(idx.count) : NULL;
    if (v != NULL) {
        st = read_floats(gz, path, divisor, v, &idx);
    } else if (st == KD_OK) {
        st = read_data(gz, path, vouched, &idx);
        if (st == KD_OK && divisor > 0.0f) { /* a file that did not vouch: rare, converted whole */
            idx.values = kdi_alloc_floats_raw(idx.count);
            if (idx.values == NULL)
                st = kdi_fail(KD_ERR_NOMEM, "cannot allocate %lld floats for %s",
                              (long long)idx.count, path);
            else
                to_floats(idx.values, idx.data, idx.count, divisor);
            kdi_free(idx.data);
            idx.data = NULL;
        }
    }
    if (st == KD_OK) st = check_end(gz, path, &idx);
    gzclose(gz);
    if (st != KD_OK) {
        kdi_idx_free(&idx);
        return st;
    }
    *out = idx;
    return KD_OK;
}

kd_status kdi_idx_read(const char *path, int32_t min_dims, int32_t max_dims, kdi_idx *out)
{
    return read_idx(path, min_dims, max_dims, 0.0f, out);
}

kd_status kdi_idx_read_floats(const char *path, int32_t min_dims, int32_t max_dims, float divisor,
                              kdi_idx *out)
{
    return read_idx(path, min_dims, max_dims, divisor, out);
}

void kdi_idx_free(kdi_idx *idx)
{
    if (idx == NULL) return;
    kdi_free(idx->data);
    kdi_free_floats(idx->values);
    memset(idx, 0, sizeof *idx);
}
