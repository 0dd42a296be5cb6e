/* Datasets of images and labels in memory, and seeded mini-batches over them. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "data/dataset.h"
#include "data/idx.h"

struct kd_batcher {
    const kd_dataset *d;
    int64_t batch;
    uint64_t seed;
    int64_t epoch; /* the epoch perm belongs to; -1 before the first */
    int64_t n;     /* the dataset's size when perm was drawn: kd_dataset_hold_out may shrink it */
    int64_t pos;   /* next index into perm */
    int64_t last_start, last_rows;
    int64_t *perm;
};

static kd_status to_dataset(kdi_idx *img, const kdi_idx *lab, const char *labels_path,
                            kd_dataset *d)
{
    d->n = img->dims[0];
    d->c = img->ndim == 4 ? img->dims[1] : 1;
    d->h = img->dims[img->ndim - 2];
    d->w = img->dims[img->ndim - 1];
    if (lab != NULL && lab->dims[0] != d->n)
        return kdi_fail(KD_ERR_SHAPE, "%s holds %lld labels for %lld images", labels_path,
                        (long long)lab->dims[0], (long long)d->n);
    d->labels = lab != NULL ? kdi_malloc(sizeof(int32_t) * (size_t)d->n) : NULL;
    if (lab != NULL && d->labels == NULL)
        return kdi_fail(KD_ERR_NOMEM, "cannot allocate a dataset of %lld images", (long long)d->n);
    d->images = img->values; /* byte / 255, as PyTorch's ToTensor */
    img->values = NULL;
    /* IDX labels are bytes, so every label is in [0, 255] and never -1. */
    for (int64_t i = 0; lab != NULL && i < d->n; i++) d->labels[i] = lab->data[i];
    return KD_OK;
}

kd_status kd_dataset_load_idx(const char *images_path, const char *labels_path, kd_dataset **out)
{
    KDI_CHECK_NULL(images_path);
    KDI_CHECK_NULL(out);
    kdi_idx img = {0}, lab = {0};
    KDI_TRY(kdi_idx_read_floats(images_path, 3, 4, 255.0f, &img));
    kd_status st = labels_path != NULL ? kdi_idx_read(labels_path, 1, 1, &lab) : KD_OK;
    kd_dataset *d = st == KD_OK ? kdi_calloc(1, sizeof *d) : NULL;
    if (st == KD_OK && d == NULL) st = kdi_fail(KD_ERR_NOMEM, "cannot allocate a dataset");
    if (st == KD_OK) st = to_dataset(&img, labels_path != NULL ? &lab : NULL, labels_path, d);
    kdi_idx_free(&img);
    kdi_idx_free(&lab);
    if (st != KD_OK) {
        kd_dataset_destroy(d);
        return st;
    }
    *out = d;
    return KD_OK;
}

/* The first of PREFIX + each ending that can be read, into out (size bytes); 0 when none. */
static int first_readable(const char *prefix, const char *const *endings, char *out, size_t size)
{
    for (int i = 0; endings[i] != NULL; i++) {
        int n = snprintf(out, size, "%s%s", prefix, endings[i]);
        if (n < 0 || (size_t)n >= size) return 0;
        if (access(out, R_OK) == 0) return 1;
    }
    return 0;
}

kd_status kd_dataset_load_idx_prefix(const char *prefix, kd_dataset **out)
{
    KDI_CHECK_NULL(prefix);
    KDI_CHECK_NULL(out);
    /* LeCun's names (train-images-idx3-ubyte) and Kaggle's (train-images.idx3-ubyte), gzip first. */
    static const char *const images[] = {"-images-idx3-ubyte.gz", "-images-idx3-ubyte",
                                         "-images.idx3-ubyte.gz", "-images.idx3-ubyte", NULL};
    static const char *const labels[] = {"-labels-idx1-ubyte.gz", "-labels-idx1-ubyte",
                                         "-labels.idx1-ubyte.gz", "-labels.idx1-ubyte", NULL};
    size_t size = strlen(prefix) + 32;
    char *ip = kdi_malloc(size), *lp = kdi_malloc(size);
    kd_status st = KD_OK;
    if (ip == NULL || lp == NULL)
        st = kdi_fail(KD_ERR_NOMEM, "cannot allocate file names");
    else if (!first_readable(prefix, images, ip, size))
        st = kdi_fail(KD_ERR_IO,
                      "no IDX images at %s: expected %s-images-idx3-ubyte or "
                      "%s-images.idx3-ubyte (optionally .gz)",
                      prefix, prefix, prefix);
    else if (!first_readable(prefix, labels, lp, size))
        st = kdi_fail(KD_ERR_IO,
                      "no IDX labels at %s: expected %s-labels-idx1-ubyte or "
                      "%s-labels.idx1-ubyte (optionally .gz)",
                      prefix, prefix, prefix);
    if (st == KD_OK) st = kd_dataset_load_idx(ip, lp, out);
    kdi_free(ip);
    kdi_free(lp);
    return st;
}

