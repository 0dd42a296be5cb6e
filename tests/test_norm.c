/* BatchNorm (1d and 2d) and LayerNorm: values against hand computations in train and eval mode,
 * running statistics, finite-difference gradients, state-dict names and files, bad input. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "nn/model.h"
#include "nn/sequence.h"
#include "testutil.h"

static const char *tmp_path(const char *name)
{
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", kdt_tmpdir(), name);
    return path;
}

/* Per channel mean and biased / unbiased variance of x [batch, c, hw], in double. */
static void stats(const float *x, int64_t batch, int64_t c, int64_t hw, int64_t ch, double *mean,
                  double *biased, double *unbiased)
{
    double s = 0.0, ss = 0.0, n = (double)(batch * hw);
    for (int64_t b = 0; b < batch; b++)
        for (int64_t i = 0; i < hw; i++) s += x[(b * c + ch) * hw + i];
    *mean = s / n;
    for (int64_t b = 0; b < batch; b++)
        for (int64_t i = 0; i < hw; i++) {
            double d = x[(b * c + ch) * hw + i] - *mean;
            ss += d * d;
        }
    *biased = ss / n;
    *unbiased = ss / (n - 1.0);
}

/* Train forward, running statistics after two steps, then eval forward, for shape in. */
static void check_batchnorm(kdi_shape in, int64_t batch)
{
    kdi_seq s;
    ck_assert_int_eq(kdi_seq_build(&s, "bn", in, 1), KD_OK);
    kdi_layer *l = &s.layers[0];
    int64_t c = in.c, hw = in.h * in.w, n = batch * c * hw;
    float *gamma = l->params[0].value, *beta = l->params[1].value;
    float *rmean = l->params[2].value, *rvar = l->params[3].value;
    for (int64_t k = 0; k < c; k++) {
        ck_assert_float_eq(gamma[k], 1.0f); /* PyTorch's initial state */
        ck_assert_float_eq(beta[k], 0.0f);
        ck_assert_float_eq(rmean[k], 0.0f);
        ck_assert_float_eq(rvar[k], 1.0f);
        gamma[k] = 0.5f + 0.25f * (float)k;
        beta[k] = -0.1f * (float)k;
    }
    float *x1 = malloc(sizeof(float) * n), *x2 = malloc(sizeof(float) * n);
    kdt_fill(x1, n, 1, -1.0f, 3.0f);
    kdt_fill(x2, n, 2, 0.0f, 5.0f);
    const float *y;
    ck_assert_int_eq(kdi_seq_forward(&s, x1, batch, 1, &y), KD_OK);
    double *want_rm = calloc((size_t)c, sizeof(double)),
           *want_rv = calloc((size_t)c, sizeof(double));
    for (int64_t k = 0; k < c; k++) {
        double m, bv, uv;
        stats(x1, batch, c, hw, k, &m, &bv, &uv);
        for (int64_t b = 0; b < batch; b++)
            for (int64_t i = 0; i < hw; i++) {
                int64_t at = (b * c + k) * hw + i;
                double want = gamma[k] * (x1[at] - m) / sqrt(bv + 1e-5) + beta[k];
                ck_assert_msg(fabs(y[at] - want) < 1e-5, "train y[%lld] = %g, want %g",
                              (long long)at, y[at], want);
            }
        want_rm[k] = 0.1 * m;
        want_rv[k] = 0.9 + 0.1 * uv; /* unbiased for the running estimate, as PyTorch */
    }
    ck_assert_int_eq(kdi_seq_forward(&s, x2, batch, 1, &y), KD_OK);
    for (int64_t k = 0; k < c; k++) {
        double m, bv, uv;
        stats(x2, batch, c, hw, k, &m, &bv, &uv);
        want_rm[k] = 0.9 * want_rm[k] + 0.1 * m;
        want_rv[k] = 0.9 * want_rv[k] + 0.1 * uv;
        ck_assert_msg(fabs(rmean[k] - want_rm[k]) < 1e-5, "running_mean %g, want %g", rmean[k],
                      want_rm[k]);
        ck_assert_msg(fabs(rvar[k] - want_rv[k]) < 1e-5, "running_var %g, want %g", rvar[k],
                      want_rv[k]);
    }
    ck_assert_int_eq(l->params[4].ivalue[0], 2);
    /* eval: the running estimates, and nothing moves */
    ck_assert_int_eq(kdi_seq_forward(&s, x1, batch, 0, &y), KD_OK);
    for (int64_t k = 0; k < c; k++)
        for (int64_t b = 0; b < batch; b++)
            for (int64_t i = 0; i < hw; i++) {
                int64_t at = (b * c + k) * hw + i;
                double want = gamma[k] * (x1[at] - want_rm[k]) / sqrt(want_rv[k] + 1e-5) + beta[k];
                ck_assert(fabs(y[at] - want) < 1e-5);
            }
    ck_assert_int_eq(l->params[4].ivalue[0], 2);
    for (int64_t k = 0; k < c; k++) ck_assert(fabs(rmean[k] - want_rm[k]) < 1e-5);
    free(want_rm);
    free(want_rv);
    free(x1);
    free(x2);
    kdi_seq_free(&s);
}

