/* The model module: spec parsing, layers' gradients, save/load, clone, bad input. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn/model.h"
#include "nn/sequence.h"
#include "testutil.h"

/* ---------------------------------------------------------------- gradient checks */

START_TEST(grad_dense) { kdt_check_gradients("dense 6", kdi_shape_flat(5), 4, -1.0f, 1.0f); }
END_TEST
/* Inputs kept away from the kinks of ReLU and LeakyReLU at 0, where differences are meaningless. */
START_TEST(grad_relu) { kdt_check_gradients("relu | dense 3", kdi_shape_flat(5), 3, 0.2f, 1.0f); }
END_TEST
START_TEST(grad_leakyrelu)
{
    kdt_check_gradients("leakyrelu 0.2 | dense 3", kdi_shape_flat(5), 3, 0.1f, 1.0f);
}
END_TEST
START_TEST(grad_gelu) { kdt_check_gradients("gelu | dense 4", kdi_shape_flat(6), 3, -2.0f, 2.0f); }
END_TEST
START_TEST(grad_tanh) { kdt_check_gradients("tanh | dense 4", kdi_shape_flat(6), 3, -2.0f, 2.0f); }
END_TEST
START_TEST(grad_sigmoid)
{
    kdt_check_gradients("sigmoid | dense 4", kdi_shape_flat(6), 3, -3.0f, 3.0f);
}
END_TEST
START_TEST(grad_mlp)
{
    kdt_check_gradients("dense 8 | tanh | dense 8 | gelu | dense 3", kdi_shape_flat(7), 5, -1, 1);
}
END_TEST

/* Dropout: training keeps each unit with probability 1-p, scaled by 1/(1-p); backward uses the same
 * mask; eval is the identity. */
START_TEST(dropout_behaviour)
{
    kdi_seq s;
    ck_assert_int_eq(kdi_seq_build(&s, "dropout 0.25", kdi_shape_flat(1000), 3), KD_OK);
    float x[4000], dy[4000], dx[4000];
    const float *y;
    kdt_fill(x, 4000, 5, 0.5f, 1.5f);
    kdt_fill(dy, 4000, 6, -1.0f, 1.0f);
    ck_assert_int_eq(kdi_seq_forward(&s, x, 4, 1, &y), KD_OK);
    int kept = 0;
    for (int i = 0; i < 4000; i++) {
        ck_assert(y[i] == 0.0f || fabsf(y[i] - x[i] / 0.75f) < 1e-6f);
        kept += y[i] != 0.0f;
    }
    ck_assert_msg(kept > 2800 && kept < 3200, "kept %d of 4000 at p = 0.25", kept);
    ck_assert_int_eq(kdi_seq_backward(&s, dy, dx), KD_OK);
    for (int i = 0; i < 4000; i++)
        ck_assert(fabsf(dx[i] - (y[i] != 0.0f ? dy[i] / 0.75f : 0.0f)) < 1e-6f);
    ck_assert_int_eq(kdi_seq_forward(&s, x, 4, 0, &y), KD_OK);
    for (int i = 0; i < 4000; i++) ck_assert(y[i] == x[i]);
    kdi_seq_free(&s);
}
END_TEST

/* ---------------------------------------------------------------- specs */

START_TEST(spec_canonical)
{
    kd_model *m;
    ck_assert_int_eq(
        kd_model_create("  input 784|Dense 32 |relu| dropout p=0.5 |linear out=10 ", 1, &m), KD_OK);
    ck_assert_str_eq(kd_model_spec(m), "input 784 | dense 32 | relu | dropout 0.5 | dense 10");
    int64_t n;
    ck_assert_int_eq(kd_model_param_count(m, &n), KD_OK);
    ck_assert_int_eq(n, 784 * 32 + 32 + 32 * 10 + 10);
    int32_t layers;
    ck_assert_int_eq(kd_model_layer_count(m, &layers), KD_OK);
    ck_assert_int_eq(layers, 4);
    const char *kind;
    int64_t params, out;
    ck_assert_int_eq(kd_model_layer_info(m, 3, &kind, &params, &out), KD_OK);
    ck_assert_str_eq(kind, "dense");
    ck_assert_int_eq(params, 330);
    ck_assert_int_eq(out, 10);
    ck_assert_int_eq(kd_model_layer_info(m, 4, &kind, &params, &out), KD_ERR_ARGUMENT);
    kd_model_destroy(m);
}
END_TEST

