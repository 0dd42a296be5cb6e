/* Convolutional layers: conv, pooling, batch and layer normalisation, flatten, residual blocks. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model.h"
#include "sequence.h"
#include "testutil.h"

static kdi_shape img(int64_t c, int64_t h, int64_t w) { return (kdi_shape){c, h, w}; }

START_TEST(grad_conv) { kdt_check_gradients("conv 4 3 pad=1", img(2, 5, 5), 2, -1, 1); }
END_TEST
START_TEST(grad_conv_stride) { kdt_check_gradients("conv 3 3 stride=2", img(2, 7, 6), 2, -1, 1); }
END_TEST
START_TEST(grad_conv_groups) { kdt_check_gradients("conv 4 3 pad=1 groups=2 bias=0", img(4, 4, 4), 2, -1, 1); }
END_TEST
START_TEST(grad_depthwise) { kdt_check_gradients("conv 3 3 pad=1 groups=3 | conv 2 1", img(3, 4, 5), 2, -1, 1); }
END_TEST
START_TEST(grad_avgpool) { kdt_check_gradients("avgpool 2 | conv 2 1", img(2, 4, 6), 2, -1, 1); }
END_TEST
START_TEST(grad_gap) { kdt_check_gradients("gap | dense 3", img(3, 3, 5), 2, -1, 1); }
END_TEST
START_TEST(grad_bn2d) { kdt_check_gradients("conv 3 3 bias=0 | bn | tanh", img(2, 5, 5), 3, -1, 1); }
END_TEST
START_TEST(grad_bn1d) { kdt_check_gradients("dense 5 | bn | tanh | dense 2", img(6, 1, 1), 4, -1, 1); }
END_TEST
START_TEST(grad_layernorm) { kdt_check_gradients("conv 2 3 | layernorm | tanh", img(2, 4, 4), 2, -1, 1); }
END_TEST
START_TEST(grad_flatten) { kdt_check_gradients("conv 2 3 | flatten | dense 3", img(1, 5, 5), 2, -1, 1); }
END_TEST
START_TEST(grad_residual)
{
    kdt_check_gradients("residual(conv 2 3 pad=1 | tanh | conv 2 3 pad=1)", img(2, 4, 4), 2, -1, 1);
    kdt_check_gradients("residual(conv 4 3 stride=2 pad=1 bias=0 | bn | tanh)(conv 4 1 stride=2 bias=0 | bn) | tanh",
                        img(2, 6, 6), 2, -1, 1);
}
END_TEST

/* Max pooling: the gradient goes to each window's maximum, nowhere else. */
START_TEST(maxpool_routes_gradient)
{
    kdi_seq s;
    ck_assert_int_eq(kdi_seq_build(&s, "maxpool 2", img(1, 4, 4), 1), KD_OK);
    float x[16], dy[4] = {1, 2, 3, 4}, dx[16];
    for (int i = 0; i < 16; i++) x[i] = (float)((i * 7) % 16); /* distinct values */
    const float *y;
    ck_assert_int_eq(kdi_seq_forward(&s, x, 1, 1, &y), KD_OK);
    ck_assert_int_eq(kdi_seq_backward(&s, dy, dx), KD_OK);
    for (int oy = 0; oy < 2; oy++)
        for (int ox = 0; ox < 2; ox++) {
            float best = -1;
            int at = -1;
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < 2; j++) {
                    int k = (2 * oy + i) * 4 + 2 * ox + j;
                    if (x[k] > best) best = x[k], at = k;
                }
            ck_assert_float_eq(y[oy * 2 + ox], best);
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < 2; j++) {
                    int k = (2 * oy + i) * 4 + 2 * ox + j;
                    ck_assert_float_eq(dx[k], k == at ? dy[oy * 2 + ox] : 0.0f);
                }
        }
    kdi_seq_free(&s);
}
END_TEST

