/* safetensors reader and writer. The reader trusts nothing: the header length, every byte of the
 * JSON, every shape and offset are checked before a pointer into the data is formed. The rules are
 * the reference implementation's (huggingface/safetensors, safetensors/src/tensor.rs): a header of
 * at most 100,000,000 bytes of UTF-8 JSON, no duplicate keys, and data offsets that tile the data
 * section exactly -- no overlap, no gap, nothing after the last tensor -- whatever the order of
 * the entries in the JSON. */
#include "io/safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/limits.h"
#include "core/tensor.h"
#include "io/atomic.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; this build assumes a little-endian host"
#endif

/* The reference's limit (MAX_HEADER_SIZE), so both accept the same files. */
#define MAX_HEADER 100000000LL
#define META_KEY "__metadata__"

/* ---------------------------------------------------------------- UTF-8 */

/* Length of the well-formed UTF-8 sequence at s (RFC 3629: no overlong forms, no surrogates,
 * nothing above U+10FFFF), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    if (s[0] < 0x80) return 1;
    size_t len = s[0] >= 0xF0 ? 4 : s[0] >= 0xE0 ? 3 : s[0] >= 0xC2 ? 2 : 0;
    if (len == 0 || s[0] > 0xF4 || len > n) return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    if ((s[0] == 0xE0 && s[1] < 0xA0) || (s[0] == 0xED && s[1] > 0x9F) ||
        (s[0] == 0xF0 && s[1] < 0x90) || (s[0] == 0xF4 && s[1] > 0x8F))
        return 0;
    return len;
}

int kdi_utf8_valid(const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0, k; i < n; i += k)
        if ((k = utf8_seq(s + i, n - i)) == 0) return 0;
    return 1;
}

/* ---------------------------------------------------------------- a JSON subset */

typedef struct json {
    const char *start, *p, *end;
    const char *path;
} json;

