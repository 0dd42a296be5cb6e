/* Convolution, pooling and flatten layers: forward against direct loops, finite-difference
 * gradients, specs, save/load, bad input. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn/model.h"
#include "nn/sequence.h"
#include "testutil.h"

/* ---------------------------------------------------------------- helpers */

static const char *tmp_path(const char *name)
{
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", kdt_tmpdir(), name);
    return path;
}

/* y[b][o][oy][ox] = bias[o] + sum over the group's channels and the window, in double. */
static void direct_conv(const float *x, const float *w, const float *bias, float *y, int64_t batch,
                        kdi_shape in, int64_t out, int64_t k, int64_t s, int64_t p, int64_t groups)
{
    int64_t oh = (in.h + 2 * p - k) / s + 1, ow = (in.w + 2 * p - k) / s + 1;
    int64_t cg = in.c / groups, og = out / groups;
    for (int64_t b = 0; b < batch; b++)
        for (int64_t o = 0; o < out; o++)
            for (int64_t oy = 0; oy < oh; oy++)
                for (int64_t ox = 0; ox < ow; ox++) {
                    double acc = bias != NULL ? bias[o] : 0.0;
                    for (int64_t c = 0; c < cg; c++)
                        for (int64_t i = 0; i < k; i++)
                            for (int64_t j = 0; j < k; j++) {
                                int64_t iy = oy * s - p + i, ix = ox * s - p + j;
                                if (iy < 0 || iy >= in.h || ix < 0 || ix >= in.w) continue;
                                int64_t ci = (o / og) * cg + c;
                                acc += (double)w[((o * cg + c) * k + i) * k + j] *
                                       x[((b * in.c + ci) * in.h + iy) * in.w + ix];
                            }
                    y[((b * out + o) * oh + oy) * ow + ox] = (float)acc;
                }
}

typedef struct obj {
    kdi_seq *s;
    const float *x, *w;
    int64_t batch, nout;
} obj;

static double objective(void *p)
{
    obj *c = p;
    const float *y;
    ck_assert_int_eq(kdi_seq_forward(c->s, c->x, c->batch, 1, &y), KD_OK);
    double sum = 0.0;
    for (int64_t i = 0; i < c->batch * c->nout; i++) sum += (double)c->w[i] * y[i];
    return sum;
}

/* Like kdt_check_gradients, with the caller's input: max pooling needs inputs whose maxima are
 * far apart, so a finite-difference step never changes the winner. */
static void check_grad_with_input(const char *spec, kdi_shape shape, int64_t batch, float *x)
{
    kdi_seq s;
    ck_assert_msg(kdi_seq_build(&s, spec, shape, 3) == KD_OK, "%s: %s", spec, kd_last_error());
    int64_t nin = batch * kdi_shape_size(shape), nout = kdi_shape_size(s.out);
    float *dx = malloc(sizeof(float) * nin), *w = malloc(sizeof(float) * batch * nout);
    kdt_fill(w, batch * nout, 9, -1.0f, 1.0f);
    obj c = {&s, x, w, batch, nout};
    objective(&c);
    ck_assert_int_eq(kdi_seq_backward(&s, w, dx), KD_OK);
    double err = kdt_gradcheck(objective, &c, x, dx, nin, 1e-2, 300);
    ck_assert_msg(err < 1e-2, "%s: input gradient error %g", spec, err);
    kdi_seq_free(&s);
    free(dx);
    free(w);
}

/* Distinct values 0.05 apart in a seeded order. */
static void spaced_values(float *x, int64_t n, uint64_t seed)
{
    kdt_fill(x, n, seed, 0.0f, 1.0f);
    int64_t *rank = malloc(sizeof(int64_t) * n);
    for (int64_t i = 0; i < n; i++) {
        rank[i] = 0;
        for (int64_t j = 0; j < n; j++) rank[i] += x[j] < x[i] || (x[j] == x[i] && j < i);
    }
    for (int64_t i = 0; i < n; i++) x[i] = 0.05f * (float)rank[i] - 0.025f * (float)n;
    free(rank);
}

/* ---------------------------------------------------------------- convolution */

static void check_forward(const char *spec, kdi_shape in, int64_t batch, int64_t out, int64_t k,
                          int64_t s, int64_t p, int64_t groups, int bias)
{
    kdi_seq seq;
    ck_assert_msg(kdi_seq_build(&seq, spec, in, 5) == KD_OK, "%s: %s", spec, kd_last_error());
    int64_t nin = batch * kdi_shape_size(in), nout = batch * kdi_shape_size(seq.out);
    float *x = malloc(sizeof(float) * nin), *want = malloc(sizeof(float) * nout);
    kdt_fill(x, nin, 4, -1.0f, 1.0f);
    const kdi_layer *l = &seq.layers[0];
    direct_conv(x, l->params[0].value, bias ? l->params[1].value : NULL, want, batch, in, out, k, s,
                p, groups);
    const float *y;
    ck_assert_int_eq(kdi_seq_forward(&seq, x, batch, 0, &y), KD_OK);
    for (int64_t i = 0; i < nout; i++)
        ck_assert_msg(fabsf(y[i] - want[i]) < 1e-4f, "%s: y[%lld] = %g, want %g", spec,
                      (long long)i, y[i], want[i]);
    kdi_seq_free(&seq);
    free(x);
    free(want);
}

