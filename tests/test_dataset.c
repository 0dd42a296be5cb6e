/* Datasets and batchers: the committed Fashion-MNIST subset, hostile IDX files, shuffling. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/rng.h"
#include "testutil.h"

#define TRAIN_IMAGES KDT_DATA "/fmnist-train-2000-images-idx3-ubyte.gz"
#define TRAIN_LABELS KDT_DATA "/fmnist-train-2000-labels-idx1-ubyte.gz"
#define TEST_IMAGES KDT_DATA "/fmnist-test-500-images-idx3-ubyte.gz"
#define TEST_LABELS KDT_DATA "/fmnist-test-500-labels-idx1-ubyte.gz"

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

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)size);
    ck_assert_uint_eq(fread(b, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    *n = (size_t)size;
    return b;
}

/* Sum of the bytes behind images [from, to); each pixel must be exactly byte / 255.f. */
static int64_t pixel_sum(const kd_dataset *d, int64_t from, int64_t to)
{
    int64_t c, h, w, s = 0, bad = 0;
    ck_assert_int_eq(kd_dataset_shape(d, &c, &h, &w), KD_OK);
    const float *x = kd_dataset_images(d);
    for (int64_t i = from * c * h * w; i < to * c * h * w; i++) {
        int byte = (int)(x[i] * 255.0f + 0.5f);
        bad += byte < 0 || byte > 255 || x[i] != (float)byte / 255.0f;
        s += byte;
    }
    ck_assert_int_eq(bad, 0); /* once: Check's asserts are slow in a loop of a million */
    return s;
}

/* Reference figures from the subset's bytes (Python's gzip module): first labels, class counts,
 * the first image's and all images' pixel sums. */
START_TEST(loads_subset)
{
    kd_dataset *d;
    ck_assert_int_eq(kd_dataset_load_idx(TRAIN_IMAGES, TRAIN_LABELS, &d), KD_OK);
    int64_t n, c, h, w;
    ck_assert_int_eq(kd_dataset_size(d, &n), KD_OK);
    ck_assert_int_eq(kd_dataset_shape(d, &c, &h, &w), KD_OK);
    ck_assert_int_eq(n, 2000);
    ck_assert(c == 1 && h == 28 && w == 28);
    /* ankle boot, T-shirt, T-shirt, dress, T-shirt, pullover, sneaker, pullover, sandal, sandal */
    static const int32_t first[10] = {9, 0, 0, 3, 0, 2, 7, 2, 5, 5};
    static const int counts_want[10] = {194, 216, 202, 195, 186, 200, 194, 215, 198, 200};
    const int32_t *y = kd_dataset_labels(d);
    for (int i = 0; i < 10; i++) ck_assert_int_eq(y[i], first[i]);
    int counts[10] = {0};
    for (int64_t i = 0; i < n; i++) counts[y[i] >= 0 && y[i] < 10 ? y[i] : 0]++;
    for (int k = 0; k < 10; k++) ck_assert_int_eq(counts[k], counts_want[k]);
    const float *x = kd_dataset_images(d);
    float lo = 1, hi = 0;
    for (int64_t i = 0; i < n * 784; i++) {
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
    }
    ck_assert(lo == 0.0f && hi == 1.0f);
    ck_assert_int_eq(pixel_sum(d, 0, 1), 76247);
    ck_assert_int_eq(pixel_sum(d, 0, n), 113529887);
    kd_dataset_destroy(d);
    kd_dataset_destroy(NULL);
}
END_TEST

/* A validation split: the parts partition the set (sizes, pixel sums, labels), the same seed
 * gives the same split, another seed another one, and fractions that leave a part empty fail. */
