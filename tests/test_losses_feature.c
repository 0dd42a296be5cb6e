/* The feature losses (FitNets hint, attention transfer, RKD, similarity preserving, PKT, cosine):
 * each against a value computed directly from its reference formula (Python's math module, not the
 * Gram-matrix route the library takes), its gradient against finite differences, shape rules,
 * options and bad input. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "distill/losses/losses.h"
#include "testutil.h"

static kd_feature_loss *make(kd_feature_loss_kind kind)
{
    kd_feature_loss *l;
    ck_assert_int_eq(kd_feature_loss_create(kind, &l), KD_OK);
    return l;
}

/* ---------------------------------------------------------------- hand-computed values */

/* Four examples: S is 2x3x3, T 2x3x3 and T3 3x3x3 per example; round(s * sin(a i + b), 4) as in
 * the Python script whose results the comments give. */
static const float S[72] = {
    0.1498f,  0.6793f,  1.1170f,  1.4034f,  1.4999f,  1.3934f,  1.0983f,  0.6546f,  0.1223f,
    -0.4266f, -0.9178f, -1.2847f, -1.4778f, -1.4708f, -1.2648f, -0.8876f, -0.3902f, 0.1599f,
    0.6884f,  1.1238f,  1.4070f,  1.4998f,  1.3896f,  1.0914f,  0.6454f,  0.1121f,  -0.4364f,
    -0.9259f, -1.2900f, -1.4795f, -1.4688f, -1.2593f, -0.8793f, -0.3804f, 0.1701f,  0.6975f,
    1.1305f,  1.4105f,  1.4996f,  1.3857f,  1.0843f,  0.6361f,  0.1019f,  -0.4462f, -0.9339f,
    -1.2952f, -1.4811f, -1.4667f, -1.2537f, -0.8710f, -0.3705f, 0.1802f,  0.7065f,  1.1372f,
    1.4140f,  1.4993f,  1.3818f,  1.0772f,  0.6269f,  0.0917f,  -0.4559f, -0.9418f, -1.3003f,
    -1.4827f, -1.4645f, -1.2480f, -0.8627f, -0.3605f, 0.1904f,  0.7155f,  1.1438f,  1.4173f};
static const float T[72] = {
    0.7731f,  1.1310f,  1.1786f,  0.9028f,  0.3793f,  -0.2483f, -0.8077f, -1.1456f, -1.1690f,
    -0.8718f, -0.3353f, 0.2932f,  0.8412f,  1.1584f,  1.1578f,  0.8395f,  0.2908f,  -0.3376f,
    -0.8735f, -1.1696f, -1.1448f, -0.8059f, -0.2459f, 0.3816f,  0.9044f,  1.1790f,  1.1302f,
    0.7712f,  0.2006f,  -0.4250f, -0.9340f, -1.1867f, -1.1138f, -0.7353f, -0.1550f, 0.4678f,
    0.9623f,  1.1927f,  1.0959f,  0.6984f,  0.1092f,  -0.5099f, -0.9891f, -1.1969f, -1.0763f,
    -0.6604f, -0.0633f, 0.5512f,  1.0144f,  1.1993f,  1.0551f,  0.6214f,  0.0172f,  -0.5917f,
    -1.0383f, -1.2000f, -1.0324f, -0.5815f, 0.0289f,  0.6314f,  1.0606f,  1.1989f,  1.0082f,
    0.5408f,  -0.0749f, -0.6701f, -1.0814f, -1.1960f, -0.9824f, -0.4993f, 0.1209f,  0.7078f};
