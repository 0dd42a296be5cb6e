/* Quantisation-aware training (kd_model_set_fake_quant): the straight-through gradients against a
 * finite-difference check of the rounded model and a hand-written backward (identity inside the
 * clip range, zero outside), the tracked ranges, and the fake-quantised forward against the int8
 * model kd_model_quantize_trained makes of it. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "faults.h"
#include "kd.h"
#include "nn/fake_quant.h"
#include "nn/model.h"
#include "testutil.h"

static kdi_param *param(kd_model *m, int32_t i) { return kdi_model_params(m)->items[i].p; }

static float *floats(int64_t n)
{
    float *v = calloc((size_t)n, sizeof(float));
    ck_assert_ptr_nonnull(v);
    return v;
}

/* What fake quantisation makes of x with scale s and zero point z. */
static float fq(float x, float s, float z)
{
    float q = rintf(x / s) + z;
    q = q < 0 ? 0 : q > 255 ? 255 : q;
    return (q - z) * s;
}

static int clipped(float x, float s, float z)
{
    float q = rintf(x / s) + z;
    return q < 0 || q > 255;
}

/* ---------------------------------------------------------------- one dense layer */

typedef struct dense_ctx {
    kd_model *g;
    const float *x, *w;
    int64_t batch, out;
    float *y;
} dense_ctx;

static double dense_objective(void *p)
{
    dense_ctx *c = p;
    ck_assert_int_eq(kd_model_predict(c->g, c->x, c->batch, c->y), KD_OK);
    double s = 0;
    for (int64_t i = 0; i < c->batch * c->out; i++) s += (double)c->w[i] * c->y[i];
    return s;
}

/* The weight gradient of the rounded model is the float gradient at the rounded weights and
 * inputs (identity STE), checked by central differences of a float model holding them. */
START_TEST(test_dense_ste)
{
    enum { B = 8, IN = 6, OUT = 4 };
    kd_model *m, *g;
    ck_assert_int_eq(kd_model_create("input 6 | dense 4", 3, &m), KD_OK);
    ck_assert_int_eq(kd_model_set_fake_quant(m, 1), KD_OK);
    int32_t on = 0;
    ck_assert_int_eq(kd_model_fake_quant(m, &on), KD_OK);
    ck_assert_int_eq(on, 1);
    float xa[B * IN], xb[B * IN], y[B * OUT], w[B * OUT], xq[B * IN];
    kdt_fill(xa, B * IN, 1, 0.0f, 1.0f);
    for (int i = 0; i < B * IN; i++) xb[i] = 1.6f * xa[i] - 0.3f; /* partly outside the range */
    kdt_fill(w, B * OUT, 2, -1.0f, 1.0f);
    ck_assert_int_eq(kd_model_forward(m, xa, B, y), KD_OK);
    ck_assert_int_eq(kd_model_zero_grad(m), KD_OK);
    ck_assert_int_eq(kd_model_forward(m, xb, B, y), KD_OK);
    ck_assert_int_eq(kd_model_backward(m, w), KD_OK);

    /* The range followed batch b by the EMA from batch a's. */
    float alo = xa[0], ahi = xa[0], blo = xb[0], bhi = xb[0];
    for (int i = 0; i < B * IN; i++) {
        alo = fminf(alo, xa[i]);
        ahi = fmaxf(ahi, xa[i]);
        blo = fminf(blo, xb[i]);
        bhi = fmaxf(bhi, xb[i]);
    }
    float lo = alo + KDI_FQ_MOMENTUM * (blo - alo), hi = ahi + KDI_FQ_MOMENTUM * (bhi - ahi), s, z;
    ck_assert_float_eq(m->seq.fq->lo[0], lo);
    ck_assert_float_eq(m->seq.fq->hi[0], hi);
    kdi_fq_scale(lo, hi, &s, &z);
    int nclip = 0;
    for (int i = 0; i < B * IN; i++) {
        xq[i] = fq(xb[i], s, z);
        nclip += clipped(xb[i], s, z);
    }
    ck_assert_int_gt(nclip, 0);

    /* A float model on the rounded weights and inputs. */
    ck_assert_int_eq(kd_model_create("input 6 | dense 4", 3, &g), KD_OK);
    kdi_param *wm = param(m, 0), *wg = param(g, 0);
    kdi_fq_round_weights(wm->value, wg->value, OUT, IN);
    memcpy(param(g, 1)->value, param(m, 1)->value, sizeof(float) * OUT);
    float yq[B * OUT], yg[B * OUT];
    ck_assert_int_eq(kd_model_predict(m, xb, B, yq), KD_OK);
    dense_ctx c = {g, xq, w, B, OUT, yg};
    dense_objective(&c);
    for (int i = 0; i < B * OUT; i++) ck_assert_float_eq_tol(yq[i], yg[i], 1e-5f);
    double fd, want;
    kdt_directional(dense_objective, &c, wg->value, wm->grad, IN * OUT, 5, &fd, &want);
    ck_assert_msg(fabs(fd - want) < 1e-3 * fmax(1.0, fabs(want)), "weights: fd %g, STE %g", fd,
                  want);
    kdt_directional(dense_objective, &c, param(g, 1)->value, param(m, 1)->grad, OUT, 6, &fd, &want);
    ck_assert_msg(fabs(fd - want) < 1e-3 * fmax(1.0, fabs(want)), "bias: fd %g, STE %g", fd, want);
    kd_model_destroy(g);
    kd_model_destroy(m);
}
END_TEST

