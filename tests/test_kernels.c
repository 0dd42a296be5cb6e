/* Every kernel variant this CPU supports against the portable reference, on awkward sizes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "testutil.h"

static const int64_t sizes[] = {1, 7, 16, 33, 1000, 4097};
#define NSIZES (sizeof sizes / sizeof sizes[0])
#define MAXN 4097

/* Relative tolerances: elementwise kernels agree to rounding; sums and GEMM to their length. */
#define TOL_ELEM 1e-6f
#define TOL_SUM 1e-5

static const char *variants[] = {"avx2", "avx512"};

static float *buf(uint64_t seed, float lo, float hi)
{
    float *p = malloc(sizeof(float) * MAXN);
    kdt_fill(p, MAXN, seed, lo, hi);
    return p;
}

static void close_all(const float *a, const float *b, int64_t n, float tol, const char *what)
{
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(fabsf(a[i] - b[i]) <= tol * fmaxf(1.0f, fabsf(b[i])), "%s[%lld]: %g vs %g",
                      what, (long long)i, (double)a[i], (double)b[i]);
}

/* Runs one unary kernel of both tables and compares. */
#define CHECK_UNARY(field, lo, hi)                                                                 \
    do {                                                                                           \
        float *x = buf(1, lo, hi), *dy = buf(2, -1, 1), *y1 = buf(0, 0, 0), *y2 = buf(0, 0, 0);    \
        for (size_t s = 0; s < NSIZES; s++) {                                                      \
            ref->field##_fwd(y1, x, sizes[s]);                                                     \
            k->field##_fwd(y2, x, sizes[s]);                                                       \
            close_all(y2, y1, sizes[s], TOL_ELEM, #field "_fwd");                                  \
        }                                                                                          \
        free(x), free(dy), free(y1), free(y2);                                                     \
    } while (0)

START_TEST(elementwise)
{
    const kdi_kernels *ref = &kdi_kernels_ref;
    for (size_t v = 0; v < 2; v++) {
        const kdi_kernels *k = kdi_kernels_variant(variants[v]);
        if (k == NULL) continue;
        CHECK_UNARY(relu, -2, 2);
        CHECK_UNARY(gelu, -5, 5);
        CHECK_UNARY(tanh, -5, 5);
        CHECK_UNARY(sigmoid, -20, 20);
        float *x = buf(3, -3, 3), *y = buf(4, 0.1f, 0.9f), *dy = buf(5, -1, 1);
        float *a = buf(0, 0, 0), *b = buf(0, 0, 0), *m = buf(6, 0, 1);
        for (int64_t i = 0; i < MAXN; i++) m[i] = m[i] > 0.5f ? 1.0f : 0.0f;
        for (size_t s = 0; s < NSIZES; s++) {
            int64_t n = sizes[s];
            ref->relu_bwd(a, x, dy, n), k->relu_bwd(b, x, dy, n);
            close_all(b, a, n, TOL_ELEM, "relu_bwd");
            ref->leaky_relu_fwd(a, x, n, 0.1f), k->leaky_relu_fwd(b, x, n, 0.1f);
            close_all(b, a, n, TOL_ELEM, "leaky_relu_fwd");
            ref->leaky_relu_bwd(a, x, dy, n, 0.1f), k->leaky_relu_bwd(b, x, dy, n, 0.1f);
            close_all(b, a, n, TOL_ELEM, "leaky_relu_bwd");
            ref->gelu_bwd(a, x, dy, n), k->gelu_bwd(b, x, dy, n);
            close_all(b, a, n, TOL_ELEM, "gelu_bwd");
            ref->tanh_bwd(a, y, dy, n), k->tanh_bwd(b, y, dy, n);
            close_all(b, a, n, TOL_ELEM, "tanh_bwd");
            ref->sigmoid_bwd(a, y, dy, n), k->sigmoid_bwd(b, y, dy, n);
            close_all(b, a, n, TOL_ELEM, "sigmoid_bwd");
            ref->mul(a, x, m, 1.25f, n), k->mul(b, x, m, 1.25f, n);
            close_all(b, a, n, TOL_ELEM, "mul");
            memcpy(a, y, sizeof(float) * n), memcpy(b, y, sizeof(float) * n);
            ref->axpy(a, -0.3f, x, n), k->axpy(b, -0.3f, x, n);
            close_all(b, a, n, TOL_ELEM, "axpy");
            ref->scale(a, 1.7f, n), k->scale(b, 1.7f, n);
            close_all(b, a, n, TOL_ELEM, "scale");
            double r1 = ref->sum_sq(x, n), r2 = k->sum_sq(x, n);
            ck_assert_msg(fabs(r1 - r2) <= TOL_SUM * fmax(1.0, r1), "sum_sq %g vs %g", r2, r1);
            r1 = ref->dot(x, dy, n), r2 = k->dot(x, dy, n);
            ck_assert_msg(fabs(r1 - r2) <= TOL_SUM * fmax(1.0, ref->sum_sq(x, n)), "dot %g vs %g", r2, r1);
        }
        free(x), free(y), free(dy), free(a), free(b), free(m);
    }
}
END_TEST

START_TEST(rows)
{
    const kdi_kernels *ref = &kdi_kernels_ref;
    static const int64_t shapes[][2] = {{1, 1}, {3, 10}, {17, 7}, {128, 10}, {5, 1000}};
    float *z = malloc(sizeof(float) * 5000), *a = malloc(sizeof(float) * 5000);
    float *b = malloc(sizeof(float) * 5000), *bias = buf(9, -1, 1);
    for (size_t v = 0; v < 2; v++) {
        const kdi_kernels *k = kdi_kernels_variant(variants[v]);
        if (k == NULL) continue;
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            int64_t r = shapes[s][0], c = shapes[s][1], n = r * c;
            kdt_fill(z, n, 10 + s, -80, 80); /* large logits must not overflow */
            ref->softmax_rows(a, z, r, c, 0.25f), k->softmax_rows(b, z, r, c, 0.25f);
            close_all(b, a, n, 1e-5f, "softmax_rows");
            for (int64_t i = 0; i < r; i++) {
                double sum = 0;
                for (int64_t j = 0; j < c; j++) sum += b[i * c + j];
                ck_assert(fabs(sum - 1.0) < 1e-5);
            }
            ref->log_softmax_rows(a, z, r, c, 1.0f), k->log_softmax_rows(b, z, r, c, 1.0f);
            close_all(b, a, n, 1e-5f, "log_softmax_rows");
            for (int64_t i = 0; i < n; i++) ck_assert(isfinite(b[i]));
            memcpy(a, z, sizeof(float) * n), memcpy(b, z, sizeof(float) * n);
            ref->bias_add(a, bias, r, c), k->bias_add(b, bias, r, c);
            close_all(b, a, n, TOL_ELEM, "bias_add");
            memset(a, 0, sizeof(float) * c), memset(b, 0, sizeof(float) * c);
            ref->bias_grad(a, z, r, c), k->bias_grad(b, z, r, c);
            close_all(b, a, c, 1e-4f, "bias_grad");
        }
    }
    free(z), free(a), free(b), free(bias);
}
END_TEST

