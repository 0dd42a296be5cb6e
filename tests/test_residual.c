/* Residual blocks: y = body(x) + shortcut(x). Values against the parts run alone, gradients through
 * both paths, PyTorch-style parameter names, specs, files, bad input. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn/model.h"
#include "nn/sequence.h"
#include "testutil.h"

static const char *tmp_path(const char *name)
{
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", kdt_tmpdir(), name);
    return path;
}

/* The small ResNet of the issue: a stem, an identity block, a downsampling block. */
static const char *resnet =
    "input 1x12x12 | conv 8 3 pad=1 bias=0 | bn | relu | "
    "residual(conv 8 3 pad=1 bias=0 | bn | relu | conv 8 3 pad=1 bias=0 | bn) | relu | "
    "residual(conv 16 3 stride=2 pad=1 bias=0 | bn | relu | conv 16 3 pad=1 bias=0 | bn)"
    "(conv 16 1 stride=2 bias=0 | bn) | relu | gap | flatten | dense 10";

/* Copies the trainable parameters and buffers of src into dst, in order. */
static void copy_params(kdi_seq *dst, kdi_seq *src)
{
    kdi_param_list a = {0}, b = {0};
    ck_assert_int_eq(kdi_seq_collect(dst, "", &a), KD_OK);
    ck_assert_int_eq(kdi_seq_collect(src, "", &b), KD_OK);
    ck_assert_int_eq(a.n, b.n);
    for (int32_t i = 0; i < a.n; i++) {
        ck_assert_int_eq(a.items[i].p->count, b.items[i].p->count);
        if (a.items[i].p->value != NULL)
            memcpy(a.items[i].p->value, b.items[i].p->value, sizeof(float) * a.items[i].p->count);
    }
    kdi_param_list_free(&a);
    kdi_param_list_free(&b);
}

START_TEST(residual_adds_its_paths)
{
    kdi_shape in = {3, 6, 6};
    enum { B = 2, N = B * 3 * 6 * 6 };
    float x[N];
    kdt_fill(x, N, 3, -1.0f, 1.0f);
    kdi_seq res, body;
    const float *y, *yb;
    /* identity shortcut */
    ck_assert_int_eq(kdi_seq_build(&res, "residual(conv 3 3 pad=1 | relu | conv 3 3 pad=1)", in, 5),
                     KD_OK);
    ck_assert_int_eq(kdi_seq_build(&body, "conv 3 3 pad=1 | relu | conv 3 3 pad=1", in, 99), KD_OK);
    copy_params(&body, &res);
    ck_assert_int_eq(kdi_seq_forward(&res, x, B, 0, &y), KD_OK);
    ck_assert_int_eq(kdi_seq_forward(&body, x, B, 0, &yb), KD_OK);
    for (int i = 0; i < N; i++) ck_assert_float_eq_tol(y[i], yb[i] + x[i], 1e-6f);
    kdi_seq_free(&res);
    kdi_seq_free(&body);
    /* a projection shortcut: body and shortcut parameters come in that order */
    kdi_seq cut;
    const float *yc;
    ck_assert_int_eq(
        kdi_seq_build(&res, "residual(conv 4 3 stride=2 pad=1)(conv 4 1 stride=2)", in, 5), KD_OK);
    ck_assert_int_eq(res.out.c, 4);
    ck_assert_int_eq(res.out.h, 3);
    ck_assert_int_eq(kdi_seq_build(&body, "conv 4 3 stride=2 pad=1", in, 1), KD_OK);
    ck_assert_int_eq(kdi_seq_build(&cut, "conv 4 1 stride=2", in, 1), KD_OK);
    kdi_param_list pl = {0};
    ck_assert_int_eq(kdi_seq_collect(&res, "", &pl), KD_OK);
    ck_assert_int_eq(pl.n, 4);
    ck_assert_str_eq(pl.items[0].name, "0.body.0.weight");
    ck_assert_str_eq(pl.items[1].name, "0.body.0.bias");
    ck_assert_str_eq(pl.items[2].name, "0.shortcut.0.weight");
    ck_assert_str_eq(pl.items[3].name, "0.shortcut.0.bias");
    memcpy(body.layers[0].params[0].value, pl.items[0].p->value, sizeof(float) * 4 * 27);
    memcpy(body.layers[0].params[1].value, pl.items[1].p->value, sizeof(float) * 4);
    memcpy(cut.layers[0].params[0].value, pl.items[2].p->value, sizeof(float) * 4 * 3);
    memcpy(cut.layers[0].params[1].value, pl.items[3].p->value, sizeof(float) * 4);
    kdi_param_list_free(&pl);
    ck_assert_int_eq(kdi_seq_forward(&res, x, B, 0, &y), KD_OK);
    ck_assert_int_eq(kdi_seq_forward(&body, x, B, 0, &yb), KD_OK);
    ck_assert_int_eq(kdi_seq_forward(&cut, x, B, 0, &yc), KD_OK);
    for (int i = 0; i < B * 4 * 9; i++) ck_assert_float_eq_tol(y[i], yb[i] + yc[i], 1e-5f);
    kdi_seq_free(&res);
    kdi_seq_free(&body);
    kdi_seq_free(&cut);
}
END_TEST

