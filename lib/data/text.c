/* Text corpora for language models: a UTF-8 file read whole, byte-level tokens (V = 256), a
 * contiguous train/validation split, seeded random windows of T + 1 tokens. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/rng.h"

struct kd_text {
    unsigned char *data;
    int64_t n;     /* bytes */
    int64_t train; /* bytes in the training part, data[0 .. train); validation is the rest */
};

/* The length of the valid UTF-8 sequence at s[0 .. n), or 0 when it is not one. RFC 3629,
 * section 4 (Unicode's table 3-7): no overlong forms, no surrogates, nothing above U+10FFFF.
 * Own code rather than iconv: glibc's accepts code points above U+10FFFF. */
static int utf8_sequence(const unsigned char *s, int64_t n)
{
    unsigned char c = s[0];
    int len;
    unsigned char lo = 0x80, hi = 0xBF; /* the second byte's range */
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0; /* overlong */
        else if (c == 0xED)
            hi = 0x9F; /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90; /* overlong */
        else if (c == 0xF4)
            hi = 0x8F; /* above U+10FFFF */
    } else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi) return 0;
    for (int i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return len;
}

static kd_status check_utf8(const char *path, const unsigned char *s, int64_t n)
{
    for (int64_t i = 0; i < n;) {
        int len = utf8_sequence(s + i, n - i);
        if (len == 0)
            return kdi_fail(KD_ERR_FORMAT,
                            "%s is not UTF-8 text: byte %lld (0x%02X) does not start a valid "
                            "UTF-8 sequence",
                            path, (long long)i, (unsigned)s[i]);
        i += len;
    }
    return KD_OK;
}

/* Reads the whole file into *data (malloc'd), failing beyond limit bytes. Reads to the end rather
 * than trusting a size from stat: pipes and /proc files have none. */