void kd_dataset_destroy(kd_dataset *d)
{
    if (d == NULL) return;
    kdi_free_floats(d->images);
    kdi_free(d->labels);
    for (int32_t i = 0; i < d->nclasses; i++) kdi_free(d->classes[i]);
    kdi_free(d->classes);
    kdi_free(d);
}

kd_status kdi_dataset_new(int64_t n, int64_t c, int64_t h, int64_t w, int labelled,
                          kd_dataset **out)
{
    kd_dataset *d = kdi_calloc(1, sizeof *d);
    if (d == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot allocate a dataset");
    *d = (kd_dataset){.n = n, .c = c, .h = h, .w = w};
    d->images = kdi_alloc_floats(n * c * h * w);
    d->labels = labelled ? kdi_malloc(sizeof(int32_t) * (size_t)n) : NULL;
    if (d->images == NULL || (labelled && d->labels == NULL)) {
        kd_dataset_destroy(d);
        return kdi_fail(KD_ERR_NOMEM, "cannot allocate a dataset of %lld examples of %lld values",
                        (long long)n, (long long)(c * h * w));
    }
    *out = d;
    return KD_OK;
}

kd_status kd_dataset_channel_stats(const kd_dataset *d, float *mean, float *std)
{
    KDI_CHECK_NULL(d);
    KDI_CHECK_NULL(mean);
    KDI_CHECK_NULL(std);
    int64_t plane = d->h * d->w, count = d->n * plane;
    for (int64_t c = 0; c < d->c; c++) {
        /* Two passes in double: the mean, then the squares about it (no cancellation). */
        double sum = 0.0, sq = 0.0;
        for (int64_t i = 0; i < d->n; i++) {
            const float *p = d->images + (i * d->c + c) * plane;
            for (int64_t k = 0; k < plane; k++) sum += p[k];
        }
        double mu = sum / (double)count;
        for (int64_t i = 0; i < d->n; i++) {
            const float *p = d->images + (i * d->c + c) * plane;
            for (int64_t k = 0; k < plane; k++) sq += (p[k] - mu) * (p[k] - mu);
        }
        double sd = sqrt(sq / (double)count);
        mean[c] = (float)mu;
        std[c] = sd > 0.0 && (float)sd > 0.0f ? (float)sd : 1.0f;
    }
    return KD_OK;
}

kd_status kd_dataset_class_count(const kd_dataset *d, int32_t *count)
{
    KDI_CHECK_NULL(d);
    KDI_CHECK_NULL(count);
    *count = d->nclasses;
    return KD_OK;
}

kd_status kd_dataset_class_name(const kd_dataset *d, int32_t label, const char **name)
{
    KDI_CHECK_NULL(d);
    KDI_CHECK_NULL(name);
    if (label < 0 || label >= d->nclasses)
        return kdi_fail(KD_ERR_ARGUMENT, "label %d is outside the %d named classes", (int)label,
                        (int)d->nclasses);
    *name = d->classes[label];
    return KD_OK;
}

kd_status kd_dataset_size(const kd_dataset *d, int64_t *n)
{
    KDI_CHECK_NULL(d);
    KDI_CHECK_NULL(n);
    *n = d->n;
    return KD_OK;
}

kd_status kd_dataset_shape(const kd_dataset *d, int64_t *c, int64_t *h, int64_t *w)
{
    KDI_CHECK_NULL(d);
    if (c != NULL) *c = d->c;
    if (h != NULL) *h = d->h;
    if (w != NULL) *w = d->w;
    return KD_OK;
}

const float *kd_dataset_images(const kd_dataset *d) { return d != NULL ? d->images : NULL; }

const int32_t *kd_dataset_labels(const kd_dataset *d) { return d != NULL ? d->labels : NULL; }

/* A new dataset of the examples of d whose flag in take equals want, in their order. */
static kd_status pick(const kd_dataset *d, const unsigned char *take, int want, int64_t n,
                      kd_dataset **out)
{
    int64_t size = d->c * d->h * d->w, k = 0;
    kd_dataset *p = kdi_calloc(1, sizeof *p);
    if (p == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot allocate a dataset");
    *p = (kd_dataset){.n = n, .c = d->c, .h = d->h, .w = d->w};
    p->images = kdi_alloc_floats(n * size);
    p->labels = d->labels != NULL ? kdi_malloc(sizeof(int32_t) * (size_t)n) : NULL;
    int ok = p->images != NULL && (d->labels == NULL || p->labels != NULL);
    /* Both parts keep the class names (CSV, image folders): their labels mean the same. */
    if (ok && d->nclasses > 0 && (p->classes = kdi_calloc((size_t)d->nclasses, sizeof(char *))))
        for (; p->nclasses < d->nclasses; p->nclasses++) {
            size_t len = strlen(d->classes[p->nclasses]) + 1;
            char *name = kdi_malloc(len);
            if (name == NULL) break;
            p->classes[p->nclasses] = memcpy(name, d->classes[p->nclasses], len);
        }
    if (!ok || p->nclasses != d->nclasses) {
        kd_dataset_destroy(p);
        return kdi_fail(KD_ERR_NOMEM, "cannot allocate a dataset of %lld images", (long long)n);
    }
    for (int64_t i = 0; i < d->n; i++) {
        if (take[i] != want) continue;
        memcpy(p->images + k * size, d->images + i * size, sizeof(float) * (size_t)size);
        if (p->labels != NULL) p->labels[k] = d->labels[i];
        k++;
    }
    *out = p;
    return KD_OK;
}

/* take[i] = 1 for the examples a split holds out: the first `held` of a seeded Fisher-Yates
 * shuffle. Checks fraction; *take is the caller's to free. */
static kd_status choose_held(const kd_dataset *d, float fraction, uint64_t seed,
                             unsigned char **take, int64_t *held_out)
{
    if (!(fraction > 0.0f && fraction < 1.0f))
        return kdi_fail(KD_ERR_ARGUMENT, "fraction %g must be in (0, 1)", (double)fraction);
    int64_t held = (int64_t)llround((double)fraction * (double)d->n);
    if (held < 1 || held >= d->n)
        return kdi_fail(KD_ERR_ARGUMENT, "a fraction %g of %lld examples leaves one part empty",
                        (double)fraction, (long long)d->n);
    int64_t *perm = kdi_malloc(sizeof(int64_t) * (size_t)d->n);
    unsigned char *t = kdi_calloc((size_t)d->n, 1);
    if (perm == NULL || t == NULL) {
        kdi_free(perm);
        kdi_free(t);
        return kdi_fail(KD_ERR_NOMEM, "cannot split a dataset of %lld images", (long long)d->n);
    }
    kdi_rng r;
    kdi_rng_seed(&r, seed);
    for (int64_t i = 0; i < d->n; i++) perm[i] = i;
    for (int64_t i = 0; i < held; i++) {
        int64_t j = i + (int64_t)kdi_rng_below(&r, (uint64_t)(d->n - i)), x = perm[i];
        perm[i] = perm[j];
        perm[j] = x;
        t[perm[i]] = 1;
    }
    kdi_free(perm);
    *take = t;
    *held_out = held;
    return KD_OK;
}

kd_status kd_dataset_split(const kd_dataset *d, float fraction, uint64_t seed, kd_dataset **rest,
                           kd_dataset **held_out)
{
    KDI_CHECK_NULL(d);
    KDI_CHECK_NULL(rest);
    KDI_CHECK_NULL(held_out);
    unsigned char *take;
    int64_t held;
    KDI_TRY(choose_held(d, fraction, seed, &take, &held));
    kd_dataset *a = NULL, *b = NULL;
    kd_status st = pick(d, take, 0, d->n - held, &a);
    if (st == KD_OK) st = pick(d, take, 1, held, &b);
    kdi_free(take);
    if (st != KD_OK) {
        kd_dataset_destroy(a);
        return st;
    }
    *rest = a;
    *held_out = b;
    return KD_OK;
}

kd_status kd_dataset_hold_out(kd_dataset *d, float fraction, uint64_t seed, kd_dataset **held_out)
{
    KDI_CHECK_NULL(d);
    KDI_CHECK_NULL(held_out);
    unsigned char *take;
    int64_t held, size = d->c * d->h * d->w, k = 0;
    KDI_TRY(choose_held(d, fraction, seed, &take, &held));
    kd_dataset *b = NULL;
    kd_status st = pick(d, take, 1, held, &b);
    if (st == KD_OK) { /* nothing fails past here: d's rest moves down in place, in order */
        for (int64_t i = 0; i < d->n; i++) {
            if (take[i]) continue;
            if (k != i) {
                memmove(d->images + k * size, d->images + i * size, sizeof(float) * (size_t)size);
                if (d->labels != NULL) d->labels[k] = d->labels[i];
            }
            k++;
        }
        d->n = k;
        *held_out = b;
    }
    kdi_free(take);
    return st;
}

kd_status kd_batcher_create(const kd_dataset *d, int64_t batch, uint64_t seed, kd_batcher **out)
{
    KDI_CHECK_NULL(d);
    KDI_CHECK_NULL(out);
    if (batch < 1)
        return kdi_fail(KD_ERR_ARGUMENT, "batch must be 1 or more, got %lld", (long long)batch);
    kd_batcher *b = kdi_calloc(1, sizeof *b);
    int64_t *perm = kdi_malloc(sizeof(int64_t) * (size_t)d->n);
    if (b == NULL || perm == NULL) {
        kdi_free(b);
        kdi_free(perm);
        return kdi_fail(KD_ERR_NOMEM, "cannot allocate a batcher");
    }
    /* perm keeps this size: a dataset only ever shrinks (kd_dataset_hold_out). */
    *b = (kd_batcher){.d = d, .batch = batch, .seed = seed, .epoch = -1, .n = d->n, .perm = perm};
    b->pos = d->n; /* the first call starts epoch 0 */
    *out = b;
    return KD_OK;
}

void kd_batcher_destroy(kd_batcher *b)
{
    if (b == NULL) return;
    kdi_free(b->perm);
    kdi_free(b);
}

/* Epoch e's order depends only on (seed, e): a resumed run sees the same batches. */
static void shuffle(kd_batcher *b, int64_t epoch)
{
    kdi_rng r;
    kdi_rng_seed(&r, kdi_rng_derive(b->seed, (uint64_t)epoch));
    for (int64_t i = 0; i < b->d->n; i++) b->perm[i] = i;
    for (int64_t i = b->d->n - 1; i > 0; i--) {
        int64_t j = (int64_t)kdi_rng_below(&r, (uint64_t)i + 1), t = b->perm[i];
        b->perm[i] = b->perm[j];
        b->perm[j] = t;
    }
    b->epoch = epoch;
    b->n = b->d->n;
    b->pos = 0;
}

kd_status kd_batcher_next(kd_batcher *b, float *x, int32_t *labels, int64_t *rows)
{
    KDI_CHECK_NULL(b);
    KDI_CHECK_NULL(x);
    KDI_CHECK_NULL(rows);
    const kd_dataset *d = b->d;
    /* The rest of an order drawn for another size would name examples that moved or left (the
     * held-out ones among them): refuse rather than copy them. */
    if (b->pos < b->n && d->n != b->n)
        return kdi_fail(KD_ERR_STATE,
                        "the dataset has %lld examples, but this epoch's order was drawn for %lld "
                        "(kd_dataset_hold_out during an epoch): create a new batcher",
                        (long long)d->n, (long long)b->n);
    if (b->pos >= b->n) {
        if (b->epoch >= 0 && b->last_rows != 0) {
            /* The epoch is over: say so once, then start the next one on the following call. */
            b->last_rows = 0;
            *rows = 0;
            return KD_OK;
        }
        shuffle(b, b->epoch + 1);
    }
    int64_t n = d->n - b->pos < b->batch ? d->n - b->pos : b->batch, size = d->c * d->h * d->w;
    for (int64_t i = 0; i < n; i++) {
        int64_t k = b->perm[b->pos + i];
        memcpy(x + i * size, d->images + k * size, sizeof(float) * (size_t)size);
        if (labels != NULL) labels[i] = d->labels != NULL ? d->labels[k] : -1;
    }
    b->last_start = b->pos;
    b->last_rows = n;
    b->pos += n;
    *rows = n;
    return KD_OK;
}

kd_status kd_batcher_indices(const kd_batcher *b, const int64_t **indices, int64_t *rows)
{
    KDI_CHECK_NULL(b);
    KDI_CHECK_NULL(indices);
    KDI_CHECK_NULL(rows);
    *indices = b->perm + b->last_start;
    *rows = b->last_rows;
    return KD_OK;
}