static void skip_ws(json *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static kd_status expect(json *j, char c)
{
    skip_ws(j);
    if (j->p >= j->end || *j->p != c)
        return kdi_fail(KD_ERR_FORMAT, "%s: the header's JSON expects '%c' at byte %lld", j->path,
                        c, (long long)(j->p - j->start));
    j->p++;
    return KD_OK;
}

static int peek(json *j, char c)
{
    skip_ws(j);
    return j->p < j->end && *j->p == c;
}

/* After an opening bracket: *more is 0 (and the closing bracket consumed) when it is empty. */
static kd_status first_or_end(json *j, char close, int *more)
{
    *more = !peek(j, close);
    return *more ? KD_OK : expect(j, close);
}

/* After a key's value or an element: a comma, or the closing bracket. */
static kd_status next_or_end(json *j, char close, int *more)
{
    *more = peek(j, ',');
    if (!*more && !peek(j, close))
        return kdi_fail(KD_ERR_FORMAT, "%s: the header's JSON expects ',' or '%c' at byte %lld",
                        j->path, close, (long long)(j->p - j->start));
    j->p++;
    return KD_OK;
}

static int hex4(const char *s, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return 0;
    }
    *out = v;
    return 1;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* \uXXXX at c (c points at the 'u'), with a surrogate pair when there is one; returns the escape's
 * length after the backslash, or 0 when malformed. NUL is refused: names are C strings. */
static size_t unicode_escape(const char *c, const char *end, unsigned *cp)
{
    unsigned lo;
    if (end - c < 5 || !hex4(c + 1, cp)) return 0;
    if (*cp >= 0xDC00 && *cp < 0xE000) return 0;
    if (*cp < 0xD800 || *cp >= 0xDC00) return *cp != 0 ? 5 : 0;
    if (end - c < 11 || c[5] != '\\' || c[6] != 'u' || !hex4(c + 7, &lo) || lo < 0xDC00 ||
        lo >= 0xE000)
        return 0;
    *cp = 0x10000 + ((*cp - 0xD800) << 10) + (lo - 0xDC00);
    return 11;
}

/* Unescapes s[0, len) into o, which has room for len + 1 bytes (an escape never grows). */
static int unescape(const char *s, size_t len, char *o)
{
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    const char *end = s + len;
    for (const char *c = s; c < end;) {
        if ((unsigned char)*c < 0x20) return 0;
        if (*c != '\\') {
            *o++ = *c++;
            continue;
        }
        c++; /* the scan guarantees a character after every backslash */
        const char *hit = *c != '\0' ? strchr(from, *c) : NULL;
        if (hit != NULL) {
            *o++ = to[hit - from];
            c++;
            continue;
        }
        unsigned cp;
        size_t k = *c == 'u' ? unicode_escape(c, end, &cp) : 0;
        if (k == 0) return 0;
        o += put_utf8(o, cp);
        c += k;
    }
    *o = '\0';
    return 1;
}

/* A JSON string, unescaped into a heap copy. */
static kd_status parse_string(json *j, char **out)
{
    KDI_TRY(expect(j, '"'));
    const char *s = j->p;
    for (;;) {
        if (j->p >= j->end)
            return kdi_fail(KD_ERR_FORMAT, "%s: a string in the header is not terminated", j->path);
        if (*j->p == '"') break;
        j->p += *j->p == '\\' && j->end - j->p > 1 ? 2 : 1;
    }
    size_t len = (size_t)(j->p - s);
    j->p++;
    char *o = kdi_malloc(len + 1);
    if (o == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot allocate a header string");
    if (!unescape(s, len, o)) {
        kdi_free(o);
        return kdi_fail(KD_ERR_FORMAT,
                        "%s: a header string has a bad escape or a control character", j->path);
    }
    *out = o;
    return KD_OK;
}

/* A non-negative integer as JSON writes it (no sign, no leading zero, no fraction). */
static kd_status parse_uint(json *j, int64_t *out)
{
    skip_ws(j);
    const char *start = j->p;
    int64_t v = 0;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
        if (v > (INT64_MAX - 9) / 10)
            return kdi_fail(KD_ERR_FORMAT, "%s: a number in the header is above 2^63", j->path);
        v = v * 10 + (*j->p++ - '0');
    }
    if (j->p == start || (*start == '0' && j->p - start > 1))
        return kdi_fail(KD_ERR_FORMAT, "%s: the header expects a non-negative integer", j->path);
    *out = v;
    return KD_OK;
}

/* [n, n, ...] of at most max integers. */
static kd_status parse_uint_array(json *j, int64_t *v, int32_t max, int32_t *n)
{
    int more;
    *n = 0;
    KDI_TRY(expect(j, '['));
    KDI_TRY(first_or_end(j, ']', &more));
    while (more) {
        if (*n == max)
            return kdi_fail(KD_ERR_FORMAT, "%s: an array in the header has more than %d entries",
                            j->path, (int)max);
        KDI_TRY(parse_uint(j, &v[(*n)++]));
        KDI_TRY(next_or_end(j, ']', &more));
    }
    return KD_OK;
}

/* Names sorted by strcmp, for duplicate checks in O(n log n) even on hostile headers. */
static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* 1 and *dup when two of names[0, n) are equal; -1 when out of memory. */
static int find_duplicate(const char *const *names, int32_t n, const char **dup)
{
    if (n < 2) return 0;
    const char **s = kdi_malloc(sizeof *s * (size_t)n);
    if (s == NULL) return -1;
    memcpy(s, names, sizeof *s * (size_t)n);
    qsort(s, (size_t)n, sizeof *s, cmp_str);
    int found = 0;
    for (int32_t i = 1; !found && i < n; i++)
        if (strcmp(s[i], s[i - 1]) == 0) {
            *dup = s[i]; /* the caller's string: only the array of pointers is a copy */
            found = 1;
        }
    kdi_free(s);
    return found;
}

/* ---------------------------------------------------------------- the reader */

static const struct dtype_info {
    const char *name;
    int64_t size;
    kdi_st_dtype dtype;
} dtypes[] = {
    {"F32", 4, KDI_ST_F32},       {"I64", 8, KDI_ST_I64},       {"F64", 8, KDI_ST_OTHER},
    {"F16", 2, KDI_ST_OTHER},     {"BF16", 2, KDI_ST_OTHER},    {"I32", 4, KDI_ST_I32},
    {"I16", 2, KDI_ST_OTHER},     {"I8", 1, KDI_ST_I8},         {"U8", 1, KDI_ST_U8},
    {"U16", 2, KDI_ST_OTHER},     {"U32", 4, KDI_ST_OTHER},     {"U64", 8, KDI_ST_OTHER},
    {"BOOL", 1, KDI_ST_OTHER},    {"F8_E5M2", 1, KDI_ST_OTHER}, {"F8_E4M3", 1, KDI_ST_OTHER},
    {"F8_E8M0", 1, KDI_ST_OTHER}, {"C64", 8, KDI_ST_OTHER},
};

int64_t kdi_st_dtype_size(kdi_st_dtype d)
{
    switch (d) {
    case KDI_ST_F32: return 4;
    case KDI_ST_I32: return 4;
    case KDI_ST_I64: return 8;
    case KDI_ST_I8: return 1;
    case KDI_ST_U8: return 1;
    default: return 0;
    }
}

static const struct dtype_info *find_dtype(const char *name)
{
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (strcmp(name, dtypes[i].name) == 0) return &dtypes[i];
    return NULL;
}

typedef struct range {
    int64_t begin, end;
    int32_t tensor;
} range;

/* What parse_tensor collects before it checks the entry as a whole. */
typedef struct entry {
    int have; /* bits: 1 dtype, 2 shape, 4 data_offsets */
    int64_t esize, offs[2];
} entry;

static kd_status parse_dtype(json *j, kdi_st_tensor *t, entry *e)
{
    char *dt;
    KDI_TRY(parse_string(j, &dt));
    const struct dtype_info *d = find_dtype(dt);
    kd_status st = KD_OK;
    if (d == NULL)
        st = kdi_fail(KD_ERR_FORMAT, "%s: tensor '%s' has an unknown dtype '%s'", j->path, t->name,
                      dt);
    else {
        t->dtype = d->dtype;
        e->esize = d->size;
    }
    kdi_free(dt);
    return st;
}

static kd_status parse_field(json *j, const char *key, kdi_st_tensor *t, entry *e)
{
    static const char *const fields[] = {"dtype", "shape", "data_offsets"};
    int bit = 0;
    for (int i = 0; i < 3; i++)
        if (strcmp(key, fields[i]) == 0) bit = 1 << i;
    if (bit == 0)
        return kdi_fail(KD_ERR_FORMAT, "%s: tensor '%s' has an unknown field '%s'", j->path,
                        t->name, key);
    if (e->have & bit)
        return kdi_fail(KD_ERR_FORMAT, "%s: tensor '%s' has '%s' twice", j->path, t->name, key);
    e->have |= bit;
    if (bit == 1) return parse_dtype(j, t, e);
    if (bit == 2) return parse_uint_array(j, t->dims, KDI_ST_MAX_DIMS, &t->ndim);
    int32_t n;
    KDI_TRY(parse_uint_array(j, e->offs, 2, &n));
    if (n != 2)
        return kdi_fail(KD_ERR_FORMAT, "%s: tensor '%s': data_offsets needs 2 numbers, got %d",
                        j->path, t->name, (int)n);
    return KD_OK;
}

/* The entry's sizes agree with each other and with the data section. */
static kd_status check_entry(const json *j, kdi_st_tensor *t, const entry *e, int64_t data_size)
{
    if (e->have != 7)
        return kdi_fail(KD_ERR_FORMAT, "%s: tensor '%s' lacks dtype, shape or data_offsets",
                        j->path, t->name);
    int64_t count = 1;
    for (int32_t d = 0; d < t->ndim; d++)
        if (!kdi_mul_ok(count, t->dims[d], &count))
            return kdi_fail(KD_ERR_FORMAT, "%s: tensor '%s' has a shape whose size overflows",
                            j->path, t->name);
    if (!kdi_mul_ok(count, e->esize, &t->nbytes))
        return kdi_fail(KD_ERR_FORMAT, "%s: tensor '%s' has a byte size that overflows", j->path,
                        t->name);
    if (e->offs[1] < e->offs[0] || e->offs[1] - e->offs[0] != t->nbytes)
        return kdi_fail(KD_ERR_FORMAT,
                        "%s: tensor '%s': data_offsets [%lld, %lld] should span %lld bytes (its "
                        "shape and dtype)",
                        j->path, t->name, (long long)e->offs[0], (long long)e->offs[1],
                        (long long)t->nbytes);
    if (e->offs[1] > data_size)
        return kdi_fail(
            KD_ERR_FORMAT,
            "%s: tensor '%s' ends at data byte %lld but the file holds %lld (truncated?)", j->path,
            t->name, (long long)e->offs[1], (long long)data_size);
    return KD_OK;
}

/* One tensor entry: {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}, fields in any order. */
static kd_status parse_tensor(json *j, kdi_st_tensor *t, range *r, const unsigned char *data,
                              int64_t data_size)
{
    entry e = {0};
    int more;
    KDI_TRY(expect(j, '{'));
    KDI_TRY(first_or_end(j, '}', &more));
    while (more) {
        char *key;
        KDI_TRY(parse_string(j, &key));
        kd_status st = expect(j, ':');
        if (st == KD_OK) st = parse_field(j, key, t, &e);
        kdi_free(key);
        KDI_TRY(st);
        KDI_TRY(next_or_end(j, '}', &more));
    }
    KDI_TRY(check_entry(j, t, &e, data_size));
    r->begin = e.offs[0];
    r->end = e.offs[1];
    t->data = data + e.offs[0];
    return KD_OK;
}

static kd_status add_meta(kdi_st_file *f, int32_t *cap, char *k, char *v)
{
    if (f->nmeta == *cap) {
        int32_t n = *cap ? 2 * *cap : 8;
        char **nk = kdi_realloc(f->meta_keys, sizeof(char *) * (size_t)n);
        if (nk != NULL) f->meta_keys = nk;
        char **nv = nk != NULL ? kdi_realloc(f->meta_values, sizeof(char *) * (size_t)n) : NULL;
        if (nv != NULL) f->meta_values = nv;
        if (nk == NULL || nv == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot grow the metadata");
        *cap = n;
    }
    f->meta_keys[f->nmeta] = k;
    f->meta_values[f->nmeta++] = v;
    return KD_OK;
}

/* {"key": "value", ...}: strings only, as the reference's HashMap<String, String>; or null. */
static kd_status parse_metadata(json *j, kdi_st_file *f)
{
    skip_ws(j);
    if (j->end - j->p >= 4 && memcmp(j->p, "null", 4) == 0) {
        j->p += 4;
        return KD_OK;
    }
    int32_t cap = 0;
    int more;
    KDI_TRY(expect(j, '{'));
    KDI_TRY(first_or_end(j, '}', &more));
    while (more) {
        char *k = NULL, *v = NULL;
        kd_status st = parse_string(j, &k);
        if (st == KD_OK) st = expect(j, ':');
        if (st == KD_OK) st = parse_string(j, &v);
        if (st == KD_OK) st = add_meta(f, &cap, k, v);
        if (st != KD_OK) {
            kdi_free(k);
            kdi_free(v);
            return st;
        }
        KDI_TRY(next_or_end(j, '}', &more));
    }
    const char *dup;
    int d = find_duplicate((const char *const *)f->meta_keys, f->nmeta, &dup);
    if (d < 0) return kdi_fail(KD_ERR_NOMEM, "cannot check the metadata keys");
    if (d > 0) return kdi_fail(KD_ERR_FORMAT, "%s: metadata key '%s' appears twice", j->path, dup);
    return KD_OK;
}

static int cmp_range(const void *a, const void *b)
{
    const range *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return (x->end > y->end) - (x->end < y->end);
}

/* The ranges, sorted, tile [0, data_size) exactly; the names are unique. */
static kd_status check_layout(kdi_st_file *f, range *r, int64_t data_size, const char *path)
{
    if (f->n > 1) qsort(r, (size_t)f->n, sizeof *r, cmp_range);
    int64_t at = 0;
    for (int32_t i = 0; i < f->n; i++) {
        const char *name = f->tensors[r[i].tensor].name;
        if (r[i].begin < at)
            return kdi_fail(KD_ERR_FORMAT, "%s: tensor '%s' overlaps another tensor's data", path,
                            name);
        if (r[i].begin > at)
            return kdi_fail(KD_ERR_FORMAT, "%s: %lld unused data bytes before tensor '%s'", path,
                            (long long)(r[i].begin - at), name);
        at = r[i].end;
    }
    if (at != data_size)
        return kdi_fail(KD_ERR_FORMAT,
                        "%s: the tensors cover %lld data bytes but the file holds %lld", path,
                        (long long)at, (long long)data_size);
    const char **names = kdi_malloc(sizeof *names * (size_t)(f->n > 0 ? f->n : 1)), *dup;
    if (names == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot check the tensor names");
    for (int32_t i = 0; i < f->n; i++) names[i] = f->tensors[i].name;
    int d = find_duplicate(names, f->n, &dup);
    kd_status st = KD_OK;
    if (d < 0) st = kdi_fail(KD_ERR_NOMEM, "cannot check the tensor names");
    if (d > 0) st = kdi_fail(KD_ERR_FORMAT, "%s: tensor '%s' appears twice", path, dup);
    kdi_free(names);
    return st;
}

typedef struct tensor_list {
    range *r;
    int32_t cap;
} tensor_list;

/* A new zeroed tensor named name (taken over) at the end of f. */
static kd_status push_tensor(kdi_st_file *f, tensor_list *l, char *name)
{
    if (f->n == l->cap) {
        if (l->cap > INT32_MAX / 2) return kdi_fail(KD_ERR_FORMAT, "too many tensors");
        int32_t cap = l->cap ? 2 * l->cap : 16;
        kdi_st_tensor *t = kdi_realloc(f->tensors, sizeof *t * (size_t)cap);
        if (t != NULL) f->tensors = t;
        range *r = t != NULL ? kdi_realloc(l->r, sizeof *r * (size_t)cap) : NULL;
        if (r != NULL) l->r = r;
        if (t == NULL || r == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot grow the tensor list");
        l->cap = cap;
    }
    kdi_st_tensor *t = &f->tensors[f->n];
    memset(t, 0, sizeof *t);
    t->name = name;
    l->r[f->n].tensor = f->n;
    f->n++;
    return KD_OK;
}

/* One "key": value pair of the top-level object. */
static kd_status parse_item(json *j, kdi_st_file *f, tensor_list *l, int *seen_meta,
                            const unsigned char *data, int64_t data_size)
{
    char *name;
    KDI_TRY(parse_string(j, &name));
    kd_status st = expect(j, ':');
    if (st == KD_OK && strcmp(name, META_KEY) == 0) {
        kdi_free(name);
        if ((*seen_meta)++)
            return kdi_fail(KD_ERR_FORMAT, "%s: the header has two %s entries", j->path, META_KEY);
        return parse_metadata(j, f);
    }
    if (st == KD_OK) st = push_tensor(f, l, name);
    if (st != KD_OK) {
        kdi_free(name);
        return st;
    }
    return parse_tensor(j, &f->tensors[f->n - 1], &l->r[f->n - 1], data, data_size);
}

static kd_status parse_header(json *j, kdi_st_file *f, const unsigned char *data, int64_t data_size)
{
    tensor_list l = {0};
    int seen_meta = 0, more = 0;
    kd_status st = expect(j, '{');
    if (st == KD_OK) st = first_or_end(j, '}', &more);
    while (st == KD_OK && more) {
        st = parse_item(j, f, &l, &seen_meta, data, data_size);
        if (st == KD_OK) st = next_or_end(j, '}', &more);
    }
    skip_ws(j);
    if (st == KD_OK && j->p != j->end)
        st = kdi_fail(KD_ERR_FORMAT, "%s: text after the header's JSON object", j->path);
    if (st == KD_OK) st = check_layout(f, l.r, data_size, j->path);
    kdi_free(l.r);
    return st;
}

static kd_status read_exactly(FILE *fp, void *buf, size_t n, const char *path)
{
    if (fread(buf, 1, n, fp) != n) return kdi_fail(KD_ERR_IO, "cannot read %s", path);
    return KD_OK;
}

/* The whole file, once its header length is known to fit it: a hostile length costs nothing. */
static kd_status load(const char *path, unsigned char **blob, int64_t *size, int64_t *hlen)
{
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) return kdi_fail(KD_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    kd_status st = KD_OK;
    unsigned char len[8], *b = NULL;
    if (fstat(fileno(fp), &sb) != 0 || !S_ISREG(sb.st_mode))
        st = kdi_fail(KD_ERR_IO, "%s is not a regular file", path);
    else if (sb.st_size < 8)
        st = kdi_fail(KD_ERR_FORMAT, "%s is not a safetensors file: %lld bytes, too few", path,
                      (long long)sb.st_size);
    if (st == KD_OK) st = read_exactly(fp, len, 8, path);
    uint64_t n = 0;
    for (int i = 7; st == KD_OK && i >= 0; i--) n = n << 8 | len[i];
    if (st == KD_OK && (n > (uint64_t)MAX_HEADER || (int64_t)n > sb.st_size - 8))
        st = kdi_fail(KD_ERR_FORMAT,
                      "%s is not a safetensors file: its header length %llu does not fit the file "
                      "(%lld bytes) or the limit of %lld bytes",
                      path, (unsigned long long)n, (long long)sb.st_size, MAX_HEADER);
    int64_t limit = kdi_limit(KD_LIMIT_FILE_BYTES);
    if (st == KD_OK && ((uint64_t)sb.st_size >= SIZE_MAX || (int64_t)sb.st_size > limit))
        st = kdi_fail(KD_ERR_FORMAT,
                      "%s holds %lld bytes, above the limit of %lld (KD_LIMIT_FILE_BYTES)", path,
                      (long long)sb.st_size, (long long)limit);
    if (st == KD_OK && (b = kdi_malloc((size_t)sb.st_size)) == NULL)
        st = kdi_fail(KD_ERR_NOMEM, "cannot allocate %lld bytes for %s", (long long)sb.st_size,
                      path);
    if (st == KD_OK) {
        memcpy(b, len, 8);
        st = read_exactly(fp, b + 8, (size_t)sb.st_size - 8, path);
    }
    fclose(fp);
    if (st != KD_OK) {
        kdi_free(b);
        return st;
    }
    *blob = b;
    *size = (int64_t)sb.st_size;
    *hlen = (int64_t)n;
    return KD_OK;
}

kd_status kdi_st_read(const char *path, kdi_st_file *out)
{
    KDI_CHECK_NULL(path);
    KDI_CHECK_NULL(out);
    unsigned char *blob = NULL;
    int64_t size = 0, hlen = 0;
    KDI_TRY(load(path, &blob, &size, &hlen));
    kdi_st_file f = {.storage = blob};
    kd_status st = KD_OK;
    if (!kdi_utf8_valid(blob + 8, (size_t)hlen))
        st = kdi_fail(KD_ERR_FORMAT, "%s: the header is not valid UTF-8", path);
    int64_t first = 8; /* the header's first byte past JSON whitespace must open an object */
    while (first < 8 + hlen && (blob[first] == ' ' || blob[first] == '\t' || blob[first] == '\n' ||
                                blob[first] == '\r'))
        first++;
    if (st == KD_OK && (first == 8 + hlen || blob[first] != '{'))
        st = kdi_fail(KD_ERR_FORMAT,
                      "%s is not a safetensors file: its header is not a JSON object", path);
    if (st == KD_OK) {
        const char *h = (const char *)blob + 8;
        json j = {h, h, h + hlen, path};
        st = parse_header(&j, &f, blob + 8 + hlen, size - 8 - hlen);
    }
    if (st != KD_OK) {
        kdi_st_free(&f);
        return st;
    }
    *out = f;
    return KD_OK;
}

const kdi_st_tensor *kdi_st_find(const kdi_st_file *f, const char *name)
{
    for (int32_t i = 0; i < f->n; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

const char *kdi_st_meta(const kdi_st_file *f, const char *key)
{
    for (int32_t i = 0; i < f->nmeta; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_values[i];
    return NULL;
}

void kdi_st_free(kdi_st_file *f)
{
    if (f == NULL) return;
    for (int32_t i = 0; i < f->n; i++) kdi_free((char *)f->tensors[i].name);
    for (int32_t i = 0; i < f->nmeta; i++) {
        kdi_free(f->meta_keys[i]);
        kdi_free(f->meta_values[i]);
    }
    kdi_free(f->tensors);
    kdi_free(f->meta_keys);
    kdi_free(f->meta_values);
    kdi_free(f->storage);
    memset(f, 0, sizeof *f);
}

/* ---------------------------------------------------------------- the writer */

/* What the reader would refuse, the writer refuses too, before it creates anything. */
static kd_status check_tensor(const kdi_st_tensor *t, int32_t i)
{
    if (t->name == NULL) return kdi_fail(KD_ERR_ARGUMENT, "tensor %d has a NULL name", (int)i);
    if (strcmp(t->name, META_KEY) == 0 || !kdi_utf8_valid(t->name, strlen(t->name)))
        return kdi_fail(KD_ERR_ARGUMENT, "tensor name '%s' is reserved or not UTF-8", t->name);
    if (kdi_st_dtype_size(t->dtype) == 0)
        return kdi_fail(KD_ERR_UNSUPPORTED,
                        "tensor '%s': only F32, I32, I64, I8 and U8 can be written", t->name);
    if (t->ndim < 0 || t->ndim > KDI_ST_MAX_DIMS)
        return kdi_fail(KD_ERR_ARGUMENT, "tensor '%s' has %d dimensions, expected 0 to %d", t->name,
                        (int)t->ndim, KDI_ST_MAX_DIMS);
    int64_t bytes = kdi_st_dtype_size(t->dtype);
    for (int32_t d = 0; d < t->ndim; d++)
        if (!kdi_mul_ok(bytes, t->dims[d], &bytes))
            return kdi_fail(KD_ERR_ARGUMENT, "tensor '%s' has a negative or overflowing shape",
                            t->name);
    if (t->nbytes != bytes)
        return kdi_fail(KD_ERR_ARGUMENT,
                        "tensor '%s' has %lld bytes, its shape and dtype need %lld", t->name,
                        (long long)t->nbytes, (long long)bytes);
    if (bytes > 0 && t->data == NULL)
        return kdi_fail(KD_ERR_ARGUMENT, "tensor '%s' has NULL data", t->name);
    return KD_OK;
}

static kd_status check_input(const kdi_st_tensor *ts, int32_t n, const char *const *keys,
                             const char *const *values, int32_t nmeta)
{
    if (n < 0 || nmeta < 0 || (n > 0 && ts == NULL) ||
        (nmeta > 0 && (keys == NULL || values == NULL)))
        return kdi_fail(KD_ERR_ARGUMENT, "kdi_st_write: bad counts (%d, %d) or NULL arrays", (int)n,
                        (int)nmeta);
    for (int32_t i = 0; i < n; i++) KDI_TRY(check_tensor(&ts[i], i));
    for (int32_t i = 0; i < nmeta; i++)
        if (keys[i] == NULL || values[i] == NULL || !kdi_utf8_valid(keys[i], strlen(keys[i])) ||
            !kdi_utf8_valid(values[i], strlen(values[i])))
            return kdi_fail(KD_ERR_ARGUMENT, "metadata entry %d is NULL or not UTF-8", (int)i);
    const char **names = kdi_malloc(sizeof *names * (size_t)(n > 0 ? n : 1)), *dup;
    if (names == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot check the tensor names");
    for (int32_t i = 0; i < n; i++) names[i] = ts[i].name;
    int d = find_duplicate(names, n, &dup), dk = d == 0 ? find_duplicate(keys, nmeta, &dup) : 0;
    kdi_free(names);
    if (d < 0 || dk < 0) return kdi_fail(KD_ERR_NOMEM, "cannot check the names");
    if (d > 0 || dk > 0)
        return kdi_fail(KD_ERR_ARGUMENT, "%s '%s' appears twice", d ? "tensor" : "metadata key",
                        dup);
    return KD_OK;
}

/* A growing text buffer for the header. */
typedef struct text {
    char *s;
    size_t len, cap;
    int failed;
} text;

static void put(text *t, const char *s, size_t n)
{
    if (t->failed) return;
    if (t->len + n + 1 > t->cap) {
        size_t cap = (t->len + n + 1) * 2;
        char *p = kdi_realloc(t->s, cap);
        if (p == NULL) {
            t->failed = 1;
            return;
        }
        t->s = p;
        t->cap = cap;
    }
    memcpy(t->s + t->len, s, n);
    t->len += n;
    t->s[t->len] = '\0';
}

static void put_str(text *t, const char *s) { put(t, s, strlen(s)); }

/* A JSON string: quotes, backslashes and control characters escaped, UTF-8 kept as is. */
static void put_json_string(text *t, const char *s)
{
    put(t, "\"", 1);
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            put(t, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            put(t, esc, 6);
        } else {
            put(t, s, 1);
        }
    }
    put(t, "\"", 1);
}

static void put_int(text *t, int64_t v)
{
    char buf[24];
    snprintf(buf, sizeof buf, "%lld", (long long)v);
    put_str(t, buf);
}

static void put_tensor(text *h, const kdi_st_tensor *t, int64_t offset)
{
    put_json_string(h, t->name);
    put_str(h, t->dtype == KDI_ST_I64   ? ":{\"dtype\":\"I64\",\"shape\":["
               : t->dtype == KDI_ST_I32 ? ":{\"dtype\":\"I32\",\"shape\":["
               : t->dtype == KDI_ST_I8  ? ":{\"dtype\":\"I8\",\"shape\":["
               : t->dtype == KDI_ST_U8  ? ":{\"dtype\":\"U8\",\"shape\":["
                                        : ":{\"dtype\":\"F32\",\"shape\":[");
    for (int32_t d = 0; d < t->ndim; d++) {
        if (d) put_str(h, ",");
        put_int(h, t->dims[d]);
    }
    put_str(h, "],\"data_offsets\":[");
    put_int(h, offset);
    put_str(h, ",");
    put_int(h, offset + t->nbytes);
    put_str(h, "]}");
}

/* The reference's layout: compact JSON, __metadata__ first, spaces up to a multiple of 8 so the
 * data (at 8 + header length) is 8-byte aligned. */
static kd_status build_header(text *h, const kdi_st_tensor *ts, int32_t n, const char *const *keys,
                              const char *const *values, int32_t nmeta)
{
    put_str(h, "{");
    if (nmeta > 0) {
        put_str(h, "\"" META_KEY "\":{");
        for (int32_t i = 0; i < nmeta; i++) {
            if (i) put_str(h, ",");
            put_json_string(h, keys[i]);
            put_str(h, ":");
            put_json_string(h, values[i]);
        }
        put_str(h, "}");
    }
    int64_t offset = 0;
    for (int32_t i = 0; i < n; i++) {
        if (i || nmeta > 0) put_str(h, ",");
        put_tensor(h, &ts[i], offset);
        if (ts[i].nbytes > INT64_MAX - offset)
            return kdi_fail(KD_ERR_ARGUMENT, "the tensors hold more than 2^63 bytes");
        offset += ts[i].nbytes;
    }
    put_str(h, "}");
    while (!h->failed && (h->len % 8) != 0) put_str(h, " ");
    if (h->failed) return kdi_fail(KD_ERR_NOMEM, "cannot build the safetensors header");
    if ((long long)h->len > MAX_HEADER)
        return kdi_fail(KD_ERR_ARGUMENT, "the header would take %zu bytes, above the limit of %lld",
                        h->len, MAX_HEADER);
    return KD_OK;
}

static int write_all(FILE *fp, const text *h, const kdi_st_tensor *ts, int32_t n)
{
    unsigned char len[8];
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)((uint64_t)h->len >> (8 * i));
    int ok = fwrite(len, 1, 8, fp) == 8 && fwrite(h->s, 1, h->len, fp) == h->len;
    for (int32_t i = 0; ok && i < n; i++)
        ok = ts[i].nbytes == 0 ||
             fwrite(ts[i].data, 1, (size_t)ts[i].nbytes, fp) == (size_t)ts[i].nbytes;
    return ok;
}

typedef struct st_body {
    const text *h;
    const kdi_st_tensor *ts;
    int32_t n;
} st_body;

static int write_body(FILE *fp, const void *ctx)
{
    const st_body *b = ctx;
    return write_all(fp, b->h, b->ts, b->n);
}

kd_status kdi_st_write(const char *path, const kdi_st_tensor *ts, int32_t n,
                       const char *const *keys, const char *const *values, int32_t nmeta)
{
    KDI_CHECK_NULL(path);
    KDI_TRY(check_input(ts, n, keys, values, nmeta));
    text h = {0};
    kd_status st = build_header(&h, ts, n, keys, values, nmeta);
    st_body body = {&h, ts, n};
    if (st == KD_OK) st = kdi_write_atomic(path, write_body, &body);
    kdi_free(h.s);
    return st;
}