static kd_status read_file(const char *path, int64_t limit, unsigned char **data, int64_t *n)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) return kdi_fail(KD_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    size_t cap = 0, len = 0;
    unsigned char *buf = NULL;
    kd_status st = KD_OK;
    for (;;) {
        if (len == cap) {
            /* grow by doubling, to at most limit + 1 bytes: enough to see the limit passed */
            size_t want = cap == 0 ? 1 << 16 : 2 * cap;
            if ((int64_t)want > limit + 1) want = (size_t)limit + 1;
            unsigned char *grown = kdi_realloc(buf, want);
            if (grown == NULL) {
                st = kdi_fail(KD_ERR_NOMEM, "cannot allocate %zu bytes for %s", want, path);
                break;
            }
            buf = grown;
            cap = want;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if ((int64_t)len > limit) {
            st = kdi_fail(KD_ERR_FORMAT, "%s is longer than the limit of %lld bytes", path,
                          (long long)limit);
            break;
        }
        if (got == 0) {
            if (ferror(f)) st = kdi_fail(KD_ERR_IO, "cannot read %s: %s", path, strerror(errno));
            break;
        }
    }
    fclose(f);
    if (st == KD_OK && len == 0) st = kdi_fail(KD_ERR_FORMAT, "%s is empty", path);
    if (st != KD_OK) {
        kdi_free(buf);
        return st;
    }
    *data = buf;
    *n = (int64_t)len;
    return KD_OK;
}

kd_status kd_text_open(const char *path, int64_t max_bytes, kd_text **out)
{
    KDI_CHECK_NULL(path);
    KDI_CHECK_NULL(out);
    if (max_bytes < 0)
        return kdi_fail(KD_ERR_ARGUMENT, "max_bytes is %lld; it must be >= 0 (0: the default)",
                        (long long)max_bytes);
    unsigned char *data = NULL;
    int64_t n = 0;
    KDI_TRY(read_file(path, max_bytes > 0 ? max_bytes : KD_TEXT_MAX_BYTES, &data, &n));
    kd_status st = check_utf8(path, data, n);
    kd_text *t = st == KD_OK ? kdi_malloc(sizeof *t) : NULL;
    if (st == KD_OK && t == NULL) st = kdi_fail(KD_ERR_NOMEM, "cannot allocate a text");
    if (st != KD_OK) {
        kdi_free(data);
        return st;
    }
    t->data = data;
    t->n = n;
    t->train = n - n / 10; /* kd_text_split(t, 0.1) */
    *out = t;
    return KD_OK;
}

void kd_text_destroy(kd_text *t)
{
    if (t == NULL) return;
    kdi_free(t->data);
    kdi_free(t);
}

kd_status kd_text_size(const kd_text *t, int64_t *bytes)
{
    KDI_CHECK_NULL(t);
    KDI_CHECK_NULL(bytes);
    *bytes = t->n;
    return KD_OK;
}

/* The bytes of a part: *start and *len. */
static kd_status part_range(const kd_text *t, kd_text_part part, int64_t *start, int64_t *len)
{
    if (part == KD_TEXT_TRAIN) {
        *start = 0;
        *len = t->train;
    } else if (part == KD_TEXT_VALIDATION) {
        *start = t->train;
        *len = t->n - t->train;
    } else {
        return kdi_fail(KD_ERR_ARGUMENT, "part %d is not a kd_text_part", (int)part);
    }
    return KD_OK;
}

kd_status kd_text_part_size(const kd_text *t, kd_text_part part, int64_t *bytes)
{
    KDI_CHECK_NULL(t);
    KDI_CHECK_NULL(bytes);
    int64_t start = 0;
    return part_range(t, part, &start, bytes);
}

kd_status kd_text_split(kd_text *t, float validation_fraction)
{
    KDI_CHECK_NULL(t);
    if (!(validation_fraction >= 0.0f && validation_fraction < 1.0f))
        return kdi_fail(KD_ERR_ARGUMENT, "validation_fraction %g must be in [0, 1)",
                        (double)validation_fraction);
    t->train = t->n - (int64_t)((double)t->n * (double)validation_fraction);
    return KD_OK;
}

kd_status kd_text_batch(const kd_text *t, kd_text_part part, int64_t batch, int64_t T,
                        uint64_t seed, int32_t *ids, int32_t *targets)
{
    KDI_CHECK_NULL(t);
    KDI_CHECK_NULL(ids);
    KDI_CHECK_NULL(targets);
    int64_t start = 0, len = 0;
    KDI_TRY(part_range(t, part, &start, &len));
    if (batch < 1 || T < 1)
        return kdi_fail(KD_ERR_ARGUMENT, "batch %lld and T %lld must be 1 or more",
                        (long long)batch, (long long)T);
    if (len < T + 1)
        return kdi_fail(
            KD_ERR_SHAPE, "the %s part holds %lld bytes; windows of T + 1 = %lld need that many",
            part == KD_TEXT_TRAIN ? "training" : "validation", (long long)len, (long long)T + 1);
    kdi_rng rng;
    kdi_rng_seed(&rng, seed);
    for (int64_t b = 0; b < batch; b++) {
        const unsigned char *w =
            t->data + start + (int64_t)kdi_rng_below(&rng, (uint64_t)(len - T));
        for (int64_t i = 0; i < T; i++) {
            ids[b * T + i] = w[i];
            targets[b * T + i] = w[i + 1];
        }
    }
    return KD_OK;
}

kd_status kd_text_tokens(const kd_text *t, kd_text_part part, int64_t offset, int64_t count,
                         int32_t *ids)
{
    KDI_CHECK_NULL(t);
    KDI_CHECK_NULL(ids);
    int64_t start = 0, len = 0;
    KDI_TRY(part_range(t, part, &start, &len));
    if (offset < 0 || count < 0 || offset > len || count > len - offset)
        return kdi_fail(KD_ERR_ARGUMENT,
                        "offset %lld and count %lld must lie within the part's %lld bytes",
                        (long long)offset, (long long)count, (long long)len);
    for (int64_t i = 0; i < count; i++) ids[i] = t->data[start + offset + i];
    return KD_OK;
}
