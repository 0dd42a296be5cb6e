/* Datasets from CSV tables (RFC 4180: comma-separated, fields optionally in double quotes with ""
 * for a quote, no line break inside a field): a header row of column names, numeric feature
 * columns, and optionally a named label column whose values (any text) become classes 0..K-1.
 * Every refusal names the line and the column. */
#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/tensor.h"
#include "data/dataset.h"
#include "data/npy.h"

#define MAX_VALUES (INT64_C(1) << 31)

/* strtod and printf follow the program's LC_NUMERIC; the text here always has a '.' decimal point,
 * so it is read (and written) in the C locale, on this thread only, whatever the host set. */
static locale_t c_numeric(locale_t *old)
{
    locale_t c = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    *old = c != (locale_t)0 ? uselocale(c) : (locale_t)0;
    return c;
}

static void host_numeric(locale_t c, locale_t old)
{
    if (c == (locale_t)0) return;
    uselocale(old);
    freelocale(c);
}

/* A growing byte buffer for one unescaped cell. */
typedef struct cellbuf {
    char *s;
    size_t len, cap;
} cellbuf;

static int put(cellbuf *c, char ch)
{
    if (c->len + 1 >= c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 64;
        char *s = kdi_realloc(c->s, cap);
        if (s == NULL) return 0;
        c->s = s;
        c->cap = cap;
    }
    c->s[c->len++] = ch;
    c->s[c->len] = '\0';
    return 1;
}

typedef struct reader {
    const char *path;
    const char *p, *end; /* the rest of the file */
    int64_t line;        /* of the row being read, from 1 */
    cellbuf cell;
} reader;

/* The next cell of the row that ends at eol, unescaped into r->cell; *last when it ends the row. */
static kd_status next_cell(reader *r, const char *eol, int64_t col, int *last)
{
    r->cell.len = 0;
    if (!put(&r->cell, 'x')) return kdi_fail(KD_ERR_NOMEM, "cannot allocate a CSV cell");
    r->cell.len = 0;
    r->cell.s[0] = '\0';
    const char *p = r->p;
    while (p < eol && (*p == ' ' || *p == '\t')) p++;
    if (p < eol && *p == '"') {
        for (p++;; p++) {
            if (p >= eol)
                return kdi_fail(KD_ERR_FORMAT, "%s: line %lld, column %lld: a quote is not closed",
                                r->path, (long long)r->line, (long long)col + 1);
            if (*p == '"') {
                if (p + 1 < eol && p[1] == '"') {
                    p++;
                } else {
                    p++;
                    break;
                }
            }
            if (!put(&r->cell, *p)) return kdi_fail(KD_ERR_NOMEM, "cannot allocate a CSV cell");
        }
        while (p < eol && (*p == ' ' || *p == '\t')) p++;
        if (p < eol && *p != ',')
            return kdi_fail(KD_ERR_FORMAT, "%s: line %lld, column %lld: text after a closing quote",
                            r->path, (long long)r->line, (long long)col + 1);
    } else {
        for (; p < eol && *p != ','; p++) {
            if (*p == '"')
                return kdi_fail(KD_ERR_FORMAT,
                                "%s: line %lld, column %lld: a quote inside an unquoted cell",
                                r->path, (long long)r->line, (long long)col + 1);
            if (!put(&r->cell, *p)) return kdi_fail(KD_ERR_NOMEM, "cannot allocate a CSV cell");
        }
        while (r->cell.len > 0 &&
               (r->cell.s[r->cell.len - 1] == ' ' || r->cell.s[r->cell.len - 1] == '\t'))
            r->cell.s[--r->cell.len] = '\0';
    }
    *last = p >= eol;
    r->p = p < eol ? p + 1 : eol;
    return KD_OK;
}

/* The end of the current line (before "\r\n" or "\n"), and where the next starts. */
static const char *line_end(const reader *r, const char **next)
{
    const char *nl = memchr(r->p, '\n', (size_t)(r->end - r->p));
    const char *eol = nl != NULL ? nl : r->end;
    *next = nl != NULL ? nl + 1 : r->end;
    if (eol > r->p && eol[-1] == '\r') eol--;
    return eol;
}

static int blank(const char *p, const char *eol)
{
    for (; p < eol; p++)
        if (*p != ' ' && *p != '\t') return 0;
    return 1;
}

typedef struct table {
    char **names;
    int64_t ncols, label; /* label: its column, or -1 */
    float *x;             /* growing [rows, ncols - (label >= 0)] */
    int64_t nx, capx, rows;
    char **labels; /* [rows], and [rows] itself while pending */
    int64_t caplab;
    int pending; /* the row being read has stored its label */
} table;