START_TEST(residual_gradients)
{
    /* identity shortcut: dx = dbody + dy */
    kdt_check_gradients("residual(conv 3 3 pad=1 | tanh | conv 3 3 pad=1) | tanh",
                        (kdi_shape){3, 5, 5}, 2, -1.0f, 1.0f);
    /* projection shortcut with batch norm in both paths, then more layers (no conv bias before a
     * batch norm: its gradient is zero, and a finite difference of zero is all rounding) */
    kdt_check_gradients("residual(conv 4 3 stride=2 pad=1 bias=0 | bn | tanh | conv 4 3 pad=1 "
                        "bias=0 | bn)(conv 4 1 stride=2 bias=0 | bn) | tanh | flatten | dense 3",
                        (kdi_shape){2, 6, 6}, 2, -1.0f, 1.0f);
    /* along random directions, where single-coordinate differences would drown in rounding */
    kdt_check_directional("residual(conv 4 3 stride=2 pad=1 | bn | tanh | conv 4 3 pad=1 | bn)"
                          "(conv 4 1 stride=2 | bn) | tanh | flatten | dense 3",
                          (kdi_shape){2, 6, 6}, 8);
    /* blocks in a row and a block inside a block */
    kdt_check_gradients("residual(dense 5 | tanh | dense 5) | residual(residual(dense 5 | gelu)"
                        " | layernorm)(dense 5) | dense 2",
                        kdi_shape_flat(5), 3, -1.0f, 1.0f);
}
END_TEST