static const float T3[108] = {
    0.3251f,  0.7170f,  0.9901f,  1.0991f,  1.0259f,  0.7826f,  0.4096f,  -0.0312f, -0.4669f,
    -0.8253f, -1.0468f, -1.0948f, -0.9613f, -0.6685f, -0.2649f, 0.1826f,  0.5999f,  0.9177f,
    1.0834f,  1.0695f,  0.8783f,  0.5416f,  0.1150f,  -0.3306f, -0.7214f, -0.9926f, -1.0993f,
    -1.0238f, -0.7786f, -0.4043f, 0.0370f,  0.4721f,  0.8290f,  1.0485f,  1.0942f,  0.9585f,
    0.6639f,  0.2593f,  -0.1883f, -0.6047f, -0.9209f, -1.0844f, -1.0681f, -0.8749f, -0.5366f,
    -0.1093f, 0.3360f,  0.7257f,  0.9951f,  1.0995f,  1.0217f,  0.7745f,  0.3990f,  -0.0427f,
    -0.4773f, -0.8328f, -1.0502f, -1.0936f, -0.9557f, -0.6593f, -0.2537f, 0.1940f,  0.6095f,
    0.9240f,  1.0853f,  1.0668f,  0.8714f,  0.5315f,  0.1036f,  -0.3415f, -0.7300f, -0.9975f,
    -1.0997f, -1.0195f, -0.7704f, -0.3936f, 0.0485f,  0.4825f,  0.8365f,  1.0519f,  1.0930f,
    0.9528f,  0.6547f,  0.2481f,  -0.1996f, -0.6143f, -0.9271f, -1.0862f, -1.0653f, -0.8679f,
    -0.5265f, -0.0979f, 0.3470f,  0.7343f,  0.9999f,  1.0998f,  1.0174f,  0.7663f,  0.3882f,
    -0.0542f, -0.4876f, -0.8403f, -1.0536f, -1.0923f, -0.9499f, -0.6501f, -0.2425f, 0.2053f};

static void expect(kd_feature_loss_kind kind, const float *t, int64_t tc, double want)
{
    kd_feature_loss *l = make(kind);
    float v;
    ck_assert_int_eq(kd_feature_loss_forward(l, S, 2, 3, 3, t, tc, 3, 3, 4, &v), KD_OK);
    ck_assert_msg(fabs(v - want) < 1e-5 * fmax(1.0, fabs(want)), "kind %d: %.9g, expected %.9g",
                  (int)kind, (double)v, want);
    kd_feature_loss_destroy(l);
}

START_TEST(hand_computed_values)
{
    expect(KD_FEATURE_HINT, T, 2, 2.00044762889);         /* mean (s - t)^2 */
    expect(KD_FEATURE_COSINE, T, 2, 1.092845474);         /* mean 1 - cos */
    expect(KD_FEATURE_ATTENTION, T3, 3, 0.0648833235446); /* at_loss, 2 vs 3 channels */
    expect(KD_FEATURE_RKD, T3, 3, 7.15278148034);         /* 25 * 0.05381127 + 50 * 0.11614999 */
    expect(KD_FEATURE_SIMILARITY, T3, 3, 0.434398059748);
    expect(KD_FEATURE_PKT, T3, 3, 0.0742201068706);
    /* RKD's two terms through its weights */
    kd_feature_loss *l = make(KD_FEATURE_RKD);
    float v;
    ck_assert_int_eq(kd_feature_loss_set_float(l, KD_FEATURE_RKD_ANGLE_WEIGHT, 0.0f), KD_OK);
    ck_assert_int_eq(kd_feature_loss_set_float(l, KD_FEATURE_RKD_DISTANCE_WEIGHT, 1.0f), KD_OK);
    ck_assert_int_eq(kd_feature_loss_forward(l, S, 18, 1, 1, T3, 27, 1, 1, 4, &v), KD_OK);
    ck_assert_msg(fabs(v - 0.0538112720024) < 1e-6, "distance %.9g", (double)v);
    ck_assert_int_eq(kd_feature_loss_set_float(l, KD_FEATURE_RKD_ANGLE_WEIGHT, 1.0f), KD_OK);
    ck_assert_int_eq(kd_feature_loss_set_float(l, KD_FEATURE_RKD_DISTANCE_WEIGHT, 0.0f), KD_OK);
    ck_assert_int_eq(kd_feature_loss_forward(l, S, 18, 1, 1, T3, 27, 1, 1, 4, &v), KD_OK);
    ck_assert_msg(fabs(v - 0.116149993606) < 1e-6, "angle %.9g", (double)v);
    kd_feature_loss_destroy(l);
}
END_TEST