/* The im2col convolution against the definition, summed directly. */
START_TEST(conv_matches_definition)
{
    kdi_seq s;
    ck_assert_int_eq(kdi_seq_build(&s, "conv 3 3 stride=2 pad=1", img(2, 7, 5), 3), KD_OK);
    kdi_layer *l = &s.layers[0];
    ck_assert(l->out.c == 3 && l->out.h == 4 && l->out.w == 3);
    float x[2 * 2 * 7 * 5];
    kdt_fill(x, 140, 4, -1, 1);
    const float *y;
    ck_assert_int_eq(kdi_seq_forward(&s, x, 2, 0, &y), KD_OK);
    const float *w = l->params[0].value, *b = l->params[1].value;
    for (int n = 0; n < 2; n++)
        for (int o = 0; o < 3; o++)
            for (int oy = 0; oy < 4; oy++)
                for (int ox = 0; ox < 3; ox++) {
                    double sum = b[o];
                    for (int c = 0; c < 2; c++)
                        for (int i = 0; i < 3; i++)
                            for (int j = 0; j < 3; j++) {
                                int iy = 2 * oy - 1 + i, ix = 2 * ox - 1 + j;
                                if (iy < 0 || iy >= 7 || ix < 0 || ix >= 5) continue;
                                sum += (double)w[((o * 2 + c) * 3 + i) * 3 + j] * x[((n * 2 + c) * 7 + iy) * 5 + ix];
                            }
                    ck_assert(fabs(y[((n * 3 + o) * 4 + oy) * 3 + ox] - sum) < 1e-5);
                }
    kdi_seq_free(&s);
}
END_TEST

/* BatchNorm: batch statistics and running estimates in training, running estimates in eval. */
START_TEST(batchnorm_modes)
{
    kdi_seq s;
    ck_assert_int_eq(kdi_seq_build(&s, "bn", img(1, 1, 2), 1), KD_OK);
    float x[6] = {1, 2, 3, 4, 5, 6}; /* 3 examples, 2 positions: mean 3.5, biased var 35/12 */
    const float *y;
    ck_assert_int_eq(kdi_seq_forward(&s, x, 3, 1, &y), KD_OK);
    double var = 35.0 / 12.0;
    for (int i = 0; i < 6; i++) ck_assert(fabs(y[i] - (x[i] - 3.5) / sqrt(var + 1e-5)) < 1e-5);
    kdi_param *p = s.layers[0].params;
    ck_assert(fabsf(p[2].value[0] - 0.35f) < 1e-6f);                                /* running mean */
    ck_assert(fabsf(p[3].value[0] - (float)(0.9 + 0.1 * var * 6.0 / 5.0)) < 1e-6f); /* unbiased */
    ck_assert_int_eq(p[4].ivalue[0], 1);
    ck_assert_int_eq(kdi_seq_forward(&s, x, 3, 0, &y), KD_OK);
    for (int i = 0; i < 6; i++)
        ck_assert(fabs(y[i] - (x[i] - p[2].value[0]) / sqrt(p[3].value[0] + 1e-5)) < 1e-5);
    ck_assert_int_eq(p[4].ivalue[0], 1);
    float one[1] = {1};
    kdi_seq_free(&s);
    ck_assert_int_eq(kdi_seq_build(&s, "bn", img(1, 1, 1), 1), KD_OK);
    ck_assert_int_eq(kdi_seq_forward(&s, one, 1, 1, &y), KD_ERR_SHAPE);
    kdi_seq_free(&s);
}
END_TEST

static const char *resnet =
    "input 1x12x12 | conv 8 3 pad=1 bias=0 | bn | relu"
    " | residual(conv 8 3 pad=1 bias=0 | bn | relu | conv 8 3 pad=1 bias=0 | bn) | relu"
    " | residual(conv 16 3 stride=2 pad=1 | bn | relu | conv 16 3 pad=1 | bn)(conv 16 1 stride=2 | bn)"
    " | relu | maxpool 2 | gap | flatten | dense 10";