/* ---------------------------------------------------------------- the mask at a hidden point */

/* dense, relu, dense by hand: the hidden activation's gradient passes where its code was in
 * 0..255 and is zero where it was clipped. */
START_TEST(test_hidden_mask)
{
    enum { B = 6, IN = 5, H = 7, OUT = 3 };
    kd_model *m;
    ck_assert_int_eq(kd_model_create("input 5 | dense 7 | relu | dense 3", 9, &m), KD_OK);
    ck_assert_int_eq(kd_model_set_fake_quant(m, 1), KD_OK);
    float xa[B * IN], xb[B * IN], y[B * OUT], dy[B * OUT];
    kdt_fill(xa, B * IN, 11, -1.0f, 1.0f);
    /* Larger inputs make hidden values beyond the tracked range, which moved 1% their way. */
    for (int i = 0; i < B * IN; i++) xb[i] = 3.0f * xa[i];
    kdt_fill(dy, B * OUT, 12, -1.0f, 1.0f);
    ck_assert_int_eq(kd_model_forward(m, xa, B, y), KD_OK);
    ck_assert_int_eq(kd_model_zero_grad(m), KD_OK);
    ck_assert_int_eq(kd_model_forward(m, xb, B, y), KD_OK);
    ck_assert_int_eq(kd_model_backward(m, dy), KD_OK);
    const kdi_fq *f = m->seq.fq;
    ck_assert(f->point[0] && !f->point[1] && f->point[2] && !f->point[3]);
    float s0 = f->scale[0], z0 = f->zero[0], s2 = f->scale[2], z2 = f->zero[2];
    float w0[H * IN], w1[OUT * H], xq[B * IN], h[B * H], r[B * H], rq[B * H], gr[B * H];
    kdi_fq_round_weights(param(m, 0)->value, w0, H, IN);
    kdi_fq_round_weights(param(m, 2)->value, w1, OUT, H);
    const float *b0 = param(m, 1)->value, *b1 = param(m, 3)->value;
    for (int i = 0; i < B * IN; i++) xq[i] = fq(xb[i], s0, z0);
    int pass = 0, clip = 0;
    for (int n = 0; n < B; n++)
        for (int j = 0; j < H; j++) {
            double a = b0[j];
            for (int k = 0; k < IN; k++) a += (double)xq[n * IN + k] * w0[j * IN + k];
            h[n * H + j] = (float)a;
            r[n * H + j] = h[n * H + j] > 0 ? h[n * H + j] : 0;
            rq[n * H + j] = fq(r[n * H + j], s2, z2);
        }
    for (int n = 0; n < B; n++)
        for (int o = 0; o < OUT; o++) {
            double a = b1[o];
            for (int j = 0; j < H; j++) a += (double)rq[n * H + j] * w1[o * H + j];
            ck_assert_float_eq_tol(y[n * OUT + o], (float)a, 1e-4f);
        }
    for (int n = 0; n < B; n++)
        for (int j = 0; j < H; j++) {
            double a = 0;
            for (int o = 0; o < OUT; o++) a += (double)dy[n * OUT + o] * w1[o * H + j];
            int cl = clipped(r[n * H + j], s2, z2);
            clip += cl && h[n * H + j] > 0;
            pass += !cl && h[n * H + j] > 0;
            gr[n * H + j] = cl || h[n * H + j] <= 0 ? 0.0f : (float)a;
        }
    ck_assert_int_gt(clip, 0);
    ck_assert_int_gt(pass, 0);
    for (int o = 0; o < OUT; o++)
        for (int j = 0; j < H; j++) {
            double a = 0;
            for (int n = 0; n < B; n++) a += (double)dy[n * OUT + o] * rq[n * H + j];
            ck_assert_float_eq_tol(param(m, 2)->grad[o * H + j], (float)a, 1e-4f);
        }
    for (int j = 0; j < H; j++)
        for (int k = 0; k < IN; k++) {
            double a = 0;
            for (int n = 0; n < B; n++) a += (double)gr[n * H + j] * xq[n * IN + k];
            ck_assert_float_eq_tol(param(m, 0)->grad[j * IN + k], (float)a, 1e-4f);
        }
    kd_model_destroy(m);
}
END_TEST

