/* Datasets from NumPy arrays: .npy files, or members of a .npz archive (numpy.savez, a zip of .npy
 * files, stored or deflated) read through libzip. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zip.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/tensor.h"
#include "data/dataset.h"
#include "data/npy.h"

/* Deflate expands at most 1032 to 1 (RFC 1951's longest match per 2-bit code): a member that
 * announces more than that is refused before its buffer is allocated. */
#define DEFLATE_RATIO 1032

/* x [n, ...] and y [n] (or NULL) into a dataset. */
static kd_status build(const kdi_npy *x, const char *xwhat, const kdi_npy *y, const char *ywhat,
                       kd_dataset **out)
{
    if (x->ndim < 1 || x->ndim > 4)
        return kdi_fail(KD_ERR_FORMAT,
                        "%s has %d dimensions; expected [n], [n, features], [n, h, w] or "
                        "[n, c, h, w]",
                        xwhat, (int)x->ndim);
    if (x->type == KDI_NPY_I32 || x->type == KDI_NPY_I64)
        return kdi_fail(KD_ERR_FORMAT,
                        "%s holds integers; examples must be float32, float64 or uint8 "
                        "(x.astype(numpy.float32))",
                        xwhat);
    int64_t n = x->dims[0], c = 1, h = 1, w = 1;
    if (x->ndim == 2) c = x->dims[1];
    if (x->ndim == 3) h = x->dims[1], w = x->dims[2];
    if (x->ndim == 4) c = x->dims[1], h = x->dims[2], w = x->dims[3];
    if (n == 0 || c * h * w == 0)
        return kdi_fail(KD_ERR_FORMAT, "%s holds no examples or examples of no values", xwhat);
    if (y != NULL && (y->ndim != 1 || y->dims[0] != n))
        return kdi_fail(KD_ERR_SHAPE, "%s should be [%lld] labels, one per example of %s", ywhat,
                        (long long)n, xwhat);
    if (y != NULL && (y->type == KDI_NPY_F32 || y->type == KDI_NPY_F64))
        return kdi_npy_labels(y, ywhat, NULL); /* the sentence about float labels */
    kd_dataset *d;
    KDI_TRY(kdi_dataset_new(n, c, h, w, y != NULL, &d));
    kdi_npy_floats(x, 1, d->images);
    kd_status st = KD_OK;
    if (!kdi_all_finite(d->images, x->count))
        st =
            kdi_fail(KD_ERR_NUMERIC, "%s holds NaN or infinity (or float64 beyond float32)", xwhat);
    if (st == KD_OK && y != NULL) st = kdi_npy_labels(y, ywhat, d->labels);
    if (st != KD_OK) {
        kd_dataset_destroy(d);
        return st;
    }
    *out = d;
    return KD_OK;
}

kd_status kd_dataset_load_npy(const char *x_path, const char *y_path, kd_dataset **out)
{
    KDI_CHECK_NULL(x_path);
    KDI_CHECK_NULL(out);
    unsigned char *xb = NULL, *yb = NULL;
    size_t xs = 0, ys = 0;
    kdi_npy x, y;
    kd_status st = kdi_read_file(x_path, &xb, &xs);
    if (st == KD_OK) st = kdi_npy_parse(xb, xs, x_path, &x);
    if (st == KD_OK && y_path != NULL) st = kdi_read_file(y_path, &yb, &ys);
    if (st == KD_OK && y_path != NULL) st = kdi_npy_parse(yb, ys, y_path, &y);
    if (st == KD_OK) st = build(&x, x_path, y_path != NULL ? &y : NULL, y_path, out);
    kdi_free(xb);
    kdi_free(yb);
    return st;
}

