/* Datasets and batchers: the committed Fashion-MNIST subset, hostile IDX files, shuffling. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

#define TRAIN_IMAGES KDT_DATA "/fmnist-train-2000-images-idx3-ubyte.gz"
#define TRAIN_LABELS KDT_DATA "/fmnist-train-2000-labels-idx1-ubyte.gz"

/* A path in the test's directory; four live at once. */
static const char *path_of(const char *name)
{
    static char p[4][256];
    static int next;
    char *out = p[next++ % 4];
    snprintf(out, sizeof p[0], "%s/%s", kdt_tmpdir(), name);
    return out;
}

static void write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

START_TEST(loads_subset)
{
    kd_dataset *d;
    ck_assert_int_eq(kd_dataset_load_idx(TRAIN_IMAGES, TRAIN_LABELS, &d), KD_OK);
    int64_t n, c, h, w;
    ck_assert_int_eq(kd_dataset_size(d, &n), KD_OK);
    ck_assert_int_eq(kd_dataset_shape(d, &c, &h, &w), KD_OK);
    ck_assert_int_eq(n, 2000);
    ck_assert(c == 1 && h == 28 && w == 28);
    /* Fashion-MNIST's first training labels: ankle boot, T-shirt, T-shirt, dress, T-shirt. */
    const int32_t *y = kd_dataset_labels(d);
    ck_assert(y[0] == 9 && y[1] == 0 && y[2] == 0 && y[3] == 3 && y[4] == 0);
    int counts[10] = {0};
    for (int64_t i = 0; i < n; i++) {
        ck_assert(y[i] >= 0 && y[i] < 10);
        counts[y[i]]++;
    }
    for (int k = 0; k < 10; k++) ck_assert_msg(counts[k] > 100, "class %d has %d images", k, counts[k]);
    const float *x = kd_dataset_images(d);
    float lo = 1, hi = 0;
    for (int64_t i = 0; i < n * 784; i++) {
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
    }
    ck_assert(lo == 0.0f && hi == 1.0f);
    kd_dataset_destroy(d);
    kd_dataset_destroy(NULL);
}
END_TEST

START_TEST(unlabelled)
{
    kd_dataset *d;
    ck_assert_int_eq(kd_dataset_load_idx(TRAIN_IMAGES, NULL, &d), KD_OK);
    ck_assert_ptr_null(kd_dataset_labels(d));
    kd_batcher *b;
    ck_assert_int_eq(kd_batcher_create(d, 8, 1, &b), KD_OK);
    float x[8 * 784];
    int32_t y[8];
    int64_t rows;
    ck_assert_int_eq(kd_batcher_next(b, x, y, &rows), KD_OK);
    for (int i = 0; i < 8; i++) ck_assert_int_eq(y[i], -1);
    kd_batcher_destroy(b);
    kd_dataset_destroy(d);
}
END_TEST

/* Header and body of a small IDX file. */
static size_t idx_file(unsigned char *buf, unsigned char type, int ndim, const uint32_t *dims,
                       size_t body)
{
    size_t k = 0;
    buf[k++] = 0, buf[k++] = 0, buf[k++] = type, buf[k++] = (unsigned char)ndim;
    for (int d = 0; d < ndim; d++)
        for (int s = 24; s >= 0; s -= 8) buf[k++] = (unsigned char)(dims[d] >> s);
    memset(buf + k, 7, body);
    return k + body;
}

