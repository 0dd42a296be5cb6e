/* NumPy datasets: .npy files of each dtype and version, .npz archives (stored and deflated), and
 * malformed files, each refused with a sentence naming the problem. Fixtures: tests/data/numpy
 * (make_fixtures.py). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/npy.h"
#include "testutil.h"

#define NP KDT_DATA "/numpy/"

static const int32_t Y[6] = {0, 1, 2, 1, 0, 2};

/* x_f32.npy: (arange(24).reshape(6, 4) - 10) / 4 */
static void check_x(const kd_dataset *d, int labelled)
{
    int64_t n, c, h, w;
    ck_assert_int_eq(kd_dataset_size(d, &n), KD_OK);
    ck_assert_int_eq(n, 6);
    ck_assert_int_eq(kd_dataset_shape(d, &c, &h, &w), KD_OK);
    ck_assert(c == 4 && h == 1 && w == 1);
    const float *x = kd_dataset_images(d);
    for (int i = 0; i < 24; i++) ck_assert_float_eq(x[i], ((float)i - 10.0f) / 4.0f);
    const int32_t *y = kd_dataset_labels(d);
    if (!labelled) {
        ck_assert_ptr_null(y);
        return;
    }
    for (int i = 0; i < 6; i++) ck_assert_int_eq(y[i], Y[i]);
}

START_TEST(npy_tabular)
{
    static const char *xs[] = {NP "x_f32.npy", NP "x_f64_v2.npy", NP "x_f32_v3.npy"};
    static const char *ys[] = {NP "y_i64.npy", NP "y_i32.npy", NP "y_u8.npy"};
    for (int i = 0; i < 3; i++) {
        kd_dataset *d = NULL;
        ck_assert_msg(kd_dataset_load_npy(xs[i], ys[i], &d) == KD_OK, "%s", kd_last_error());
        check_x(d, 1);
        int32_t k;
        ck_assert_int_eq(kd_dataset_class_count(d, &k), KD_OK);
        ck_assert_int_eq(k, 0);
        kd_dataset_destroy(d);
    }
    kd_dataset *d = NULL;
    ck_assert_int_eq(kd_dataset_load_npy(NP "x_f32.npy", NULL, &d), KD_OK);
    check_x(d, 0);
    kd_dataset_destroy(d);
}
END_TEST

START_TEST(npy_images)
{
    kd_dataset *d = NULL;
    int64_t c, h, w;
    ck_assert_int_eq(kd_dataset_load_npy(NP "x_u8_nchw.npy", NP "y_i64.npy", &d), KD_OK);
    ck_assert_int_eq(kd_dataset_shape(d, &c, &h, &w), KD_OK);
    ck_assert(c == 2 && h == 3 && w == 3);
    const float *x = kd_dataset_images(d);
    for (int i = 0; i < 6 * 18; i++) ck_assert_float_eq(x[i], (float)((i * 3) & 255) / 255.0f);
    kd_dataset_destroy(d);
    ck_assert_int_eq(kd_dataset_load_npy(NP "x_u8_nhw.npy", NULL, &d), KD_OK);
    ck_assert_int_eq(kd_dataset_shape(d, &c, &h, &w), KD_OK);
    ck_assert(c == 1 && h == 2 && w == 2);
    kd_dataset_destroy(d);
}
END_TEST

/* Each refusal: its status, *out untouched, and a sentence with the words that name it. */
static void refused(const char *x, const char *y, kd_status want, const char *words)
{
    kd_dataset *d = (kd_dataset *)0x1;
    kd_status st = kd_dataset_load_npy(x, y, &d);
    ck_assert_msg(st == want, "%s: status %d, want %d (%s)", x, (int)st, (int)want,
                  kd_last_error());
    ck_assert_ptr_eq(d, (kd_dataset *)0x1);
    ck_assert_msg(strstr(kd_last_error(), words) != NULL, "'%s' lacks '%s'", kd_last_error(),
                  words);
}

START_TEST(npy_refused)
{
    refused(NP "fortran.npy", NULL, KD_ERR_FORMAT, "Fortran");
    refused(NP "bigendian.npy", NULL, KD_ERR_FORMAT, "big-endian");
    refused(NP "int16.npy", NULL, KD_ERR_FORMAT, "'<i2'");
    refused(NP "truncated.npy", NULL, KD_ERR_FORMAT, "truncated");
    refused(NP "x_f32.npy", NP "y_float.npy", KD_ERR_FORMAT, "labels must be integers");
    refused(NP "x_f32.npy", NP "y_negative.npy", KD_ERR_FORMAT, "label -1");
    refused(NP "x_f32.npy", NP "y_short.npy", KD_ERR_SHAPE, "[6] labels");
    refused(NP "y_i64.npy", NULL, KD_ERR_FORMAT, "holds integers");
    refused(NP "absent.npy", NULL, KD_ERR_IO, "absent.npy");
    refused(NP "set.npz", NULL, KD_ERR_FORMAT, "not a .npy file");
}
END_TEST