START_TEST(conv_forward_matches_direct_loops)
{
    check_forward("conv 4 3", (kdi_shape){3, 6, 6}, 2, 4, 3, 1, 0, 1, 1);
    check_forward("conv 5 3 pad=1", (kdi_shape){2, 7, 5}, 3, 5, 3, 1, 1, 1, 1);
    check_forward("conv 6 3 stride=2 pad=1", (kdi_shape){2, 9, 8}, 2, 6, 3, 2, 1, 1, 1);
    check_forward("conv 4 5 stride=3 pad=2 bias=0", (kdi_shape){3, 11, 10}, 2, 4, 5, 3, 2, 1, 0);
    check_forward("conv 6 3 pad=1 groups=2", (kdi_shape){4, 5, 5}, 2, 6, 3, 1, 1, 2, 1);
    check_forward("conv 4 3 pad=1 groups=4", (kdi_shape){4, 6, 6}, 3, 4, 3, 1, 1, 4, 1);
    /* depthwise runs its own direct loops: strides, paddings, kernel sizes, no bias */
    check_forward("conv 3 3 stride=2 pad=1 groups=3", (kdi_shape){3, 7, 7}, 2, 3, 3, 2, 1, 3, 1);
    check_forward("conv 2 5 pad=2 groups=2 bias=0", (kdi_shape){2, 6, 5}, 2, 2, 5, 1, 2, 2, 0);
    check_forward("conv 2 2 stride=3 groups=2", (kdi_shape){2, 8, 8}, 2, 2, 2, 3, 0, 2, 1);
    check_forward("conv 3 1", (kdi_shape){5, 4, 4}, 2, 3, 1, 1, 0, 1, 1);
    check_forward("conv 2 2 stride=2", (kdi_shape){1, 5, 5}, 1, 2, 2, 2, 0, 1, 1);
    /* 1x30x30 padded: 900 outputs per image, so chunks of one image; and 10x10: chunks of 15. */
    check_forward("conv 3 3 pad=1", (kdi_shape){1, 30, 30}, 3, 3, 3, 1, 1, 1, 1);
    check_forward("conv 3 3 pad=1", (kdi_shape){2, 10, 10}, 40, 3, 3, 1, 1, 1, 1);
}
END_TEST

START_TEST(conv_gradients)
{
    kdt_check_gradients("conv 4 3", (kdi_shape){3, 6, 6}, 2, -1.0f, 1.0f);
    kdt_check_gradients("conv 5 3 pad=1", (kdi_shape){2, 5, 7}, 3, -1.0f, 1.0f);
    kdt_check_gradients("conv 4 3 stride=2 pad=1", (kdi_shape){2, 7, 7}, 2, -1.0f, 1.0f);
    kdt_check_gradients("conv 4 4 stride=3 pad=2 bias=0", (kdi_shape){2, 9, 8}, 2, -1.0f, 1.0f);
    kdt_check_gradients("conv 6 3 pad=1 groups=3", (kdi_shape){3, 5, 5}, 2, -1.0f, 1.0f);
    kdt_check_gradients("conv 4 3 pad=1 groups=4", (kdi_shape){4, 5, 5}, 2, -1.0f, 1.0f);
    kdt_check_gradients("conv 3 3 stride=2 pad=1 groups=3", (kdi_shape){3, 7, 7}, 2, -1.0f, 1.0f);
    kdt_check_gradients("conv 2 5 pad=2 groups=2 bias=0", (kdi_shape){2, 6, 5}, 2, -1.0f, 1.0f);
    kdt_check_gradients("conv 2 2 stride=3 groups=2", (kdi_shape){2, 8, 8}, 2, -1.0f, 1.0f);
    kdt_check_gradients("conv 3 1 stride=2", (kdi_shape){4, 6, 6}, 2, -1.0f, 1.0f);
    /* several chunks with a short last one (600 outputs: chunks of two images), then a chain */
    kdt_check_gradients("conv 2 3 pad=1", (kdi_shape){1, 20, 30}, 3, -1.0f, 1.0f);
    kdt_check_gradients("conv 4 3 pad=1 | tanh | conv 3 3 stride=2 | flatten | dense 3",
                        (kdi_shape){2, 8, 8}, 3, -1.0f, 1.0f);
}
END_TEST

