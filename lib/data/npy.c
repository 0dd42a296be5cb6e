/* The .npy parser. The header is a Python literal, parsed as numpy.lib.format writes it and no
 * further: a dict of exactly 'descr', 'fortran_order' and 'shape', strings in single quotes, a
 * tuple of integers. Sizes are checked against the buffer before anything is allocated. */
#include "data/npy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/tensor.h"
#include "io/atomic.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the .npy reader converts little-endian data; this build assumes a little-endian host"
#endif

typedef struct cursor {
    const char *p, *end;
    const char *what;
} cursor;

static void ws(cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n')) c->p++;
}

static int eat(cursor *c, char ch)
{
    ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return 1;
    }
    return 0;
}

static kd_status bad(const cursor *c, const char *expected)
{
    return kdi_fail(KD_ERR_FORMAT, "%s: the .npy header expects %s", c->what, expected);
}

/* A quoted Python string of at most cap - 1 plain characters. */
static kd_status string(cursor *c, char *out, size_t cap)
{
    ws(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"')) return bad(c, "a quoted string");
    char q = *c->p++;
    size_t n = 0;
    while (c->p < c->end && *c->p != q) {
        if (*c->p == '\\' || n + 1 >= cap) return bad(c, "a short string without escapes");
        out[n++] = *c->p++;
    }
    if (c->p >= c->end) return bad(c, "a closing quote");
    c->p++;
    out[n] = '\0';
    return KD_OK;
}

static const struct {
    const char *descr;
    kdi_npy_type type;
    int64_t size;
} types[] = {
    {"<f4", KDI_NPY_F32, 4}, {"<f8", KDI_NPY_F64, 8}, {"|u1", KDI_NPY_U8, 1},
    {"<u1", KDI_NPY_U8, 1},  {"<i4", KDI_NPY_I32, 4}, {"<i8", KDI_NPY_I64, 8},
};

static kd_status descr(cursor *c, kdi_npy *a, int64_t *size)
{
    char s[32];
    KDI_TRY(string(c, s, sizeof s));
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (strcmp(s, types[i].descr) == 0) {
            a->type = types[i].type;
            *size = types[i].size;
            return KD_OK;
        }
    if (s[0] == '>')
        return kdi_fail(KD_ERR_FORMAT,
                        "%s holds big-endian data ('%s'); save it little-endian "
                        "(arr.astype(arr.dtype.newbyteorder('<')))",
                        c->what, s);
    return kdi_fail(KD_ERR_FORMAT,
                    "%s has dtype '%s'; expected float32, float64, uint8, int32 or int64 "
                    "('<f4', '<f8', '|u1', '<i4', '<i8')",
                    c->what, s);
}

static kd_status fortran(cursor *c)
{
    ws(c);
    if (c->end - c->p >= 5 && memcmp(c->p, "False", 5) == 0) {
        c->p += 5;
        return KD_OK;
    }
    if (c->end - c->p >= 4 && memcmp(c->p, "True", 4) == 0)
        return kdi_fail(KD_ERR_FORMAT,
                        "%s is in Fortran (column-major) order; save it in C order "
                        "(numpy.ascontiguousarray)",
                        c->what);
    return bad(c, "True or False after 'fortran_order'");
}

static kd_status shape(cursor *c, kdi_npy *a)
{
    if (!eat(c, '(')) return bad(c, "a tuple after 'shape'");
    a->ndim = 0;
    a->count = 1;
    for (;;) {
        if (eat(c, ')')) return KD_OK;
        if (a->ndim == KDI_NPY_MAX_DIMS)
            return kdi_fail(KD_ERR_FORMAT, "%s has more than %d dimensions", c->what,
                            KDI_NPY_MAX_DIMS);
        ws(c);
        int64_t v = 0;
        const char *start = c->p;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
            if (v > (INT64_MAX - 9) / 10) return bad(c, "dimensions below 2^63");
            v = v * 10 + (*c->p++ - '0');
        }
        if (c->p == start) return bad(c, "a non-negative integer in 'shape'");
        a->dims[a->ndim++] = v;
        if (!kdi_mul_ok(a->count, v, &a->count) || a->count > KDI_NPY_MAX_VALUES)
            return kdi_fail(KD_ERR_FORMAT, "%s holds more than %lld values", c->what,
                            (long long)KDI_NPY_MAX_VALUES);
        if (!eat(c, ',')) {
            if (eat(c, ')')) return KD_OK;
            return bad(c, "',' or ')' in 'shape'");
        }
    }
}