START_TEST(split_partitions)
{
    kd_dataset *d, *a, *b, *a2, *b2, *a3, *b3;
    ck_assert_int_eq(kd_dataset_load_idx(TRAIN_IMAGES, TRAIN_LABELS, &d), KD_OK);
    ck_assert_int_eq(kd_dataset_split(d, 0.1f, 7, &a, &b), KD_OK);
    int64_t na, nb;
    kd_dataset_size(a, &na);
    kd_dataset_size(b, &nb);
    ck_assert(na == 1800 && nb == 200);
    ck_assert_int_eq(pixel_sum(a, 0, na) + pixel_sum(b, 0, nb), 113529887);
    int counts[10] = {0};
    for (int64_t i = 0; i < na; i++) counts[kd_dataset_labels(a)[i]]++;
    for (int64_t i = 0; i < nb; i++) counts[kd_dataset_labels(b)[i]]++;
    static const int counts_want[10] = {194, 216, 202, 195, 186, 200, 194, 215, 198, 200};
    for (int k = 0; k < 10; k++) ck_assert_int_eq(counts[k], counts_want[k]);
    ck_assert_int_eq(kd_dataset_split(d, 0.1f, 7, &a2, &b2), KD_OK);
    ck_assert(memcmp(kd_dataset_images(b), kd_dataset_images(b2), sizeof(float) * 200 * 784) == 0);
    ck_assert_int_eq(kd_dataset_split(d, 0.1f, 8, &a3, &b3), KD_OK);
    ck_assert(memcmp(kd_dataset_images(b), kd_dataset_images(b3), sizeof(float) * 200 * 784) != 0);
    kd_dataset *x = NULL, *y = NULL;
    ck_assert_int_eq(kd_dataset_split(d, 0.0f, 7, &x, &y), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_dataset_split(d, 1.0f, 7, &x, &y), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_dataset_split(d, 0.0001f, 7, &x, &y), KD_ERR_ARGUMENT); /* 0 examples */
    ck_assert_int_eq(kd_dataset_split(d, NAN, 7, &x, &y), KD_ERR_ARGUMENT);
    ck_assert(x == NULL && y == NULL);
    ck_assert_int_eq(kd_dataset_split(NULL, 0.1f, 7, &x, &y), KD_ERR_ARGUMENT);
    kd_dataset *all[] = {d, a, b, a2, b2, a3, b3};
    for (int i = 0; i < 7; i++) kd_dataset_destroy(all[i]);
}
END_TEST

/* kd_dataset_hold_out: the same two parts as kd_dataset_split, d shrunk in place (its pointers
 * unchanged), and a refused fraction leaves d as it was. */
START_TEST(hold_out_matches_split)
{
    kd_dataset *d, *a, *b, *held = NULL;
    ck_assert_int_eq(kd_dataset_load_idx(TRAIN_IMAGES, TRAIN_LABELS, &d), KD_OK);
    ck_assert_int_eq(kd_dataset_split(d, 0.1f, 7, &a, &b), KD_OK);
    const float *images = kd_dataset_images(d);
    ck_assert_int_eq(kd_dataset_hold_out(d, 0.0f, 7, &held), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_dataset_hold_out(d, 0.9999f, 7, &held), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_dataset_hold_out(NULL, 0.1f, 7, &held), KD_ERR_ARGUMENT);
    ck_assert(held == NULL);
    int64_t n;
    kd_dataset_size(d, &n);
    ck_assert_int_eq(n, 2000);
    ck_assert_int_eq(kd_dataset_hold_out(d, 0.1f, 7, &held), KD_OK);
    kd_dataset_size(d, &n);
    ck_assert_int_eq(n, 1800);
    ck_assert(kd_dataset_images(d) == images);
    ck_assert(memcmp(kd_dataset_images(d), kd_dataset_images(a), sizeof(float) * 1800 * 784) == 0);
    ck_assert(memcmp(kd_dataset_labels(d), kd_dataset_labels(a), sizeof(int32_t) * 1800) == 0);
    ck_assert(memcmp(kd_dataset_images(held), kd_dataset_images(b), sizeof(float) * 200 * 784) ==
              0);
    ck_assert(memcmp(kd_dataset_labels(held), kd_dataset_labels(b), sizeof(int32_t) * 200) == 0);
    kd_dataset *all[] = {d, a, b, held};
    for (int i = 0; i < 4; i++) kd_dataset_destroy(all[i]);
}
END_TEST

START_TEST(loads_test_split)
{
    kd_dataset *d;
    ck_assert_int_eq(kd_dataset_load_idx(TEST_IMAGES, TEST_LABELS, &d), KD_OK);
    int64_t n;
    ck_assert_int_eq(kd_dataset_size(d, &n), KD_OK);
    ck_assert_int_eq(n, 500);
    static const int32_t first[10] = {9, 2, 1, 1, 6, 1, 4, 6, 5, 7};
    for (int i = 0; i < 10; i++) ck_assert_int_eq(kd_dataset_labels(d)[i], first[i]);
    ck_assert_int_eq(pixel_sum(d, 0, 1), 33456);
    ck_assert_int_eq(pixel_sum(d, 0, n), 29494551);
    kd_dataset_destroy(d);
}
END_TEST