START_TEST(batchnorm2d_train_and_eval)
{
    check_batchnorm((kdi_shape){3, 4, 5}, 4);
    check_batchnorm((kdi_shape){2, 1, 3}, 2);
}
END_TEST

START_TEST(batchnorm1d_train_and_eval)
{
    check_batchnorm(kdi_shape_flat(5), 6);
    check_batchnorm(kdi_shape_flat(1), 2);
}
END_TEST

START_TEST(batchnorm_gradients)
{
    /* train mode: the gradient flows through the batch statistics too */
    kdt_check_gradients("bn", (kdi_shape){3, 4, 4}, 3, -1.0f, 2.0f);
    kdt_check_gradients("bn", kdi_shape_flat(6), 5, -1.0f, 2.0f);
    /* Through two normalisations, single-coordinate differences drown in rounding: check along
     * random directions instead. */
    kdt_check_directional("conv 4 3 pad=1 bias=0 | bn | tanh | flatten | dense 8 | bn | dense 3",
                          (kdi_shape){2, 5, 5}, 4);
    kdt_check_directional("conv 4 3 pad=1 | bn | tanh | flatten | dense 8 | bn | dense 3",
                          (kdi_shape){2, 5, 5}, 16);
    kdt_check_gradients("bn momentum=0.5 eps=0.001", (kdi_shape){2, 3, 3}, 2, -1.0f, 1.0f);
}
END_TEST