START_TEST(conv_shapes_and_spec)
{
    kd_model *m;
    ck_assert_int_eq(kd_model_create("input 3x32x32 | conv 16 3 stride=2 pad=1 groups=1 bias=1 | "
                                     "conv 16 3 pad=1 groups=16 bias=0 | conv 8 1",
                                     1, &m),
                     KD_OK);
    ck_assert_str_eq(kd_model_spec(m), "input 3x32x32 | conv 16 3 stride=2 pad=1 | "
                                       "conv 16 3 pad=1 groups=16 bias=0 | conv 8 1");
    int64_t n, params, size;
    const char *kind;
    ck_assert_int_eq(kd_model_output_size(m, &n), KD_OK);
    ck_assert_int_eq(n, 8 * 16 * 16);
    ck_assert_int_eq(kd_model_layer_info(m, 1, &kind, &params, &size), KD_OK);
    ck_assert_str_eq(kind, "conv");
    ck_assert_int_eq(params, 16 * 9);
    ck_assert_int_eq(kd_model_param_count(m, &n), KD_OK);
    ck_assert_int_eq(n, 16 * 27 + 16 + 16 * 9 + 8 * 16 + 8);
    const kdi_param_list *pl = kdi_model_params(m);
    ck_assert_str_eq(pl->items[0].name, "0.weight");
    ck_assert_int_eq(pl->items[0].p->ndim, 4);
    ck_assert_int_eq(pl->items[0].p->dims[0], 16);
    ck_assert_int_eq(pl->items[0].p->dims[1], 3);
    ck_assert_int_eq(pl->items[0].p->dims[2], 3);
    ck_assert_int_eq(pl->items[2].p->dims[1], 1); /* depthwise: in/groups */
    ck_assert_str_eq(pl->items[3].name, "2.weight");
    kd_model_destroy(m);
}
END_TEST

START_TEST(conv_bad_specs)
{
    static const char *bad[] = {
        "input 3x8x8 | conv 4",              /* no kernel */
        "input 3x8x8 | conv 4 3 groups=2",   /* 3 channels in 2 groups */
        "input 4x8x8 | conv 3 3 groups=2",   /* 3 outputs in 2 groups */
        "input 3x8x8 | conv 4 9",            /* larger than the input */
        "input 3x8x8 | conv 4 3 stride=0",   /* stride out of range */
        "input 3x8x8 | conv 4 3 pad=-1",     /* negative padding */
        "input 3x8x8 | conv 4 3 bias=2",     /* bias is 0 or 1 */
        "input 3x8x8 | conv 4 3 dilation=2", /* unknown key */
        "input 3x8x8 | conv 0 3",            /* no outputs */
        "input 3x8x8 | conv 4 3 5",          /* too many positionals */
        "input 3x8x8 | maxpool 9",           /* window larger than the input */
        "input 3x8x8 | maxpool",             /* no window */
        "input 1x4097x4097 | maxpool 2",     /* a plane past 2^24 values: argmax as float */
        "input 3x8x8 | avgpool 2 stride=0",  /* stride out of range */
        "input 3x8x8 | gap 2",               /* gap takes nothing */
        "input 3x8x8 | flatten 1",           /* flatten takes nothing */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kd_model *m = (kd_model *)&m;
        kd_status st = kd_model_create(bad[i], 1, &m);
        ck_assert_msg(st == KD_ERR_FORMAT || st == KD_ERR_SHAPE, "%s gave %d", bad[i], (int)st);
        ck_assert_msg(m == (kd_model *)&m, "%s: the output handle changed", bad[i]);
        ck_assert(strlen(kd_last_error()) > 0);
    }
}
END_TEST

START_TEST(conv_model_rejects_wrong_input)
{
    kd_model *m;
    ck_assert_int_eq(kd_model_create("input 2x6x6 | conv 3 3 | flatten | dense 2", 2, &m), KD_OK);
    float x[72], y[2];
    kdt_fill(x, 72, 1, -1, 1);
    x[5] = NAN;
    ck_assert_int_eq(kd_model_predict(m, x, 1, y), KD_ERR_NUMERIC);
    ck_assert_int_eq(kd_model_predict(m, NULL, 1, y), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_model_predict(m, x, 0, y), KD_ERR_ARGUMENT);
    kd_model_destroy(m);
}
END_TEST

/* ---------------------------------------------------------------- pooling and flatten */

/* The unrolled 2x2 stride-2 path of pooling against the window loop written out here: ties (values
 * from {0, 1, 2}) go to the first maximum in row-major order, odd sizes drop the last row and
 * column, and the average sums in row order; bitwise. */