/* PyTorch's state-dict names, saved and loaded with identical outputs in eval mode. */
START_TEST(resnet_files)
{
    kd_model *m, *l;
    ck_assert_msg(kd_model_create(resnet, 1, &m) == KD_OK, "%s", kd_last_error());
    const kdi_param_list *ps = kdi_model_params(m);
    const char *want[] = {"0.weight", "1.weight", "1.running_var", "1.num_batches_tracked",
                          "3.body.0.weight", "3.body.4.bias", "5.body.1.running_mean",
                          "5.shortcut.0.weight", "5.shortcut.1.bias", "10.weight", "10.bias"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        int found = 0;
        for (int32_t j = 0; j < ps->n; j++) found |= strcmp(ps->items[j].name, want[i]) == 0;
        ck_assert_msg(found, "no parameter %s", want[i]);
    }
    /* train a step so running statistics move, then save and load */
    float x[4 * 144], logits[40], g[40];
    kdt_fill(x, 4 * 144, 1, 0, 1);
    kdt_fill(g, 40, 2, -1, 1);
    ck_assert_int_eq(kd_model_forward(m, x, 4, logits), KD_OK);
    ck_assert_int_eq(kd_model_backward(m, g), KD_OK);
    char path[256];
    snprintf(path, sizeof path, "%s/resnet.safetensors", kdt_tmpdir());
    ck_assert_int_eq(kd_model_save(m, path), KD_OK);
    ck_assert_msg(kd_model_load(path, &l) == KD_OK, "%s", kd_last_error());
    ck_assert_str_eq(kd_model_spec(l), kd_model_spec(m));
    float a[40], b[40];
    ck_assert_int_eq(kd_model_predict(m, x, 4, a), KD_OK);
    ck_assert_int_eq(kd_model_predict(l, x, 4, b), KD_OK);
    ck_assert(memcmp(a, b, sizeof a) == 0);
    int64_t params;
    ck_assert_int_eq(kd_model_param_count(m, &params), KD_OK);
    ck_assert_int_eq(params, 72 + 16 + 576 + 16 + 576 + 16 + (1152 + 16) + 32 + (2304 + 16) + 32 +
                                 (128 + 16) + 32 + 170);
    kd_model_destroy(m);
    kd_model_destroy(l);
    unlink(path);
}
END_TEST

START_TEST(spec_errors)
{
    static const char *bad[] = {
        "input 1x8x8 | conv 4",
        "input 1x8x8 | conv 4 9",
        "input 3x8x8 | conv 4 3 groups=2",
        "input 1x8x8 | maxpool 9",
        "input 1x8x8 | residual",
        "input 1x8x8 | residual(conv 4 3)",
        "input 1x8x8 | residual(conv 1 3 pad=1)(conv 2 1)",
        "input 1x8x8 | residual(conv 1 3 pad=1)(conv 1 1)(conv 1 1)",
        "input 1x8x8 | gap 2",
        "input 1x8x8 | bn eps=0",
        "input 1x8x8 | residual(residual(residual(residual(residual(residual(residual(residual("
        "residual(residual(residual(residual(residual(residual(residual(residual(residual(relu"
        ")))))))))))))))))",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kd_model *m = NULL;
        kd_status st = kd_model_create(bad[i], 1, &m);
        ck_assert_msg(st == KD_ERR_FORMAT || st == KD_ERR_SHAPE, "'%s' gave %d", bad[i], st);
        ck_assert_ptr_null(m);
    }
    kd_model *m;
    ck_assert_int_eq(kd_model_create("input 1x8x8 | residual(residual(relu))", 1, &m), KD_OK);
    ck_assert_str_eq(kd_model_spec(m), "input 1x8x8 | residual(residual(relu))");
    kd_model_destroy(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cnn");
    TCase *t = tcase_create("cnn");
    tcase_set_timeout(t, 60);
    tcase_add_test(t, grad_conv);
    tcase_add_test(t, grad_conv_stride);
    tcase_add_test(t, grad_conv_groups);
    tcase_add_test(t, grad_depthwise);
    tcase_add_test(t, grad_avgpool);
    tcase_add_test(t, grad_gap);
    tcase_add_test(t, grad_bn2d);
    tcase_add_test(t, grad_bn1d);
    tcase_add_test(t, grad_layernorm);
    tcase_add_test(t, grad_flatten);
    tcase_add_test(t, grad_residual);
    tcase_add_test(t, maxpool_routes_gradient);
    tcase_add_test(t, conv_matches_definition);
    tcase_add_test(t, batchnorm_modes);
    tcase_add_test(t, resnet_files);
    tcase_add_test(t, spec_errors);
    suite_add_tcase(s, t);
    return kdt_run(s);
}
