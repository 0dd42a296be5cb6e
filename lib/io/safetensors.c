/* safetensors reader and writer. The reader trusts nothing: every length, offset and name is checked
 * before a pointer is formed. See safetensors.h for the format. */
#include "safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "tensor.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; this build assumes a little-endian host"
#endif

#define MAX_HEADER (100LL * 1024 * 1024)

/* ---------------------------------------------------------------- a JSON subset */

typedef struct json {
    const char *p, *end;
    const char *path;
} json;

static void skip_ws(json *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) j->p++;
}

static kd_status expect(json *j, char c)
{
    skip_ws(j);
    if (j->p >= j->end || *j->p != c)
        return kdi_fail(KD_ERR_FORMAT, "%s: the header's JSON expects '%c'", j->path, c);
    j->p++;
    return KD_OK;
}

static int peek(json *j, char c)
{
    skip_ws(j);
    return j->p < j->end && *j->p == c;
}

static int hex4(const char *s, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return 0;
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

/* A JSON string, unescaped into a heap copy (never longer than its escaped form). */
static kd_status parse_string(json *j, char **out)
{
    KDI_TRY(expect(j, '"'));
    const char *s = j->p;
    while (j->p < j->end && *j->p != '"') j->p += *j->p == '\\' ? 2 : 1;
    if (j->p >= j->end) return kdi_fail(KD_ERR_FORMAT, "%s: unterminated string in the header", j->path);
    size_t len = (size_t)(j->p - s);
    j->p++;
    char *o = malloc(len + 1), *w = o;
    if (o == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot allocate a header string");
    for (const char *c = s; c < s + len; c++) {
        if (*c != '\\') {
            if ((unsigned char)*c < 0x20) goto bad;
            *w++ = *c;
            continue;
        }
        c++;
        switch (*c) {
        case '"': *w++ = '"'; break;
        case '\\': *w++ = '\\'; break;
        case '/': *w++ = '/'; break;
        case 'b': *w++ = '\b'; break;
        case 'f': *w++ = '\f'; break;
        case 'n': *w++ = '\n'; break;
        case 'r': *w++ = '\r'; break;
        case 't': *w++ = '\t'; break;
        case 'u': {
            unsigned cp, lo;
            if (s + len - c < 5 || !hex4(c + 1, &cp)) goto bad;
            c += 4;
            if (cp >= 0xD800 && cp < 0xDC00) {
                if (s + len - c < 7 || c[1] != '\\' || c[2] != 'u' || !hex4(c + 3, &lo) ||
                    lo < 0xDC00 || lo >= 0xE000)
                    goto bad;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                c += 6;
            } else if (cp >= 0xDC00 && cp < 0xE000) {
                goto bad;
            }
            if (cp == 0) goto bad; /* names and metadata are C strings */
            w += put_utf8(w, cp);
            break;
        }
        default: goto bad;
        }
    }
    *w = '\0';
    *out = o;
    return KD_OK;
bad:
    free(o);
    return kdi_fail(KD_ERR_FORMAT, "%s: a header string has a bad escape or control character", j->path);
}

static kd_status parse_uint(json *j, int64_t *out)
{
    skip_ws(j);
    int64_t v = 0;
    const char *start = j->p;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
        if (v > (INT64_MAX - 9) / 10)
            return kdi_fail(KD_ERR_FORMAT, "%s: a number in the header is too large", j->path);
        v = v * 10 + (*j->p++ - '0');
    }
    if (j->p == start) return kdi_fail(KD_ERR_FORMAT, "%s: the header expects a non-negative integer", j->path);
    *out = v;
    return KD_OK;
}

/* [n, n, ...] of at most max integers. */
static kd_status parse_uint_array(json *j, int64_t *v, int32_t max, int32_t *n)
{
    KDI_TRY(expect(j, '['));
    *n = 0;
    if (peek(j, ']')) return expect(j, ']');
    for (;;) {
        if (*n == max) return kdi_fail(KD_ERR_FORMAT, "%s: an array in the header has more than %d entries", j->path, (int)max);
        KDI_TRY(parse_uint(j, &v[(*n)++]));
        if (peek(j, ']')) return expect(j, ']');
        KDI_TRY(expect(j, ','));
    }
}

/* ---------------------------------------------------------------- the reader */

static int64_t dtype_size(const char *name, kdi_st_dtype *dt)
{
    static const struct {
        const char *name;
        int64_t size;
    } known[] = {{"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4},
                 {"I16", 2}, {"I8", 1},  {"U8", 1},  {"BOOL", 1}, {"U16", 2}, {"U32", 4}, {"U64", 8}};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(name, known[i].name) == 0) {
            *dt = strcmp(name, "F32") == 0 ? KDI_ST_F32 : strcmp(name, "I64") == 0 ? KDI_ST_I64 : KDI_ST_OTHER;
            return known[i].size;
        }
    return 0;
}

typedef struct range {
    int64_t begin, end;
} range;

/* One tensor entry: {"dtype": "F32", "shape": [..], "data_offsets": [b, e]} in any order. */
static kd_status parse_tensor(json *j, kdi_st_tensor *t, range *r, const unsigned char *data,
                              int64_t data_size)
{
    int have = 0;
    int64_t esize = 0, offs[2];
    KDI_TRY(expect(j, '{'));
    while (!peek(j, '}')) {
        char *key;
        KDI_TRY(parse_string(j, &key));
        kd_status st = expect(j, ':');
        if (st == KD_OK && strcmp(key, "dtype") == 0) {
            char *dt;
            st = parse_string(j, &dt);
            if (st == KD_OK) {
                esize = dtype_size(dt, &t->dtype);
                if (esize == 0) st = kdi_fail(KD_ERR_FORMAT, "%s: tensor '%s' has unknown dtype '%s'", j->path, t->name, dt);
                free(dt);
            }
            have |= 1;
        } else if (st == KD_OK && strcmp(key, "shape") == 0) {
            st = parse_uint_array(j, t->dims, KDI_ST_MAX_DIMS, &t->ndim);
            have |= 2;
        } else if (st == KD_OK && strcmp(key, "data_offsets") == 0) {
            int32_t n;
            st = parse_uint_array(j, offs, 2, &n);
            if (st == KD_OK && n != 2) st = kdi_fail(KD_ERR_FORMAT, "%s: tensor '%s': data_offsets needs 2 numbers", j->path, t->name);
            have |= 4;
        } else if (st == KD_OK) {
            st = kdi_fail(KD_ERR_FORMAT, "%s: tensor '%s' has an unknown field '%s'", j->path, t->name, key);
        }
        free(key);
        KDI_TRY(st);
        if (!peek(j, '}')) KDI_TRY(expect(j, ','));
    }
    KDI_TRY(expect(j, '}'));
    if (have != 7) return kdi_fail(KD_ERR_FORMAT, "%s: tensor '%s' lacks dtype, shape or data_offsets", j->path, t->name);
    int64_t count = 1;
    for (int32_t d = 0; d < t->ndim; d++)
        if (!kdi_mul_ok(count, t->dims[d], &count))
            return kdi_fail(KD_ERR_FORMAT, "%s: tensor '%s' has an overflowing shape", j->path, t->name);
    if (offs[1] < offs[0] || !kdi_mul_ok(count, esize, &t->nbytes) || offs[1] - offs[0] != t->nbytes)
        return kdi_fail(KD_ERR_FORMAT, "%s: tensor '%s': data_offsets [%lld, %lld] do not match its shape",
                        j->path, t->name, (long long)offs[0], (long long)offs[1]);
    if (offs[1] > data_size)
        return kdi_fail(KD_ERR_FORMAT, "%s: tensor '%s' lies past the end of the file (truncated?)",
                        j->path, t->name);
    r->begin = offs[0];
    r->end = offs[1];
    t->data = data + offs[0];
    return KD_OK;
}

static kd_status parse_metadata(json *j, kdi_st_file *f)
{
    KDI_TRY(expect(j, '{'));
    while (!peek(j, '}')) {
        char *k = NULL, *v = NULL;
        kd_status st = parse_string(j, &k);
        if (st == KD_OK) st = expect(j, ':');
        if (st == KD_OK) st = parse_string(j, &v);
        char **nk = st == KD_OK ? realloc(f->meta_keys, sizeof(char *) * (size_t)(f->nmeta + 1)) : NULL;
        if (nk != NULL) f->meta_keys = nk;
        char **nv = nk != NULL ? realloc(f->meta_values, sizeof(char *) * (size_t)(f->nmeta + 1)) : NULL;
        if (nv != NULL) f->meta_values = nv;
        if (st == KD_OK && (nk == NULL || nv == NULL)) st = kdi_fail(KD_ERR_NOMEM, "cannot grow the metadata");
        if (st != KD_OK) {
            free(k);
            free(v);
            return st;
        }
        f->meta_keys[f->nmeta] = k;
        f->meta_values[f->nmeta++] = v;
        if (!peek(j, '}')) KDI_TRY(expect(j, ','));
    }
    return expect(j, '}');
}

static int cmp_range(const void *a, const void *b)
{
    const range *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(((const kdi_st_tensor *)a)->name, ((const kdi_st_tensor *)b)->name);
}

/* Ranges disjoint; names unique. */
static kd_status check_layout(kdi_st_file *f, range *r, const char *path)
{
    qsort(r, (size_t)f->n, sizeof *r, cmp_range);
    for (int32_t i = 1; i < f->n; i++)
        if (r[i].begin < r[i - 1].end) return kdi_fail(KD_ERR_FORMAT, "%s: two tensors overlap", path);
    kdi_st_tensor *sorted = malloc(sizeof *sorted * (size_t)(f->n ? f->n : 1));
    if (sorted == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot check tensor names");
    memcpy(sorted, f->tensors, sizeof *sorted * (size_t)f->n);
    qsort(sorted, (size_t)f->n, sizeof *sorted, cmp_name);
    kd_status st = KD_OK;
    for (int32_t i = 1; st == KD_OK && i < f->n; i++)
        if (strcmp(sorted[i].name, sorted[i - 1].name) == 0)
            st = kdi_fail(KD_ERR_FORMAT, "%s: tensor '%s' appears twice", path, sorted[i].name);
    free(sorted);
    return st;
}

static kd_status parse_header(json *j, kdi_st_file *f, const unsigned char *data, int64_t data_size)
{
    range *r = NULL;
    int32_t cap = 0;
    kd_status st = expect(j, '{');
    while (st == KD_OK && !peek(j, '}')) {
        char *name = NULL;
        st = parse_string(j, &name);
        if (st == KD_OK) st = expect(j, ':');
        if (st == KD_OK && strcmp(name, "__metadata__") == 0) {
            free(name);
            st = parse_metadata(j, f);
        } else if (st == KD_OK) {
            if (f->n == cap) {
                cap = cap ? 2 * cap : 16;
                kdi_st_tensor *t = realloc(f->tensors, sizeof *t * (size_t)cap);
                range *nr = t != NULL ? realloc(r, sizeof *nr * (size_t)cap) : NULL;
                if (t != NULL) f->tensors = t;
                if (nr != NULL) r = nr;
                if (t == NULL || nr == NULL) {
                    free(name);
                    st = kdi_fail(KD_ERR_NOMEM, "cannot grow the tensor list");
                    break;
                }
            }
            kdi_st_tensor *t = &f->tensors[f->n];
            memset(t, 0, sizeof *t);
            t->name = name;
            f->n++;
            st = parse_tensor(j, t, &r[f->n - 1], data, data_size);
        } else {
            free(name);
        }
        if (st == KD_OK && !peek(j, '}')) st = expect(j, ',');
    }
    if (st == KD_OK) st = expect(j, '}');
    skip_ws(j);
    if (st == KD_OK && j->p != j->end) st = kdi_fail(KD_ERR_FORMAT, "%s: text after the header's JSON", j->path);
    if (st == KD_OK) st = check_layout(f, r, j->path);
    free(r);
    return st;
}

static kd_status read_file(const char *path, unsigned char **blob, int64_t *size)
{
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) return kdi_fail(KD_ERR_IO, "cannot open %s", path);
    struct stat sb;
    if (fstat(fileno(fp), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(fp);
        return kdi_fail(KD_ERR_IO, "%s is not a regular file", path);
    }
    unsigned char *b = malloc((size_t)sb.st_size + 1);
    if (b == NULL) {
        fclose(fp);
        return kdi_fail(KD_ERR_NOMEM, "cannot allocate %lld bytes for %s", (long long)sb.st_size, path);
    }
    size_t got = fread(b, 1, (size_t)sb.st_size, fp);
    int err = ferror(fp);
    fclose(fp);
    if (err || got != (size_t)sb.st_size) {
        free(b);
        return kdi_fail(KD_ERR_IO, "cannot read %s", path);
    }
    *blob = b;
    *size = (int64_t)sb.st_size;
    return KD_OK;
}

kd_status kdi_st_read(const char *path, kdi_st_file *out)
{
    KDI_CHECK_NULL(path);
    memset(out, 0, sizeof *out);
    unsigned char *blob = NULL;
    int64_t size = 0;
    KDI_TRY(read_file(path, &blob, &size));
    kdi_st_file f = {.storage = blob};
    uint64_t hlen = 0;
    kd_status st = KD_OK;
    if (size < 8)
        st = kdi_fail(KD_ERR_FORMAT, "%s is too short to be a safetensors file", path);
    else {
        for (int i = 7; i >= 0; i--) hlen = hlen << 8 | blob[i];
        if (hlen < 2 || hlen > (uint64_t)MAX_HEADER || (int64_t)hlen > size - 8)
            st = kdi_fail(KD_ERR_FORMAT, "%s: header length %llu does not fit the file (%lld bytes)",
                          path, (unsigned long long)hlen, (long long)size);
    }
    if (st == KD_OK) {
        json j = {(const char *)blob + 8, (const char *)blob + 8 + hlen, path};
        const unsigned char *data = blob + 8 + hlen;
        st = parse_header(&j, &f, data, size - 8 - (int64_t)hlen);
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
    for (int32_t i = 0; i < f->n; i++) free((char *)f->tensors[i].name);
    for (int32_t i = 0; i < f->nmeta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_values[i]);
    }
    free(f->tensors);
    free(f->meta_keys);
    free(f->meta_values);
    free(f->storage);
    memset(f, 0, sizeof *f);
}

/* ---------------------------------------------------------------- the writer */

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
        char *p = realloc(t->s, cap);
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
            put(t, (const char *)&c, 1);
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

static kd_status build_header(text *h, const kdi_st_tensor *ts, int32_t n, const char *const *keys,
                              const char *const *values, int32_t nmeta)
{
    put_str(h, "{");
    if (nmeta > 0) {
        put_str(h, "\"__metadata__\":{");
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
        put_json_string(h, ts[i].name);
        put_str(h, ts[i].dtype == KDI_ST_I64 ? ":{\"dtype\":\"I64\",\"shape\":[" : ":{\"dtype\":\"F32\",\"shape\":[");
        for (int32_t d = 0; d < ts[i].ndim; d++) {
            if (d) put_str(h, ",");
            put_int(h, ts[i].dims[d]);
        }
        put_str(h, "],\"data_offsets\":[");
        put_int(h, offset);
        put_str(h, ",");
        offset += ts[i].nbytes;
        put_int(h, offset);
        put_str(h, "]}");
    }
    put_str(h, "}");
    /* The format lets the header end in spaces; 8-byte alignment keeps the data aligned. */
    while (!h->failed && (h->len % 8) != 0) put_str(h, " ");
    return h->failed ? kdi_fail(KD_ERR_NOMEM, "cannot build the safetensors header") : KD_OK;
}

static kd_status write_all(FILE *fp, const text *h, const kdi_st_tensor *ts, int32_t n)
{
    unsigned char len[8];
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)((uint64_t)h->len >> (8 * i));
    int ok = fwrite(len, 1, 8, fp) == 8 && fwrite(h->s, 1, h->len, fp) == h->len;
    for (int32_t i = 0; ok && i < n; i++)
        ok = ts[i].nbytes == 0 || fwrite(ts[i].data, 1, (size_t)ts[i].nbytes, fp) == (size_t)ts[i].nbytes;
    ok = ok && fflush(fp) == 0 && fsync(fileno(fp)) == 0;
    return ok ? KD_OK : KD_ERR_IO;
}

kd_status kdi_st_write(const char *path, const kdi_st_tensor *ts, int32_t n,
                       const char *const *keys, const char *const *values, int32_t nmeta)
{
    KDI_CHECK_NULL(path);
    text h = {0};
    kd_status st = build_header(&h, ts, n, keys, values, nmeta);
    if (st != KD_OK) {
        free(h.s);
        return st;
    }
    /* A temporary file beside path, so rename is atomic on the same file system. */
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    if (tmp == NULL) {
        free(h.s);
        return kdi_fail(KD_ERR_NOMEM, "cannot allocate a file name");
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", 12);
    int fd = mkstemp(tmp);
    FILE *fp = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (fp == NULL) {
        if (fd >= 0) {
            close(fd);
            unlink(tmp);
        }
        free(tmp);
        free(h.s);
        return kdi_fail(KD_ERR_IO, "cannot create a temporary file beside %s", path);
    }
    fchmod(fd, 0644);
    st = write_all(fp, &h, ts, n);
    if (fclose(fp) != 0) st = KD_ERR_IO;
    if (st == KD_OK && rename(tmp, path) != 0) st = KD_ERR_IO;
    if (st != KD_OK) {
        unlink(tmp);
        kdi_fail(KD_ERR_IO, "cannot write %s", path);
    }
    free(tmp);
    free(h.s);
    return st;
}