START_TEST(pool_2x2_path)
{
    enum { C = 3, H = 7, W = 6, OH = 3, OW = 3, B = 2 };
    float x[B * C * H * W], dy[B * C * OH * OW], dx[B * C * H * W];
    for (int i = 0; i < B * C * H * W; i++) x[i] = (float)((i * 7 + i / 5) % 3);
    for (int i = 0; i < B * C * OH * OW; i++) dy[i] = (float)(i + 1);
    for (int max = 0; max < 2; max++) {
        kdi_seq s;
        const float *y;
        ck_assert_int_eq(
            kdi_seq_build(&s, max ? "maxpool 2" : "avgpool 2", (kdi_shape){C, H, W}, 1), KD_OK);
        ck_assert_int_eq(kdi_seq_forward(&s, x, B, 1, &y), KD_OK);
        ck_assert_int_eq(kdi_seq_backward(&s, dy, dx), KD_OK);
        float want_dx[B * C * H * W] = {0};
        for (int p = 0; p < B * C; p++)
            for (int oy = 0; oy < OH; oy++)
                for (int ox = 0; ox < OW; ox++) {
                    const float *xp = x + p * H * W;
                    int o = (p * OH + oy) * OW + ox, best = 2 * oy * W + 2 * ox;
                    float acc = max ? xp[best] : 0.0f;
                    for (int i = 0; i < 2; i++)
                        for (int j = 0; j < 2; j++) {
                            int at = (2 * oy + i) * W + 2 * ox + j;
                            if (!max)
                                acc += xp[at];
                            else if (xp[at] > acc)
                                acc = xp[at], best = at;
                        }
                    float want = max ? acc : acc * 0.25f;
                    ck_assert_msg(memcmp(&y[o], &want, sizeof want) == 0, "%s at %d: %g, want %g",
                                  max ? "max" : "avg", o, y[o], want);
                    if (max)
                        want_dx[p * H * W + best] += dy[o];
                    else
                        for (int i = 0; i < 2; i++)
                            for (int j = 0; j < 2; j++)
                                want_dx[p * H * W + (2 * oy + i) * W + 2 * ox + j] += dy[o] * 0.25f;
                }
        for (int i = 0; i < B * C * H * W; i++)
            ck_assert_msg(dx[i] == want_dx[i], "%s dx at %d: %g, want %g", max ? "max" : "avg", i,
                          dx[i], want_dx[i]);
        kdi_seq_free(&s);
    }
}
END_TEST

START_TEST(pool_forward_values)
{
    /* one 4x4 plane 0..15, two examples (the second negated) */
    float x[32], want_max[8] = {5, 7, 13, 15, 0, -2, -8, -10};
    for (int i = 0; i < 16; i++) x[i] = (float)i, x[16 + i] = -(float)i;
    kdi_seq s;
    const float *y;
    ck_assert_int_eq(kdi_seq_build(&s, "maxpool 2", (kdi_shape){1, 4, 4}, 1), KD_OK);
    ck_assert_int_eq(kdi_seq_forward(&s, x, 2, 0, &y), KD_OK);
    for (int i = 0; i < 8; i++) ck_assert_float_eq(y[i], want_max[i]);
    kdi_seq_free(&s);
    ck_assert_int_eq(kdi_seq_build(&s, "avgpool 2", (kdi_shape){1, 4, 4}, 1), KD_OK);
    ck_assert_int_eq(kdi_seq_forward(&s, x, 1, 0, &y), KD_OK);
    ck_assert_float_eq(y[0], 2.5f);
    ck_assert_float_eq(y[3], 12.5f);
    kdi_seq_free(&s);
    /* overlapping windows: 3x3, stride 1 on 4x4 -> 2x2 */
    ck_assert_int_eq(kdi_seq_build(&s, "maxpool 3 stride=1", (kdi_shape){1, 4, 4}, 1), KD_OK);
    ck_assert_int_eq(s.out.h, 2);
    ck_assert_int_eq(kdi_seq_forward(&s, x, 1, 0, &y), KD_OK);
    ck_assert_float_eq(y[0], 10.0f);
    ck_assert_float_eq(y[3], 15.0f);
    kdi_seq_free(&s);
    /* gap over 2 channels of 2x3 */
    float g[12] = {1, 2, 3, 4, 5, 6, -1, -1, -1, -1, -1, 5};
    ck_assert_int_eq(kdi_seq_build(&s, "gap", (kdi_shape){2, 2, 3}, 1), KD_OK);
    ck_assert_int_eq(s.out.c, 2);
    ck_assert_int_eq(s.out.h * s.out.w, 1);
    ck_assert_int_eq(kdi_seq_forward(&s, g, 1, 0, &y), KD_OK);
    ck_assert_float_eq_tol(y[0], 3.5f, 1e-6f);
    ck_assert_float_eq_tol(y[1], 0.0f, 1e-6f);
    kdi_seq_free(&s);
    /* PyTorch floors the output size: 5x5 by 2 gives 2x2 */
    ck_assert_int_eq(kdi_seq_build(&s, "avgpool 2", (kdi_shape){3, 5, 5}, 1), KD_OK);
    ck_assert_int_eq(s.out.h, 2);
    ck_assert_int_eq(s.out.w, 2);
    kdi_seq_free(&s);
}
END_TEST