/* Both naming conventions, found from a prefix: LeCun's (gzip) and Kaggle's (plain). */
START_TEST(prefix_conventions)
{
    kd_dataset *d;
    int64_t n;
    ck_assert_int_eq(kd_dataset_load_idx_prefix(KDT_DATA "/fmnist-absent", &d), KD_ERR_IO);
    ck_assert_ptr_nonnull(strstr(kd_last_error(), "fmnist-absent-images-idx3-ubyte"));
    ck_assert_int_eq(kd_dataset_load_idx_prefix(KDT_DATA "/fmnist-test-500", &d), KD_OK);
    ck_assert_int_eq(kd_dataset_size(d, &n), KD_OK);
    ck_assert_int_eq(n, 500);
    kd_dataset_destroy(d);
    const char *kaggle = path_of("kaggle");
    /* Kaggle ships the files uncompressed: gunzip the committed ones. */
    char cmd[1200];
    snprintf(cmd, sizeof cmd,
             "gzip -dc '%s' > '%s-images.idx3-ubyte' && gzip -dc '%s' > '%s-labels.idx1-ubyte'",
             TEST_IMAGES, kaggle, TEST_LABELS, kaggle);
    ck_assert_int_eq(system(cmd), 0);
    ck_assert_msg(kd_dataset_load_idx_prefix(kaggle, &d) == KD_OK, "%s", kd_last_error());
    ck_assert_int_eq(kd_dataset_size(d, &n), KD_OK);
    ck_assert_int_eq(n, 500);
    ck_assert_int_eq(pixel_sum(d, 0, n), 29494551);
    kd_dataset_destroy(d);
    snprintf(cmd, sizeof cmd, "rm -f '%s-labels.idx1-ubyte'", kaggle);
    ck_assert_int_eq(system(cmd), 0);
    d = (kd_dataset *)0x1;
    ck_assert_int_eq(kd_dataset_load_idx_prefix(kaggle, &d), KD_ERR_IO);
    ck_assert_ptr_nonnull(strstr(kd_last_error(), "labels.idx1-ubyte"));
    ck_assert_ptr_eq(d, (kd_dataset *)0x1);
}
END_TEST

/* Images are read into floats a chunk at a time when the file's size vouches for its header (a
 * plain file's length, gzip's length trailer), else through a buffer that grows: a gzip of two
 * members, whose trailer counts the last member only, takes that path, and both give the same
 * floats (pixel / 255). */
START_TEST(gzip_members)
{
    kd_dataset *d;
    int64_t n;
    const char *two = path_of("two-members.gz");
    char cmd[1200];
    snprintf(cmd, sizeof cmd,
             "gzip -dc '%s' | head -c 1000 | gzip > '%s' && gzip -dc '%s' | tail -c +1001 | gzip "
             ">> '%s'",
             TEST_IMAGES, two, TEST_IMAGES, two);
    ck_assert_int_eq(system(cmd), 0);
    ck_assert_msg(kd_dataset_load_idx(two, TEST_LABELS, &d) == KD_OK, "%s", kd_last_error());
    ck_assert_int_eq(kd_dataset_size(d, &n), KD_OK);
    ck_assert_int_eq(n, 500);
    ck_assert_int_eq(pixel_sum(d, 0, n), 29494551);
    kd_dataset_destroy(d);
    unlink(two);
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
    ck_assert_int_eq(rows, 8);
    for (int i = 0; i < 8; i++) ck_assert_int_eq(y[i], -1);
    ck_assert_int_eq(kd_batcher_next(b, x, NULL, &rows), KD_OK);
    kd_batcher_destroy(b);
    kd_dataset_destroy(d);
}
END_TEST

/* Header and body (bytes 0, 1, 2, ...) of a small IDX file. */
static size_t idx_file(unsigned char *buf, unsigned char type, int ndim, const uint32_t *dims,
                       size_t body)
{
    size_t k = 0;
    buf[k++] = 0, buf[k++] = 0, buf[k++] = type, buf[k++] = (unsigned char)ndim;
    for (int d = 0; d < ndim; d++)
        for (int s = 24; s >= 0; s -= 8) buf[k++] = (unsigned char)(dims[d] >> s);
    for (size_t i = 0; i < body; i++) buf[k + i] = (unsigned char)(i * 7);
    return k + body;
}