START_TEST(batchnorm_needs_two_values_to_train)
{
    kd_model *m;
    ck_assert_int_eq(kd_model_create("input 4 | dense 3 | bn | dense 2", 1, &m), KD_OK);
    float x[4] = {1, 2, 3, 4}, y[2];
    ck_assert_int_eq(kd_model_forward(m, x, 1, y), KD_ERR_SHAPE);
    ck_assert(strstr(kd_last_error(), "bn") != NULL);
    ck_assert_int_eq(kd_model_predict(m, x, 1, y), KD_OK); /* eval works on one example */
    ck_assert_int_eq(kd_model_backward(m, y), KD_ERR_STATE);
    kd_model_destroy(m);
    /* a 2d map has several values per channel even for one example */
    ck_assert_int_eq(kd_model_create("input 1x3x3 | bn | flatten | dense 2", 1, &m), KD_OK);
    float z[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    ck_assert_int_eq(kd_model_forward(m, z, 1, y), KD_OK);
    kd_model_destroy(m);
    /* A bn that refuses, after one that could train (also inside a residual block): the refusal
     * comes before any layer runs, so the first bn's running statistics and count stay put. */
    const char *specs[2] = {"input 1x3x3 | bn | gap | flatten | bn | dense 2",
                            "input 1x3x3 | residual(bn | gap | bn)(gap) | flatten | dense 2"};
    for (int k = 0; k < 2; k++) {
        ck_assert_int_eq(kd_model_create(specs[k], 1, &m), KD_OK);
        const kdi_param_list *pl = kdi_model_params(m);
        ck_assert_int_eq(kd_model_forward(m, z, 1, y), KD_ERR_SHAPE);
        for (int32_t i = 0; i < pl->n; i++) {
            const kdi_param *p = pl->items[i].p;
            if (p->ivalue != NULL) ck_assert_int_eq(p->ivalue[0], 0);
            if (strstr(pl->items[i].name, "running_mean") != NULL) ck_assert(p->value[0] == 0.0f);
            if (strstr(pl->items[i].name, "running_var") != NULL) ck_assert(p->value[0] == 1.0f);
        }
        kd_model_destroy(m);
    }
}
END_TEST

START_TEST(batchnorm_spec_and_names)
{
    kd_model *m;
    ck_assert_int_eq(kd_model_create("input 3x4x4 | conv 5 3 bias=0 | bn | relu | flatten | "
                                     "dense 6 | bn eps=0.001 momentum=0.01",
                                     1, &m),
                     KD_OK);
    ck_assert_str_eq(kd_model_spec(m), "input 3x4x4 | conv 5 3 bias=0 | bn | relu | flatten | "
                                       "dense 6 | bn eps=0.001 momentum=0.01");
    const kdi_param_list *pl = kdi_model_params(m);
    static const char *names[] = {"0.weight",       "1.weight",      "1.bias",
                                  "1.running_mean", "1.running_var", "1.num_batches_tracked",
                                  "4.weight",       "4.bias",        "5.weight"};
    for (int i = 0; i < 9; i++) ck_assert_str_eq(pl->items[i].name, names[i]);
    ck_assert_int_eq(pl->n, 13);
    ck_assert_ptr_null(pl->items[3].p->grad); /* buffers are not trained */
    ck_assert_ptr_nonnull(pl->items[5].p->ivalue);
    ck_assert_int_eq(pl->items[5].p->ndim, 0); /* a scalar, as PyTorch saves it */
    int64_t n;
    ck_assert_int_eq(kd_model_param_count(m, &n), KD_OK);
    ck_assert_int_eq(n, 5 * 27 + 10 + 6 * 20 + 6 + 12);
    kd_model_destroy(m);
    static const char *bad[] = {"input 3x4x4 | bn 3",          "input 3x4x4 | bn eps=0",
                                "input 3x4x4 | bn momentum=2", "input 3x4x4 | bn affine=0",
                                "input 3x4x4 | layernorm 2",   "input 3x4x4 | layernorm eps=-1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kd_model *o = NULL;
        kd_status st = kd_model_create(bad[i], 1, &o);
        ck_assert_msg(st == KD_ERR_FORMAT || st == KD_ERR_ARGUMENT, "%s gave %d", bad[i], (int)st);
        ck_assert_ptr_null(o);
    }
}
END_TEST

/* Trained running statistics and the step count survive a file; eval outputs are identical. */
START_TEST(batchnorm_save_load)
{
    const char *spec = "input 2x5x5 | conv 4 3 | bn | relu | flatten | dense 6 | bn | dense 3";
    kd_model *m, *l;
    ck_assert_int_eq(kd_model_create(spec, 3, &m), KD_OK);
    float x[8 * 50], logits[24];
    for (int step = 0; step < 3; step++) {
        kdt_fill(x, 8 * 50, (uint64_t)step, -1.0f, 2.0f);
        ck_assert_int_eq(kd_model_forward(m, x, 8, logits), KD_OK);
    }
    const char *path = tmp_path("bn.safetensors");
    ck_assert_int_eq(kd_model_save(m, path), KD_OK);
    ck_assert_int_eq(kd_model_load(path, &l), KD_OK);
    float a[24], b[24];
    ck_assert_int_eq(kd_model_predict(m, x, 8, a), KD_OK);
    ck_assert_int_eq(kd_model_predict(l, x, 8, b), KD_OK);
    ck_assert(memcmp(a, b, sizeof a) == 0);
    const kdi_param_list *pl = kdi_model_params(l);
    ck_assert_str_eq(pl->items[6].name, "1.num_batches_tracked");
    ck_assert_int_eq(pl->items[6].p->ivalue[0], 3);
    ck_assert_str_eq(pl->items[4].name, "1.running_mean");
    ck_assert(pl->items[4].p->value[0] != 0.0f); /* moved in training, came back from the file */
    /* the file holds an I64 scalar, as torch.save of a BatchNorm state dict does */
    kdi_st_file f;
    ck_assert_int_eq(kdi_st_read(path, &f), KD_OK);
    const kdi_st_tensor *t = kdi_st_find(&f, "1.num_batches_tracked");
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->dtype, KDI_ST_I64);
    ck_assert_int_eq(t->ndim, 0);
    t = kdi_st_find(&f, "1.running_var");
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->dtype, KDI_ST_F32);
    ck_assert_int_eq(t->dims[0], 4);
    kdi_st_free(&f);
    /* a clone carries the buffers too */
    kd_model *c;
    ck_assert_int_eq(kd_model_clone(m, &c), KD_OK);
    ck_assert_int_eq(kd_model_predict(c, x, 8, b), KD_OK);
    ck_assert(memcmp(a, b, sizeof a) == 0);
    kd_model_destroy(c);
    kd_model_destroy(m);
    kd_model_destroy(l);
    unlink(path);
}
END_TEST