static void free_table(table *t)
{
    for (int64_t i = 0; i < t->ncols; i++) kdi_free(t->names[i]);
    kdi_free(t->names);
    kdi_free(t->x);
    for (int64_t i = 0; i < t->rows + t->pending && t->labels != NULL; i++) kdi_free(t->labels[i]);
    kdi_free(t->labels);
}

static kd_status read_header(reader *r, table *t, const char *label_column)
{
    const char *next, *eol = line_end(r, &next);
    if (r->p >= r->end || blank(r->p, eol))
        return kdi_fail(KD_ERR_FORMAT, "%s: line 1 should be a header row of column names",
                        r->path);
    int64_t cap = 0;
    for (int last = 0; !last;) {
        KDI_TRY(next_cell(r, eol, t->ncols, &last));
        if (t->ncols == cap) {
            cap = cap ? 2 * cap : 16;
            char **n = kdi_realloc(t->names, sizeof *n * (size_t)cap);
            if (n == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot allocate the column names");
            t->names = n;
        }
        t->names[t->ncols] = kdi_malloc(r->cell.len + 1);
        if (t->names[t->ncols] == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot copy a name");
        memcpy(t->names[t->ncols++], r->cell.s, r->cell.len + 1);
    }
    t->label = -1;
    for (int64_t i = 0; label_column != NULL && i < t->ncols; i++)
        if (strcmp(t->names[i], label_column) == 0) {
            if (t->label >= 0)
                return kdi_fail(KD_ERR_FORMAT, "%s: two columns are named '%s'", r->path,
                                label_column);
            t->label = i;
        }
    if (label_column != NULL && t->label < 0)
        return kdi_fail(KD_ERR_FORMAT, "%s: the header has no column '%s' (its first is '%s')",
                        r->path, label_column, t->names[0]);
    if (t->ncols - (t->label >= 0) < 1)
        return kdi_fail(KD_ERR_FORMAT, "%s has no feature column besides the labels", r->path);
    r->p = next;
    return KD_OK;
}

static kd_status number(reader *r, table *t, int64_t col)
{
    const char *s = r->cell.s;
    char *endp = NULL;
    errno = 0;
    double v = s[0] != '\0' ? strtod(s, &endp) : 0.0;
    if (s[0] == '\0' || endp == NULL || *endp != '\0' || !isfinite(v) || fabs(v) > 3.4e38)
        return kdi_fail(KD_ERR_FORMAT,
                        "%s: line %lld, column %lld ('%s'): '%.40s' is not a finite number",
                        r->path, (long long)r->line, (long long)col + 1, t->names[col], s);
    if (t->nx == t->capx) {
        if (t->capx >= MAX_VALUES)
            return kdi_fail(KD_ERR_FORMAT, "%s holds more than %lld values", r->path,
                            (long long)MAX_VALUES);
        int64_t cap = t->capx ? 2 * t->capx : 1024;
        float *x = kdi_realloc(t->x, sizeof *x * (size_t)cap);
        if (x == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot grow the CSV values");
        t->x = x;
        t->capx = cap;
    }
    t->x[t->nx++] = (float)v;
    return KD_OK;
}

static kd_status label(reader *r, table *t, int64_t col)
{
    if (r->cell.len == 0)
        return kdi_fail(KD_ERR_FORMAT, "%s: line %lld, column %lld ('%s'): the label is empty",
                        r->path, (long long)r->line, (long long)col + 1, t->names[col]);
    if (t->rows == t->caplab) {
        int64_t cap = t->caplab ? 2 * t->caplab : 256;
        char **l = kdi_realloc(t->labels, sizeof *l * (size_t)cap);
        if (l == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot grow the CSV labels");
        t->labels = l;
        t->caplab = cap;
    }
    char *s = kdi_malloc(r->cell.len + 1);
    if (s == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot copy a label");
    memcpy(s, r->cell.s, r->cell.len + 1);
    t->labels[t->rows] = s;
    t->pending = 1;
    return KD_OK;
}

static kd_status read_row(reader *r, table *t)
{
    const char *next, *eol = line_end(r, &next);
    if (blank(r->p, eol)) { /* blank lines (a trailing newline, say) carry no example */
        r->p = next;
        return KD_OK;
    }
    int64_t col = 0;
    for (int last = 0; !last; col++) {
        if (col == t->ncols)
            return kdi_fail(KD_ERR_FORMAT, "%s: line %lld has more than the header's %lld cells",
                            r->path, (long long)r->line, (long long)t->ncols);
        KDI_TRY(next_cell(r, eol, col, &last));
        KDI_TRY(col == t->label ? label(r, t, col) : number(r, t, col));
    }
    if (col != t->ncols)
        return kdi_fail(KD_ERR_FORMAT, "%s: line %lld has %lld cells, the header has %lld", r->path,
                        (long long)r->line, (long long)col, (long long)t->ncols);
    t->rows++;
    t->pending = 0;
    r->p = next;
    return KD_OK;
}

/* A label to sort: as an integer when every label is one (so "10" comes after "9"), else as text
 * (the order of torchvision's ImageFolder and scikit-learn's LabelEncoder). */
typedef struct key {
    const char *s;
    long long v;
    int by_value;
} key;

static int cmp_key(const void *a, const void *b)
{
    const key *x = a, *y = b;
    if (x->by_value && x->v != y->v) return x->v < y->v ? -1 : 1;
    return strcmp(x->s, y->s);
}

static int is_integer(const char *s, long long *v)
{
    char *e;
    errno = 0;
    *v = strtoll(s, &e, 10);
    return *s != '\0' && *e == '\0' && errno == 0;
}

static kd_status copy_classes(const key *k, int64_t n, kd_dataset *d)
{
    if (n > INT32_MAX) return kdi_fail(KD_ERR_FORMAT, "the table has more than 2^31 classes");
    d->classes = kdi_calloc((size_t)n, sizeof *d->classes);
    if (d->classes == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot allocate the classes");
    for (int64_t i = 0; i < n; i++) {
        size_t len = strlen(k[i].s) + 1;
        d->classes[i] = kdi_malloc(len);
        if (d->classes[i] == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot copy a class name");
        memcpy(d->classes[i], k[i].s, len);
        d->nclasses = (int32_t)i + 1;
    }
    return KD_OK;
}

/* Classes: the distinct labels, sorted; each row's label its index among them. */
static kd_status classes(const table *t, kd_dataset *d)
{
    key *k = kdi_malloc(sizeof *k * (size_t)t->rows);
    if (k == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot sort the labels");
    int ints = 1;
    for (int64_t i = 0; i < t->rows; i++) {
        k[i].s = t->labels[i];
        ints &= is_integer(t->labels[i], &k[i].v);
    }
    for (int64_t i = 0; i < t->rows; i++) k[i].by_value = ints;
    key *sorted = kdi_malloc(sizeof *k * (size_t)t->rows);
    if (sorted == NULL) {
        kdi_free(k);
        return kdi_fail(KD_ERR_NOMEM, "cannot sort the labels");
    }
    memcpy(sorted, k, sizeof *k * (size_t)t->rows);
    qsort(sorted, (size_t)t->rows, sizeof *sorted, cmp_key);
    int64_t n = 0;
    for (int64_t i = 0; i < t->rows; i++)
        if (n == 0 || cmp_key(&sorted[n - 1], &sorted[i]) != 0) sorted[n++] = sorted[i];
    kd_status st = copy_classes(sorted, n, d);
    for (int64_t i = 0; st == KD_OK && i < t->rows; i++) {
        const key *hit = bsearch(&k[i], sorted, (size_t)n, sizeof *sorted, cmp_key);
        d->labels[i] = (int32_t)(hit - sorted);
    }
    kdi_free(sorted);
    kdi_free(k);
    return st;
}

static kd_status parse(reader *r, const char *label_column, table *t)
{
    if (r->end - r->p >= 3 && memcmp(r->p, "\xEF\xBB\xBF", 3) == 0) r->p += 3; /* a UTF-8 BOM */
    r->line = 1;
    KDI_TRY(read_header(r, t, label_column));
    for (r->line = 2; r->p < r->end; r->line++) KDI_TRY(read_row(r, t));
    if (t->rows == 0) return kdi_fail(KD_ERR_FORMAT, "%s has a header but no rows", r->path);
    return KD_OK;
}

kd_status kd_dataset_load_csv(const char *path, const char *label_column, kd_dataset **out)
{
    KDI_CHECK_NULL(path);
    KDI_CHECK_NULL(out);
    unsigned char *buf;
    size_t size;
    KDI_TRY(kdi_read_file(path, &buf, &size));
    reader r = {.path = path, .p = (const char *)buf, .end = (const char *)buf + size};
    table t = {0};
    locale_t old, c = c_numeric(&old);
    kd_status st = memchr(buf, '\0', size) != NULL
                       ? kdi_fail(KD_ERR_FORMAT, "%s holds a NUL byte: not a text file", path)
                       : parse(&r, label_column, &t);
    host_numeric(c, old);
    kd_dataset *d = NULL;
    int64_t features = t.ncols - (t.label >= 0);
    if (st == KD_OK) st = kdi_dataset_new(t.rows, features, 1, 1, t.label >= 0, &d);
    if (st == KD_OK) memcpy(d->images, t.x, sizeof(float) * (size_t)t.nx);
    if (st == KD_OK && t.label >= 0) st = classes(&t, d);
    free_table(&t);
    kdi_free(r.cell.s);
    kdi_free(buf);
    if (st != KD_OK) {
        kd_dataset_destroy(d);
        return st;
    }
    *out = d;
    return KD_OK;
}