START_TEST(four_dims)
{
    unsigned char buf[256];
    uint32_t dims[4] = {2, 3, 2, 2}, ldims[1] = {2};
    char img[256], lab[256];
    snprintf(img, sizeof img, "%s", path_of("img4.idx"));
    snprintf(lab, sizeof lab, "%s", path_of("lab4.idx"));
    write_bytes(img, buf, idx_file(buf, 8, 4, dims, 24));
    write_bytes(lab, buf, idx_file(buf, 8, 1, ldims, 2));
    kd_dataset *d;
    ck_assert_int_eq(kd_dataset_load_idx(img, lab, &d), KD_OK);
    int64_t c, h, w;
    ck_assert_int_eq(kd_dataset_shape(d, &c, &h, &w), KD_OK);
    ck_assert(c == 3 && h == 2 && w == 2);
    for (int i = 0; i < 24; i++)
        ck_assert_float_eq(kd_dataset_images(d)[i], (float)(unsigned char)(i * 7) / 255.0f);
    ck_assert(kd_dataset_labels(d)[0] == 0 && kd_dataset_labels(d)[1] == 7);
    kd_dataset_destroy(d);
    unlink(img);
    unlink(lab);
}
END_TEST

/* Loading fails with want, says why, and leaves *out alone. */
static void expect_fail(const char *img, const char *lab, kd_status want, const char *what)
{
    kd_dataset *sentinel = (kd_dataset *)&sentinel, *d = sentinel;
    kd_status st = kd_dataset_load_idx(img, lab, &d);
    ck_assert_msg(st == want, "%s gave %d, expected %d (%s)", what, st, want, kd_last_error());
    ck_assert_msg(d == sentinel, "%s touched *out", what);
    ck_assert(strlen(kd_last_error()) > 0);
}

START_TEST(hostile_idx)
{
    unsigned char buf[4096];
    char img[256], lab[256];
    snprintf(img, sizeof img, "%s", path_of("img.idx"));
    snprintf(lab, sizeof lab, "%s", path_of("lab.idx"));
    uint32_t ldims[1] = {2};
    write_bytes(lab, buf, idx_file(buf, 8, 1, ldims, 2));
    struct {
        const char *what;
        unsigned char type;
        int ndim;
        uint32_t dims[5];
        size_t body;
        kd_status want;
    } bad[] = {
        {"float type", 0x0D, 3, {2, 4, 4}, 32, KD_ERR_FORMAT},
        {"int type", 0x0C, 3, {2, 4, 4}, 32, KD_ERR_FORMAT},
        {"2 dims", 8, 2, {2, 16}, 32, KD_ERR_FORMAT},
        {"5 dims", 8, 5, {2, 1, 4, 4, 1}, 32, KD_ERR_FORMAT},
        {"zero dim", 8, 3, {2, 0, 4}, 0, KD_ERR_FORMAT},
        {"2^48 values", 8, 3, {65536, 65536, 65536}, 0, KD_ERR_FORMAT},
        {"2^31 + 65536 values", 8, 3, {2, 32768, 32769}, 0, KD_ERR_FORMAT},
        {"2^31 values, no data", 8, 3, {2, 32768, 32768}, 0, KD_ERR_FORMAT},
        {"truncated body", 8, 3, {2, 4, 4}, 31, KD_ERR_FORMAT},
        {"trailing bytes", 8, 3, {2, 4, 4}, 33, KD_ERR_FORMAT},
        {"labels mismatch", 8, 3, {3, 4, 4}, 48, KD_ERR_SHAPE},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_bytes(img, buf, idx_file(buf, bad[i].type, bad[i].ndim, bad[i].dims, bad[i].body));
        expect_fail(img, lab, bad[i].want, bad[i].what);
    }
    /* a valid file cut anywhere */
    uint32_t dims[3] = {2, 4, 4};
    size_t n = idx_file(buf, 8, 3, dims, 32);
    static const size_t cuts[] = {0, 1, 2, 3, 4, 5, 7, 8, 11, 12, 15, 16, 17, 30, 47};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        write_bytes(img, buf, cuts[i]);
        expect_fail(img, lab, KD_ERR_FORMAT, "a cut file");
    }
    buf[0] = 1;
    write_bytes(img, buf, n);
    expect_fail(img, lab, KD_ERR_FORMAT, "magic byte 0");
    buf[0] = 0, buf[1] = 8;
    write_bytes(img, buf, n);
    expect_fail(img, lab, KD_ERR_FORMAT, "magic byte 1");
    buf[1] = 0;
    write_bytes(img, buf, n);
    expect_fail(lab, NULL, KD_ERR_FORMAT, "labels as images");
    expect_fail(img, img, KD_ERR_FORMAT, "images as labels");
    expect_fail(path_of("missing"), lab, KD_ERR_IO, "a missing image file");
    expect_fail(img, path_of("missing"), KD_ERR_IO, "a missing label file");
    expect_fail(kdt_tmpdir(), lab, KD_ERR_IO, "a directory");
    expect_fail(NULL, lab, KD_ERR_ARGUMENT, "NULL path");
    ck_assert_int_eq(kd_dataset_load_idx(img, lab, NULL), KD_ERR_ARGUMENT);
    /* and the good one, plain (not gzip) */
    kd_dataset *d;
    ck_assert_msg(kd_dataset_load_idx(img, lab, &d) == KD_OK, "%s", kd_last_error());
    ck_assert_float_eq(kd_dataset_images(d)[1], 7.0f / 255.0f);
    kd_dataset_destroy(d);
    unlink(img);
    unlink(lab);
}
END_TEST