START_TEST(spec_errors)
{
    static const char *bad[] = {
        "",
        "dense 10",
        "input 784",
        "input 0 | dense 10",
        "input 784 | dense",
        "input 784 | dense 0",
        "input 784 | dense ten",
        "input 784 | dense 10 20",
        "input 784 | dense 10 bias=2",
        "input 784 | wobble 3",
        "input 784 | | dense 10",
        "input 784 | dense 10 | dropout 1.5",
        "input 784 | residual(dense 3",
        "input 784 | dense 10)",
        "input 28x28 | dense 10",
        "input 99999999999999999999 | dense 10",
        "input 784 | dense 99999999",
        "input 1x28x28 | conv 4 3 pad=1 pad=2 | flatten | dense 3", /* a second pad was dropped */
        "input 784 | dense 3\x01",
        "input 4 | dense 3 out=5", /* by position and by name: the name's had won */
        "tokens 256 16 | embed 8 | attention 2 heads=4 causal",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kd_model *m = (kd_model *)&m;
        kd_status st = kd_model_create(bad[i], 1, &m);
        ck_assert_msg(st == KD_ERR_FORMAT || st == KD_ERR_SHAPE, "'%s' gave %d", bad[i], st);
        ck_assert_msg(m == (kd_model *)&m, "'%s' touched *out on failure", bad[i]);
        ck_assert_msg(strlen(kd_last_error()) > 0, "'%s' left no message", bad[i]);
    }
    kd_model *m = NULL;
    ck_assert_int_eq(kd_model_create("input 784 | dense 3\x01", 1, &m), KD_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(kd_last_error(), "'3\\x01'")); /* the byte that is wrong, shown */
    ck_assert_int_eq(kd_model_create(NULL, 1, NULL), KD_ERR_ARGUMENT);
}
END_TEST

START_TEST(same_seed_same_weights)
{
    kd_model *a, *b, *c;
    ck_assert_int_eq(kd_model_create("input 20 | dense 30 | relu | dense 5", 42, &a), KD_OK);
    ck_assert_int_eq(kd_model_create("input 20 | dense 30 | relu | dense 5", 42, &b), KD_OK);
    ck_assert_int_eq(kd_model_create("input 20 | dense 30 | relu | dense 5", 43, &c), KD_OK);
    const kdi_param *pa = kdi_model_params(a)->items[0].p, *pb = kdi_model_params(b)->items[0].p,
                    *pc = kdi_model_params(c)->items[0].p;
    ck_assert(memcmp(pa->value, pb->value, sizeof(float) * pa->count) == 0);
    ck_assert(memcmp(pa->value, pc->value, sizeof(float) * pa->count) != 0);
    /* PyTorch's Linear init bound: 1 / sqrt(fan_in). */
    for (int64_t i = 0; i < pa->count; i++) ck_assert(fabsf(pa->value[i]) <= 1.0f / sqrtf(20.0f));
    kd_model_destroy(a);
    kd_model_destroy(b);
    kd_model_destroy(c);
}
END_TEST

/* ---------------------------------------------------------------- predict, forward, backward */