/* Small cases by hand. Hint: s = [1, 2], t = [0, 4]: (1 + 4) / 2 = 2.5. Cosine: s = [1, 0],
 * t = [1, 1]: 1 - 1/sqrt(2). Attention: one channel of 2 positions, s = [1, 0] gives a^ = [1, 0],
 * t = [1, 1] gives [0.7071, 0.7071]: ((1 - 0.7071)^2 + 0.7071^2) / 2 = 1 - 1/sqrt(2). */
START_TEST(tiny_by_hand)
{
    const float s[2] = {1.0f, 2.0f}, t[2] = {0.0f, 4.0f}, e[2] = {1.0f, 0.0f}, o[2] = {1.0f, 1.0f};
    float v;
    kd_feature_loss *l = make(KD_FEATURE_HINT);
    ck_assert_int_eq(kd_feature_loss_forward(l, s, 2, 1, 1, t, 2, 1, 1, 1, &v), KD_OK);
    ck_assert(fabsf(v - 2.5f) < 1e-7f);
    kd_feature_loss_destroy(l);
    l = make(KD_FEATURE_COSINE);
    ck_assert_int_eq(kd_feature_loss_forward(l, e, 2, 1, 1, o, 2, 1, 1, 1, &v), KD_OK);
    ck_assert(fabs(v - (1.0 - 1.0 / sqrt(2.0))) < 1e-7);
    kd_feature_loss_destroy(l);
    l = make(KD_FEATURE_ATTENTION);
    ck_assert_int_eq(kd_feature_loss_forward(l, e, 1, 1, 2, o, 1, 2, 1, 1, &v), KD_ERR_SHAPE);
    ck_assert_int_eq(kd_feature_loss_forward(l, e, 1, 1, 2, o, 1, 1, 2, 1, &v), KD_OK);
    ck_assert(fabs(v - (1.0 - 1.0 / sqrt(2.0))) < 1e-7);
    kd_feature_loss_destroy(l);
    /* identical relations cost nothing, whatever the scale: RKD, SP, PKT are scale-free */
    float a[6] = {1, 2, 0, -1, 3, 1}, b[6];
    for (int i = 0; i < 6; i++) b[i] = 3.0f * a[i];
    static const kd_feature_loss_kind rel[] = {KD_FEATURE_RKD, KD_FEATURE_SIMILARITY,
                                               KD_FEATURE_PKT};
    for (int k = 0; k < 3; k++) {
        l = make(rel[k]);
        ck_assert_int_eq(kd_feature_loss_forward(l, a, 2, 1, 1, b, 2, 1, 1, 3, &v), KD_OK);
        ck_assert_msg(fabsf(v) < 1e-6f, "kind %d: %g", (int)rel[k], (double)v);
        kd_feature_loss_destroy(l);
    }
}
END_TEST

/* ---------------------------------------------------------------- gradients */

typedef struct fd_ctx {
    kd_feature_loss *l;
    const float *s, *t;
    kdi_shape ss, ts;
    int64_t batch;
} fd_ctx;

static double objective(void *p)
{
    fd_ctx *c = p;
    float v;
    ck_assert_int_eq(kd_feature_loss_forward(c->l, c->s, c->ss.c, c->ss.h, c->ss.w, c->t, c->ts.c,
                                             c->ts.h, c->ts.w, c->batch, &v),
                     KD_OK);
    return c->l->value;
}

static void gradcheck(kd_feature_loss_kind kind, kdi_shape ss, kdi_shape ts, int64_t batch,
                      float scale, uint64_t seed)
{
    int64_t ns = batch * kdi_shape_size(ss), nt = batch * kdi_shape_size(ts);
    float *s = malloc(sizeof(float) * (size_t)ns), *t = malloc(sizeof(float) * (size_t)nt);
    float *g = malloc(sizeof(float) * (size_t)ns), v;
    kdt_fill(s, ns, seed, -scale, scale);
    kdt_fill(t, nt, seed + 1, -scale, scale);
    kd_feature_loss *l = make(kind);
    ck_assert_int_eq(
        kd_feature_loss_forward(l, s, ss.c, ss.h, ss.w, t, ts.c, ts.h, ts.w, batch, &v), KD_OK);
    ck_assert_int_eq(kd_feature_loss_backward(l, g), KD_OK);
    fd_ctx c = {l, s, t, ss, ts, batch};
    double err = kdt_gradcheck(objective, &c, s, g, ns, 1e-2 * scale, 120);
    ck_assert_msg(err < 2e-2, "kind %d (batch %lld, scale %g): gradient error %g", (int)kind,
                  (long long)batch, (double)scale, err);
    kd_feature_loss_destroy(l);
    free(s);
    free(t);
    free(g);
}

