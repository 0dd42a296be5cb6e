/* Pruning: the magnitude pruner's schedule and masks (kd_pruner), and structured pruning
 * (kd_model_prune_channels) checked against the unpruned model with the removed units zeroed. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/model.h"
#include "testutil.h"

static kdi_param *param(kd_model *m, const char *name)
{
    const kdi_param_list *ps = kdi_model_params(m);
    for (int32_t i = 0; i < ps->n; i++)
        if (strcmp(ps->items[i].name, name) == 0) return ps->items[i].p;
    ck_abort_msg("no parameter %s", name);
    return NULL;
}

static int64_t zeros(const kdi_param *p)
{
    int64_t z = 0;
    for (int64_t i = 0; i < p->count; i++) z += p->value[i] == 0.0f;
    return z;
}

START_TEST(one_shot_and_kept)
{
    kd_model *m;
    ck_assert_int_eq(kd_model_create("input 20 | dense 50 | relu | dense 10", 3, &m), KD_OK);
    kd_pruner *p;
    ck_assert_int_eq(kd_pruner_create(m, 0.8f, &p), KD_OK);
    ck_assert_int_eq(kd_pruner_step(p, 0), KD_OK);
    kdi_param *w0 = param(m, "0.weight"), *w2 = param(m, "2.weight"), *b0 = param(m, "0.bias");
    ck_assert_int_eq(zeros(w0), 800); /* layer-wise: 80% of each */
    ck_assert_int_eq(zeros(w2), 400);
    ck_assert_int_eq(zeros(b0), 0); /* biases are not pruned */
    float s;
    ck_assert_int_eq(kd_model_sparsity(m, &s), KD_OK);
    ck_assert_float_eq_tol(s, 0.8f, 1e-6f);
    /* An update that moves every weight: the masked ones are zeroed again at the next step. */
    for (int64_t i = 0; i < w0->count; i++) w0->value[i] += 0.5f;
    ck_assert_int_eq(kd_pruner_step(p, 1), KD_OK);
    ck_assert_int_eq(zeros(w0), 800);
    kd_pruner_destroy(p);
    kd_model_destroy(m);
}
END_TEST

START_TEST(keeps_the_largest)
{
    kd_model *m;
    ck_assert_int_eq(kd_model_create("input 10 | dense 10", 3, &m), KD_OK);
    kdi_param *w = param(m, "0.weight");
    for (int64_t i = 0; i < 100; i++) w->value[i] = (i % 2 ? -1.0f : 1.0f) * (float)(i + 1);
    kd_pruner *p;
    ck_assert_int_eq(kd_pruner_create(m, 0.3f, &p), KD_OK);
    ck_assert_int_eq(kd_pruner_step(p, 0), KD_OK);
    for (int64_t i = 0; i < 100; i++) ck_assert(i < 30 ? w->value[i] == 0.0f : w->value[i] != 0.0f);
    kd_pruner_destroy(p);
    kd_model_destroy(m);
}
END_TEST