/* An allocator that refuses blocks over 512 KiB. */
#define SMALL_MAX (512u << 10)
static void *small_malloc(void *user, size_t n)
{
    (void)user;
    return n > SMALL_MAX ? NULL : malloc(n);
}
static void *small_calloc(void *user, size_t count, size_t n)
{
    (void)user;
    return count * n > SMALL_MAX ? NULL : calloc(count, n);
}
static void *small_realloc(void *user, void *p, size_t n)
{
    (void)user;
    return n > SMALL_MAX ? NULL : realloc(p, n);
}
static void small_free(void *user, void *p)
{
    (void)user;
    free(p);
}

/* gzip files cut short or damaged: the stream's own checks (length, CRC) catch what the IDX
 * header cannot. */
START_TEST(hostile_gzip)
{
    size_t n;
    unsigned char *gz = slurp(TRAIN_LABELS, &n);
    char lab[256];
    snprintf(lab, sizeof lab, "%s", path_of("cut-labels.gz"));
    static const double fractions[] = {0.02, 0.5, 0.9};
    for (size_t i = 0; i < 3; i++) {
        write_bytes(lab, gz, (size_t)(fractions[i] * (double)n));
        expect_fail(TRAIN_IMAGES, lab, KD_ERR_FORMAT, "a cut gzip file");
    }
    write_bytes(lab, gz, n - 4); /* no length trailer */
    expect_fail(TRAIN_IMAGES, lab, KD_ERR_FORMAT, "a gzip file without its trailer");
    gz[n - 6] ^= 0x55; /* the CRC */
    write_bytes(lab, gz, n);
    expect_fail(TRAIN_IMAGES, lab, KD_ERR_FORMAT, "a gzip file with a bad CRC");
    free(gz);
    unlink(lab);
    /* A gzip of 2,000 data bytes whose header announces a million and whose length trailer is
     * forged to agree (within deflate's 1032:1, so the images are allocated whole, untouched):
     * zlib's own length check refuses it. */
    static unsigned char raw[16 + 2000];
    uint32_t dims[3] = {10, 100, 1000};
    size_t m = idx_file(raw, 8, 3, dims, 2000);
    uint32_t lcg = 1; /* incompressible bytes: the gzip is as long as the data */
    for (size_t i = 16; i < m; i++)
        raw[i] = (unsigned char)((lcg = lcg * 1664525u + 1013904223u) >> 24);
    char img[256], cmd[1024];
    snprintf(img, sizeof img, "%s", path_of("forged.gz"));
    write_bytes(img, raw, m);
    snprintf(cmd, sizeof cmd, "gzip -nf '%s' && mv '%s.gz' '%s'", img, img, img);
    ck_assert_int_eq(system(cmd), 0);
    gz = slurp(img, &n);
    uint32_t isize = 16 + 1000000;
    for (int i = 0; i < 4; i++) gz[n - 4 + (size_t)i] = (unsigned char)(isize >> (8 * i));
    write_bytes(img, gz, n);
    free(gz);
    expect_fail(img, TRAIN_LABELS, KD_ERR_FORMAT, "a gzip file with a forged length trailer");
    /* and where the announced size cannot be had at once (a ulimit, strict overcommit): still the
     * format error, from the growing buffer, not an allocation failure */
    ck_assert_int_eq(kd_set_allocator(small_malloc, small_calloc, small_realloc, small_free, NULL),
                     KD_OK);
    kd_dataset *sentinel = (kd_dataset *)&sentinel, *d = sentinel;
    kd_status st = kd_dataset_load_idx(img, TRAIN_LABELS, &d);
    ck_assert_int_eq(kd_set_allocator(NULL, NULL, NULL, NULL, NULL), KD_OK);
    ck_assert_msg(st == KD_ERR_FORMAT, "%d: %s", st, kd_last_error());
    ck_assert_ptr_eq(d, sentinel);
    unlink(img);
}
END_TEST