START_TEST(gradients)
{
    kdi_shape v6 = {6, 1, 1}, v9 = {9, 1, 1}, m2 = {2, 3, 4}, m3 = {3, 3, 4};
    static const float scales[] = {0.5f, 3.0f};
    for (int i = 0; i < 2; i++) {
        float sc = scales[i];
        gradcheck(KD_FEATURE_HINT, m2, m2, 3, sc, 1);
        gradcheck(KD_FEATURE_COSINE, v6, (kdi_shape){2, 3, 1}, 4, sc, 2);
        gradcheck(KD_FEATURE_ATTENTION, m2, m3, 3, sc, 3);
        gradcheck(KD_FEATURE_RKD, v6, v9, 5, sc, 4);
        gradcheck(KD_FEATURE_RKD, m2, v9, 7, sc, 5);
        gradcheck(KD_FEATURE_SIMILARITY, v6, v9, 5, sc, 6);
        gradcheck(KD_FEATURE_PKT, v6, v9, 5, sc, 7);
        gradcheck(KD_FEATURE_PKT, m2, m3, 4, sc, 8);
    }
}
END_TEST

/* A batch of one has no relation; RKD gives 0 and a zero gradient rather than 0/0. */
START_TEST(single_example_relations)
{
    float s[6] = {1, 2, 3, 4, 5, 6}, t[3] = {1, 0, 1}, g[6], v;
    static const kd_feature_loss_kind rel[] = {KD_FEATURE_RKD, KD_FEATURE_SIMILARITY,
                                               KD_FEATURE_PKT};
    for (int k = 0; k < 3; k++) {
        kd_feature_loss *l = make(rel[k]);
        ck_assert_int_eq(kd_feature_loss_forward(l, s, 6, 1, 1, t, 3, 1, 1, 1, &v), KD_OK);
        ck_assert_int_eq(kd_feature_loss_backward(l, g), KD_OK);
        ck_assert(fabsf(v) < 1e-6f);
        for (int i = 0; i < 6; i++) ck_assert(fabsf(g[i]) < 1e-6f);
        kd_feature_loss_destroy(l);
    }
}
END_TEST

/* ---------------------------------------------------------------- bad input */

START_TEST(shape_rules)
{
    float x[64] = {0}, v;
    kdt_fill(x, 64, 9, -1.0f, 1.0f);
    kd_feature_loss *h = make(KD_FEATURE_HINT), *c = make(KD_FEATURE_COSINE);
    kd_feature_loss *a = make(KD_FEATURE_ATTENTION), *r = make(KD_FEATURE_RKD);
    ck_assert_int_eq(kd_feature_loss_forward(h, x, 2, 2, 2, x, 8, 1, 1, 2, &v), KD_ERR_SHAPE);
    ck_assert_int_eq(kd_feature_loss_forward(h, x, 8, 1, 1, x, 8, 1, 1, 2, &v), KD_OK);
    ck_assert_int_eq(kd_feature_loss_forward(c, x, 2, 2, 2, x, 8, 1, 1, 2, &v), KD_OK);
    ck_assert_int_eq(kd_feature_loss_forward(c, x, 2, 2, 2, x, 9, 1, 1, 2, &v), KD_ERR_SHAPE);
    ck_assert_int_eq(kd_feature_loss_forward(a, x, 4, 1, 1, x, 4, 1, 1, 2, &v), KD_ERR_SHAPE);
    ck_assert_int_eq(kd_feature_loss_forward(a, x, 2, 2, 2, x, 1, 2, 2, 2, &v), KD_OK);
    ck_assert_int_eq(kd_feature_loss_forward(r, x, 3, 1, 1, x, 7, 2, 1, 2, &v), KD_OK);
    ck_assert_int_eq(kd_feature_loss_forward(r, x, 0, 1, 1, x, 7, 2, 1, 2, &v), KD_ERR_SHAPE);
    ck_assert_int_eq(kd_feature_loss_forward(r, x, 3, 1, 1, x, 7, -2, 1, 2, &v), KD_ERR_SHAPE);
    ck_assert_int_eq(kd_feature_loss_forward(r, x, 3, 1, 1, x, 7, 2, 1, 0, &v), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_feature_loss_forward(r, x, INT64_MAX / 2, 4, 1, x, 7, 2, 1, 2, &v),
                     KD_ERR_SHAPE);
    kd_feature_loss_destroy(h);
    kd_feature_loss_destroy(c);
    kd_feature_loss_destroy(a);
    kd_feature_loss_destroy(r);
}
END_TEST

