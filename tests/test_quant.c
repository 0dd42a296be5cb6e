/* Post-training int8 quantisation: kd_model_quantize's models against their float models, an
 * independent integer simulation of the scheme, files (round trip and hostile ones), refusals. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd.h"
#include "testutil.h"

#define N 96

static const char *tmp(const char *name)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", kdt_tmpdir(), name);
    return path;
}

/* Fashion-MNIST-like inputs in [0, 1] (N examples of size in). */
static float *inputs(int64_t in, uint64_t seed)
{
    float *x = malloc(sizeof(float) * (size_t)(N * in));
    ck_assert_ptr_nonnull(x);
    kdt_fill(x, N * in, seed, 0.0f, 1.0f);
    return x;
}

/* Predicts with both and checks the int8 logits are close to the float ones: within tol of the
 * logits' spread, the same class for most examples. */
static void close_to_float(kd_model *f, kd_model *q, const float *x, int64_t n, double tol)
{
    int64_t out;
    ck_assert_int_eq(kd_model_output_size(f, &out), KD_OK);
    float *a = malloc(sizeof(float) * (size_t)(n * out)),
          *b = malloc(sizeof(float) * (size_t)(n * out));
    ck_assert_int_eq(kd_model_predict(f, x, n, a), KD_OK);
    ck_assert_msg(kd_model_predict(q, x, n, b) == KD_OK, "%s", kd_last_error());
    double lo = INFINITY, hi = -INFINITY, worst = 0;
    int64_t agree = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t fa = 0, fb = 0;
        for (int64_t j = 0; j < out; j++) {
            float u = a[i * out + j], v = b[i * out + j];
            lo = u < lo ? u : lo;
            hi = u > hi ? u : hi;
            worst = fabs(u - v) > worst ? fabs(u - v) : worst;
            if (u > a[i * out + fa]) fa = j;
            if (v > b[i * out + fb]) fb = j;
        }
        agree += fa == fb;
    }
    ck_assert_msg(worst <= tol * (hi - lo), "int8 logits off by %g, spread %g", worst, hi - lo);
    ck_assert_msg(agree >= n * 85 / 100, "int8 and float agree on %lld of %lld", (long long)agree,
                  (long long)n);
    free(a);
    free(b);
}

START_TEST(mlp)
{
    kd_model *f, *q;
    ck_assert_int_eq(kd_model_create("input 784 | dense 64 | relu | dropout 0.1 | dense 10", 3, &f),
                     KD_OK);
    float *x = inputs(784, 1);
    ck_assert_msg(kd_model_quantize(f, x, N, KD_CALIBRATION_MINMAX, 0, &q) == KD_OK, "%s",
                  kd_last_error());
    ck_assert_str_eq(kd_model_spec(q),
                     "input 784 | quantize | qdense 64 relu=1 | qdense 10 dequant=1");
    int32_t yes = -1;
    ck_assert_int_eq(kd_model_is_quantized(q, &yes), KD_OK);
    ck_assert_int_eq(yes, 1);
    ck_assert_int_eq(kd_model_is_quantized(f, &yes), KD_OK);
    ck_assert_int_eq(yes, 0);
    close_to_float(f, q, x, N, 0.03);
    /* Percentile calibration: also close, and a different input scale. */
    kd_model *p;
    ck_assert_int_eq(kd_model_quantize(f, x, N, KD_CALIBRATION_PERCENTILE, 99.9f, &p), KD_OK);
    close_to_float(f, p, x, N, 0.05);
    /* Training an int8 model is refused. */
    float logits[10];
    ck_assert_int_eq(kd_model_forward(q, x, 1, logits), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_model_backward(q, logits), KD_ERR_UNSUPPORTED); /* not KD_ERR_STATE */
    kd_optimizer *o = NULL;
    ck_assert_int_eq(kd_optimizer_create(KD_OPTIMIZER_SGD, q, &o), KD_ERR_UNSUPPORTED);
    ck_assert_ptr_null(o);
    ck_assert_int_eq(kd_model_predict(q, x, 1, logits), KD_OK);
    kd_model_destroy(p);
    kd_model_destroy(q);
    kd_model_destroy(f);
    free(x);
}
END_TEST

