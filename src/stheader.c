/* Reads the JSON header of a safetensors file (tensor names, dtypes, shapes, and the string
 * __metadata__) for kd info. The library has already validated the file by loading it; this parser
 * only walks what it needs and stops at anything it does not expect. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "stheader.h"

typedef struct cursor {
    const char *s, *end;
} cursor;

static void ws(cursor *c)
{
    while (c->s < c->end && (*c->s == ' ' || *c->s == '\n' || *c->s == '\r' || *c->s == '\t'))
        c->s++;
}

static int eat(cursor *c, char ch)
{
    ws(c);
    if (c->s < c->end && *c->s == ch) {
        c->s++;
        return 1;
    }
    return 0;
}

/* A JSON string into out (escapes decoded; \u as '?' outside ASCII). */
static int string(cursor *c, char *out, size_t size)
{
    size_t n = 0;
    if (!eat(c, '"')) return 0;
    while (c->s < c->end && *c->s != '"') {
        char ch = *c->s++;
        if (ch == '\\' && c->s < c->end) {
            char e = *c->s++;
            ch = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'u' ? '?' : e;
            if (e == 'u') c->s += c->end - c->s >= 4 ? 4 : c->end - c->s;
        }
        if (n + 1 < size) out[n++] = ch;
    }
    out[n] = '\0';
    return eat(c, '"');
}

static int number(cursor *c, int64_t *v)
{
    ws(c);
    char *endp;
    long long x = strtoll(c->s, &endp, 10);
    if (endp == c->s) return 0;
    c->s = endp;
    *v = x;
    return 1;
}

static int skip(cursor *c)
{
    ws(c);
    if (c->s >= c->end) return 0;
    char ch = *c->s;
    if (ch == '"') {
        char tmp[8];
        return string(c, tmp, sizeof tmp);
    }
    if (ch == '{' || ch == '[') {
        char close = ch == '{' ? '}' : ']';
        c->s++;
        if (eat(c, close)) return 1;
        do {
            if (ch == '{') {
                char key[8];
                if (!string(c, key, sizeof key) || !eat(c, ':')) return 0;
            }
            if (!skip(c)) return 0;
        } while (eat(c, ','));
        return eat(c, close);
    }
    while (c->s < c->end && strchr(",}] \n\r\t", *c->s) == NULL) c->s++;
    return 1;
}

static int int_array(cursor *c, int64_t *v, int *n, int max)
{
    *n = 0;
    if (!eat(c, '[')) return 0;
    if (eat(c, ']')) return 1;
    do {
        int64_t x;
        if (!number(c, &x)) return 0;
        if (*n < max) v[(*n)++] = x;
    } while (eat(c, ','));
    return eat(c, ']');
}

static int tensor(cursor *c, st_tensor *t)
{
    if (!eat(c, '{')) return 0;
    if (eat(c, '}')) return 1;
    do {
        char key[64];
        int64_t offsets[2];
        int n;
        if (!string(c, key, sizeof key) || !eat(c, ':')) return 0;
        if (strcmp(key, "dtype") == 0) {
            if (!string(c, t->dtype, sizeof t->dtype)) return 0;
        } else if (strcmp(key, "shape") == 0) {
            if (!int_array(c, t->shape, &t->rank, ST_MAX_RANK)) return 0;
        } else if (strcmp(key, "data_offsets") == 0) {
            if (!int_array(c, offsets, &n, 2)) return 0;
        } else if (!skip(c)) {
            return 0;
        }
    } while (eat(c, ','));
    return eat(c, '}');
}

static int metadata(cursor *c, st_header *h)
{
    if (!eat(c, '{')) return 0;
    if (eat(c, '}')) return 1;
    do {
        st_pair *p = &h->meta[h->nmeta < ST_MAX_ITEMS ? h->nmeta : ST_MAX_ITEMS - 1];
        if (!string(c, p->key, sizeof p->key) || !eat(c, ':') ||
            !string(c, p->value, sizeof p->value))
            return 0;
        if (h->nmeta < ST_MAX_ITEMS) h->nmeta++;
    } while (eat(c, ','));
    return eat(c, '}');
}

static int parse(cursor *c, st_header *h)
{
    if (!eat(c, '{')) return 0;
    if (eat(c, '}')) return 1;
    do {
        char key[256];
        if (!string(c, key, sizeof key) || !eat(c, ':')) return 0;
        if (strcmp(key, "__metadata__") == 0) {
            if (!metadata(c, h)) return 0;
            continue;
        }
        st_tensor *t = &h->tensors[h->ntensors < ST_MAX_ITEMS ? h->ntensors : ST_MAX_ITEMS - 1];
        memset(t, 0, sizeof *t);
        snprintf(t->name, sizeof t->name, "%.*s", (int)sizeof t->name - 1, key);
        if (!tensor(c, t)) return 0;
        if (h->ntensors < ST_MAX_ITEMS) h->ntensors++;
        h->total_tensors++;
    } while (eat(c, ','));
    return eat(c, '}');
}

int st_read_header(const char *path, st_header *h)
{
    memset(h, 0, sizeof *h);
    FILE *f = fopen(path, "rb");
    if (f == NULL) return -1;
    unsigned char len8[8];
    uint64_t len = 0;
    struct stat sb;
    int ok = fstat(fileno(f), &sb) == 0 && fread(len8, 1, 8, f) == 8;
    for (int i = 0; ok && i < 8; i++) len |= (uint64_t)len8[i] << (8 * i);
    /* The length must fit the file before it is allocated; the text is NUL-terminated for the
     * number parser (strtoll). */
    ok = ok && len > 1 && len < (100u << 20) && (int64_t)len <= (int64_t)sb.st_size - 8;
    char *json = ok ? malloc((size_t)len + 1) : NULL;
    ok = json != NULL && fread(json, 1, (size_t)len, f) == len;
    if (ok) json[len] = '\0';
    fclose(f);
    if (ok) {
        cursor c = {json, json + len};
        ok = parse(&c, h);
    }
    free(json);
    return ok ? 0 : -1;
}