/* ---------------------------------------------------------------- against the int8 model */

/* Trains m a few steps with fake quantisation (SGD on a random task), converts it, and checks the
 * int8 logits equal the fake-quantised ones within one step of the last layer's input scale
 * propagated through its weights (every input code off by at most one), with the same class. */
static void matches_int8(const char *spec, int64_t in)
{
    enum { B = 32 };
    kd_model *m, *q = NULL;
    kd_optimizer *o;
    ck_assert_int_eq(kd_model_create(spec, 5, &m), KD_OK);
    ck_assert_int_eq(kd_model_quantize_trained(m, &q), KD_ERR_STATE);
    ck_assert_int_eq(kd_model_set_fake_quant(m, 1), KD_OK);
    ck_assert_int_eq(kd_model_quantize_trained(m, &q), KD_ERR_STATE); /* not trained yet */
    ck_assert_int_eq(kd_optimizer_create(KD_OPTIMIZER_SGD, m, &o), KD_OK);
    int64_t out;
    ck_assert_int_eq(kd_model_output_size(m, &out), KD_OK);
    float *x = floats(B * in), *y = floats(B * out), *g = floats(B * out), *yq = floats(B * out);
    for (int step = 0; step < 5; step++) {
        kdt_fill(x, B * in, 20 + (uint64_t)step, 0.0f, 1.0f);
        kdt_fill(g, B * out, 40 + (uint64_t)step, -0.1f, 0.1f);
        ck_assert_int_eq(kd_model_forward(m, x, B, y), KD_OK);
        ck_assert_int_eq(kd_model_backward(m, g), KD_OK);
        ck_assert_int_eq(kd_optimizer_step(o), KD_OK);
    }
    ck_assert_msg(kd_model_quantize_trained(m, &q) == KD_OK, "%s", kd_last_error());
    int32_t is = 0;
    ck_assert_int_eq(kd_model_is_quantized(q, &is), KD_OK);
    ck_assert_int_eq(is, 1);
    kdt_fill(x, B * in, 99, 0.0f, 1.0f);
    ck_assert_int_eq(kd_model_predict(m, x, B, y), KD_OK);
    ck_assert_int_eq(kd_model_predict(q, x, B, yq), KD_OK);
    /* The last layer: its input scale (the point before it) and rounded weights' row sums. */
    const kdi_fq *f = m->seq.fq;
    int32_t last = m->seq.n - 1, p = last;
    while (!f->point[p]) p--;
    kdi_param *w = &m->seq.layers[last].params[0];
    int64_t k = w->count / out;
    float *wq = floats(w->count);
    kdi_fq_round_weights(w->value, wq, out, k);
    double row = 0;
    for (int64_t r = 0; r < out; r++) {
        double sum = 0;
        for (int64_t j = 0; j < k; j++) sum += fabs(wq[r * k + j]);
        row = sum > row ? sum : row;
    }
    double tol = f->scale[p] * row + 1e-4, worst = 0;
    int agree = 0;
    for (int n = 0; n < B; n++) {
        int a = 0, b = 0;
        for (int64_t j = 0; j < out; j++) {
            worst = fmax(worst, fabs(y[n * out + j] - yq[n * out + j]));
            if (y[n * out + j] > y[n * out + a]) a = (int)j;
            if (yq[n * out + j] > yq[n * out + b]) b = (int)j;
        }
        agree += a == b;
    }
    ck_assert_msg(worst <= tol, "%s: int8 logits off by %g, bound %g", spec, worst, tol);
    ck_assert_msg(agree >= B - 1, "%s: same class for %d of %d", spec, agree, B);
    /* Turning it off restores the float model; the conversion then needs it again. */
    ck_assert_int_eq(kd_model_set_fake_quant(m, 0), KD_OK);
    kd_model_destroy(q);
    ck_assert_int_eq(kd_model_quantize_trained(m, &q), KD_ERR_STATE);
    free(wq);
    free(x);
    free(y);
    free(g);
    free(yq);
    kd_optimizer_destroy(o);
    kd_model_destroy(m);
}