/* A conv with bn (running statistics away from 0 and 1) and relu, pooling, flatten, dense. */
START_TEST(cnn_with_bn)
{
    kd_model *f, *q;
    ck_assert_int_eq(kd_model_create("input 1x12x12 | conv 8 3 pad=1 | bn | relu | maxpool 2 | "
                                     "conv 6 3 stride=2 | relu | flatten | dense 5",
                                     5, &f),
                     KD_OK);
    /* Give bn real statistics: a few training forwards move them. */
    float *x = inputs(144, 2), junk[N * 5];
    for (int i = 0; i < 5; i++) ck_assert_int_eq(kd_model_forward(f, x, N, junk), KD_OK);
    ck_assert_msg(kd_model_quantize(f, x, N, KD_CALIBRATION_MINMAX, 0, &q) == KD_OK, "%s",
                  kd_last_error());
    ck_assert_str_eq(kd_model_spec(q), "input 1x12x12 | quantize | qconv 8 3 pad=1 relu=1 | "
                                       "qmaxpool 2 | qconv 6 3 stride=2 relu=1 | qflatten | "
                                       "qdense 5 dequant=1");
    close_to_float(f, q, x, N, 0.05);
    kd_model_destroy(q);
    kd_model_destroy(f);
    free(x);
}
END_TEST

/* Channels-last codes inside, PyTorch's orders outside: several input channels, a dense layer
 * straight on a conv's output, a conv as the last layer (floats or codes then dequantize). */
START_TEST(layouts)
{
    static const char *const specs[] = {
        "input 3x6x6 | conv 4 3 pad=1 | relu | dense 5",
        "input 3x6x6 | conv 4 3 | relu",
        "input 2x5x5 | conv 3 3 pad=1 stride=2",
        "input 3x8x8 | maxpool 2 | conv 5 3 pad=1 | relu | maxpool 2 | flatten | dense 4 | relu",
    };
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        kd_model *f, *q;
        ck_assert_int_eq(kd_model_create(specs[i], 7, &f), KD_OK);
        int64_t in;
        kd_model_input_size(f, &in);
        float *x = inputs(in, 10 + i);
        ck_assert_msg(kd_model_quantize(f, x, N, KD_CALIBRATION_MINMAX, 0, &q) == KD_OK, "%s: %s",
                      specs[i], kd_last_error());
        close_to_float(f, q, x, N, 0.05);
        kd_model_destroy(q);
        kd_model_destroy(f);
        free(x);
    }
}
END_TEST

