/* The AVX2 variant, compiled with -mavx2 -mfma: 8 floats a vector; a remainder goes through masked
 * loads and stores (only for the last vector: AMD's vmaskmovps store is slow), so every loop has
 * one body. GEMM goes to OpenBLAS. exp, erfc and tanh are vectorised here (the same approximations
 * as avx512.c, accurate to a few ulp); long sums accumulate in double lanes, as the reference does. */
#include <cblas.h>
#include <immintrin.h>
#include <limits.h>
#include <math.h>

#include "kernels/kernels.h"

#define W 8

/* ---------------------------------------------------------------- GEMM */

/* cblas_sgemm takes int sizes and reports bad arguments by printing (xerbla); what it would not
 * take, and the empty sum k == 0, goes to the reference loop, which never prints. */
static int cblas_takes(int ta, int tb, int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb,
                       int64_t ldc)
{
    int64_t need_a = ta ? m : k, need_b = tb ? k : n;
    return k > 0 && m <= INT_MAX && n <= INT_MAX && k <= INT_MAX && lda <= INT_MAX &&
           ldb <= INT_MAX && ldc <= INT_MAX && lda >= need_a && ldb >= need_b && ldc >= n;
}

static void gemm(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                 int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    if (m <= 0 || n <= 0) return;
    if (!cblas_takes(ta, tb, m, n, k, lda, ldb, ldc)) {
        kdi_kernels_ref.gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                (int)m, (int)n, (int)k, alpha, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

/* ---------------------------------------------------------------- loads, stores, maths */

/* All ones in the lanes below `left`. */
static inline __m256i lanes(int64_t left)
{
    int n = left >= W ? W : (int)left;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* The W values at p, or the first `left` of them and zeros. */
static inline __m256 ld(const float *p, int64_t left)
{
    return left >= W ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, lanes(left));
}

static inline void st(float *p, int64_t left, __m256 v)
{
    if (left >= W)
        _mm256_storeu_ps(p, v);
    else
        _mm256_maskstore_ps(p, lanes(left), v);
}

static inline __m256 set1(float x) { return _mm256_set1_ps(x); }

static inline __m256 v_abs(__m256 x) { return _mm256_andnot_ps(set1(-0.0f), x); }

/* 2^n for integral n in [-252, 254], as two factors that are normal floats, so the product
 * overflows to inf and underflows gradually just as the exact power would. */
static inline __m256 v_scale2(__m256 x, __m256 n)
{
    __m256i ni = _mm256_cvtps_epi32(n), half = _mm256_srai_epi32(ni, 1),
            bias = _mm256_set1_epi32(127);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(half, bias), 23));
    __m256i rest = _mm256_sub_epi32(ni, half);
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(rest, bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(x, s1), s2);
}

/* exp(x) = 2^n exp(r), n = round(x / ln 2), |r| <= ln 2 / 2, ln 2 split in two so n ln 2 is exact
 * (Cody and Waite); exp(r) by Cephes expf's polynomial (Moshier 1989), about 1 ulp. NaN passes
 * through the clamp (min and max return their second operand for NaN). */
