/* kd_tensors: a set of named arrays with string metadata, saved and loaded through the one
 * safetensors reader and writer (io/safetensors.c). The set owns a copy of every array, so a
 * loaded file is released as soon as it is copied and a caller's buffers may change after a set. */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/tensor.h"
#include "io/safetensors.h"

typedef struct array {
    char *name;
    kd_dtype dtype;
    int32_t ndim;
    int64_t dims[KD_TENSORS_MAX_DIMS];
    int64_t nbytes;
    void *data; /* kdi_alloc'd (aligned), NULL when nbytes is 0 */
} array;

struct kd_tensors {
    array *a;
    int32_t n, cap;
    char **keys, **values;
    int32_t nmeta, meta_cap;
};

/* 2^62 bytes: every offset and sum the writer forms stays within int64_t. */
#define MAX_BYTES (INT64_C(1) << 62)

static int64_t dtype_size(kd_dtype d)
{
    return d == KD_DTYPE_I64 ? 8 : d == KD_DTYPE_I8 || d == KD_DTYPE_U8 ? 1 : 4;
}

static kdi_st_dtype to_st(kd_dtype d)
{
    switch (d) {
    case KD_DTYPE_F32: return KDI_ST_F32;
    case KD_DTYPE_I32: return KDI_ST_I32;
    case KD_DTYPE_I64: return KDI_ST_I64;
    case KD_DTYPE_I8: return KDI_ST_I8;
    default: return KDI_ST_U8;
    }
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *o = kdi_malloc(n);
    if (o != NULL) memcpy(o, s, n);
    return o;
}