/* One epoch's order of dataset indices, checking every batch against the dataset. */
static int64_t epoch_order(kd_batcher *b, const kd_dataset *d, int64_t batch, int64_t *order,
                           int64_t *last_rows)
{
    int64_t n;
    ck_assert_int_eq(kd_dataset_size(d, &n), KD_OK);
    float *x = malloc(sizeof(float) * (size_t)(batch * 784));
    int32_t *y = malloc(sizeof(int32_t) * (size_t)batch);
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
        ck_assert(rows == batch || seen == n);
        *last_rows = rows;
    }
    const int64_t *idx;
    int64_t r2;
    ck_assert_int_eq(kd_batcher_indices(b, &idx, &r2), KD_OK);
    ck_assert_int_eq(r2, 0);
    free(x);
    free(y);
    return seen;
}

static void assert_permutation(const int64_t *order, int64_t n)
{
    char *hit = calloc((size_t)n, 1);
    for (int64_t i = 0; i < n; i++) {
        ck_assert(order[i] >= 0 && order[i] < n);
        hit[order[i]]++;
    }
    for (int64_t i = 0; i < n; i++) ck_assert_int_eq(hit[i], 1);
    free(hit);
}

START_TEST(batcher_epochs)
{
    kd_dataset *d;
    ck_assert_int_eq(kd_dataset_load_idx(TRAIN_IMAGES, TRAIN_LABELS, &d), KD_OK);
    const int64_t n = 2000;
    int64_t *e0 = malloc(sizeof(int64_t) * n), *e1 = malloc(sizeof(int64_t) * n);
    int64_t *same = malloc(sizeof(int64_t) * n), *other = malloc(sizeof(int64_t) * n), last;
    kd_batcher *b, *b2, *b3;
    ck_assert_int_eq(kd_batcher_create(d, 64, 5, &b), KD_OK);
    ck_assert_int_eq(kd_batcher_create(d, 64, 5, &b2), KD_OK);
    ck_assert_int_eq(kd_batcher_create(d, 64, 6, &b3), KD_OK);
    ck_assert_int_eq(epoch_order(b, d, 64, e0, &last), n);
    ck_assert_int_eq(last, n % 64); /* the short last batch */
    assert_permutation(e0, n);
    ck_assert_int_eq(epoch_order(b, d, 64, e1, &last), n);
    assert_permutation(e1, n);
    ck_assert(memcmp(e0, e1, sizeof(int64_t) * n) != 0);
    ck_assert_int_eq(epoch_order(b2, d, 64, same, &last), n);
    ck_assert(memcmp(e0, same, sizeof(int64_t) * n) == 0);
    ck_assert_int_eq(epoch_order(b2, d, 64, same, &last), n);
    ck_assert(memcmp(e1, same, sizeof(int64_t) * n) == 0);
    ck_assert_int_eq(epoch_order(b3, d, 64, other, &last), n);
    ck_assert(memcmp(e0, other, sizeof(int64_t) * n) != 0);
    kd_batcher_destroy(b);
    kd_batcher_destroy(b2);
    kd_batcher_destroy(b3);
    /* epoch k is Fisher-Yates from kdi_rng seeded with kdi_rng_derive(seed, k), whatever the batch */
    ck_assert_int_eq(kd_batcher_create(d, 2000, 5, &b), KD_OK);
    ck_assert_int_eq(epoch_order(b, d, 2000, same, &last), n);
    ck_assert_int_eq(last, n);
    ck_assert(memcmp(e0, same, sizeof(int64_t) * n) == 0);
    kdi_rng r;
    kdi_rng_seed(&r, kdi_rng_derive(5, 1));
    for (int64_t i = 0; i < n; i++) other[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)kdi_rng_below(&r, (uint64_t)i + 1), t = other[i];
        other[i] = other[j];
        other[j] = t;
    }
    ck_assert(memcmp(e1, other, sizeof(int64_t) * n) == 0);
    kd_batcher_destroy(b);
    free(e0);
    free(e1);
    free(same);
    free(other);
    kd_dataset_destroy(d);
}
END_TEST