static kd_status parse(const char *header, size_t data_bytes, int major, kdi_npy *a)
{
    static unsigned char buf[4096];
    size_t h = strlen(header), at = major == 1 ? 10 : 12;
    memcpy(buf, "\x93NUMPY", 6);
    buf[6] = (unsigned char)major;
    buf[7] = 0;
    for (size_t i = 0; i < at - 8; i++) buf[8 + i] = (unsigned char)(h >> (8 * i));
    memcpy(buf + at, header, h);
    memset(buf + at + h, 0, data_bytes);
    return kdi_npy_parse(buf, at + h + data_bytes, "mem", a);
}

/* Hostile headers built in memory: nothing is allocated from them, each is a sentence. */
START_TEST(npy_headers)
{
    kdi_npy a;
    ck_assert_int_eq(
        parse("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n", 24, 1, &a), KD_OK);
    ck_assert(a.ndim == 2 && a.dims[0] == 2 && a.dims[1] == 3 && a.count == 6);
    ck_assert_int_eq(parse("{'shape': (), 'descr': '<i8', 'fortran_order': False}\n", 8, 3, &a),
                     KD_OK);
    ck_assert(a.ndim == 0 && a.count == 1);
    ck_assert_int_eq(parse("{'descr':'<f4','fortran_order':False,'shape':(7,)}\n", 28, 2, &a),
                     KD_OK);
    /* A shape that announces far more than the file holds. */
    ck_assert_int_eq(
        parse("{'descr': '<f4', 'fortran_order': False, 'shape': (65536, 65536)}\n", 16, 1, &a),
        KD_ERR_FORMAT);
    ck_assert_int_eq(
        parse("{'descr': '<f4', 'fortran_order': False, 'shape': (9999999999999999999,)}\n", 0, 1,
              &a),
        KD_ERR_FORMAT);
    ck_assert_int_eq(parse("{'descr': '<f4', 'fortran_order': False, 'shape': (4,)}\n", 20, 1, &a),
                     KD_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(kd_last_error(), "trailing"));
    ck_assert_int_eq(parse("{'descr': '<f4', 'fortran_order': False, 'shape': (4,)}", 16, 1, &a),
                     KD_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(kd_last_error(), "newline"));
    ck_assert_int_eq(parse("{'descr': '<f4', 'shape': (4,)}\n", 16, 1, &a), KD_ERR_FORMAT);
    ck_assert_int_eq(
        parse("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (4,)}\n", 16, 1,
              &a),
        KD_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(kd_last_error(), "repeated"));
    ck_assert_int_eq(
        parse("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), 'x': 1}\n", 16, 1, &a),
        KD_ERR_FORMAT);
    ck_assert_int_eq(parse("{'descr': '<f4', 'fortran_order': False, 'shape': (-4,)}\n", 16, 1, &a),
                     KD_ERR_FORMAT);
    ck_assert_int_eq(parse("{'descr': '<f4', 'fortran_order': False, 'shape': (4,)}\n", 16, 4, &a),
                     KD_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(kd_last_error(), "version 4.0"));
    ck_assert_int_eq(parse("{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1)}"
                           "\n",
                           4, 1, &a),
                     KD_ERR_FORMAT);
    ck_assert_int_eq(
        kdi_npy_parse((const unsigned char *)"\x93NUMPY\x01\x00\xff\xff", 10, "mem", &a),
        KD_ERR_FORMAT);
}
END_TEST

START_TEST(npz)
{
    kd_dataset *d = NULL;
    ck_assert_msg(kd_dataset_load_npz(NP "set.npz", "x", "y", &d) == KD_OK, "%s", kd_last_error());
    check_x(d, 1);
    kd_dataset_destroy(d);
    ck_assert_msg(kd_dataset_load_npz(NP "set_compressed.npz", "x", "y", &d) == KD_OK, "%s",
                  kd_last_error());
    check_x(d, 1);
    kd_dataset_destroy(d);
    ck_assert_int_eq(kd_dataset_load_npz(NP "set.npz", "x", NULL, &d), KD_OK);
    check_x(d, 0);
    kd_dataset_destroy(d);
    d = (kd_dataset *)0x1;
    ck_assert_int_eq(kd_dataset_load_npz(NP "set.npz", "images", "y", &d), KD_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(kd_last_error(), "no array 'images'"));
    ck_assert_int_eq(kd_dataset_load_npz(NP "truncated.npz", "x", "y", &d), KD_ERR_FORMAT);
    ck_assert_int_eq(kd_dataset_load_npz(NP "x_f32.npy", "x", "y", &d), KD_ERR_FORMAT);
    ck_assert_int_eq(kd_dataset_load_npz(NP "absent.npz", "x", "y", &d), KD_ERR_IO);
    ck_assert_ptr_eq(d, (kd_dataset *)0x1);
}
END_TEST