START_TEST(pool_gradients)
{
    float x[2 * 3 * 7 * 6];
    spaced_values(x, 2 * 3 * 7 * 6, 11);
    check_grad_with_input("maxpool 2", (kdi_shape){3, 7, 6}, 2, x);
    spaced_values(x, 2 * 3 * 7 * 6, 12);
    check_grad_with_input("maxpool 3 stride=2", (kdi_shape){3, 7, 6}, 2, x);
    spaced_values(x, 2 * 3 * 7 * 6, 13);
    check_grad_with_input("maxpool 2 stride=1", (kdi_shape){3, 7, 6}, 2, x);
    kdt_check_gradients("avgpool 2", (kdi_shape){3, 7, 6}, 2, -1.0f, 1.0f);
    kdt_check_gradients("avgpool 3 stride=2", (kdi_shape){2, 7, 7}, 2, -1.0f, 1.0f);
    kdt_check_gradients("gap", (kdi_shape){4, 5, 3}, 3, -1.0f, 1.0f);
    kdt_check_gradients("flatten | dense 3", (kdi_shape){2, 3, 3}, 2, -1.0f, 1.0f);
    kdt_check_gradients("conv 4 3 pad=1 | avgpool 2 | conv 4 3 | gap | flatten | dense 3",
                        (kdi_shape){2, 8, 8}, 2, -1.0f, 1.0f);
}
END_TEST

START_TEST(flatten_shape)
{
    kd_model *m;
    ck_assert_int_eq(kd_model_create("input 2x3x4 | flatten | dense 5", 1, &m), KD_OK);
    int64_t size;
    const char *kind;
    int64_t params;
    ck_assert_int_eq(kd_model_layer_info(m, 0, &kind, &params, &size), KD_OK);
    ck_assert_str_eq(kind, "flatten");
    ck_assert_int_eq(params, 0);
    ck_assert_int_eq(size, 24);
    ck_assert_int_eq(kd_model_param_count(m, &size), KD_OK);
    ck_assert_int_eq(size, 24 * 5 + 5);
    kd_model_destroy(m);
}
END_TEST

/* ---------------------------------------------------------------- files */

START_TEST(cnn_save_load_round_trip)
{
    const char *spec = "input 2x12x12 | conv 6 3 pad=1 | relu | maxpool 2 | conv 8 3 groups=2 | "
                       "relu | avgpool 2 stride=1 | conv 8 3 pad=1 groups=8 bias=0 | gap | "
                       "flatten | dense 4";
    kd_model *m, *l;
    ck_assert_int_eq(kd_model_create(spec, 21, &m), KD_OK);
    const char *path = tmp_path("cnn.safetensors");
    ck_assert_int_eq(kd_model_save(m, path), KD_OK);
    ck_assert_int_eq(kd_model_load(path, &l), KD_OK);
    ck_assert_str_eq(kd_model_spec(l), kd_model_spec(m));
    float x[3 * 288], a[12], b[12];
    kdt_fill(x, 3 * 288, 8, 0, 1);
    ck_assert_int_eq(kd_model_predict(m, x, 3, a), KD_OK);
    ck_assert_int_eq(kd_model_predict(l, x, 3, b), KD_OK);
    ck_assert(memcmp(a, b, sizeof a) == 0);
    /* a conv of another shape refuses the file and keeps its weights */
    kd_model *w;
    ck_assert_int_eq(kd_model_create("input 2x12x12 | conv 6 5 pad=2 | relu | maxpool 2 | "
                                     "conv 8 3 groups=2 | relu | avgpool 2 stride=1 | "
                                     "conv 8 3 pad=1 groups=8 bias=0 | gap | flatten | dense 4",
                                     21, &w),
                     KD_OK);
    float keep[6 * 2 * 25];
    memcpy(keep, kdi_model_params(w)->items[0].p->value, sizeof keep);
    ck_assert_int_eq(kd_model_load_weights(w, path), KD_ERR_SHAPE);
    ck_assert(memcmp(keep, kdi_model_params(w)->items[0].p->value, sizeof keep) == 0);
    kd_model_destroy(m);
    kd_model_destroy(l);
    kd_model_destroy(w);
    unlink(path);
}
END_TEST