kd_status kd_tensors_create(kd_tensors **out)
{
    KDI_CHECK_NULL(out);
    kd_tensors *t = kdi_calloc(1, sizeof *t);
    if (t == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot allocate a tensor set");
    *out = t;
    return KD_OK;
}

static void free_array(array *a)
{
    kdi_free(a->name);
    kdi_free_floats(a->data);
}

void kd_tensors_destroy(kd_tensors *t)
{
    if (t == NULL) return;
    for (int32_t i = 0; i < t->n; i++) free_array(&t->a[i]);
    for (int32_t i = 0; i < t->nmeta; i++) {
        kdi_free(t->keys[i]);
        kdi_free(t->values[i]);
    }
    kdi_free(t->a);
    kdi_free(t->keys);
    kdi_free(t->values);
    kdi_free(t);
}

static int32_t find(const kd_tensors *t, const char *name)
{
    for (int32_t i = 0; i < t->n; i++)
        if (strcmp(t->a[i].name, name) == 0) return i;
    return -1;
}

static kd_status lookup(const kd_tensors *t, const char *name, int32_t *i)
{
    KDI_CHECK_NULL(t);
    KDI_CHECK_NULL(name);
    *i = find(t, name);
    if (*i < 0) return kdi_fail(KD_ERR_ARGUMENT, "the tensor set has no array named '%s'", name);
    return KD_OK;
}

static kd_status check_array(const char *name, kd_dtype dtype, int32_t ndim, const int64_t *dims,
                             const void *data, int64_t *nbytes)
{
    if (name[0] == '\0' || strcmp(name, "__metadata__") == 0 || !kdi_utf8_valid(name, strlen(name)))
        return kdi_fail(KD_ERR_ARGUMENT,
                        "an array name must be non-empty UTF-8 and not '__metadata__'");
    if (dtype != KD_DTYPE_F32 && dtype != KD_DTYPE_I32 && dtype != KD_DTYPE_I64 &&
        dtype != KD_DTYPE_I8 && dtype != KD_DTYPE_U8)
        return kdi_fail(KD_ERR_ARGUMENT, "array '%s': dtype %d is not a kd_dtype", name,
                        (int)dtype);
    if (ndim < 0 || ndim > KD_TENSORS_MAX_DIMS || (ndim > 0 && dims == NULL))
        return kdi_fail(KD_ERR_ARGUMENT, "array '%s': ndim %d must be 0 to %d, with dims", name,
                        (int)ndim, KD_TENSORS_MAX_DIMS);
    int64_t bytes = dtype_size(dtype);
    for (int32_t d = 0; d < ndim; d++)
        if (dims[d] < 0 || !kdi_mul_ok(bytes, dims[d], &bytes) || bytes > MAX_BYTES)
            return kdi_fail(KD_ERR_ARGUMENT,
                            "array '%s': dimension %d is negative or the size passes 2^62 bytes",
                            name, (int)d);
    if (bytes > 0 && data == NULL)
        return kdi_fail(KD_ERR_ARGUMENT, "array '%s': data is NULL", name);
    if (dtype == KD_DTYPE_F32) {
        const unsigned char *p = data;
        for (int64_t i = 0; i < bytes / 4; i++) {
            float v;
            memcpy(&v, p + 4 * i, 4); /* a caller's buffer may be unaligned */
            if (v - v != 0.0f)
                return kdi_fail(KD_ERR_NUMERIC, "array '%s' holds NaN or infinity at value %lld",
                                name, (long long)i);
        }
    }
    *nbytes = bytes;
    return KD_OK;
}

static kd_status grow(kd_tensors *t)
{
    if (t->n < t->cap) return KD_OK;
    if (t->cap > INT32_MAX / 2) return kdi_fail(KD_ERR_ARGUMENT, "too many arrays in a set");
    int32_t cap = t->cap ? 2 * t->cap : 8;
    array *a = kdi_realloc(t->a, sizeof *a * (size_t)cap);
    if (a == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot grow the tensor set");
    t->a = a;
    t->cap = cap;
    return KD_OK;
}

/* Sets array name from data already checked; nothing changes on failure. */
static kd_status put_array(kd_tensors *t, const char *name, kd_dtype dtype, int32_t ndim,
                           const int64_t *dims, const void *data, int64_t nbytes)
{
    array a = {.dtype = dtype, .ndim = ndim, .nbytes = nbytes};
    for (int32_t d = 0; d < ndim; d++) a.dims[d] = dims[d];
    a.name = dup_str(name);
    a.data = nbytes > 0 ? kdi_alloc_floats((nbytes + 3) / 4) : NULL;
    if (a.name == NULL || (nbytes > 0 && a.data == NULL)) {
        free_array(&a);
        return kdi_fail(KD_ERR_NOMEM, "cannot allocate %lld bytes for array '%s'",
                        (long long)nbytes, name);
    }
    if (nbytes > 0) memcpy(a.data, data, (size_t)nbytes);
    int32_t i = find(t, name);
    if (i >= 0) {
        free_array(&t->a[i]);
        t->a[i] = a;
        return KD_OK;
    }
    kd_status st = grow(t);
    if (st != KD_OK) {
        free_array(&a);
        return st;
    }
    t->a[t->n++] = a;
    return KD_OK;
}

kd_status kd_tensors_set(kd_tensors *t, const char *name, kd_dtype dtype, int32_t ndim,
                         const int64_t *dims, const void *data)
{
    KDI_CHECK_NULL(t);
    KDI_CHECK_NULL(name);
    int64_t nbytes = 0;
    KDI_TRY(check_array(name, dtype, ndim, dims, data, &nbytes));
    return put_array(t, name, dtype, ndim, dims, data, nbytes);
}

kd_status kd_tensors_remove(kd_tensors *t, const char *name)
{
    int32_t i;
    KDI_TRY(lookup(t, name, &i));
    free_array(&t->a[i]);
    memmove(&t->a[i], &t->a[i + 1], sizeof *t->a * (size_t)(t->n - i - 1));
    t->n--;
    return KD_OK;
}

kd_status kd_tensors_count(const kd_tensors *t, int32_t *count)
{
    KDI_CHECK_NULL(t);
    KDI_CHECK_NULL(count);
    *count = t->n;
    return KD_OK;
}

kd_status kd_tensors_name(const kd_tensors *t, int32_t i, const char **name)
{
    KDI_CHECK_NULL(t);
    KDI_CHECK_NULL(name);
    if (i < 0 || i >= t->n)
        return kdi_fail(KD_ERR_ARGUMENT, "array index %d is outside 0..%d", (int)i, (int)t->n - 1);
    *name = t->a[i].name;
    return KD_OK;
}

kd_status kd_tensors_has(const kd_tensors *t, const char *name, int32_t *found)
{
    KDI_CHECK_NULL(t);
    KDI_CHECK_NULL(name);
    KDI_CHECK_NULL(found);
    *found = find(t, name) >= 0;
    return KD_OK;
}

kd_status kd_tensors_info(const kd_tensors *t, const char *name, kd_dtype *dtype, int32_t *ndim,
                          int64_t *dims)
{
    int32_t i;
    KDI_TRY(lookup(t, name, &i));
    const array *a = &t->a[i];
    if (dtype != NULL) *dtype = a->dtype;
    if (ndim != NULL) *ndim = a->ndim;
    for (int32_t d = 0; dims != NULL && d < KD_TENSORS_MAX_DIMS; d++)
        dims[d] = d < a->ndim ? a->dims[d] : 0;
    return KD_OK;
}

kd_status kd_tensors_data(const kd_tensors *t, const char *name, const void **data, int64_t *nbytes)
{
    int32_t i;
    KDI_CHECK_NULL(data);
    KDI_TRY(lookup(t, name, &i));
    *data = t->a[i].data;
    if (nbytes != NULL) *nbytes = t->a[i].nbytes;
    return KD_OK;
}

static int32_t find_meta(const kd_tensors *t, const char *key)
{
    for (int32_t i = 0; i < t->nmeta; i++)
        if (strcmp(t->keys[i], key) == 0) return i;
    return -1;
}

static kd_status set_meta(kd_tensors *t, const char *key, const char *value)
{
    char *v = dup_str(value);
    if (v == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot copy the value of metadata '%s'", key);
    int32_t i = find_meta(t, key);
    if (i >= 0) {
        kdi_free(t->values[i]);
        t->values[i] = v;
        return KD_OK;
    }
    char *k = dup_str(key);
    if (k != NULL && t->nmeta == t->meta_cap) {
        int32_t cap = t->meta_cap ? 2 * t->meta_cap : 8;
        char **nk = kdi_realloc(t->keys, sizeof *nk * (size_t)cap);
        if (nk != NULL) t->keys = nk;
        char **nv = nk != NULL ? kdi_realloc(t->values, sizeof *nv * (size_t)cap) : NULL;
        if (nv != NULL) t->values = nv;
        if (nv != NULL) t->meta_cap = cap;
    }
    if (k == NULL || t->nmeta == t->meta_cap) {
        kdi_free(k);
        kdi_free(v);
        return kdi_fail(KD_ERR_NOMEM, "cannot add metadata '%s'", key);
    }
    t->keys[t->nmeta] = k;
    t->values[t->nmeta++] = v;
    return KD_OK;
}

kd_status kd_tensors_set_meta(kd_tensors *t, const char *key, const char *value)
{
    KDI_CHECK_NULL(t);
    KDI_CHECK_NULL(key);
    KDI_CHECK_NULL(value);
    /* checked here, not only by the save: a bad entry would make every later save fail */
    if (!kdi_utf8_valid(key, strlen(key)))
        return kdi_fail(KD_ERR_ARGUMENT, "a metadata key must be UTF-8");
    if (!kdi_utf8_valid(value, strlen(value)))
        return kdi_fail(KD_ERR_ARGUMENT, "metadata '%s': the value is not UTF-8", key);
    return set_meta(t, key, value);
}

kd_status kd_tensors_remove_meta(kd_tensors *t, const char *key)
{
    KDI_CHECK_NULL(t);
    KDI_CHECK_NULL(key);
    int32_t i = find_meta(t, key);
    if (i < 0) return kdi_fail(KD_ERR_ARGUMENT, "no metadata '%s'", key);
    kdi_free(t->keys[i]);
    kdi_free(t->values[i]);
    memmove(&t->keys[i], &t->keys[i + 1], sizeof *t->keys * (size_t)(t->nmeta - i - 1));
    memmove(&t->values[i], &t->values[i + 1], sizeof *t->values * (size_t)(t->nmeta - i - 1));
    t->nmeta--;
    return KD_OK;
}

kd_status kd_tensors_get_meta(const kd_tensors *t, const char *key, const char **value)
{
    KDI_CHECK_NULL(t);
    KDI_CHECK_NULL(key);
    KDI_CHECK_NULL(value);
    int32_t i = find_meta(t, key);
    *value = i >= 0 ? t->values[i] : NULL;
    return KD_OK;
}

kd_status kd_tensors_meta_count(const kd_tensors *t, int32_t *count)
{
    KDI_CHECK_NULL(t);
    KDI_CHECK_NULL(count);
    *count = t->nmeta;
    return KD_OK;
}

kd_status kd_tensors_meta_key(const kd_tensors *t, int32_t i, const char **key)
{
    KDI_CHECK_NULL(t);
    KDI_CHECK_NULL(key);
    if (i < 0 || i >= t->nmeta)
        return kdi_fail(KD_ERR_ARGUMENT, "metadata index %d is outside 0..%d", (int)i,
                        (int)t->nmeta - 1);
    *key = t->keys[i];
    return KD_OK;
}

kd_status kd_tensors_save(const kd_tensors *t, const char *path)
{
    KDI_CHECK_NULL(t);
    KDI_CHECK_NULL(path);
    kdi_st_tensor *st = kdi_calloc((size_t)(t->n > 0 ? t->n : 1), sizeof *st);
    if (st == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot allocate the tensor list");
    for (int32_t i = 0; i < t->n; i++) {
        const array *a = &t->a[i];
        st[i].name = a->name;
        st[i].dtype = to_st(a->dtype);
        st[i].ndim = a->ndim;
        for (int32_t d = 0; d < a->ndim; d++) st[i].dims[d] = a->dims[d];
        st[i].data = a->data;
        st[i].nbytes = a->nbytes;
    }
    kd_status s = kdi_st_write(path, st, t->n, (const char *const *)t->keys,
                               (const char *const *)t->values, t->nmeta);
    kdi_free(st);
    return s;
}

/* Copies a file that kdi_st_read accepted; F32 data is not rescanned for finiteness here: a file
 * is data, and whoever uses the values checks them as any input. */
static kd_status copy_file(const kdi_st_file *f, const char *path, kd_tensors *t)
{
    for (int32_t i = 0; i < f->n; i++) {
        const kdi_st_tensor *s = &f->tensors[i];
        kd_dtype d = s->dtype == KDI_ST_F32   ? KD_DTYPE_F32
                     : s->dtype == KDI_ST_I32 ? KD_DTYPE_I32
                     : s->dtype == KDI_ST_I8  ? KD_DTYPE_I8
                     : s->dtype == KDI_ST_U8  ? KD_DTYPE_U8
                                              : KD_DTYPE_I64;
        if (s->dtype == KDI_ST_OTHER)
            return kdi_fail(KD_ERR_UNSUPPORTED,
                            "%s: array '%s' has a dtype other than F32, I32, I64, I8 and U8", path,
                            s->name);
        if (s->name[0] == '\0')
            return kdi_fail(KD_ERR_FORMAT, "%s: an array has an empty name", path);
        KDI_TRY(put_array(t, s->name, d, s->ndim, s->dims, s->data, s->nbytes));
    }
    for (int32_t i = 0; i < f->nmeta; i++) KDI_TRY(set_meta(t, f->meta_keys[i], f->meta_values[i]));
    return KD_OK;
}

kd_status kd_tensors_load(const char *path, kd_tensors **out)
{
    KDI_CHECK_NULL(path);
    KDI_CHECK_NULL(out);
    kdi_st_file f;
    KDI_TRY(kdi_st_read(path, &f));
    kd_tensors *t = kdi_calloc(1, sizeof *t);
    kd_status st =
        t != NULL ? copy_file(&f, path, t) : kdi_fail(KD_ERR_NOMEM, "cannot allocate a tensor set");
    kdi_st_free(&f);
    if (st != KD_OK) {
        kd_tensors_destroy(t);
        return st;
    }
    *out = t;
    return KD_OK;
}