START_TEST(gradual_schedule)
{
    kd_model *m;
    ck_assert_int_eq(kd_model_create("input 100 | dense 100", 3, &m), KD_OK);
    kd_pruner *p;
    ck_assert_int_eq(kd_pruner_create(m, 0.8f, &p), KD_OK);
    ck_assert_int_eq(kd_pruner_set_int(p, KD_PRUNER_BEGIN_STEP, 10), KD_OK);
    ck_assert_int_eq(kd_pruner_set_int(p, KD_PRUNER_END_STEP, 30), KD_OK);
    ck_assert_int_eq(kd_pruner_set_int(p, KD_PRUNER_FREQUENCY, 5), KD_OK);
    ck_assert_int_eq(kd_pruner_set_int(p, KD_PRUNER_FREQUENCY, 0), KD_ERR_ARGUMENT);
    float s;
    kdi_param *w = param(m, "0.weight");
    /* Zhu and Gupta's cubic ramp: 0 before 10, 0.8 (1 - (1 - (t - 10) / 20)^3) at 10, 15, 20, 25. */
    static const int64_t steps[] = {0, 10, 12, 15, 20, 25, 29, 30, 40};
    static const float want[] = {0.0f, 0.0f, 0.0f, 0.4625f, 0.7f, 0.7875f, 0.7875f, 0.8f, 0.8f};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        ck_assert_int_eq(kd_pruner_step(p, steps[i]), KD_OK);
        ck_assert_int_eq(kd_pruner_sparsity(p, &s), KD_OK);
        ck_assert_msg(fabsf(s - want[i]) < 1e-5f, "step %lld: sparsity %g, want %g",
                      (long long)steps[i], (double)s, (double)want[i]);
        ck_assert_int_eq(zeros(w), (int64_t)floor((double)want[i] * 10000.0 + 1e-6));
    }
    ck_assert_int_eq(kd_pruner_step(p, -1), KD_ERR_ARGUMENT);
    kd_pruner_destroy(p);
    ck_assert_int_eq(kd_pruner_create(m, 1.0f, &p), KD_ERR_ARGUMENT);
    kd_model_destroy(m);
}
END_TEST

/* Zeroes the units of a layer that structured pruning should drop: weight rows and bias. */
static void zero_units(kd_model *m, const char *layer, const int *units, int n)
{
    char name[64];
    snprintf(name, sizeof name, "%s.weight", layer);
    kdi_param *w = param(m, name);
    snprintf(name, sizeof name, "%s.bias", layer);
    kdi_param *b = param(m, name);
    int64_t per = w->count / w->dims[0];
    for (int k = 0; k < n; k++) {
        memset(w->value + units[k] * per, 0, sizeof(float) * (size_t)per);
        b->value[units[k]] = 0.0f;
    }
}

static void same_outputs(kd_model *a, kd_model *b, int64_t in, int64_t out)
{
    float x[4 * 72], ya[4 * 16], yb[4 * 16];
    kdt_fill(x, 4 * in, 5, -1.0f, 1.0f);
    ck_assert_int_eq(kd_model_predict(a, x, 4, ya), KD_OK);
    ck_assert_int_eq(kd_model_predict(b, x, 4, yb), KD_OK);
    for (int64_t i = 0; i < 4 * out; i++) ck_assert_float_eq_tol(ya[i], yb[i], 1e-5f);
}

START_TEST(channels_of_an_mlp)
{
    kd_model *m, *p;
    ck_assert_int_eq(kd_model_create("input 6 | dense 8 | relu | dropout 0.2 | dense 5 | tanh | bn "
                                     "| dense 3",
                                     4, &m),
                     KD_OK);
    static const int drop0[] = {1, 3, 6, 7}, drop3[] = {0, 2, 4};
    zero_units(m, "0", drop0, 4);
    zero_units(m, "3", drop3, 3);
    /* A dropped unit of layer 3 gives tanh(0) = 0, which bn keeps at 0 when its running mean and
     * bias are 0 there; the kept channels get statistics of their own, which must follow them. */
    kdi_param *rm = param(m, "5.running_mean"), *rv = param(m, "5.running_var");
    for (int c = 0; c < 5; c++) {
        rm->value[c] = c == 1 || c == 3 ? 0.2f * (float)c : 0.0f;
        rv->value[c] = 1.0f + (float)c;
    }
    float mean[6] = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f};
    kd_model_set_normalization(m, mean, mean, 6);
    ck_assert_int_eq(kd_model_prune_channels(m, 0.5f, &p), KD_OK);
    ck_assert_str_eq(kd_model_spec(p),
                     "input 6 | dense 4 | relu | dropout 0.2 | dense 2 | tanh | bn | dense 3");
    int64_t channels;
    ck_assert_int_eq(kd_model_get_normalization(p, NULL, NULL, &channels), KD_OK);
    ck_assert_int_eq(channels, 6);
    same_outputs(m, p, 6, 3);
    kd_model_destroy(p);
    kd_model_destroy(m);
}
END_TEST