START_TEST(bad_input_leaves_handle)
{
    float s[12], t[12], g[12], g2[12], v, w;
    kdt_fill(s, 12, 1, -1.0f, 1.0f);
    kdt_fill(t, 12, 2, -1.0f, 1.0f);
    kd_feature_loss *l = make(KD_FEATURE_RKD), *bad;
    ck_assert_int_eq(kd_feature_loss_backward(l, g), KD_ERR_STATE);
    ck_assert_int_eq(kd_feature_loss_forward(l, s, 4, 1, 1, t, 4, 1, 1, 3, &v), KD_OK);
    ck_assert_int_eq(kd_feature_loss_backward(l, g), KD_OK);
    float nan_s[12];
    memcpy(nan_s, s, sizeof s);
    nan_s[7] = NAN;
    ck_assert_int_eq(kd_feature_loss_forward(l, nan_s, 4, 1, 1, t, 4, 1, 1, 3, &w), KD_ERR_NUMERIC);
    ck_assert_int_eq(kd_feature_loss_forward(l, t, 4, 1, 1, nan_s, 4, 1, 1, 3, &w), KD_ERR_NUMERIC);
    ck_assert_int_eq(kd_feature_loss_forward(l, NULL, 4, 1, 1, t, 4, 1, 1, 3, &w), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_feature_loss_forward(l, s, 4, 1, 1, NULL, 4, 1, 1, 3, &w), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_feature_loss_forward(l, s, 4, 1, 1, t, 4, 1, 1, 3, NULL), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_feature_loss_forward(NULL, s, 4, 1, 1, t, 4, 1, 1, 3, &w), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_feature_loss_backward(l, NULL), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_feature_loss_backward(l, g2), KD_OK);
    ck_assert(memcmp(g, g2, sizeof g) == 0);
    ck_assert(l->value == (double)v || fabs(l->value - v) < 1e-6);
    /* options */
    ck_assert_int_eq(kd_feature_loss_get_float(l, KD_FEATURE_RKD_DISTANCE_WEIGHT, &w), KD_OK);
    ck_assert(w == 25.0f);
    ck_assert_int_eq(kd_feature_loss_get_float(l, KD_FEATURE_RKD_ANGLE_WEIGHT, &w), KD_OK);
    ck_assert(w == 50.0f);
    ck_assert_int_eq(kd_feature_loss_set_float(l, KD_FEATURE_RKD_ANGLE_WEIGHT, -1.0f),
                     KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_feature_loss_set_float(l, KD_FEATURE_RKD_ANGLE_WEIGHT, NAN),
                     KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_feature_loss_set_float(l, (kd_feature_loss_option)2, 1.0f),
                     KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_feature_loss_get_float(l, (kd_feature_loss_option)-1, &w), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_feature_loss_get_float(l, KD_FEATURE_RKD_ANGLE_WEIGHT, &w), KD_OK);
    ck_assert(w == 50.0f);
    ck_assert_int_eq(kd_feature_loss_create((kd_feature_loss_kind)6, &bad), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_feature_loss_create(KD_FEATURE_PKT, NULL), KD_ERR_ARGUMENT);
    kd_feature_loss_destroy(NULL);
    kd_feature_loss_destroy(l);
}
END_TEST