/* Batch sizes that cross the chunking of the convolution give the same rows. */
START_TEST(conv_batch_sizes_agree)
{
    kd_model *m;
    ck_assert_int_eq(kd_model_create("input 1x9x9 | conv 4 3 pad=1 | relu | conv 2 3 stride=2 | "
                                     "flatten | dense 3",
                                     4, &m),
                     KD_OK);
    enum { N = 45 };
    float *x = malloc(sizeof(float) * N * 81), all[N * 3], one[3];
    kdt_fill(x, N * 81, 3, 0, 1);
    ck_assert_int_eq(kd_model_predict(m, x, N, all), KD_OK);
    for (int i = 0; i < N; i += 7) {
        ck_assert_int_eq(kd_model_predict(m, x + i * 81, 1, one), KD_OK);
        for (int j = 0; j < 3; j++) ck_assert_float_eq_tol(one[j], all[i * 3 + j], 1e-5f);
    }
    free(x);
    kd_model_destroy(m);
}
END_TEST

/* One training forward and backward of spec on x (fusion with ReLUs on or off), with a feature
 * gradient added at layer tap (-1: none): the sequence is left for the caller to read. */
static void run_fused(kdi_seq *s, const char *spec, kdi_shape in, int64_t batch, const float *x,
                      int fuse, int32_t tap, float *dx)
{
    kdi_seq_set_fusion(fuse);
    ck_assert_msg(kdi_seq_build(s, spec, in, 7) == KD_OK, "%s: %s", spec, kd_last_error());
    const float *y;
    ck_assert_int_eq(kdi_seq_forward(s, x, batch, 1, &y), KD_OK);
    int64_t nout = batch * kdi_shape_size(s->out);
    float *dy = malloc(sizeof(float) * (size_t)nout);
    kdt_fill(dy, nout, 9, -1, 1);
    if (tap >= 0) {
        int64_t nt = batch * kdi_shape_size(s->layers[tap].out);
        float *g = malloc(sizeof(float) * (size_t)nt);
        kdt_fill(g, nt, 10, -1, 1);
        ck_assert_int_eq(kdi_seq_add_output_grad(s, tap, g), KD_OK);
        free(g);
    }
    ck_assert_int_eq(kdi_seq_backward(s, dy, dx), KD_OK);
    kdi_seq_set_fusion(1);
    free(dy);
}

/* A ReLU fused into the conv or batch norm before it (forward) or the max pooling after it
 * (backward) gives every activation, parameter gradient and input gradient bit for bit as the
 * layers one by one: with ties and zeros at the ReLU, a ReLU first, depthwise (not fused),
 * residual blocks, flat batch norm (not fused), general max pooling, and feature gradients at the
 * fused points (which turn the backward fusion off). "conv | relu | maxpool 2" backward makes the
 * conv's dY plane by plane (odd and even planes, stride 1 and 2, groups, with and without bias),
 * at batch 5 on 1 thread and at 37 on 2 (several chunks and parts). */