START_TEST(residual_names_follow_pytorch)
{
    kd_model *m;
    ck_assert_int_eq(kd_model_create(resnet, 1, &m), KD_OK);
    const kdi_param_list *pl = kdi_model_params(m);
    static const char *want[] = {
        "0.weight",
        "1.weight",
        "1.bias",
        "1.running_mean",
        "1.running_var",
        "1.num_batches_tracked",
        "3.body.0.weight",
        "3.body.1.weight",
        "3.body.1.bias",
        "3.body.1.running_mean",
        "3.body.1.running_var",
        "3.body.1.num_batches_tracked",
        "3.body.3.weight",
        "3.body.4.weight",
        "3.body.4.bias",
        "3.body.4.running_mean",
        "3.body.4.running_var",
        "3.body.4.num_batches_tracked",
        "5.body.0.weight",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        ck_assert_str_eq(pl->items[i].name, want[i]);
    int found = 0;
    for (int32_t i = 0; i < pl->n; i++) {
        if (strcmp(pl->items[i].name, "5.shortcut.0.weight") == 0) {
            found++;
            ck_assert_int_eq(pl->items[i].p->dims[0], 16);
            ck_assert_int_eq(pl->items[i].p->dims[1], 8);
            ck_assert_int_eq(pl->items[i].p->dims[2], 1);
        }
        if (strcmp(pl->items[i].name, "5.shortcut.1.num_batches_tracked") == 0) found++;
        if (strcmp(pl->items[i].name, "9.weight") == 0) found++;
    }
    ck_assert_int_eq(found, 3);
    /* trainable parameters, counted through the blocks, not counting buffers */
    int64_t n, want_n = 8 * 9 + 16 + (8 * 72 + 16) * 2 + (16 * 72 + 32) + (16 * 144 + 32) +
                        (16 * 8 + 32) + 16 * 10 + 10;
    ck_assert_int_eq(kd_model_param_count(m, &n), KD_OK);
    ck_assert_int_eq(n, want_n);
    const char *kind;
    int64_t params, size;
    ck_assert_int_eq(kd_model_layer_info(m, 5, &kind, &params, &size), KD_OK);
    ck_assert_str_eq(kind, "residual");
    ck_assert_int_eq(params, (16 * 72 + 32) + (16 * 144 + 32) + (16 * 8 + 32));
    ck_assert_int_eq(size, 16 * 6 * 6);
    kd_model_destroy(m);
}
END_TEST

START_TEST(residual_spec_round_trip)
{
    kd_model *m, *again;
    ck_assert_int_eq(kd_model_create("input 2x4x4 | residual( conv 2 3 pad=1 |relu ) "
                                     "| residual(conv 3 1) (conv 3 1 bias=0)",
                                     1, &m),
                     KD_OK);
    ck_assert_str_eq(kd_model_spec(m), "input 2x4x4 | residual(conv 2 3 pad=1 | relu) | "
                                       "residual(conv 3 1)(conv 3 1 bias=0)");
    ck_assert_int_eq(kd_model_create(kd_model_spec(m), 1, &again), KD_OK);
    ck_assert_str_eq(kd_model_spec(again), kd_model_spec(m));
    kd_model_destroy(m);
    kd_model_destroy(again);
}
END_TEST

START_TEST(resnet_trains_and_round_trips)
{
    kd_model *m, *l;
    ck_assert_int_eq(kd_model_create(resnet, 7, &m), KD_OK);
    enum { B = 6, IN = 144 };
    float x[B * IN], logits[B * 10], grad[B * 10];
    kdt_fill(x, B * IN, 1, 0.0f, 1.0f);
    /* a few steps of plain gradient descent on sum(w * logits) lower the objective */
    kdt_fill(grad, B * 10, 2, -1.0f, 1.0f);
    double first = 0.0, last = 0.0;
    for (int step = 0; step < 5; step++) {
        ck_assert_int_eq(kd_model_zero_grad(m), KD_OK);
        ck_assert_int_eq(kd_model_forward(m, x, B, logits), KD_OK);
        double obj = 0.0;
        for (int i = 0; i < B * 10; i++) obj += (double)grad[i] * logits[i];
        if (step == 0) first = obj;
        last = obj;
        ck_assert_int_eq(kd_model_backward(m, grad), KD_OK);
        const kdi_param_list *pl = kdi_model_params(m);
        for (int32_t i = 0; i < pl->n; i++) {
            kdi_param *p = pl->items[i].p;
            if (p->grad == NULL) continue;
            for (int64_t j = 0; j < p->count; j++) p->value[j] -= 0.01f * p->grad[j];
        }
    }
    ck_assert_msg(last < first, "objective went from %g to %g", first, last);
    const char *path = tmp_path("resnet.safetensors");
    ck_assert_int_eq(kd_model_save(m, path), KD_OK);
    ck_assert_int_eq(kd_model_load(path, &l), KD_OK);
    ck_assert_str_eq(kd_model_spec(l), kd_model_spec(m));
    float a[B * 10], b[B * 10];
    ck_assert_int_eq(kd_model_predict(m, x, B, a), KD_OK);
    ck_assert_int_eq(kd_model_predict(l, x, B, b), KD_OK);
    ck_assert(memcmp(a, b, sizeof a) == 0);
    /* the top-level taps see the block's output */
    const float *f;
    int64_t fb, c, h, w;
    ck_assert_int_eq(kd_model_feature(l, 5, &f, &fb, &c, &h, &w), KD_OK);
    ck_assert_int_eq(c * h * w, 16 * 6 * 6);
    kd_model_destroy(m);
    kd_model_destroy(l);
    unlink(path);
}
END_TEST

/* Dropout inside a block follows the mode: off in eval, on in training. */
START_TEST(residual_modes_reach_the_body)
{
    kd_model *m;
    ck_assert_int_eq(kd_model_create("input 50 | residual(dropout 0.5 | dense 50)", 1, &m), KD_OK);
    float x[50], a[50], b[50];
    kdt_fill(x, 50, 3, 1.0f, 2.0f);
    ck_assert_int_eq(kd_model_predict(m, x, 1, a), KD_OK);
    ck_assert_int_eq(kd_model_predict(m, x, 1, b), KD_OK);
    ck_assert(memcmp(a, b, sizeof a) == 0);
    ck_assert_int_eq(kd_model_forward(m, x, 1, b), KD_OK);
    ck_assert(memcmp(a, b, sizeof a) != 0);
    kd_model_destroy(m);
}
END_TEST

START_TEST(residual_bad_specs)
{
    static const char *bad[] = {
        "input 4x6x6 | residual(conv 8 3 pad=1)",           /* 8 channels + 4 */
        "input 4x6x6 | residual(conv 4 3)",                 /* 4x4 + 6x6 */
        "input 4x6x6 | residual(conv 8 3 pad=1)(conv 8 3)", /* body and shortcut disagree */
        "input 4x6x6 | residual()",                         /* empty body */
        "input 4x6x6 | residual",                           /* no body */
        "input 4x6x6 | residual(relu)(relu)(relu)",         /* three bodies */
        "input 4x6x6 | residual 2(relu)",                   /* no arguments */
        "input 4x6x6 | residual(conv 4 3 pad=1 | nosuch)",  /* unknown layer inside */
        "input 4x6x6 | residual(conv 4 3 pad=1",            /* unclosed */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kd_model *m = NULL;
        kd_status st = kd_model_create(bad[i], 1, &m);
        ck_assert_msg(st == KD_ERR_FORMAT || st == KD_ERR_SHAPE, "%s gave %d", bad[i], (int)st);
        ck_assert_ptr_null(m);
        ck_assert(strlen(kd_last_error()) > 0);
    }
    kd_model *m = NULL;
    ck_assert_int_eq(kd_model_create(bad[0], 1, &m), KD_ERR_SHAPE);
    ck_assert_msg(strstr(kd_last_error(), "residual") != NULL, "%s", kd_last_error());
}
END_TEST

int main(void)
{
    Suite *s = suite_create("residual");
    TCase *t = tcase_create("residual");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, residual_adds_its_paths);
    tcase_add_test(t, residual_gradients);
    tcase_add_test(t, residual_names_follow_pytorch);
    tcase_add_test(t, residual_spec_round_trip);
    tcase_add_test(t, resnet_trains_and_round_trips);
    tcase_add_test(t, residual_modes_reach_the_body);
    tcase_add_test(t, residual_bad_specs);
    suite_add_tcase(s, t);
    return kdt_run(s);
}