/* A batch larger than the set gives the whole set, then the end of the epoch. */
START_TEST(batch_larger_than_set)
{
    kd_dataset *d;
    ck_assert_int_eq(kd_dataset_load_idx(TEST_IMAGES, TEST_LABELS, &d), KD_OK);
    kd_batcher *b;
    ck_assert_int_eq(kd_batcher_create(d, 4096, 1, &b), KD_OK);
    float *x = malloc(sizeof(float) * 4096 * 784);
    int64_t rows;
    for (int epoch = 0; epoch < 3; epoch++) {
        ck_assert_int_eq(kd_batcher_next(b, x, NULL, &rows), KD_OK);
        ck_assert_int_eq(rows, 500);
        ck_assert_int_eq(kd_batcher_next(b, x, NULL, &rows), KD_OK);
        ck_assert_int_eq(rows, 0);
    }
    free(x);
    kd_batcher_destroy(b);
    kd_dataset_destroy(d);
}
END_TEST

/* An epoch's order is drawn for the dataset's size: after kd_dataset_hold_out shrinks the set
 * mid-epoch, its rest (stale indices, held-out examples among them) is refused; between epochs the
 * next order covers the new size. */
START_TEST(batcher_after_hold_out)
{
    kd_dataset *d, *held, *held2;
    ck_assert_int_eq(kd_dataset_load_idx(TEST_IMAGES, TEST_LABELS, &d), KD_OK);
    float *x = malloc(sizeof(float) * 4096 * 784);
    int32_t y[100];
    int64_t rows, n, last, order[500];
    const int64_t *idx;
    kd_batcher *mid, *fresh, *done, *after;
    ck_assert_int_eq(kd_batcher_create(d, 100, 3, &mid), KD_OK);
    ck_assert_int_eq(kd_batcher_create(d, 100, 3, &fresh), KD_OK); /* no call yet */
    ck_assert_int_eq(kd_batcher_create(d, 4096, 3, &done), KD_OK);
    ck_assert_int_eq(kd_batcher_next(mid, x, y, &rows), KD_OK);
    ck_assert_int_eq(rows, 100);
    ck_assert_int_eq(kd_batcher_next(done, x, NULL, &rows), KD_OK);
    ck_assert_int_eq(rows, 500); /* the whole epoch given, its end not yet said */
    ck_assert_int_eq(kd_dataset_hold_out(d, 0.5f, 7, &held), KD_OK);
    ck_assert_int_eq(kd_dataset_size(d, &n), KD_OK);
    ck_assert_int_eq(n, 250);
    for (int i = 0; i < 2; i++) { /* refused every time, and the batcher unchanged */
        rows = 77;
        ck_assert_int_eq(kd_batcher_next(mid, x, y, &rows), KD_ERR_STATE);
        ck_assert_int_eq(rows, 77);
        ck_assert_msg(strstr(kd_last_error(), "250") && strstr(kd_last_error(), "500") &&
                          strstr(kd_last_error(), "new batcher"),
                      "%s", kd_last_error());
        ck_assert_int_eq(kd_batcher_indices(mid, &idx, &rows), KD_OK);
        ck_assert_int_eq(rows, 100);
    }
    /* a batcher not started, or between epochs, goes on over the 250 left */
    ck_assert_int_eq(epoch_order(fresh, d, 100, order, &last), 250);
    assert_permutation(order, 250);
    ck_assert_int_eq(kd_batcher_next(done, x, NULL, &rows), KD_OK);
    ck_assert_int_eq(rows, 0);
    ck_assert_int_eq(kd_batcher_next(done, x, NULL, &rows), KD_OK);
    ck_assert_int_eq(rows, 250);
    ck_assert_int_eq(kd_batcher_indices(done, &idx, &rows), KD_OK);
    assert_permutation(idx, 250);
    /* a new batcher after the hold-out: whole epochs of the rest, and a hold-out between two of
     * its epochs is fine too */
    ck_assert_int_eq(kd_batcher_create(d, 100, 3, &after), KD_OK);
    ck_assert_int_eq(epoch_order(after, d, 100, order, &last), 250);
    assert_permutation(order, 250);
    ck_assert_int_eq(kd_dataset_hold_out(d, 0.2f, 8, &held2), KD_OK);
    ck_assert_int_eq(epoch_order(after, d, 100, order, &last), 200);
    assert_permutation(order, 200);
    kd_batcher_destroy(mid);
    kd_batcher_destroy(fresh);
    kd_batcher_destroy(done);
    kd_batcher_destroy(after);
    kd_dataset_destroy(held);
    kd_dataset_destroy(held2);
    kd_dataset_destroy(d);
    free(x);
}
END_TEST