START_TEST(bad_inputs_leave_model_unchanged)
{
    kd_model *m;
    ck_assert_int_eq(kd_model_create("input 4 | dense 3", 1, &m), KD_OK);
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8}, y[6], before[15];
    memcpy(before, kdi_model_params(m)->items[0].p->value, sizeof(float) * 12);
    ck_assert_int_eq(kd_model_predict(NULL, x, 2, y), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_model_predict(m, NULL, 2, y), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_model_predict(m, x, 2, NULL), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_model_predict(m, x, 0, y), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_model_predict(m, x, -3, y), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_model_backward(m, y), KD_ERR_STATE);
    x[5] = NAN;
    ck_assert_int_eq(kd_model_forward(m, x, 2, y), KD_ERR_NUMERIC);
    ck_assert_ptr_nonnull(strstr(kd_last_error(), "NaN"));
    x[5] = INFINITY;
    ck_assert_int_eq(kd_model_predict(m, x, 2, y), KD_ERR_NUMERIC);
    x[5] = 6;
    ck_assert_int_eq(kd_model_forward(m, x, 2, y), KD_OK);
    float g[6] = {0, 0, NAN, 0, 0, 0};
    ck_assert_int_eq(kd_model_backward(m, g), KD_ERR_NUMERIC);
    ck_assert(memcmp(before, kdi_model_params(m)->items[0].p->value, sizeof(float) * 12) == 0);
    for (int i = 0; i < 12; i++) ck_assert(kdi_model_params(m)->items[0].p->grad[i] == 0.0f);
    kd_model_destroy(m);
    kd_model_destroy(NULL);
}
END_TEST

START_TEST(predict_matches_hand_computation)
{
    kd_model *m;
    ck_assert_int_eq(kd_model_create("input 2 | dense 2 | relu", 1, &m), KD_OK);
    float *w = kdi_model_params(m)->items[0].p->value, *b = kdi_model_params(m)->items[1].p->value;
    w[0] = 1, w[1] = 2, w[2] = -3, w[3] = 4, b[0] = 0.5f, b[1] = -100;
    float x[2] = {1, 1}, y[2];
    ck_assert_int_eq(kd_model_predict(m, x, 1, y), KD_OK);
    ck_assert_float_eq(y[0], 3.5f);
    ck_assert_float_eq(y[1], 0.0f);
    int64_t correct, confusion[4] = {0};
    int32_t label = 0;
    ck_assert_int_eq(kd_model_evaluate(m, x, &label, 1, 8, &correct, confusion), KD_OK);
    ck_assert_int_eq(correct, 1);
    ck_assert_int_eq(confusion[0], 1);
    label = 5;
    ck_assert_int_eq(kd_model_evaluate(m, x, &label, 1, 8, &correct, NULL), KD_ERR_ARGUMENT);
    /* NaN in the second batch: refused before the first batch is counted */
    float xs[6] = {1, 1, 1, 1, NAN, 1};
    int32_t labels[3] = {0, 0, 0};
    ck_assert_int_eq(kd_model_evaluate(m, xs, labels, 3, 2, &correct, confusion), KD_ERR_NUMERIC);
    ck_assert_int_eq(confusion[0], 1);
    kd_model_destroy(m);
}
END_TEST

/* Batches of growing and shrinking size reuse the buffers and give the same rows. */
START_TEST(batch_sizes_agree)
{
    kd_model *m;
    ck_assert_int_eq(kd_model_create("input 10 | dense 16 | gelu | dense 4", 9, &m), KD_OK);
    float x[70], all[28], one[4];
    kdt_fill(x, 70, 3, -1, 1);
    ck_assert_int_eq(kd_model_predict(m, x, 7, all), KD_OK);
    for (int r = 0; r < 7; r++) {
        ck_assert_int_eq(kd_model_predict(m, x + 10 * r, 1, one), KD_OK);
        for (int j = 0; j < 4; j++) ck_assert(fabsf(one[j] - all[4 * r + j]) < 1e-5f);
    }
    kd_model_destroy(m);
}
END_TEST

/* ---------------------------------------------------------------- files */

static char *tmp_path(const char *name)
{
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", kdt_tmpdir(), name);
    return path;
}