static kd_status dict(cursor *c, kdi_npy *a, int64_t *esize)
{
    int seen = 0;
    if (!eat(c, '{')) return bad(c, "a dict");
    while (!eat(c, '}')) {
        char key[32];
        KDI_TRY(string(c, key, sizeof key));
        if (!eat(c, ':')) return bad(c, "':' after a key");
        int bit = strcmp(key, "descr") == 0           ? 1
                  : strcmp(key, "fortran_order") == 0 ? 2
                  : strcmp(key, "shape") == 0         ? 4
                                                      : 0;
        if (bit == 0 || (seen & bit))
            return kdi_fail(KD_ERR_FORMAT, "%s: the .npy header has %s key '%s'", c->what,
                            bit ? "a repeated" : "an unknown", key);
        seen |= bit;
        KDI_TRY(bit == 1 ? descr(c, a, esize) : bit == 2 ? fortran(c) : shape(c, a));
        if (!eat(c, ',')) {
            if (eat(c, '}')) break;
            return bad(c, "',' or '}'");
        }
    }
    if (seen != 7) return bad(c, "the keys 'descr', 'fortran_order' and 'shape'");
    ws(c);
    if (c->p != c->end) return bad(c, "nothing but spaces after the dict");
    return KD_OK;
}

kd_status kdi_npy_parse(const unsigned char *buf, size_t size, const char *what, kdi_npy *out)
{
    if (size < 10 || memcmp(buf, "\x93NUMPY", 6) != 0)
        return kdi_fail(KD_ERR_FORMAT, "%s is not a .npy file (no \\x93NUMPY magic)", what);
    int major = buf[6], minor = buf[7];
    if (major < 1 || major > 3 || minor != 0)
        return kdi_fail(KD_ERR_FORMAT, "%s is .npy version %d.%d; 1.0, 2.0 and 3.0 are read", what,
                        major, minor);
    size_t at = major == 1 ? 10 : 12;
    if (size < at) return kdi_fail(KD_ERR_FORMAT, "%s: the .npy header is truncated", what);
    uint64_t hlen = (uint64_t)buf[8] | (uint64_t)buf[9] << 8;
    if (major > 1) hlen |= (uint64_t)buf[10] << 16 | (uint64_t)buf[11] << 24;
    if (hlen > size - at)
        return kdi_fail(KD_ERR_FORMAT, "%s: the .npy header of %llu bytes is truncated", what,
                        (unsigned long long)hlen);
    const char *h = (const char *)buf + at;
    if (hlen == 0 || h[hlen - 1] != '\n')
        return kdi_fail(KD_ERR_FORMAT, "%s: the .npy header does not end in a newline", what);
    cursor c = {h, h + hlen, what};
    kdi_npy a = {0};
    int64_t esize = 0;
    KDI_TRY(dict(&c, &a, &esize));
    size_t start = at + (size_t)hlen;
    int64_t want = a.count * esize; /* below 2^34: count <= 2^31, esize <= 8 */
    if ((uint64_t)(size - start) != (uint64_t)want)
        return kdi_fail(KD_ERR_FORMAT,
                        "%s: the header announces %lld values (%lld bytes) but %llu bytes follow "
                        "(%s)",
                        what, (long long)a.count, (long long)want,
                        (unsigned long long)(size - start),
                        (int64_t)(size - start) < want ? "truncated" : "trailing bytes");
    a.data = buf + start;
    *out = a;
    return KD_OK;
}

void kdi_npy_floats(const kdi_npy *a, int scale_bytes, float *out)
{
    const unsigned char *p = a->data;
    for (int64_t i = 0; i < a->count; i++) {
        switch (a->type) {
        case KDI_NPY_F32: memcpy(&out[i], p + 4 * i, 4); break;
        case KDI_NPY_F64: {
            double v;
            memcpy(&v, p + 8 * i, 8);
            out[i] = (float)v;
            break;
        }
        case KDI_NPY_U8: out[i] = scale_bytes ? (float)p[i] / 255.0f : (float)p[i]; break;
        case KDI_NPY_I32: {
            int32_t v;
            memcpy(&v, p + 4 * i, 4);
            out[i] = (float)v;
            break;
        }
        case KDI_NPY_I64: {
            int64_t v;
            memcpy(&v, p + 8 * i, 8);
            out[i] = (float)v;
            break;
        }
        }
    }
}

kd_status kdi_npy_labels(const kdi_npy *a, const char *what, int32_t *out)
{
    if (a->type == KDI_NPY_F32 || a->type == KDI_NPY_F64)
        return kdi_fail(KD_ERR_FORMAT,
                        "%s holds floats; labels must be integers (uint8, int32 or int64; "
                        "labels.astype(numpy.int64))",
                        what);
    const unsigned char *p = a->data;
    for (int64_t i = 0; i < a->count; i++) {
        int64_t v;
        if (a->type == KDI_NPY_U8) {
            v = p[i];
        } else if (a->type == KDI_NPY_I32) {
            int32_t x;
            memcpy(&x, p + 4 * i, 4);
            v = x;
        } else {
            memcpy(&v, p + 8 * i, 8);
        }
        if (v < 0 || v > INT32_MAX)
            return kdi_fail(KD_ERR_FORMAT, "%s: label %lld (at %lld) is outside 0..2^31-1", what,
                            (long long)v, (long long)i);
        out[i] = (int32_t)v;
    }
    return KD_OK;
}