/* ---------------------------------------------------------------- CRD (issue 12) */

static void crd_feat(float *x, int64_t rows, double offset, double scale)
{
    for (int64_t i = 0; i < rows * 5; i++) x[i] = (float)(sin(0.37 * (double)i + offset) * scale);
}

static void crd_set(kd_feature_loss *l, kd_feature_loss_option key, float v)
{
    ck_assert_int_eq(kd_feature_loss_set_float(l, key, v), KD_OK);
}

/* tests/reference/crd_reference.py (PyTorch autograd, float64): three forwards through one memory
 * of 4 slots, momentum 0 then 0.5. */
START_TEST(crd_reference_values)
{
    float sa[20], ta[20], sb[15], tb[15], sc[10], tc[10], g[15], v;
    crd_feat(sa, 4, 0.0, 1.5);
    crd_feat(ta, 4, 1.0, 2.0);
    crd_feat(sb, 3, 2.0, 1.0);
    crd_feat(tb, 3, 3.0, 0.7);
    crd_feat(sc, 2, 4.0, 2.5);
    crd_feat(tc, 2, 5.0, 1.2);
    kd_feature_loss *l = make(KD_FEATURE_CRD);
    crd_set(l, KD_FEATURE_CRD_NEGATIVES, 4.0f);
    crd_set(l, KD_FEATURE_CRD_TEMPERATURE, 0.2f);
    crd_set(l, KD_FEATURE_CRD_MOMENTUM, 0.0f);
    ck_assert_int_eq(kd_feature_loss_forward(l, sa, 5, 1, 1, ta, 5, 1, 1, 4, &v), KD_OK);
    crd_set(l, KD_FEATURE_CRD_MOMENTUM, 0.5f);
    ck_assert_int_eq(kd_feature_loss_forward(l, sb, 5, 1, 1, tb, 5, 1, 1, 3, &v), KD_OK);
    ck_assert_msg(fabs(v - 1.9085019733) < 2e-6, "CRD loss B %.9g", (double)v);
    static const double want[15] = {-0.1691515726, 0.3674303087,  0.8542822093,  1.2255109813,
                                    1.4308726491,  0.1812310785,  0.1023997370,  0.0097090967,
                                    -0.0842956347, -0.1668913519, -0.1198160390, -0.1233626806,
                                    -0.1102127524, -0.0821460546, -0.0429612732};
    ck_assert_int_eq(kd_feature_loss_backward(l, g), KD_OK);
    for (int i = 0; i < 15; i++)
        ck_assert_msg(fabs(g[i] - want[i]) < 2e-5, "CRD grad[%d] %.9g, want %.9g", i, (double)g[i],
                      want[i]);
    ck_assert_int_eq(kd_feature_loss_forward(l, sc, 5, 1, 1, tc, 5, 1, 1, 2, &v), KD_OK);
    ck_assert_msg(fabs(v - 1.7363536615) < 2e-6, "CRD loss C %.9g", (double)v);
    kd_feature_loss_destroy(l);
}
END_TEST

/* With the memory frozen (momentum 1) the loss is a function of the student's feature alone. */
START_TEST(crd_gradients)
{
    static const float taus[] = {0.07f, 0.5f};
    for (int k = 0; k < 2; k++) {
        int64_t batch = 5, d = 12;
        float s[60], t[60], g[60], v;
        kdt_fill(s, batch * d, 10 + (uint64_t)k, -1.0f, 1.0f);
        kdt_fill(t, batch * d, 20 + (uint64_t)k, -1.0f, 1.0f);
        kd_feature_loss *l = make(KD_FEATURE_CRD);
        crd_set(l, KD_FEATURE_CRD_NEGATIVES, 16.0f);
        crd_set(l, KD_FEATURE_CRD_TEMPERATURE, taus[k]);
        crd_set(l, KD_FEATURE_CRD_MOMENTUM, 1.0f);
        crd_set(l, KD_FEATURE_CRD_SEED, 3.0f);
        kdi_shape sh = {d, 1, 1};
        ck_assert_int_eq(kd_feature_loss_forward(l, s, d, 1, 1, t, d, 1, 1, batch, &v), KD_OK);
        ck_assert_int_eq(kd_feature_loss_backward(l, g), KD_OK);
        fd_ctx c = {l, s, t, sh, sh, batch};
        double err = kdt_gradcheck(objective, &c, s, g, batch * d, 1e-3, 60);
        ck_assert_msg(err < 2e-2, "CRD tau %g: gradient error %g", (double)taus[k], err);
        double fd, an;
        kdt_directional(objective, &c, s, g, batch * d, 7, &fd, &an);
        ck_assert_msg(fabs(fd - an) < 1e-2 * fmax(1.0, fabs(an)), "CRD directional %g vs %g", fd,
                      an);
        kd_feature_loss_destroy(l);
    }
}
END_TEST