START_TEST(relu_fusion_is_exact)
{
    static const char *const specs[] = {
        "conv 4 3 pad=1 | relu | maxpool 2 | conv 6 3 pad=1 | relu | maxpool 2 stride=1 | flatten "
        "| dense 3",
        "relu | maxpool 2 | conv 3 3 stride=2 pad=1 bias=0 | relu | maxpool 2",
        "conv 3 3 pad=1 groups=3 | relu | maxpool 3 stride=2 | conv 5 1 | relu | avgpool 2",
        "conv 4 3 pad=1 | residual(conv 4 3 pad=1 | relu | conv 4 3 pad=1) | relu | maxpool 2 | "
        "gap | flatten | dense 2",
        "conv 6 3 pad=1 | relu | maxpool 2 | conv 4 3 pad=1 groups=2 | relu | maxpool 2 | flatten "
        "| dense 2",
        "conv 6 3 stride=2 pad=1 groups=3 | relu | maxpool 2 | conv 4 1 groups=2 | relu | maxpool "
        "2",
        "conv 4 3 pad=1 bias=0 | bn | relu | maxpool 2 | residual(conv 4 3 pad=1 bias=0 | bn | "
        "relu "
        "| conv 4 3 pad=1 bias=0 | bn) | relu | flatten | bn | relu | dense 2",
    };
    kdi_shape in = {3, 9, 9};
    int64_t most = 37, nin = most * kdi_shape_size(in);
    float *x = malloc(sizeof(float) * (size_t)nin);
    kdt_fill(x, nin, 4, -1, 1);
    for (int64_t i = 0; i < nin; i += 7) x[i] = i % 2 ? 0.0f : -0.0f; /* ties at the ReLU */
    float *dx[2] = {malloc(sizeof(float) * (size_t)nin), malloc(sizeof(float) * (size_t)nin)};
    int64_t planes = kdi_seq_planes_backwards();
    /* batch 5 on 1 thread, then 37 (several chunks and parts of the conv's backward) on 2 */
    for (int run = 0; run < 2; run++)
        for (size_t c = 0; c < sizeof specs / sizeof specs[0]; c++)
            for (int32_t tap = -1; tap < 4; tap++) {
                int64_t batch = run == 0 ? 5 : most;
                nin = batch * kdi_shape_size(in);
                ck_assert_int_eq(kd_set_threads(run == 0 ? 1 : 2), KD_OK);
                kdi_seq s[2];
                for (int f = 0; f < 2; f++) run_fused(&s[f], specs[c], in, batch, x, f, tap, dx[f]);
                ck_assert_msg(memcmp(dx[0], dx[1], sizeof(float) * (size_t)nin) == 0,
                              "%s tap %d: dx differs", specs[c], tap);
                for (int32_t i = 0; i < s[0].n; i++) /* written when read, if left unwritten */
                    ck_assert_msg(
                        memcmp(kdi_seq_output(&s[0], i), kdi_seq_output(&s[1], i),
                               sizeof(float) *
                                   (size_t)(batch * kdi_shape_size(s[0].layers[i].out))) == 0,
                        "%s: output of layer %d differs", specs[c], i);
                kdi_param_list p[2] = {{0}, {0}};
                for (int f = 0; f < 2; f++)
                    ck_assert_int_eq(kdi_seq_collect(&s[f], "", &p[f]), KD_OK);
                ck_assert_int_eq(p[0].n, p[1].n);
                for (int32_t i = 0; i < p[0].n; i++)
                    if (p[0].items[i].p->grad != NULL)
                        ck_assert_msg(memcmp(p[0].items[i].p->grad, p[1].items[i].p->grad,
                                             sizeof(float) * (size_t)p[0].items[i].p->count) == 0,
                                      "%s tap %d: gradient of %s differs", specs[c], tap,
                                      p[0].items[i].name);
                for (int f = 0; f < 2; f++) {
                    kdi_param_list_free(&p[f]);
                    kdi_seq_free(&s[f]);
                }
            }
    ck_assert_int_eq(kd_set_threads(1), KD_OK);
    ck_assert_msg(kdi_seq_planes_backwards() > planes, "no backward took its dY plane by plane");
    free(x);
    free(dx[0]);
    free(dx[1]);
}
END_TEST

/* A lazy chain (conv | relu | maxpool leaves the conv's and the ReLU's outputs unwritten): the
 * features are there when read, even after the caller has reused its input buffer (layer 0 keeps
 * a copy), and once read they are written by every later forward; a feature gradient at the conv
 * or the ReLU gives the gradients of the layers run one by one. */
START_TEST(lazy_outputs_when_read)
{
    const char *spec = "input 2x8x8 | conv 3 3 pad=1 | relu | maxpool 2 | conv 4 3 pad=1 | relu | "
                       "maxpool 2 | flatten | dense 3";
    enum { B = 16, IN = 2 * 8 * 8 }; /* large enough that both chains leave outputs unwritten */
    float x[B * IN], keep[B * IN], y[2][B * 3];
    kdt_fill(x, B * IN, 21, -1, 1);
    memcpy(keep, x, sizeof x);
    for (int32_t layer = 0; layer < 6; layer++) {
        kd_model *m[2];
        const float *f[2];
        int64_t n = 0;
        for (int k = 0; k < 2; k++) {
            kdi_seq_set_fusion(k == 0); /* m[0] fused and lazy, m[1] layer by layer */
            ck_assert_int_eq(kd_model_create(spec, 3, &m[k]), KD_OK);
            memcpy(x, keep, sizeof x);
            ck_assert_int_eq(kd_model_predict(m[k], x, B, y[k]), KD_OK);
            for (int i = 0; i < B * IN; i++) x[i] = 99.0f; /* the caller's buffer, reused */
            if (k == 0) /* left unwritten: the outputs of both convolutions and ReLUs */
                ck_assert_int_eq(m[k]->seq.stale[layer], layer != 2 && layer != 5);
            int64_t batch, c, h, w;
            ck_assert_int_eq(kd_model_feature(m[k], layer, &f[k], &batch, &c, &h, &w), KD_OK);
            n = batch * c * h * w;
        }
        kdi_seq_set_fusion(1);
        ck_assert(memcmp(y[0], y[1], sizeof y[0]) == 0);
        ck_assert_msg(memcmp(f[0], f[1], sizeof(float) * (size_t)n) == 0, "layer %d", layer);
        /* read once, kept: a training forward writes it, and a feature gradient there gives the
         * layers' own gradients */
        float g[B * 3];
        kdt_fill(g, B * 3, 5, -1, 1);
        for (int k = 0; k < 2; k++) {
            kdi_seq_set_fusion(k == 0);
            memcpy(x, keep, sizeof x);
            ck_assert_int_eq(kd_model_forward(m[k], x, B, y[k]), KD_OK);
            ck_assert(!m[k]->seq.stale[layer]);
            float *fg = malloc(sizeof(float) * (size_t)n);
            kdt_fill(fg, n, 6, -1, 1);
            ck_assert_int_eq(kd_model_feature_backward(m[k], layer, fg), KD_OK);
            free(fg);
            ck_assert_int_eq(kd_model_zero_grad(m[k]), KD_OK);
            ck_assert_int_eq(kd_model_backward(m[k], g), KD_OK);
        }
        kdi_seq_set_fusion(1);
        kdi_param_list p[2] = {{0}, {0}};
        for (int k = 0; k < 2; k++) ck_assert_int_eq(kdi_seq_collect(&m[k]->seq, "", &p[k]), KD_OK);
        for (int32_t i = 0; i < p[0].n; i++)
            ck_assert_msg(memcmp(p[0].items[i].p->grad, p[1].items[i].p->grad,
                                 sizeof(float) * (size_t)p[0].items[i].p->count) == 0,
                          "layer %d: gradient of %s", layer, p[0].items[i].name);
        for (int k = 0; k < 2; k++) {
            kdi_param_list_free(&p[k]);
            kd_model_destroy(m[k]);
        }
    }
}
END_TEST

