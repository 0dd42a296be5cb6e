#include "nn/spec.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/tensor.h"

static char *trim(char *s)
{
    while (isspace((unsigned char)*s)) s++;
    char *end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1])) *--end = '\0';
    return s;
}

kd_status kdi_spec_split(const char *spec, char ***parts, int32_t *n)
{
    KDI_CHECK_NULL(spec);
    size_t len = strnlen(spec, KDI_MAX_SPEC + 1);
    if (len > KDI_MAX_SPEC)
        return kdi_fail(KD_ERR_FORMAT, "spec is longer than %d bytes", KDI_MAX_SPEC);
    int32_t count = 1, depth = 0;
    for (size_t i = 0; i < len; i++) {
        /* Containers recurse once per level: bound the depth a hostile spec could ask for. */
        if (spec[i] == '(' && ++depth > KDI_MAX_DEPTH)
            return kdi_fail(KD_ERR_FORMAT, "spec nests deeper than %d levels", KDI_MAX_DEPTH);
        if (spec[i] == ')' && --depth < 0)
            return kdi_fail(KD_ERR_FORMAT, "spec has an unmatched ')' at byte %zu", i);
        if (spec[i] == '|' && depth == 0) count++;
    }
    if (depth != 0) return kdi_fail(KD_ERR_FORMAT, "spec has an unclosed '('");
    /* One block: the pointer array, then a copy of the text cut at the separators. */
    size_t bytes = (size_t)count * sizeof(char *) + len + 1;
    char **arr = kdi_malloc(bytes);
    if (arr == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot allocate the spec");
    char *text = (char *)(arr + count);
    memcpy(text, spec, len + 1);
    int32_t k = 0;
    char *start = text;
    depth = 0;
    for (char *p = text;; p++) {
        if (*p == '(') depth++;
        if (*p == ')') depth--;
        if ((*p == '|' && depth == 0) || *p == '\0') {
            int end = *p == '\0';
            *p = '\0';
            arr[k] = trim(start);
            if (arr[k][0] == '\0') {
                kdi_free(arr);
                return kdi_fail(KD_ERR_FORMAT, "spec has an empty layer (layer %d)", (int)k);
            }
            k++;
            start = p + 1;
            if (end) break;
        }
    }
    *parts = arr;
    *n = count;
    return KD_OK;
}

static kd_status parse_bodies(char *p, kdi_args *a)
{
    while (*p != '\0') {
        while (isspace((unsigned char)*p)) p++;
        if (*p == '\0') break;
        if (*p != '(' || a->nbody == 2)
            return kdi_fail(KD_ERR_FORMAT, "layer '%s': unexpected text '%.20s' after its body",
                            a->kind, p);
        int depth = 1;
        char *q = p + 1;
        while (*q != '\0' && depth > 0) {
            if (*q == '(') depth++;
            if (*q == ')') depth--;
            if (depth > 0) q++;
        }
        if (depth != 0) return kdi_fail(KD_ERR_FORMAT, "layer '%s': unclosed '('", a->kind);
        *q = '\0';
        a->body[a->nbody++] = trim(p + 1);
        p = q + 1;
    }
    return KD_OK;
}

kd_status kdi_spec_parse_layer(char *text, kdi_args *a)
{
    memset(a, 0, sizeof *a);
    char *p = trim(text);
    size_t k = 0;
    while (*p != '\0' && !isspace((unsigned char)*p) && *p != '(') {
        if (k + 1 >= sizeof a->kind)
            return kdi_fail(KD_ERR_FORMAT, "layer kind '%.40s...' is too long", text);
        a->kind[k++] = (char)tolower((unsigned char)*p++);
    }
    if (k == 0) return kdi_fail(KD_ERR_FORMAT, "layer '%.40s' has no kind", text);
    for (;;) {
        while (isspace((unsigned char)*p)) p++;
        if (*p == '\0' || *p == '(') break;
        if (a->n == KDI_MAX_ARGS)
            return kdi_fail(KD_ERR_FORMAT, "layer '%s' has more than %d arguments", a->kind,
                            KDI_MAX_ARGS);
        size_t t = 0;
        while (*p != '\0' && !isspace((unsigned char)*p) && *p != '(') {
            if (t + 1 >= sizeof a->tok[0])
                return kdi_fail(KD_ERR_FORMAT, "layer '%s': an argument is too long", a->kind);
            a->tok[a->n][t++] = *p++;
        }
        a->tok[a->n++][t] = '\0';
    }
    return parse_bodies(p, a);
}

/* v for a message: control and non-ASCII bytes as \\xHH, so that what made it wrong shows. */
static const char *shown(const char *v, char *buf, size_t size)
{
    size_t o = 0;
    for (; *v != '\0' && o + 5 < size; v++) {
        unsigned char c = (unsigned char)*v;
        if (c >= 0x20 && c < 0x7f)
            buf[o++] = (char)c;
        else
            o += (size_t)snprintf(buf + o, size - o, "\\x%02x", c);
    }
    buf[o] = '\0';
    return buf;
}

/* The value text for key, or for positional index pos; NULL when absent. */
static const char *lookup(const kdi_args *a, int pos, const char *key)
{
    int seen = 0;
    size_t klen = key != NULL ? strlen(key) : 0;
    for (int i = 0; key != NULL && i < a->n; i++)
        if (strncmp(a->tok[i], key, klen) == 0 && a->tok[i][klen] == '=')
            return a->tok[i] + klen + 1;
    for (int i = 0; pos >= 0 && i < a->n; i++) {
        if (strchr(a->tok[i], '=') != NULL) continue;
        if (seen++ == pos) return a->tok[i];
    }
    return NULL;
}

/* An option given both by position and by name ("attention 2 heads=4"): lookup() would read the
 * name's and drop the other without a word. */
static kd_status check_once(const kdi_args *a, int pos, const char *key)
{
    if (key == NULL || pos < 0 || lookup(a, pos, NULL) == NULL) return KD_OK;
    if (lookup(a, -1, key) == NULL) return KD_OK;
    return kdi_fail(KD_ERR_FORMAT, "layer '%s' gives %s twice (by position and as %s=)", a->kind,
                    key, key);
}

kd_status kdi_args_int(const kdi_args *a, int pos, const char *key, int has_def, int64_t def,
                       int64_t lo, int64_t hi, int64_t *out)
{
    KDI_TRY(check_once(a, pos, key));
    const char *v = lookup(a, pos, key);
    const char *what = key != NULL ? key : "argument";
    if (v == NULL) {
        if (!has_def) return kdi_fail(KD_ERR_FORMAT, "layer '%s' needs %s", a->kind, what);
        *out = def;
        return KD_OK;
    }
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    char buf[160];
    if (errno != 0 || end == v || *end != '\0')
        return kdi_fail(KD_ERR_FORMAT, "layer '%s': %s '%s' is not an integer", a->kind, what,
                        shown(v, buf, sizeof buf));
    if (x < lo || x > hi)
        return kdi_fail(KD_ERR_FORMAT, "layer '%s': %s %lld is outside [%lld, %lld]", a->kind, what,
                        x, (long long)lo, (long long)hi);
    *out = x;
    return KD_OK;
}

kd_status kdi_args_float(const kdi_args *a, int pos, const char *key, int has_def, float def,
                         float lo, float hi, float *out)
{
    KDI_TRY(check_once(a, pos, key));
    const char *v = lookup(a, pos, key);
    const char *what = key != NULL ? key : "argument";
    if (v == NULL) {
        if (!has_def) return kdi_fail(KD_ERR_FORMAT, "layer '%s' needs %s", a->kind, what);
        *out = def;
        return KD_OK;
    }
    char *end;
    errno = 0;
    float x = strtof(v, &end);
    char buf[160];
    if (errno != 0 || end == v || *end != '\0' || !isfinite(x))
        return kdi_fail(KD_ERR_FORMAT, "layer '%s': %s '%s' is not a number", a->kind, what,
                        shown(v, buf, sizeof buf));
    if (x < lo || x > hi)
        return kdi_fail(KD_ERR_FORMAT, "layer '%s': %s %g is outside [%g, %g]", a->kind, what,
                        (double)x, (double)lo, (double)hi);
    *out = x;
    return KD_OK;
}

kd_status kdi_args_check(const kdi_args *a, int max_pos, const char *const *keys, int max_body)
{
    int positional = 0;
    for (int i = 0; i < a->n; i++) {
        const char *eq = strchr(a->tok[i], '=');
        if (eq == NULL) {
            if (++positional > max_pos)
                return kdi_fail(KD_ERR_FORMAT, "layer '%s' takes at most %d positional arguments",
                                a->kind, max_pos);
            continue;
        }
        size_t klen = (size_t)(eq - a->tok[i]);
        int known = 0;
        for (int k = 0; keys != NULL && keys[k] != NULL; k++)
            if (strlen(keys[k]) == klen && strncmp(keys[k], a->tok[i], klen) == 0) known = 1;
        if (!known)
            return kdi_fail(KD_ERR_FORMAT, "layer '%s' has no option '%.*s'", a->kind, (int)klen,
                            a->tok[i]);
        /* lookup() reads the first: a second would be dropped without a word */
        for (int j = 0; j < i; j++)
            if (strncmp(a->tok[j], a->tok[i], klen + 1) == 0)
                return kdi_fail(KD_ERR_FORMAT, "layer '%s' gives option '%.*s' twice", a->kind,
                                (int)klen, a->tok[i]);
    }
    if (a->nbody > max_body)
        return kdi_fail(KD_ERR_FORMAT, "layer '%s' takes %d parenthesised bodies, got %d", a->kind,
                        max_body, (int)a->nbody);
    return KD_OK;
}

int kdi_args_flag(const kdi_args *a, const char *word)
{
    for (int i = 0; i < a->n; i++)
        if (strcmp(a->tok[i], word) == 0) return 1;
    return 0;
}

static int parse_dim(const char **p, int64_t *out)
{
    char *end;
    errno = 0;
    long long x = strtoll(*p, &end, 10);
    if (errno != 0 || end == *p || x < 1 || x > (1LL << 30)) return 0;
    *out = x;
    *p = end;
    return 1;
}

kd_status kdi_parse_dims(const char *text, int64_t *c, int64_t *h, int64_t *w)
{
    int64_t d[3] = {1, 1, 1};
    const char *p = text;
    int k = 0;
    for (;;) {
        if (k == 3 || !parse_dim(&p, &d[k]))
            return kdi_fail(KD_ERR_FORMAT, "'%s' is not a size (N or CxHxW, each 1..2^30)", text);
        k++;
        if (*p == '\0') break;
        if (*p != 'x') return kdi_fail(KD_ERR_FORMAT, "'%s' is not a size (N or CxHxW)", text);
        p++;
    }
    if (k == 2) return kdi_fail(KD_ERR_FORMAT, "'%s': give N or CxHxW", text);
    int64_t prod;
    if (!kdi_mul_ok(d[0], d[1], &prod) || !kdi_mul_ok(prod, d[2], &prod) || prod > (1LL << 31))
        return kdi_fail(KD_ERR_FORMAT, "'%s' is too large", text);
    *c = d[0];
    *h = d[1];
    *w = d[2];
    return KD_OK;
}