static inline __m256 v_exp(__m256 x)
{
    x = _mm256_max_ps(set1(-104.0f), _mm256_min_ps(set1(89.0f), x));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, set1(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, set1(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, set1(-2.12194440e-4f), r);
    __m256 p = set1(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, set1(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, set1(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, set1(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, set1(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, set1(5.0000001201e-1f));
    p = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), set1(1.0f));
    return v_scale2(p, n);
}

/* erfc(z) for z >= 0 by the Chebyshev fit of Press et al., Numerical Recipes (2nd ed.) 6.2,
 * erfc(z) = t exp(-z^2 + P(t)), t = 1 / (1 + z / 2): relative error below 1.2e-7 for every z. */
static inline __m256 v_erfc_pos(__m256 z)
{
    __m256 t = _mm256_div_ps(set1(1.0f), _mm256_fmadd_ps(set1(0.5f), z, set1(1.0f)));
    __m256 p = set1(0.17087277f);
    p = _mm256_fmadd_ps(p, t, set1(-0.82215223f));
    p = _mm256_fmadd_ps(p, t, set1(1.48851587f));
    p = _mm256_fmadd_ps(p, t, set1(-1.13520398f));
    p = _mm256_fmadd_ps(p, t, set1(0.27886807f));
    p = _mm256_fmadd_ps(p, t, set1(-0.18628806f));
    p = _mm256_fmadd_ps(p, t, set1(0.09678418f));
    p = _mm256_fmadd_ps(p, t, set1(0.37409196f));
    p = _mm256_fmadd_ps(p, t, set1(1.00002368f));
    p = _mm256_fmadd_ps(p, t, set1(-1.26551223f));
    return _mm256_mul_ps(t, v_exp(_mm256_fnmadd_ps(z, z, p)));
}

/* The standard normal CDF, Phi(x) = erfc(-x / sqrt 2) / 2, with erfc(u) = 2 - erfc(-u) for u < 0:
 * no cancellation in the lower tail. */
static inline __m256 v_norm_cdf(__m256 x)
{
    __m256 u = _mm256_mul_ps(x, set1(-0.7071067811865476f));
    __m256 half = _mm256_mul_ps(set1(0.5f), v_erfc_pos(v_abs(u)));
    __m256 neg = _mm256_cmp_ps(u, _mm256_setzero_ps(), _CMP_LT_OQ);
    return _mm256_blendv_ps(half, _mm256_sub_ps(set1(1.0f), half), neg);
}

/* tanh: Cephes tanhf (Moshier 1989), an odd polynomial for |x| < 0.625 and
 * 1 - 2 / (exp(2|x|) + 1) with the sign of x beyond, where that form has no cancellation. */
static inline __m256 v_tanh(__m256 x)
{
    __m256 ax = v_abs(x);
    __m256 big = _mm256_sub_ps(
        set1(1.0f),
        _mm256_div_ps(set1(2.0f), _mm256_add_ps(v_exp(_mm256_add_ps(ax, ax)), set1(1.0f))));
    big = _mm256_or_ps(big, _mm256_and_ps(x, set1(-0.0f)));
    __m256 z = _mm256_mul_ps(x, x), p = set1(-5.70498872745e-3f);
    p = _mm256_fmadd_ps(p, z, set1(2.06390887954e-2f));
    p = _mm256_fmadd_ps(p, z, set1(-5.37397155531e-2f));
    p = _mm256_fmadd_ps(p, z, set1(1.33314422036e-1f));
    p = _mm256_fmadd_ps(p, z, set1(-3.33332819422e-1f));
    __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(p, z), x, x);
    return _mm256_blendv_ps(big, small, _mm256_cmp_ps(ax, set1(0.625f), _CMP_LT_OQ));
}

static inline __m256d lo_pd(__m256 v) { return _mm256_cvtps_pd(_mm256_castps256_ps128(v)); }

static inline __m256d hi_pd(__m256 v) { return _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)); }

static inline double hsum_pd(__m256d v)
{
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

static inline float hmax_ps(__m256 v)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
}

/* ---------------------------------------------------------------- bias */

static void bias_add(float *y, const float *bias, int64_t rows, int64_t cols)
{
    for (int64_t r = 0; r < rows; r++) {
        float *yr = y + r * cols;
        for (int64_t j = 0; j < cols; j += W)
            st(yr + j, cols - j, _mm256_add_ps(ld(yr + j, cols - j), ld(bias + j, cols - j)));
    }
}

/* Each column summed over the rows in order, in double: the reference's sum, bit for bit. */
static void bias_grad(float *gbias, const float *dy, int64_t rows, int64_t cols)
{
    for (int64_t j = 0; j < cols; j += W) {
        __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
        for (int64_t r = 0; r < rows; r++) {
            __m256 v = ld(dy + r * cols + j, cols - j);
            lo = _mm256_add_pd(lo, lo_pd(v));
            hi = _mm256_add_pd(hi, hi_pd(v));
        }
        __m256 sum = _mm256_set_m128(_mm256_cvtpd_ps(hi), _mm256_cvtpd_ps(lo));
        st(gbias + j, cols - j, _mm256_add_ps(ld(gbias + j, cols - j), sum));
    }
}

/* ---------------------------------------------------------------- activations */

static void relu_fwd(float *y, const float *x, int64_t n)
{
    /* max returns its second operand for NaN and for -0: 0, as the reference's x > 0 ? x : 0 */
    for (int64_t i = 0; i < n; i += W)
        st(y + i, n - i, _mm256_max_ps(ld(x + i, n - i), _mm256_setzero_ps()));
}