/* A tabular set trains an MLP end to end: the loss falls on the six examples. */
START_TEST(tabular_mlp)
{
    kd_dataset *d;
    ck_assert_int_eq(kd_dataset_load_npz(NP "set.npz", "x", "y", &d), KD_OK);
    kd_model *m;
    ck_assert_int_eq(kd_model_create("input 4 | dense 16 | relu | dense 3", 1, &m), KD_OK);
    kd_loss *l;
    ck_assert_int_eq(kd_loss_create(KD_LOSS_HINTON, &l), KD_OK);
    ck_assert_int_eq(kd_loss_set_float(l, KD_LOSS_ALPHA, 0.0f), KD_OK);
    kd_optimizer *o;
    ck_assert_int_eq(kd_optimizer_create(KD_OPTIMIZER_ADAM, m, &o), KD_OK);
    ck_assert_int_eq(kd_optimizer_set_float(o, KD_OPT_LEARNING_RATE, 0.05f), KD_OK);
    kd_trainer *t;
    ck_assert_int_eq(kd_trainer_create(m, l, o, &t), KD_OK);
    float first = 0, loss = 0;
    for (int i = 0; i < 100; i++) {
        ck_assert_int_eq(
            kd_trainer_step(t, kd_dataset_images(d), kd_dataset_labels(d), NULL, 6, &loss), KD_OK);
        if (i == 0) first = loss;
    }
    ck_assert_msg(loss < 0.5f * first, "loss %g from %g", loss, first);
    int64_t correct;
    ck_assert_int_eq(
        kd_model_evaluate(m, kd_dataset_images(d), kd_dataset_labels(d), 6, 6, &correct, NULL),
        KD_OK);
    ck_assert_int_ge(correct, 5);
    kd_trainer_destroy(t);
    kd_optimizer_destroy(o);
    kd_loss_destroy(l);
    kd_model_destroy(m);
    kd_dataset_destroy(d);
}
END_TEST

/* kd_npy_save writes what numpy.save would (byte for byte for these headers) and reads back. */
START_TEST(npy_save)
{
    char xp[512], yp[512];
    snprintf(xp, sizeof xp, "%s/x.npy", kdt_tmpdir());
    snprintf(yp, sizeof yp, "%s/y.npy", kdt_tmpdir());
    float x[24];
    for (int i = 0; i < 24; i++) x[i] = ((float)i - 10.0f) / 4.0f;
    int64_t y[6] = {0, 1, 2, 1, 0, 2};
    ck_assert_int_eq(kd_npy_save(xp, KD_DTYPE_F32, 2, (int64_t[]){6, 4}, x), KD_OK);
    ck_assert_int_eq(kd_npy_save(yp, KD_DTYPE_I64, 1, (int64_t[]){6}, y), KD_OK);
    /* The same bytes as the fixtures numpy wrote. */
    static const char *const pairs[][2] = {{"x.npy", NP "x_f32.npy"}, {"y.npy", NP "y_i64.npy"}};
    for (int k = 0; k < 2; k++) {
        unsigned char *a, *b;
        size_t na, nb;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", kdt_tmpdir(), pairs[k][0]);
        ck_assert_int_eq(kdi_read_file(p, &a, &na), KD_OK);
        ck_assert_int_eq(kdi_read_file(pairs[k][1], &b, &nb), KD_OK);
        ck_assert_uint_eq(na, nb);
        ck_assert_mem_eq(a, b, na);
        free(a);
        free(b);
    }
    kd_dataset *d;
    ck_assert_int_eq(kd_dataset_load_npy(xp, yp, &d), KD_OK);
    check_x(d, 1);
    kd_dataset_destroy(d);
    /* Scalars and empty arrays have headers too; refusals leave the file alone. */
    int32_t one = 7;
    kdi_npy a;
    unsigned char *buf;
    size_t n;
    ck_assert_int_eq(kd_npy_save(xp, KD_DTYPE_I32, 0, NULL, &one), KD_OK);
    ck_assert_int_eq(kdi_read_file(xp, &buf, &n), KD_OK);
    ck_assert_int_eq(kdi_npy_parse(buf, n, "x", &a), KD_OK);
    ck_assert(a.ndim == 0 && a.count == 1 && a.type == KDI_NPY_I32);
    free(buf);
    ck_assert_int_eq(kd_npy_save(xp, KD_DTYPE_F32, 2, (int64_t[]){0, 3}, NULL), KD_OK);
    ck_assert_int_eq(kd_npy_save(xp, (kd_dtype)5, 1, (int64_t[]){1}, &one), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_npy_save(xp, KD_DTYPE_F32, 1, (int64_t[]){-1}, &one), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_npy_save(xp, KD_DTYPE_F32, 1, (int64_t[]){2}, NULL), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kdi_read_file(xp, &buf, &n), KD_OK);
    ck_assert_int_eq(kdi_npy_parse(buf, n, "x", &a), KD_OK);
    ck_assert(a.ndim == 2 && a.count == 0);
    free(buf);
    ck_assert_int_eq(kd_npy_save("/nonexistent-dir/x.npy", KD_DTYPE_I32, 0, NULL, &one), KD_ERR_IO);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("numpy");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, npy_tabular);
    tcase_add_test(tc, npy_images);
    tcase_add_test(tc, npy_refused);
    tcase_add_test(tc, npy_headers);
    tcase_add_test(tc, npz);
    tcase_add_test(tc, tabular_mlp);
    tcase_add_test(tc, npy_save);
    suite_add_tcase(s, tc);
    return kdt_run(s);
}