/* An output left unwritten is the forward's even when read after an optimizer step moved the
 * conv's weights (it is written from the weights of that forward), and after the thread count
 * changed (the conv's GEMMs keep OpenBLAS on one thread whatever the count). */
START_TEST(lazy_outputs_after_a_step)
{
    const char *spec = "input 1x7x7 | conv 16 3 | relu | maxpool 2 | flatten | dense 3";
    enum { B = 110, IN = 49 }; /* one chunk of images: the conv's GEMM on one thread */
    float *x = malloc(sizeof(float) * B * IN), y[B * 3], g[B * 3];
    kdt_fill(x, B * IN, 31, -1, 1);
    kdt_fill(g, B * 3, 32, -1, 1);
    for (int32_t layer = 0; layer < 2; layer++) {
        float *f[2];
        int64_t n = 0;
        for (int k = 0; k < 2; k++) {
            kdi_seq_set_fusion(k == 0);
            ck_assert_int_eq(kd_set_threads(1), KD_OK);
            kd_model *m;
            kd_optimizer *opt;
            ck_assert_int_eq(kd_model_create(spec, 3, &m), KD_OK);
            ck_assert_int_eq(kd_optimizer_create(KD_OPTIMIZER_SGD, m, &opt), KD_OK);
            ck_assert_int_eq(kd_model_forward(m, x, B, y), KD_OK);
            ck_assert_int_eq(kd_model_backward(m, g), KD_OK);
            ck_assert_int_eq(kd_optimizer_step(opt), KD_OK);
            ck_assert_int_eq(kd_set_threads(2), KD_OK);
            const float *v;
            int64_t batch, c, h, w;
            ck_assert_int_eq(kd_model_feature(m, layer, &v, &batch, &c, &h, &w), KD_OK);
            n = batch * c * h * w;
            f[k] = malloc(sizeof(float) * (size_t)n);
            memcpy(f[k], v, sizeof(float) * (size_t)n);
            kd_optimizer_destroy(opt);
            kd_model_destroy(m);
        }
        kdi_seq_set_fusion(1);
        ck_assert_int_eq(kd_set_threads(1), KD_OK);
        ck_assert_msg(memcmp(f[0], f[1], sizeof(float) * (size_t)n) == 0, "layer %d", layer);
        free(f[0]);
        free(f[1]);
    }
    free(x);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("conv");
    TCase *t = tcase_create("conv");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, conv_forward_matches_direct_loops);
    tcase_add_test(t, conv_gradients);
    tcase_add_test(t, conv_shapes_and_spec);
    tcase_add_test(t, conv_bad_specs);
    tcase_add_test(t, conv_model_rejects_wrong_input);
    tcase_add_test(t, pool_forward_values);
    tcase_add_test(t, pool_2x2_path);
    tcase_add_test(t, pool_gradients);
    tcase_add_test(t, flatten_shape);
    tcase_add_test(t, cnn_save_load_round_trip);
    tcase_add_test(t, conv_batch_sizes_agree);
    tcase_add_test(t, relu_fusion_is_exact);
    tcase_add_test(t, lazy_outputs_when_read);
    tcase_add_test(t, lazy_outputs_after_a_step);
    suite_add_tcase(s, t);
    return kdt_run(s);
}