static void relu_bwd(float *dx, const float *x, const float *dy, int64_t n)
{
    for (int64_t i = 0; i < n; i += W) {
        __m256 pos = _mm256_cmp_ps(ld(x + i, n - i), _mm256_setzero_ps(), _CMP_GT_OQ);
        st(dx + i, n - i, _mm256_and_ps(pos, ld(dy + i, n - i)));
    }
}

static void leaky_relu_fwd(float *y, const float *x, int64_t n, float slope)
{
    for (int64_t i = 0; i < n; i += W) {
        __m256 v = ld(x + i, n - i);
        __m256 pos = _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_GT_OQ);
        st(y + i, n - i, _mm256_blendv_ps(_mm256_mul_ps(v, set1(slope)), v, pos));
    }
}

static void leaky_relu_bwd(float *dx, const float *x, const float *dy, int64_t n, float slope)
{
    for (int64_t i = 0; i < n; i += W) {
        __m256 g = ld(dy + i, n - i);
        __m256 pos = _mm256_cmp_ps(ld(x + i, n - i), _mm256_setzero_ps(), _CMP_GT_OQ);
        st(dx + i, n - i, _mm256_blendv_ps(_mm256_mul_ps(g, set1(slope)), g, pos));
    }
}

/* GELU(x) = x Phi(x) (Hendrycks and Gimpel 2016), exact erf form as the reference. */
static void gelu_fwd(float *y, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i += W) {
        __m256 v = ld(x + i, n - i);
        st(y + i, n - i, _mm256_mul_ps(v, v_norm_cdf(v)));
    }
}

/* d/dx x Phi(x) = Phi(x) + x exp(-x^2 / 2) / sqrt(2 pi). */
static void gelu_bwd(float *dx, const float *x, const float *dy, int64_t n)
{
    for (int64_t i = 0; i < n; i += W) {
        __m256 v = ld(x + i, n - i);
        __m256 pdf = _mm256_mul_ps(set1(0.3989422804014327f),
                                   v_exp(_mm256_mul_ps(set1(-0.5f), _mm256_mul_ps(v, v))));
        __m256 d = _mm256_fmadd_ps(v, pdf, v_norm_cdf(v));
        st(dx + i, n - i, _mm256_mul_ps(ld(dy + i, n - i), d));
    }
}

static void tanh_fwd(float *y, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i += W) st(y + i, n - i, v_tanh(ld(x + i, n - i)));
}

static void tanh_bwd(float *dx, const float *y, const float *dy, int64_t n)
{
    for (int64_t i = 0; i < n; i += W) {
        __m256 v = ld(y + i, n - i);
        __m256 d = _mm256_fnmadd_ps(v, v, set1(1.0f));
        st(dx + i, n - i, _mm256_mul_ps(ld(dy + i, n - i), d));
    }
}

static void sigmoid_fwd(float *y, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i += W) {
        __m256 e = v_exp(_mm256_xor_ps(ld(x + i, n - i), set1(-0.0f)));
        st(y + i, n - i, _mm256_div_ps(set1(1.0f), _mm256_add_ps(set1(1.0f), e)));
    }
}

static void sigmoid_bwd(float *dx, const float *y, const float *dy, int64_t n)
{
    for (int64_t i = 0; i < n; i += W) {
        __m256 v = ld(y + i, n - i);
        __m256 d = _mm256_mul_ps(v, _mm256_sub_ps(set1(1.0f), v));
        st(dx + i, n - i, _mm256_mul_ps(ld(dy + i, n - i), d));
    }
}

/* ---------------------------------------------------------------- softmax rows */

static float row_max(const float *z, int64_t cols)
{
    __m256 m = set1(-INFINITY);
    for (int64_t j = 0; j < cols; j += W) {
        /* the lanes past the row must not win: -inf there */
        __m256 v = _mm256_blendv_ps(set1(-INFINITY), ld(z + j, cols - j),
                                    _mm256_castsi256_ps(lanes(cols - j)));
        m = _mm256_max_ps(m, v);
    }
    return hmax_ps(m);
}

/* exp((z - m) inv_t) for the lanes that exist, 0 for the others. */
static inline __m256 shifted_exp(const float *z, int64_t left, __m256 m, __m256 inv_t)
{
    __m256 e = v_exp(_mm256_mul_ps(_mm256_sub_ps(ld(z, left), m), inv_t));
    return left >= W ? e : _mm256_and_ps(e, _mm256_castsi256_ps(lanes(left)));
}