/* GEMM against a double-precision triple loop, all transposes, padded leading dimensions. */
START_TEST(gemm)
{
    static const int64_t shapes[][3] = {{1, 1, 1}, {7, 5, 3}, {33, 17, 65}, {128, 10, 800}};
    for (size_t v = 0; v < 3; v++) {
        const kdi_kernels *k = v == 2 ? &kdi_kernels_ref : kdi_kernels_variant(variants[v]);
        if (k == NULL) continue;
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int ta = 0; ta < 2; ta++)
                for (int tb = 0; tb < 2; tb++) {
                    int64_t m = shapes[s][0], n = shapes[s][1], kk = shapes[s][2];
                    int64_t lda = (ta ? m : kk) + 3, ldb = (tb ? kk : n) + 2, ldc = n + 1;
                    float *a = malloc(sizeof(float) * (ta ? kk : m) * lda);
                    float *b = malloc(sizeof(float) * (tb ? n : kk) * ldb);
                    float *c = malloc(sizeof(float) * m * ldc);
                    kdt_fill(a, (ta ? kk : m) * lda, 1, -1, 1);
                    kdt_fill(b, (tb ? n : kk) * ldb, 2, -1, 1);
                    kdt_fill(c, m * ldc, 3, -1, 1);
                    float *c0 = malloc(sizeof(float) * m * ldc);
                    memcpy(c0, c, sizeof(float) * m * ldc);
                    k->gemm(ta, tb, m, n, kk, 0.5f, a, lda, b, ldb, 0.25f, c, ldc);
                    for (int64_t i = 0; i < m; i++)
                        for (int64_t j = 0; j < n; j++) {
                            double sum = 0, norm = 0;
                            for (int64_t p = 0; p < kk; p++) {
                                double av = ta ? a[p * lda + i] : a[i * lda + p];
                                double bv = tb ? b[j * ldb + p] : b[p * ldb + j];
                                sum += av * bv;
                                norm += fabs(av * bv);
                            }
                            double want = 0.5 * sum + 0.25 * c0[i * ldc + j];
                            ck_assert_msg(fabs(c[i * ldc + j] - want) <= 1e-5 * (norm + 1),
                                          "%s gemm %lldx%lldx%lld ta=%d tb=%d", k->name,
                                          (long long)m, (long long)n, (long long)kk, ta, tb);
                        }
                    free(a), free(b), free(c), free(c0);
                }
    }
}
END_TEST