/* The int8 arithmetic of a one-layer model done here by hand, from the file's tensors. */
START_TEST(matches_hand_arithmetic)
{
    kd_model *f, *q;
    ck_assert_int_eq(kd_model_create("input 20 | dense 7 | relu | dense 3", 9, &f), KD_OK);
    float *x = inputs(20, 4);
    ck_assert_int_eq(kd_model_quantize(f, x, N, KD_CALIBRATION_MINMAX, 0, &q), KD_OK);
    const char *path = tmp("hand.safetensors");
    ck_assert_int_eq(kd_model_save(q, path), KD_OK);
    kd_tensors *t;
    ck_assert_int_eq(kd_tensors_load(path, &t), KD_OK);
    const char *flag;
    ck_assert_int_eq(kd_tensors_get_meta(t, "kd.quant", &flag), KD_OK);
    ck_assert_str_eq(flag, "int8");
    const void *d;
    kd_dtype dt;
    ck_assert_int_eq(kd_tensors_info(t, "1.weight", &dt, NULL, NULL), KD_OK);
    ck_assert_int_eq(dt, KD_DTYPE_I8);
    ck_assert_int_eq(kd_tensors_info(t, "0.zero_point", &dt, NULL, NULL), KD_OK);
    ck_assert_int_eq(dt, KD_DTYPE_U8);
#define GET(name, type, var)                                                                       \
    ck_assert_int_eq(kd_tensors_data(t, name, &d, NULL), KD_OK);                                   \
    const type *var = d
    GET("0.scale", float, s0);
    GET("0.zero_point", uint8_t, z0);
    GET("1.weight", int8_t, w1);
    GET("1.weight_scale", float, sw1);
    GET("1.bias", int32_t, b1);
    GET("1.output_scale", float, s1);
    GET("1.output_zero_point", uint8_t, z1);
    GET("2.weight", int8_t, w2);
    GET("2.weight_scale", float, sw2);
    GET("2.bias", int32_t, b2);
    float want[N * 3], got[N * 3];
    for (int n = 0; n < N; n++) {
        uint8_t xq[20], h[7];
        for (int i = 0; i < 20; i++) {
            float v = rintf(x[n * 20 + i] / s0[0]) + z0[0];
            xq[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
        for (int o = 0; o < 7; o++) {
            int32_t acc = b1[o];
            for (int i = 0; i < 20; i++) acc += ((int32_t)xq[i] - z0[0]) * w1[o * 20 + i];
            float v = rintf((float)acc * (s0[0] * sw1[o] / s1[0])) + z1[0];
            h[o] = (uint8_t)(v < z1[0] ? z1[0] : v > 255 ? 255 : v);
        }
        for (int o = 0; o < 3; o++) {
            int32_t acc = b2[o];
            for (int i = 0; i < 7; i++) acc += ((int32_t)h[i] - z1[0]) * w2[o * 7 + i];
            want[n * 3 + o] = (float)acc * (s1[0] * sw2[o]);
        }
    }
    ck_assert_int_eq(kd_model_predict(q, x, N, got), KD_OK);
    for (int i = 0; i < N * 3; i++)
        ck_assert_msg(got[i] == want[i], "logit %d: %.9g, by hand %.9g", i, got[i], want[i]);
    kd_tensors_destroy(t);
    kd_model_destroy(q);
    kd_model_destroy(f);
    free(x);
}
END_TEST

START_TEST(file_round_trip)
{
    kd_model *f, *q, *r;
    ck_assert_int_eq(kd_model_create("input 1x8x8 | conv 4 3 | relu | flatten | dense 3", 2, &f),
                     KD_OK);
    float mean = 0.5f, std = 0.25f;
    ck_assert_int_eq(kd_model_set_normalization(f, &mean, &std, 1), KD_OK);
    float *x = inputs(64, 6);
    ck_assert_int_eq(kd_model_quantize(f, x, N, KD_CALIBRATION_PERCENTILE, 99.0f, &q), KD_OK);
    const char *path = tmp("q.safetensors");
    ck_assert_int_eq(kd_model_save(q, path), KD_OK);
    ck_assert_msg(kd_model_load(path, &r) == KD_OK, "%s", kd_last_error());
    ck_assert_str_eq(kd_model_spec(r), kd_model_spec(q));
    float a[N * 3], b[N * 3], m2 = 0, s2 = 0;
    ck_assert_int_eq(kd_model_predict(q, x, N, a), KD_OK);
    ck_assert_int_eq(kd_model_predict(r, x, N, b), KD_OK);
    ck_assert_int_eq(memcmp(a, b, sizeof a), 0);
    int64_t ch = 0;
    ck_assert_int_eq(kd_model_get_normalization(r, &m2, &s2, &ch), KD_OK);
    ck_assert(ch == 1 && m2 == mean && s2 == std);
    /* A clone predicts the same, and load_weights into a fresh model of the spec too. */
    kd_model *c, *e;
    ck_assert_int_eq(kd_model_clone(q, &c), KD_OK);
    ck_assert_int_eq(kd_model_predict(c, x, N, b), KD_OK);
    ck_assert_int_eq(memcmp(a, b, sizeof a), 0);
    ck_assert_int_eq(kd_model_create(kd_model_spec(q), 0, &e), KD_OK);
    ck_assert_int_eq(kd_model_load_weights(e, path), KD_OK);
    ck_assert_int_eq(kd_model_set_normalization(e, &mean, &std, 1), KD_OK);
    ck_assert_int_eq(kd_model_predict(e, x, N, b), KD_OK);
    ck_assert_int_eq(memcmp(a, b, sizeof a), 0);
    kd_model_destroy(e);
    kd_model_destroy(c);
    kd_model_destroy(r);
    kd_model_destroy(q);
    kd_model_destroy(f);
    free(x);
}
END_TEST

/* A saved int8 model with one tensor replaced, reloaded: refused with the tensor named. */
static void hostile(const char *good, const char *name, kd_dtype dt, int32_t ndim,
                    const int64_t *dims, const void *data, kd_status want, const char *says)
{
    kd_tensors *t;
    ck_assert_int_eq(kd_tensors_load(good, &t), KD_OK);
    ck_assert_int_eq(kd_tensors_set(t, name, dt, ndim, dims, data), KD_OK);
    const char *path = tmp("hostile.safetensors");
    ck_assert_int_eq(kd_tensors_save(t, path), KD_OK);
    kd_tensors_destroy(t);
    kd_model *m = (kd_model *)0x1;
    kd_status st = kd_model_load(path, &m);
    ck_assert_msg(st == want, "%s: status %d (%s), want %d", name, st, kd_last_error(), want);
    ck_assert_ptr_eq(m, (kd_model *)0x1);
    ck_assert_msg(strstr(kd_last_error(), says) != NULL, "'%s' lacks '%s'", kd_last_error(), says);
}

START_TEST(hostile_files)
{
    kd_model *f, *q;
    ck_assert_int_eq(kd_model_create("input 10 | dense 6 | relu | dense 4", 1, &f), KD_OK);
    float *x = inputs(10, 8);
    ck_assert_int_eq(kd_model_quantize(f, x, N, KD_CALIBRATION_MINMAX, 0, &q), KD_OK);
    char good[512];
    snprintf(good, sizeof good, "%s", tmp("good_q.safetensors"));
    ck_assert_int_eq(kd_model_save(q, good), KD_OK);
    /* kd_tensors refuses NaN in F32 arrays, so NaN goes in as the bits of an I32 array... of the
     * F32 dtype: write the file by hand instead for NaN; zero and negative scales go through. */
    float zero = 0.0f, neg = -1.0f, six[6] = {1, 1, 1, 0, 1, 1};
    int64_t one = 1, d6 = 6, d612[2] = {6, 12}, d610[2] = {6, 10};
    hostile(good, "0.scale", KD_DTYPE_F32, 1, &one, &zero, KD_ERR_NUMERIC, "0.scale");
    hostile(good, "1.output_scale", KD_DTYPE_F32, 1, &one, &neg, KD_ERR_NUMERIC, "must be > 0");
    hostile(good, "1.weight_scale", KD_DTYPE_F32, 1, &d6, six, KD_ERR_NUMERIC, "1.weight_scale");
    int8_t w612[72] = {0}, w610[60] = {0};
    hostile(good, "1.weight", KD_DTYPE_I8, 2, d612, w612, KD_ERR_SHAPE, "1.weight");
    w610[17] = -128;
    hostile(good, "1.weight", KD_DTYPE_I8, 2, d610, w610, KD_ERR_FORMAT, "-128");
    float wf[60] = {0};
    hostile(good, "1.weight", KD_DTYPE_F32, 2, d610, wf, KD_ERR_FORMAT, "want I8");
    int32_t zp32 = 3;
    hostile(good, "0.zero_point", KD_DTYPE_I32, 1, &one, &zp32, KD_ERR_FORMAT, "want U8");
    /* NaN scale: the file's bytes patched where 0.scale's float lies. */
    {
        kd_tensors *t;
        ck_assert_int_eq(kd_tensors_load(good, &t), KD_OK);
        float marker = 1234.5f;
        ck_assert_int_eq(kd_tensors_set(t, "0.scale", KD_DTYPE_F32, 1, &one, &marker), KD_OK);
        const char *p = tmp("nan.safetensors");
        ck_assert_int_eq(kd_tensors_save(t, p), KD_OK);
        kd_tensors_destroy(t);
        FILE *fp = fopen(p, "r+b");
        ck_assert_ptr_nonnull(fp);
        static unsigned char buf[1 << 16];
        size_t n = fread(buf, 1, sizeof buf, fp);
        int patched = 0;
        for (size_t i = 0; i + 4 <= n; i++)
            if (memcmp(buf + i, &marker, 4) == 0) {
                float nan = NAN;
                fseek(fp, (long)i, SEEK_SET);
                fwrite(&nan, 4, 1, fp);
                patched = 1;
                break;
            }
        fclose(fp);
        ck_assert(patched);
        kd_model *m;
        ck_assert_int_eq(kd_model_load(p, &m), KD_ERR_NUMERIC);
        ck_assert_ptr_nonnull(strstr(kd_last_error(), "0.scale"));
    }
    /* A spec where codes reach a float layer, or nothing quantises before qdense. */
    kd_model *m;
    ck_assert_int_eq(kd_model_create("input 10 | quantize | qdense 4 | relu", 0, &m),
                     KD_ERR_FORMAT);
    ck_assert_int_eq(kd_model_create("input 10 | qdense 4 dequant=1", 0, &m), KD_ERR_FORMAT);
    ck_assert_int_eq(kd_model_create("input 10 | quantize | qdense 4", 0, &m), KD_ERR_FORMAT);
    ck_assert_int_eq(kd_model_create("input 10 | quantize | qdense 4 | dequantize", 0, &m), KD_OK);
    kd_model_destroy(m);
    kd_model_destroy(q);
    kd_model_destroy(f);
    free(x);
}
END_TEST

START_TEST(refusals)
{
    kd_model *f, *q = NULL;
    float x[N * 10];
    kdt_fill(x, N * 10, 3, 0, 1);
    ck_assert_int_eq(kd_model_create("input 10 | dense 6 | gelu | dense 4", 1, &f), KD_OK);
    ck_assert_int_eq(kd_model_quantize(f, x, N, KD_CALIBRATION_MINMAX, 0, &q), KD_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(kd_last_error(), "gelu"));
    kd_model_destroy(f);
    ck_assert_int_eq(kd_model_create("input 10 | dense 6 | relu | dense 4", 1, &f), KD_OK);
    ck_assert_int_eq(kd_model_quantize(f, x, 0, KD_CALIBRATION_MINMAX, 0, &q), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_model_quantize(f, x, N, (kd_calibration)9, 0, &q), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_model_quantize(f, x, N, KD_CALIBRATION_PERCENTILE, 40.0f, &q),
                     KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_model_quantize(NULL, x, N, KD_CALIBRATION_MINMAX, 0, &q), KD_ERR_ARGUMENT);
    x[5] = NAN;
    ck_assert_int_eq(kd_model_quantize(f, x, N, KD_CALIBRATION_MINMAX, 0, &q), KD_ERR_NUMERIC);
    x[5] = 0;
    ck_assert_ptr_null(q);
    ck_assert_int_eq(kd_model_quantize(f, x, N, KD_CALIBRATION_MINMAX, 0, &q), KD_OK);
    kd_model *qq;
    ck_assert_int_eq(kd_model_quantize(q, x, N, KD_CALIBRATION_MINMAX, 0, &qq), KD_ERR_UNSUPPORTED);
    kd_model_destroy(q);
    kd_model_destroy(f);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("quant");
    TCase *t = tcase_create("quant");
    tcase_add_test(t, mlp);
    tcase_add_test(t, cnn_with_bn);
    tcase_add_test(t, layouts);
    tcase_add_test(t, matches_hand_arithmetic);
    tcase_add_test(t, file_round_trip);
    tcase_add_test(t, hostile_files);
    tcase_add_test(t, refusals);
    suite_add_tcase(s, t);
    return kdt_run(s);
}