/* Member name + ".npy" of the archive, read whole. */
static kd_status read_member(zip_t *z, const char *path, const char *name, char *what,
                             size_t what_cap, unsigned char **buf, size_t *size)
{
    size_t len = strlen(name);
    char *member = kdi_malloc(len + 5);
    if (member == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot allocate a member name");
    memcpy(member, name, len);
    memcpy(member + len, ".npy", 5);
    snprintf(what, what_cap, "%s:%s", path, member);
    zip_int64_t i = zip_name_locate(z, member, 0);
    kdi_free(member);
    if (i < 0)
        return kdi_fail(KD_ERR_FORMAT, "%s has no array '%s' (no member %s.npy)", path, name, name);
    zip_stat_t sb;
    zip_stat_init(&sb);
    if (zip_stat_index(z, (zip_uint64_t)i, 0, &sb) != 0 ||
        (sb.valid & (ZIP_STAT_SIZE | ZIP_STAT_COMP_SIZE | ZIP_STAT_COMP_METHOD)) !=
            (ZIP_STAT_SIZE | ZIP_STAT_COMP_SIZE | ZIP_STAT_COMP_METHOD))
        return kdi_fail(KD_ERR_FORMAT, "%s: cannot read the sizes of the member", what);
    if (sb.comp_method != ZIP_CM_STORE && sb.comp_method != ZIP_CM_DEFLATE)
        return kdi_fail(KD_ERR_UNSUPPORTED,
                        "%s is compressed with method %d; numpy.savez and savez_compressed "
                        "store or deflate",
                        what, (int)sb.comp_method);
    uint64_t limit =
        sb.comp_method == ZIP_CM_STORE ? sb.comp_size : sb.comp_size * DEFLATE_RATIO + 1024;
    /* The largest .npy the parser accepts: 2^31 values of 8 bytes and a 4 GB header. */
    if (sb.size > limit || sb.size > (UINT64_C(1) << 35))
        return kdi_fail(KD_ERR_FORMAT, "%s announces %llu bytes from %llu compressed: hostile",
                        what, (unsigned long long)sb.size, (unsigned long long)sb.comp_size);
    unsigned char *b = kdi_malloc(sb.size > 0 ? (size_t)sb.size : 1);
    if (b == NULL)
        return kdi_fail(KD_ERR_NOMEM, "cannot allocate %llu bytes for %s",
                        (unsigned long long)sb.size, what);
    zip_file_t *f = zip_fopen_index(z, (zip_uint64_t)i, 0);
    zip_int64_t got = f != NULL ? zip_fread(f, b, sb.size) : -1;
    unsigned char extra;
    /* One more byte must not come: the member holds exactly what its header says. */
    zip_int64_t more = got == (zip_int64_t)sb.size ? zip_fread(f, &extra, 1) : -1;
    if (f != NULL) zip_fclose(f);
    if (got != (zip_int64_t)sb.size || more != 0) {
        kdi_free(b);
        return kdi_fail(KD_ERR_FORMAT, "%s is corrupt or truncated (read %lld of %llu bytes)", what,
                        (long long)got, (unsigned long long)sb.size);
    }
    *buf = b;
    *size = (size_t)sb.size;
    return KD_OK;
}

kd_status kd_dataset_load_npz(const char *path, const char *x_name, const char *y_name,
                              kd_dataset **out)
{
    KDI_CHECK_NULL(path);
    KDI_CHECK_NULL(x_name);
    KDI_CHECK_NULL(out);
    int err = 0;
    zip_t *z = zip_open(path, ZIP_RDONLY | ZIP_CHECKCONS, &err);
    if (z == NULL) {
        zip_error_t ze;
        zip_error_init_with_code(&ze, err);
        kd_status st = kdi_fail(
            err == ZIP_ER_OPEN || err == ZIP_ER_NOENT || err == ZIP_ER_READ ? KD_ERR_IO
                                                                            : KD_ERR_FORMAT,
            "cannot open %s as a .npz (zip) archive: %s", path, zip_error_strerror(&ze));
        zip_error_fini(&ze);
        return st;
    }
    unsigned char *xb = NULL, *yb = NULL;
    size_t xs = 0, ys = 0;
    char xw[512], yw[512];
    kdi_npy x, y;
    kd_status st = read_member(z, path, x_name, xw, sizeof xw, &xb, &xs);
    if (st == KD_OK) st = kdi_npy_parse(xb, xs, xw, &x);
    if (st == KD_OK && y_name != NULL) st = read_member(z, path, y_name, yw, sizeof yw, &yb, &ys);
    if (st == KD_OK && y_name != NULL) st = kdi_npy_parse(yb, ys, yw, &y);
    if (st == KD_OK) st = build(&x, xw, y_name != NULL ? &y : NULL, yw, out);
    zip_discard(z);
    kdi_free(xb);
    kdi_free(yb);
    return st;
}