/* ---------------------------------------------------------------- LayerNorm */

START_TEST(layernorm_values)
{
    kdi_seq s;
    kdi_shape in = {2, 3, 2};
    ck_assert_int_eq(kdi_seq_build(&s, "layernorm", in, 1), KD_OK);
    kdi_layer *l = &s.layers[0];
    ck_assert_int_eq(l->params[0].ndim, 3); /* nn.LayerNorm([C, H, W]) */
    ck_assert_int_eq(l->params[0].dims[0], 2);
    ck_assert_int_eq(l->params[0].dims[2], 2);
    for (int i = 0; i < 12; i++) {
        l->params[0].value[i] = 1.0f + 0.1f * (float)i;
        l->params[1].value[i] = 0.05f * (float)i;
    }
    float x[36];
    kdt_fill(x, 36, 5, -2.0f, 4.0f);
    const float *y;
    for (int train = 0; train <= 1; train++) {
        ck_assert_int_eq(kdi_seq_forward(&s, x, 3, train, &y), KD_OK);
        for (int b = 0; b < 3; b++) {
            double m = 0.0, v = 0.0;
            for (int i = 0; i < 12; i++) m += x[b * 12 + i] / 12.0;
            for (int i = 0; i < 12; i++) v += (x[b * 12 + i] - m) * (x[b * 12 + i] - m) / 12.0;
            for (int i = 0; i < 12; i++) {
                double want = (x[b * 12 + i] - m) / sqrt(v + 1e-5) * l->params[0].value[i] +
                              l->params[1].value[i];
                ck_assert(fabs(y[b * 12 + i] - want) < 1e-5);
            }
        }
    }
    kdi_seq_free(&s);
    ck_assert_int_eq(kdi_seq_build(&s, "layernorm eps=0.01", kdi_shape_flat(7), 1), KD_OK);
    ck_assert_int_eq(s.layers[0].params[0].ndim, 1);
    ck_assert_str_eq(s.layers[0].spec, "layernorm eps=0.01");
    kdi_seq_free(&s);
}
END_TEST

START_TEST(layernorm_gradients)
{
    kdt_check_gradients("layernorm", (kdi_shape){2, 3, 3}, 3, -1.0f, 2.0f);
    kdt_check_gradients("layernorm", kdi_shape_flat(7), 1, -1.0f, 2.0f);
    kdt_check_gradients("dense 6 | layernorm | gelu | dense 3", kdi_shape_flat(5), 4, -1.0f, 1.0f);
}
END_TEST

START_TEST(layernorm_save_load)
{
    kd_model *m, *l;
    ck_assert_int_eq(
        kd_model_create("input 2x4x4 | conv 3 3 | layernorm | flatten | dense 2", 4, &m), KD_OK);
    kdi_model_params(m)->items[2].p->value[5] = 1.5f; /* 1.weight */
    const char *path = tmp_path("ln.safetensors");
    ck_assert_int_eq(kd_model_save(m, path), KD_OK);
    ck_assert_int_eq(kd_model_load(path, &l), KD_OK);
    ck_assert_str_eq(kdi_model_params(l)->items[2].name, "1.weight");
    float x[64], a[4], b[4];
    kdt_fill(x, 64, 2, 0, 1);
    ck_assert_int_eq(kd_model_predict(m, x, 2, a), KD_OK);
    ck_assert_int_eq(kd_model_predict(l, x, 2, b), KD_OK);
    ck_assert(memcmp(a, b, sizeof a) == 0);
    kd_model_destroy(m);
    kd_model_destroy(l);
    unlink(path);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("norm");
    TCase *t = tcase_create("norm");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, batchnorm2d_train_and_eval);
    tcase_add_test(t, batchnorm1d_train_and_eval);
    tcase_add_test(t, batchnorm_gradients);
    tcase_add_test(t, batchnorm_needs_two_values_to_train);
    tcase_add_test(t, batchnorm_spec_and_names);
    tcase_add_test(t, batchnorm_save_load);
    tcase_add_test(t, layernorm_values);
    tcase_add_test(t, layernorm_gradients);
    tcase_add_test(t, layernorm_save_load);
    suite_add_tcase(s, t);
    return kdt_run(s);
}