START_TEST(save_load_round_trip)
{
    kd_model *m, *l;
    const char *spec = "input 12 | dense 9 | leakyrelu 0.1 | dropout 0.3 | dense 4";
    ck_assert_int_eq(kd_model_create(spec, 5, &m), KD_OK);
    char *path = tmp_path("round.safetensors");
    ck_assert_int_eq(kd_model_save(m, path), KD_OK);
    ck_assert_int_eq(kd_model_load(path, &l), KD_OK);
    ck_assert_str_eq(kd_model_spec(l), kd_model_spec(m));
    float x[36], a[12], b[12];
    kdt_fill(x, 36, 4, -1, 1);
    ck_assert_int_eq(kd_model_predict(m, x, 3, a), KD_OK);
    ck_assert_int_eq(kd_model_predict(l, x, 3, b), KD_OK);
    ck_assert(memcmp(a, b, sizeof a) == 0);
    /* load_weights into a model of another seed makes it identical too. */
    kd_model *o;
    ck_assert_int_eq(kd_model_create(spec, 77, &o), KD_OK);
    ck_assert_int_eq(kd_model_load_weights(o, path), KD_OK);
    ck_assert_int_eq(kd_model_predict(o, x, 3, b), KD_OK);
    ck_assert(memcmp(a, b, sizeof a) == 0);
    /* A model of another shape refuses the file and keeps its weights. */
    kd_model *w;
    ck_assert_int_eq(kd_model_create("input 12 | dense 8 | dense 4", 1, &w), KD_OK);
    float keep[96];
    memcpy(keep, kdi_model_params(w)->items[0].p->value, sizeof keep);
    ck_assert_int_eq(kd_model_load_weights(w, path), KD_ERR_SHAPE);
    ck_assert(memcmp(keep, kdi_model_params(w)->items[0].p->value, sizeof keep) == 0);
    ck_assert_int_eq(kd_model_load("/nonexistent/dir/x.safetensors", &o), KD_ERR_IO);
    kd_model_destroy(m);
    kd_model_destroy(l);
    kd_model_destroy(o);
    kd_model_destroy(w);
    unlink(path);
}
END_TEST

START_TEST(save_failure_keeps_old_file)
{
    kd_model *m;
    ck_assert_int_eq(kd_model_create("input 3 | dense 2", 1, &m), KD_OK);
    ck_assert_int_eq(kd_model_save(m, "/nonexistent/dir/m.safetensors"), KD_ERR_IO);
    ck_assert_int_eq(kd_model_save(NULL, tmp_path("x")), KD_ERR_ARGUMENT);
    kd_model_destroy(m);
}
END_TEST

START_TEST(clone_is_deep)
{
    kd_model *m, *c;
    ck_assert_int_eq(kd_model_create("input 6 | dense 5 | tanh | dense 3", 11, &m), KD_OK);
    kdi_model_params(m)->items[0].p->value[0] = 0.125f;
    ck_assert_int_eq(kd_model_clone(m, &c), KD_OK);
    float x[6] = {1, 2, 3, 4, 5, 6}, a[3], b[3];
    ck_assert_int_eq(kd_model_predict(m, x, 1, a), KD_OK);
    ck_assert_int_eq(kd_model_predict(c, x, 1, b), KD_OK);
    ck_assert(memcmp(a, b, sizeof a) == 0);
    kdi_model_params(c)->items[0].p->value[0] = 9.0f;
    ck_assert_float_eq(kdi_model_params(m)->items[0].p->value[0], 0.125f);
    kd_model_destroy(m);
    kd_model_destroy(c);
}
END_TEST

/* A gradient injected at a hidden layer adds exactly what that layer's share of the objective
 * sum(w * logits) + sum(v * feature) contributes: compare with the objective on a truncated model. */