START_TEST(channels_of_a_cnn)
{
    kd_model *m, *p;
    ck_assert_int_eq(kd_model_create("input 2x6x6 | conv 4 3 pad=1 | bn | relu | maxpool 2 "
                                     "| conv 6 3 pad=1 | relu | flatten | dense 5",
                                     4, &m),
                     KD_OK);
    kdi_param *mean = param(m, "1.running_mean"), *var = param(m, "1.running_var");
    for (int c = 0; c < 4; c++) {
        mean[0].value[c] = 0.1f * (float)c;
        var[0].value[c] = 1.0f + (float)c;
        param(m, "1.bias")->value[c] = 0.1f * (float)c; /* relu(bn(0)) > 0 for kept channels */
    }
    static const int drop0[] = {0, 2}, drop4[] = {1, 2, 5};
    zero_units(m, "0", drop0, 2);
    zero_units(m, "4", drop4, 3);
    ck_assert_int_eq(kd_model_prune_channels(m, 0.5f, &p), KD_OK);
    ck_assert_str_eq(kd_model_spec(p), "input 2x6x6 | conv 2 3 pad=1 | bn | relu | maxpool 2 "
                                       "| conv 3 3 pad=1 | relu | flatten | dense 5");
    /* The dropped channels 0 and 2 must read 0 after relu(bn(0)) = relu(bias - mean / sqrt(var)). */
    param(m, "1.bias")->value[0] = 0.0f;
    param(m, "1.bias")->value[2] = -1.0f;
    same_outputs(m, p, 72, 5);
    kd_model_destroy(p);
    kd_model_destroy(m);
}
END_TEST

START_TEST(channels_refused)
{
    kd_model *m, *p = NULL;
    ck_assert_int_eq(kd_model_create("input 4 | dense 3", 1, &m), KD_OK);
    ck_assert_int_eq(kd_model_prune_channels(m, 0.5f, &p), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_model_prune_channels(m, 1.0f, &p), KD_ERR_ARGUMENT);
    ck_assert_ptr_null(p);
    kd_model_destroy(m);
    ck_assert_int_eq(
        kd_model_create("input 4 | dense 8 | residual(dense 8 | relu) | dense 2", 1, &m), KD_OK);
    ck_assert_int_eq(kd_model_prune_channels(m, 0.5f, &p), KD_ERR_UNSUPPORTED);
    kd_model_destroy(m);
    /* an int8 model is refused as such, not as one with nothing to prune */
    kd_model *q;
    float x[4 * 4];
    for (int i = 0; i < 16; i++) x[i] = (float)(i % 5) * 0.25f - 0.5f;
    ck_assert_int_eq(kd_model_create("input 4 | dense 8 | relu | dense 3", 1, &m), KD_OK);
    ck_assert_int_eq(kd_model_quantize(m, x, 4, KD_CALIBRATION_MINMAX, 0.0f, &q), KD_OK);
    ck_assert_int_eq(kd_model_prune_channels(q, 0.5f, &p), KD_ERR_UNSUPPORTED);
    ck_assert_msg(strstr(kd_last_error(), "int8") != NULL, "%s", kd_last_error());
    ck_assert_ptr_null(p);
    ck_assert_int_eq(kd_model_prune_channels(m, 0.5f, &p), KD_OK); /* the float one prunes */
    kd_model_destroy(p);
    kd_model_destroy(q);
    kd_model_destroy(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("prune");
    TCase *tc = tcase_create("prune");
    tcase_add_test(tc, one_shot_and_kept);
    tcase_add_test(tc, keeps_the_largest);
    tcase_add_test(tc, gradual_schedule);
    tcase_add_test(tc, channels_of_an_mlp);
    tcase_add_test(tc, channels_of_a_cnn);
    tcase_add_test(tc, channels_refused);
    suite_add_tcase(s, tc);
    return kdt_run(s);
}