static void softmax_rows(float *p, const float *z, int64_t rows, int64_t cols, float inv_t)
{
    if (cols <= 0) return;
    for (int64_t r = 0; r < rows; r++) {
        const float *zr = z + r * cols;
        float *pr = p + r * cols;
        __m256 m = set1(row_max(zr, cols)), it = set1(inv_t);
        __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
        for (int64_t j = 0; j < cols; j += W) {
            __m256 e = shifted_exp(zr + j, cols - j, m, it);
            lo = _mm256_add_pd(lo, lo_pd(e));
            hi = _mm256_add_pd(hi, hi_pd(e));
            st(pr + j, cols - j, e);
        }
        __m256 inv = set1((float)(1.0 / hsum_pd(_mm256_add_pd(lo, hi))));
        for (int64_t j = 0; j < cols; j += W)
            st(pr + j, cols - j, _mm256_mul_ps(ld(pr + j, cols - j), inv));
    }
}

static void log_softmax_rows(float *lp, const float *z, int64_t rows, int64_t cols, float inv_t)
{
    if (cols <= 0) return;
    for (int64_t r = 0; r < rows; r++) {
        const float *zr = z + r * cols;
        float *out = lp + r * cols;
        __m256 m = set1(row_max(zr, cols)), it = set1(inv_t);
        __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
        for (int64_t j = 0; j < cols; j += W) {
            __m256 e = shifted_exp(zr + j, cols - j, m, it);
            lo = _mm256_add_pd(lo, lo_pd(e));
            hi = _mm256_add_pd(hi, hi_pd(e));
        }
        __m256 log_s = set1((float)log(hsum_pd(_mm256_add_pd(lo, hi))));
        for (int64_t j = 0; j < cols; j += W) {
            __m256 s = _mm256_mul_ps(_mm256_sub_ps(ld(zr + j, cols - j), m), it);
            st(out + j, cols - j, _mm256_sub_ps(s, log_s));
        }
    }
}

/* ---------------------------------------------------------------- vectors */

static void axpy(float *y, float a, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i += W)
        st(y + i, n - i, _mm256_fmadd_ps(set1(a), ld(x + i, n - i), ld(y + i, n - i)));
}

static void scale(float *x, float a, int64_t n)
{
    for (int64_t i = 0; i < n; i += W) st(x + i, n - i, _mm256_mul_ps(ld(x + i, n - i), set1(a)));
}

static void mul(float *y, const float *x, const float *mask, float s, int64_t n)
{
    for (int64_t i = 0; i < n; i += W) {
        __m256 v = _mm256_mul_ps(ld(x + i, n - i), ld(mask + i, n - i));
        st(y + i, n - i, _mm256_mul_ps(v, set1(s)));
    }
}

/* acc[0..1] += a * b, the 8 products in double. */
static inline void fma_double(__m256d *acc, __m256 a, __m256 b)
{
    acc[0] = _mm256_fmadd_pd(lo_pd(a), lo_pd(b), acc[0]);
    acc[1] = _mm256_fmadd_pd(hi_pd(a), hi_pd(b), acc[1]);
}

/* Products of two floats are exact in double, so this differs from the reference's sequential
 * sum only by the order of the additions (four chains, to hide the adder's latency). */
static double dot(const float *x, const float *y, int64_t n)
{
    __m256d acc[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(),
                      _mm256_setzero_pd()};
    int64_t i = 0;
    for (; i + 2 * W <= n; i += 2 * W) {
        fma_double(acc, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i));
        fma_double(acc + 2, _mm256_loadu_ps(x + i + W), _mm256_loadu_ps(y + i + W));
    }
    for (; i < n; i += W) fma_double(acc, ld(x + i, n - i), ld(y + i, n - i));
    return hsum_pd(_mm256_add_pd(_mm256_add_pd(acc[0], acc[1]), _mm256_add_pd(acc[2], acc[3])));
}