START_TEST(hostile_idx)
{
    unsigned char buf[4096];
    char img[256], lab[256];
    snprintf(img, sizeof img, "%s", path_of("img.idx"));
    snprintf(lab, sizeof lab, "%s", path_of("lab.idx"));
    uint32_t dims[3] = {2, 4, 4}, ldims[1] = {2};
    write_bytes(lab, buf, idx_file(buf, 8, 1, ldims, 2));
    kd_dataset *d = (kd_dataset *)&d;
    struct {
        const char *what;
        unsigned char type;
        int ndim;
        uint32_t dims[3];
        size_t body;
        size_t cut;
    } bad[] = {
        {"float type", 0x0D, 3, {2, 4, 4}, 32, 0},
        {"2 dims", 8, 2, {2, 16, 0}, 32, 0},
        {"zero dim", 8, 3, {0, 4, 4}, 0, 0},
        {"huge", 8, 3, {65536, 65536, 65536}, 0, 0},
        {"truncated body", 8, 3, {2, 4, 4}, 31, 0},
        {"trailing bytes", 8, 3, {2, 4, 4}, 33, 0},
        {"truncated header", 8, 3, {2, 4, 4}, 32, 9},
        {"labels mismatch", 8, 3, {3, 4, 4}, 48, 0},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t n = idx_file(buf, bad[i].type, bad[i].ndim, bad[i].dims, bad[i].body);
        write_bytes(img, buf, bad[i].cut ? bad[i].cut : n);
        kd_status st = kd_dataset_load_idx(img, lab, &d);
        ck_assert_msg(st == KD_ERR_FORMAT || st == KD_ERR_SHAPE, "%s gave %d", bad[i].what, st);
        ck_assert_msg(d == (kd_dataset *)&d, "%s touched *out", bad[i].what);
    }
    buf[0] = 1;
    write_bytes(img, buf, 40);
    ck_assert_int_eq(kd_dataset_load_idx(img, lab, &d), KD_ERR_FORMAT);
    ck_assert_int_eq(kd_dataset_load_idx(path_of("missing"), lab, &d), KD_ERR_IO);
    ck_assert_int_eq(kd_dataset_load_idx(NULL, lab, &d), KD_ERR_ARGUMENT);
    /* and the good one */
    write_bytes(img, buf, idx_file(buf, 8, 3, dims, 32));
    ck_assert_msg(kd_dataset_load_idx(img, lab, &d) == KD_OK, "%s", kd_last_error());
    ck_assert_float_eq_tol(kd_dataset_images(d)[0], 7.0f / 255.0f, 1e-7f);
    kd_dataset_destroy(d);
    unlink(img);
    unlink(lab);
}
END_TEST

/* One epoch visits every example once; the last batch is short; rows == 0 marks the end; the same
 * seed gives the same order; another epoch another order. */
static void epoch_order(kd_batcher *b, const kd_dataset *d, int64_t *order, int64_t n)
{
    float *x = malloc(sizeof(float) * 64 * 784);
    int32_t y[64];
    int64_t rows, seen = 0;
    for (;;) {
        ck_assert_int_eq(kd_batcher_next(b, x, y, &rows), KD_OK);
        if (rows == 0) break;
        const int64_t *idx;
        int64_t r2;
        ck_assert_int_eq(kd_batcher_indices(b, &idx, &r2), KD_OK);
        ck_assert_int_eq(r2, rows);
        for (int64_t i = 0; i < rows; i++) {
            ck_assert_int_eq(y[i], kd_dataset_labels(d)[idx[i]]);
            ck_assert(memcmp(x + i * 784, kd_dataset_images(d) + idx[i] * 784, 784 * 4) == 0);
            order[seen++] = idx[i];
        }
        ck_assert(rows == 64 || seen == n);
    }
    ck_assert_int_eq(seen, n);
    free(x);
}

START_TEST(batcher_epochs)
{
    kd_dataset *d;
    ck_assert_int_eq(kd_dataset_load_idx(TRAIN_IMAGES, TRAIN_LABELS, &d), KD_OK);
    int64_t n = 2000, *a = malloc(sizeof(int64_t) * n), *b2 = malloc(sizeof(int64_t) * n);
    int64_t *c = malloc(sizeof(int64_t) * n);
    kd_batcher *b, *same;
    ck_assert_int_eq(kd_batcher_create(d, 64, 5, &b), KD_OK);
    ck_assert_int_eq(kd_batcher_create(d, 64, 5, &same), KD_OK);
    epoch_order(b, d, a, n);
    epoch_order(b, d, b2, n);
    epoch_order(same, d, c, n);
    ck_assert(memcmp(a, c, sizeof(int64_t) * n) == 0);
    ck_assert(memcmp(a, b2, sizeof(int64_t) * n) != 0);
    char *hit = calloc((size_t)n, 1);
    for (int64_t i = 0; i < n; i++) hit[a[i]]++;
    for (int64_t i = 0; i < n; i++) ck_assert_int_eq(hit[i], 1);
    float x[784];
    int64_t rows;
    ck_assert_int_eq(kd_batcher_create(d, 0, 5, &same), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_batcher_next(b, NULL, NULL, &rows), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_batcher_next(NULL, x, NULL, &rows), KD_ERR_ARGUMENT);
    kd_batcher_destroy(b);
    kd_batcher_destroy(NULL);
    free(hit);
    free(a);
    free(b2);
    free(c);
    kd_dataset_destroy(d);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("dataset");
    TCase *t = tcase_create("dataset");
    tcase_add_test(t, loads_subset);
    tcase_add_test(t, unlabelled);
    tcase_add_test(t, hostile_idx);
    tcase_add_test(t, batcher_epochs);
    suite_add_tcase(s, t);
    return kdt_run(s);
}