START_TEST(feature_gradients)
{
    const char *spec = "input 5 | dense 7 | tanh | dense 3";
    kd_model *m;
    ck_assert_int_eq(kd_model_create(spec, 3, &m), KD_OK);
    float x[10], logits[6], w[6], v[14];
    kdt_fill(x, 10, 1, -1, 1);
    kdt_fill(w, 6, 2, -1, 1);
    kdt_fill(v, 14, 3, -1, 1);
    const float *feat;
    int64_t batch, c, h, ww;
    ck_assert_int_eq(kd_model_feature(m, 1, &feat, &batch, &c, &h, &ww), KD_ERR_STATE);
    ck_assert_int_eq(kd_model_forward(m, x, 2, logits), KD_OK);
    ck_assert_int_eq(kd_model_feature(m, 1, &feat, &batch, &c, &h, &ww), KD_OK);
    ck_assert_int_eq(batch, 2);
    ck_assert_int_eq(c * h * ww, 7);
    ck_assert_int_eq(kd_model_feature(m, 3, &feat, NULL, NULL, NULL, NULL), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_model_feature_backward(m, 1, v), KD_OK);
    ck_assert_int_eq(kd_model_backward(m, w), KD_OK);
    const kdi_param *w0 = kdi_model_params(m)->items[0].p;
    float with_feature[35];
    memcpy(with_feature, w0->grad, sizeof with_feature);
    /* the same without the feature term, then the feature term alone via dense 7 | tanh */
    ck_assert_int_eq(kd_model_zero_grad(m), KD_OK);
    ck_assert_int_eq(kd_model_forward(m, x, 2, logits), KD_OK);
    ck_assert_int_eq(kd_model_backward(m, w), KD_OK);
    kd_model *lower;
    ck_assert_int_eq(kd_model_create("input 5 | dense 7 | tanh", 3, &lower), KD_OK);
    float f[14];
    ck_assert_int_eq(kd_model_forward(lower, x, 2, f), KD_OK);
    ck_assert_int_eq(kd_model_backward(lower, v), KD_OK);
    const kdi_param *l0 = kdi_model_params(lower)->items[0].p;
    for (int i = 0; i < 35; i++)
        ck_assert(fabsf(with_feature[i] - w0->grad[i] - l0->grad[i]) < 1e-5f);
    ck_assert_int_eq(kd_model_feature_backward(m, 1, v), KD_ERR_STATE);
    kd_model_destroy(m);
    kd_model_destroy(lower);
}
END_TEST

START_TEST(errors_and_version)
{
    ck_assert_str_eq(kd_version(), KD_VERSION_STRING);
    ck_assert_int_eq(kd_version_number(), KD_VERSION_NUMBER);
    for (int s = 0; s <= 8; s++) ck_assert(strncmp(kd_strerror((kd_status)s), "KD_", 3) == 0);
    ck_assert_ptr_nonnull(kd_strerror((kd_status)99));
    const char *k = kd_kernels_name();
    ck_assert(strcmp(k, "ref") == 0 || strcmp(k, "avx2") == 0 || strcmp(k, "avx512") == 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("model");
    TCase *t = tcase_create("model");
    tcase_add_test(t, grad_dense);
    tcase_add_test(t, grad_relu);
    tcase_add_test(t, grad_leakyrelu);
    tcase_add_test(t, grad_gelu);
    tcase_add_test(t, grad_tanh);
    tcase_add_test(t, grad_sigmoid);
    tcase_add_test(t, grad_mlp);
    tcase_add_test(t, dropout_behaviour);
    tcase_add_test(t, spec_canonical);
    tcase_add_test(t, spec_errors);
    tcase_add_test(t, same_seed_same_weights);
    tcase_add_test(t, bad_inputs_leave_model_unchanged);
    tcase_add_test(t, predict_matches_hand_computation);
    tcase_add_test(t, batch_sizes_agree);
    tcase_add_test(t, save_load_round_trip);
    tcase_add_test(t, save_failure_keeps_old_file);
    tcase_add_test(t, clone_is_deep);
    tcase_add_test(t, feature_gradients);
    tcase_add_test(t, errors_and_version);
    suite_add_tcase(s, t);
    return kdt_run(s);
}