kd_status kdi_read_file(const char *path, unsigned char **buf, size_t *size)
{
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) return kdi_fail(KD_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    kd_status st = KD_OK;
    unsigned char *b = NULL;
    if (fstat(fileno(fp), &sb) != 0 || !S_ISREG(sb.st_mode))
        st = kdi_fail(KD_ERR_IO, "%s is not a regular file", path);
    else if ((b = kdi_malloc(sb.st_size > 0 ? (size_t)sb.st_size : 1)) == NULL)
        st = kdi_fail(KD_ERR_NOMEM, "cannot allocate %lld bytes for %s", (long long)sb.st_size,
                      path);
    else if (fread(b, 1, (size_t)sb.st_size, fp) != (size_t)sb.st_size)
        st = kdi_fail(KD_ERR_IO, "cannot read %s", path);
    fclose(fp);
    if (st != KD_OK) {
        kdi_free(b);
        return st;
    }
    *buf = b;
    *size = (size_t)sb.st_size;
    return KD_OK;
}

/* ---------------------------------------------------------------- the writer */

/* The header numpy.lib.format writes for version 1.0: the dict, spaces, a newline, the whole
 * preamble a multiple of 64 bytes so the data is aligned. */
static kd_status npy_header(kd_dtype dtype, int32_t ndim, const int64_t *dims, char *out,
                            size_t cap, size_t *len)
{
    static const char *const descr[] = {"<f4", "<i4", "<i8"};
    int n = snprintf(out + 10, cap - 10, "{'descr': '%s', 'fortran_order': False, 'shape': (",
                     descr[dtype]);
    for (int32_t d = 0; d < ndim; d++)
        n += snprintf(out + 10 + n, cap - 10 - (size_t)n, "%lld%s", (long long)dims[d],
                      ndim == 1      ? ","
                      : d + 1 < ndim ? ", "
                                     : "");
    n += snprintf(out + 10 + n, cap - 10 - (size_t)n, "), }");
    size_t total = 10 + (size_t)n + 1;
    total = (total + 63) / 64 * 64;
    if (total > cap) return kdi_fail(KD_ERR_ARGUMENT, "the .npy header would be too long");
    memset(out + 10 + n, ' ', total - 10 - (size_t)n - 1);
    out[total - 1] = '\n';
    memcpy(out, "\x93NUMPY\x01\x00", 8);
    out[8] = (char)((total - 10) & 0xFF);
    out[9] = (char)((total - 10) >> 8);
    *len = total;
    return KD_OK;
}

typedef struct npy_body {
    const char *header;
    size_t hlen;
    const void *data;
    int64_t nbytes;
} npy_body;

static int write_npy(FILE *fp, const void *ctx)
{
    const npy_body *b = ctx;
    return fwrite(b->header, 1, b->hlen, fp) == b->hlen &&
           (b->nbytes == 0 || fwrite(b->data, 1, (size_t)b->nbytes, fp) == (size_t)b->nbytes);
}

kd_status kd_npy_save(const char *path, kd_dtype dtype, int32_t ndim, const int64_t *dims,
                      const void *data)
{
    KDI_CHECK_NULL(path);
    if (dtype != KD_DTYPE_F32 && dtype != KD_DTYPE_I32 && dtype != KD_DTYPE_I64)
        return kdi_fail(KD_ERR_ARGUMENT, "dtype %d is not a kd_dtype", (int)dtype);
    if (ndim < 0 || ndim > KDI_NPY_MAX_DIMS || (ndim > 0 && dims == NULL))
        return kdi_fail(KD_ERR_ARGUMENT, "ndim %d must be 0 to %d, with dims", (int)ndim,
                        KDI_NPY_MAX_DIMS);
    int64_t bytes = dtype == KD_DTYPE_I64 ? 8 : 4;
    for (int32_t d = 0; d < ndim; d++)
        if (dims[d] < 0 || !kdi_mul_ok(bytes, dims[d], &bytes) || bytes > (INT64_C(1) << 62))
            return kdi_fail(KD_ERR_ARGUMENT, "dimension %d is negative or too large", (int)d);
    if (bytes > 0 && data == NULL) return kdi_fail(KD_ERR_ARGUMENT, "data is NULL");
    char header[512];
    size_t hlen = 0;
    KDI_TRY(npy_header(dtype, ndim, dims, header, sizeof header, &hlen));
    npy_body body = {header, hlen, data, bytes};
    return kdi_write_atomic(path, write_npy, &body);
}