/* Same seed, same memory, same values; options checked; the memory moves with momentum < 1. */
START_TEST(crd_memory_and_options)
{
    float s[24], t[24], v1, v2, v3, w;
    kdt_fill(s, 24, 1, -1.0f, 1.0f);
    kdt_fill(t, 24, 2, -1.0f, 1.0f);
    kd_feature_loss *a = make(KD_FEATURE_CRD), *b = make(KD_FEATURE_CRD);
    crd_set(a, KD_FEATURE_CRD_NEGATIVES, 8.0f);
    crd_set(b, KD_FEATURE_CRD_NEGATIVES, 8.0f);
    ck_assert_int_eq(kd_feature_loss_forward(a, s, 6, 1, 1, t, 6, 1, 1, 4, &v1), KD_OK);
    ck_assert_int_eq(kd_feature_loss_forward(b, s, 6, 1, 1, t, 6, 1, 1, 4, &v2), KD_OK);
    ck_assert(v1 == v2);
    ck_assert_int_eq(kd_feature_loss_forward(a, s, 6, 1, 1, t, 6, 1, 1, 4, &v3), KD_OK);
    ck_assert(v3 != v1); /* the memory took the batch */
    ck_assert_int_eq(kd_feature_loss_get_float(a, KD_FEATURE_CRD_TEMPERATURE, &w), KD_OK);
    ck_assert(fabsf(w - 0.07f) < 1e-9f);
    ck_assert_int_eq(kd_feature_loss_get_float(a, KD_FEATURE_CRD_MOMENTUM, &w), KD_OK);
    ck_assert(w == 0.5f);
    ck_assert_int_eq(kd_feature_loss_set_float(a, KD_FEATURE_CRD_TEMPERATURE, 0.0f),
                     KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_feature_loss_set_float(a, KD_FEATURE_CRD_NEGATIVES, 2.5f), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_feature_loss_set_float(a, KD_FEATURE_CRD_NEGATIVES, 0.0f), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_feature_loss_set_float(a, KD_FEATURE_CRD_MOMENTUM, 1.5f), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_feature_loss_set_float(a, KD_FEATURE_CRD_SEED, 0.5f), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_feature_loss_set_float(a, (kd_feature_loss_option)9, 1.0f),
                     KD_ERR_ARGUMENT);
    /* equal sizes only: the regressor is the student's projection head */
    ck_assert_int_eq(kd_feature_loss_forward(a, s, 6, 1, 1, t, 4, 1, 1, 4, &v1), KD_ERR_SHAPE);
    kd_feature_loss_destroy(a);
    kd_feature_loss_destroy(b);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("losses_feature");
    TCase *t = tcase_create("core");
    tcase_add_test(t, hand_computed_values);
    tcase_add_test(t, tiny_by_hand);
    tcase_add_test(t, gradients);
    tcase_add_test(t, single_example_relations);
    tcase_add_test(t, shape_rules);
    tcase_add_test(t, bad_input_leaves_handle);
    tcase_add_test(t, crd_reference_values);
    tcase_add_test(t, crd_gradients);
    tcase_add_test(t, crd_memory_and_options);
    suite_add_tcase(s, t);
    return s;
}

int main(void) { return kdt_run(suite()); }