static double sum(const float *x, int64_t n)
{
    __m256d acc[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(),
                      _mm256_setzero_pd()};
    int64_t i = 0;
    for (; i + 2 * W <= n; i += 2 * W) {
        __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + W);
        acc[0] = _mm256_add_pd(acc[0], lo_pd(a));
        acc[1] = _mm256_add_pd(acc[1], hi_pd(a));
        acc[2] = _mm256_add_pd(acc[2], lo_pd(b));
        acc[3] = _mm256_add_pd(acc[3], hi_pd(b));
    }
    for (; i < n; i += W) {
        __m256 a = ld(x + i, n - i);
        acc[0] = _mm256_add_pd(acc[0], lo_pd(a));
        acc[1] = _mm256_add_pd(acc[1], hi_pd(a));
    }
    return hsum_pd(_mm256_add_pd(_mm256_add_pd(acc[0], acc[1]), _mm256_add_pd(acc[2], acc[3])));
}

static double sum_sq(const float *x, int64_t n) { return dot(x, x, n); }

/* ---------------------------------------------------------------- optimizer updates */

/* PyTorch's SGD, as the reference: g' = g + wd w; v = mu v + g'; w -= lr (nesterov ? g' + mu v : v). */
static void sgd_update(float *w, float *v, const float *g, int64_t n, float lr, float momentum,
                       float weight_decay, int nesterov)
{
    __m256 vlr = set1(lr), mu = set1(momentum), wd = set1(weight_decay);
    for (int64_t i = 0; i < n; i += W) {
        int64_t left = n - i;
        __m256 wi = ld(w + i, left), d = _mm256_fmadd_ps(wd, wi, ld(g + i, left));
        if (momentum != 0.0f) {
            __m256 vi = _mm256_fmadd_ps(mu, ld(v + i, left), d);
            st(v + i, left, vi);
            d = nesterov ? _mm256_fmadd_ps(mu, vi, d) : vi;
        }
        st(w + i, left, _mm256_fnmadd_ps(vlr, d, wi));
    }
}

/* Adam(W) in torch.optim.Adam's order of operations, as the reference. */
static void adam_update(float *w, float *m, float *v, const float *g, int64_t n, float lr,
                        float beta1, float beta2, float eps, float weight_decay, float bias_corr1,
                        float bias_corr2, int decoupled)
{
    __m256 keep = set1(decoupled ? 1.0f - lr * weight_decay : 1.0f);
    __m256 l2 = set1(decoupled ? 0.0f : weight_decay);
    __m256 b1 = set1(beta1), c1 = set1(1.0f - beta1), b2 = set1(beta2), c2 = set1(1.0f - beta2);
    __m256 step = set1(lr / bias_corr1), sqrt_bc2 = set1(sqrtf(bias_corr2)), e = set1(eps);
    for (int64_t i = 0; i < n; i += W) {
        int64_t left = n - i;
        __m256 wi = ld(w + i, left), d = _mm256_fmadd_ps(l2, wi, ld(g + i, left));
        __m256 mi = _mm256_fmadd_ps(b1, ld(m + i, left), _mm256_mul_ps(c1, d));
        __m256 vi = _mm256_fmadd_ps(b2, ld(v + i, left), _mm256_mul_ps(_mm256_mul_ps(c2, d), d));
        __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vi), sqrt_bc2), e);
        __m256 upd = _mm256_div_ps(_mm256_mul_ps(step, mi), denom);
        st(m + i, left, mi);
        st(v + i, left, vi);
        st(w + i, left, _mm256_sub_ps(_mm256_mul_ps(wi, keep), upd));
    }
}

const kdi_kernels kdi_kernels_avx2 = {
    .name = "avx2",
    .gemm = gemm,
    .bias_add = bias_add,
    .bias_grad = bias_grad,
    .relu_fwd = relu_fwd,
    .relu_bwd = relu_bwd,
    .leaky_relu_fwd = leaky_relu_fwd,
    .leaky_relu_bwd = leaky_relu_bwd,
    .gelu_fwd = gelu_fwd,
    .gelu_bwd = gelu_bwd,
    .tanh_fwd = tanh_fwd,
    .tanh_bwd = tanh_bwd,
    .sigmoid_fwd = sigmoid_fwd,
    .sigmoid_bwd = sigmoid_bwd,
    .softmax_rows = softmax_rows,
    .log_softmax_rows = log_softmax_rows,
    .axpy = axpy,
    .scale = scale,
    .mul = mul,
    .sum = sum,
    .sum_sq = sum_sq,
    .dot = dot,
    .sgd_update = sgd_update,
    .adam_update = adam_update,
};