START_TEST(null_arguments)
{
    kd_dataset *d;
    ck_assert_int_eq(kd_dataset_load_idx(TEST_IMAGES, TEST_LABELS, &d), KD_OK);
    int64_t n, c;
    ck_assert_int_eq(kd_dataset_size(NULL, &n), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_dataset_size(d, NULL), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_dataset_shape(NULL, &c, &c, &c), KD_ERR_ARGUMENT);
    ck_assert_ptr_null(kd_dataset_images(NULL));
    ck_assert_ptr_null(kd_dataset_labels(NULL));
    kd_batcher *sentinel = (kd_batcher *)&sentinel, *b = sentinel;
    ck_assert_int_eq(kd_batcher_create(NULL, 8, 1, &b), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_batcher_create(d, 0, 1, &b), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_batcher_create(d, -3, 1, &b), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_batcher_create(d, 8, 1, NULL), KD_ERR_ARGUMENT);
    ck_assert_ptr_eq(b, sentinel);
    ck_assert_int_eq(kd_batcher_create(d, 8, 1, &b), KD_OK);
    float x[8 * 784];
    int64_t rows = 77;
    const int64_t *idx;
    ck_assert_int_eq(kd_batcher_next(NULL, x, NULL, &rows), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_batcher_next(b, NULL, NULL, &rows), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_batcher_next(b, x, NULL, NULL), KD_ERR_ARGUMENT);
    ck_assert_int_eq(rows, 77);
    ck_assert_int_eq(kd_batcher_indices(NULL, &idx, &rows), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_batcher_indices(b, NULL, &rows), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_batcher_indices(b, &idx, NULL), KD_ERR_ARGUMENT);
    /* the failed calls did not advance the batcher: the first batch is still epoch 0's first */
    ck_assert_int_eq(kd_batcher_indices(b, &idx, &rows), KD_OK);
    ck_assert_int_eq(rows, 0);
    ck_assert_int_eq(kd_batcher_next(b, x, NULL, &rows), KD_OK);
    ck_assert_int_eq(rows, 8);
    kd_batcher_destroy(b);
    kd_batcher_destroy(NULL);
    kd_dataset_destroy(d);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("dataset");
    TCase *t = tcase_create("dataset");
    tcase_add_test(t, loads_subset);
    tcase_add_test(t, loads_test_split);
    tcase_add_test(t, prefix_conventions);
    tcase_add_test(t, unlabelled);
    tcase_add_test(t, gzip_members);
    tcase_add_test(t, four_dims);
    tcase_add_test(t, hostile_idx);
    tcase_add_test(t, hostile_gzip);
    tcase_add_test(t, batcher_epochs);
    tcase_add_test(t, batch_larger_than_set);
    tcase_add_test(t, batcher_after_hold_out);
    tcase_add_test(t, null_arguments);
    tcase_add_test(t, split_partitions);
    tcase_add_test(t, hold_out_matches_split);
    suite_add_tcase(s, t);
    return kdt_run(s);
}