START_TEST(test_mlp_int8)
{
    matches_int8("input 20 | dense 16 | relu | dropout 0.1 | dense 5", 20);
}
END_TEST

START_TEST(test_cnn_int8)
{
    matches_int8("input 2x8x8 | conv 4 3 pad=1 | bn | relu | maxpool 2 | conv 6 3 | relu | "
                 "flatten | dense 5",
                 128);
}
END_TEST

START_TEST(test_refusals)
{
    kd_model *m;
    ck_assert_int_eq(kd_model_set_fake_quant(NULL, 1), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_model_create("input 4 | dense 3 | gelu | dense 2", 1, &m), KD_OK);
    ck_assert_int_eq(kd_model_set_fake_quant(m, 2), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_model_set_fake_quant(m, 1), KD_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(kd_last_error(), "gelu"));
    ck_assert_int_eq(kd_model_set_fake_quant(m, 0), KD_OK);
    kd_model_destroy(m);
}
END_TEST

/* A warmed-up fake-quantised step allocates nothing; enabling and converting under every
 * allocation failure fail cleanly (NOMEM, nothing leaked) or succeed. */
START_TEST(test_allocations)
{
    enum { B = 16, IN = 36 };
    kdt_alloc_install();
    kd_model *m, *q;
    kd_optimizer *o;
    ck_assert_int_eq(
        kd_model_create("input 1x6x6 | conv 3 3 pad=1 | bn | relu | flatten | dense 4", 2, &m),
        KD_OK);
    float x[B * IN], y[B * 4], g[B * 4];
    kdt_fill(x, B * IN, 3, 0.0f, 1.0f);
    kdt_fill(g, B * 4, 4, -0.1f, 0.1f);
    for (int64_t fail = 1;; fail++) {
        int64_t live = kdt_alloc.live;
        kdt_alloc_arm(fail);
        kd_status st = kd_model_set_fake_quant(m, 1);
        kdt_alloc_arm(0);
        if (st == KD_OK) break;
        ck_assert_int_eq(st, KD_ERR_NOMEM);
        ck_assert_int_eq(kdt_alloc.live, live);
    }
    ck_assert_int_eq(kd_optimizer_create(KD_OPTIMIZER_SGD, m, &o), KD_OK);
    for (int k = 0; k < 3; k++) {
        if (k == 2) kdt_alloc_arm(0);
        ck_assert_int_eq(kd_model_forward(m, x, B, y), KD_OK);
        ck_assert_int_eq(kd_model_backward(m, g), KD_OK);
        ck_assert_int_eq(kd_optimizer_step(o), KD_OK);
    }
    ck_assert_int_eq(kdt_alloc.calls, 0);
    for (int64_t fail = 1;; fail++) {
        int64_t live = kdt_alloc.live;
        kdt_alloc_arm(fail);
        kd_status st = kd_model_quantize_trained(m, &q);
        kdt_alloc_arm(0);
        if (st == KD_OK) break;
        ck_assert_int_eq(st, KD_ERR_NOMEM);
        ck_assert_int_eq(kdt_alloc.live, live);
    }
    kd_model_destroy(q);
    kd_optimizer_destroy(o);
    kd_model_destroy(m);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("qat");
    TCase *t = tcase_create("qat");
    tcase_add_test(t, test_dense_ste);
    tcase_add_test(t, test_hidden_mask);
    tcase_add_test(t, test_mlp_int8);
    tcase_add_test(t, test_cnn_int8);
    tcase_add_test(t, test_refusals);
    tcase_add_test(t, test_allocations);
    suite_add_tcase(s, t);
    return s;
}

int main(void) { return kdt_run(suite()); }