START_TEST(optimizer_updates)
{
    const kdi_kernels *ref = &kdi_kernels_ref;
    for (size_t v = 0; v < 2; v++) {
        const kdi_kernels *k = kdi_kernels_variant(variants[v]);
        if (k == NULL) continue;
        for (int variant = 0; variant < 4; variant++) {
            float *w1 = buf(1, -1, 1), *w2 = buf(1, -1, 1), *v1 = buf(2, -1, 1), *v2 = buf(2, -1, 1);
            float *m1 = buf(3, -1, 1), *m2 = buf(3, -1, 1), *g = buf(4, -1, 1);
            for (int64_t i = 0; i < MAXN; i++) v1[i] = v2[i] = fabsf(v1[i]);
            int64_t n = sizes[variant + 2];
            if (variant < 2) {
                float mu = variant == 0 ? 0.0f : 0.9f;
                ref->sgd_update(w1, v1, g, n, 0.05f, mu, 1e-4f, variant);
                k->sgd_update(w2, v2, g, n, 0.05f, mu, 1e-4f, variant);
            } else {
                ref->adam_update(w1, m1, v1, g, n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 0.1f, 0.001f, variant - 2);
                k->adam_update(w2, m2, v2, g, n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 0.1f, 0.001f, variant - 2);
                close_all(m2, m1, n, TOL_ELEM, "adam m");
            }
            close_all(w2, w1, n, 1e-5f, "update w");
            close_all(v2, v1, n, 1e-5f, "update v");
            free(w1), free(w2), free(v1), free(v2), free(m1), free(m2), free(g);
        }
    }
}
END_TEST

START_TEST(dispatch)
{
    ck_assert_ptr_nonnull(kdi_kernels_get());
    ck_assert_ptr_eq(kdi_kernels_variant("ref"), &kdi_kernels_ref);
    ck_assert_ptr_null(kdi_kernels_variant("nonsense"));
    ck_assert_ptr_null(kdi_kernels_variant(NULL));
    ck_assert_str_eq(kd_kernels_name(), kdi_kernels_get()->name);
    /* the table in use is the best supported one unless KD_KERNELS chose another */
    if (getenv("KD_KERNELS") == NULL) {
        const kdi_kernels *best = kdi_kernels_variant("avx512");
        if (best == NULL) best = kdi_kernels_variant("avx2");
        if (best == NULL) best = &kdi_kernels_ref;
        ck_assert_ptr_eq(kdi_kernels_get(), best);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("kernels");
    TCase *t = tcase_create("kernels");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, elementwise);
    tcase_add_test(t, rows);
    tcase_add_test(t, gemm);
    tcase_add_test(t, optimizer_updates);
    tcase_add_test(t, dispatch);
    suite_add_tcase(s, t);
    return kdt_run(s);
}
