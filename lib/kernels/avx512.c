/* The AVX-512 variant, compiled with -mavx512f -mavx512dq -mavx512bw -mavx512vl -mfma: 16 floats a
 * vector; a remainder goes through masked loads and stores, so every loop has one body. GEMM goes to
 * OpenBLAS. exp, erfc and tanh are vectorised here (the same approximations as avx2.c, accurate to
 * a few ulp); long sums accumulate in double lanes, as the reference does. */
#include <cblas.h>
#include <immintrin.h>
#include <limits.h>
#include <math.h>

#include "kernels/kernels.h"

#define W 16

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

static inline __mmask16 lanes(int64_t left)
{
    return left >= W ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
}

/* The W values at p, or the first `left` of them and zeros. */
static inline __m512 ld(const float *p, int64_t left)
{
    return _mm512_maskz_loadu_ps(lanes(left), p);
}

static inline void st(float *p, int64_t left, __m512 v)
{
    _mm512_mask_storeu_ps(p, lanes(left), v);
}

static inline __m512 set1(float x) { return _mm512_set1_ps(x); }

/* exp(x) = 2^n exp(r), n = round(x / ln 2), |r| <= ln 2 / 2, ln 2 split in two so n ln 2 is exact
 * (Cody and Waite); exp(r) by Cephes expf's polynomial (Moshier 1989), about 1 ulp. scalef applies
 * 2^n with IEEE overflow to inf and gradual underflow; NaN passes through. */
static inline __m512 v_exp(__m512 x)
{
    x = _mm512_max_ps(set1(-104.0f), _mm512_min_ps(set1(89.0f), x));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, set1(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, set1(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, set1(-2.12194440e-4f), r);
    __m512 p = set1(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, set1(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, set1(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, set1(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, set1(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, set1(5.0000001201e-1f));
    p = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), set1(1.0f));
    return _mm512_scalef_ps(p, n);
}

/* erfc(z) for z >= 0 by the Chebyshev fit of Press et al., Numerical Recipes (2nd ed.) 6.2,
 * erfc(z) = t exp(-z^2 + P(t)), t = 1 / (1 + z / 2): relative error below 1.2e-7 for every z. */
static inline __m512 v_erfc_pos(__m512 z)
{
    __m512 t = _mm512_div_ps(set1(1.0f), _mm512_fmadd_ps(set1(0.5f), z, set1(1.0f)));
    __m512 p = set1(0.17087277f);
    p = _mm512_fmadd_ps(p, t, set1(-0.82215223f));
    p = _mm512_fmadd_ps(p, t, set1(1.48851587f));
    p = _mm512_fmadd_ps(p, t, set1(-1.13520398f));
    p = _mm512_fmadd_ps(p, t, set1(0.27886807f));
    p = _mm512_fmadd_ps(p, t, set1(-0.18628806f));
    p = _mm512_fmadd_ps(p, t, set1(0.09678418f));
    p = _mm512_fmadd_ps(p, t, set1(0.37409196f));
    p = _mm512_fmadd_ps(p, t, set1(1.00002368f));
    p = _mm512_fmadd_ps(p, t, set1(-1.26551223f));
    return _mm512_mul_ps(t, v_exp(_mm512_fnmadd_ps(z, z, p)));
}

/* The standard normal CDF, Phi(x) = erfc(-x / sqrt 2) / 2, with erfc(u) = 2 - erfc(-u) for u < 0:
 * no cancellation in the lower tail. */
static inline __m512 v_norm_cdf(__m512 x)
{
    __m512 u = _mm512_mul_ps(x, set1(-0.7071067811865476f));
    __m512 half = _mm512_mul_ps(set1(0.5f), v_erfc_pos(_mm512_abs_ps(u)));
    __mmask16 neg = _mm512_cmp_ps_mask(u, _mm512_setzero_ps(), _CMP_LT_OQ);
    return _mm512_mask_sub_ps(half, neg, set1(1.0f), half);
}

/* tanh: Cephes tanhf (Moshier 1989), an odd polynomial for |x| < 0.625 and
 * 1 - 2 / (exp(2|x|) + 1) with the sign of x beyond, where that form has no cancellation. */
static inline __m512 v_tanh(__m512 x)
{
    __m512 ax = _mm512_abs_ps(x);
    __m512 big = _mm512_sub_ps(
        set1(1.0f),
        _mm512_div_ps(set1(2.0f), _mm512_add_ps(v_exp(_mm512_add_ps(ax, ax)), set1(1.0f))));
    big = _mm512_or_ps(big, _mm512_and_ps(x, set1(-0.0f)));
    __m512 z = _mm512_mul_ps(x, x), p = set1(-5.70498872745e-3f);
    p = _mm512_fmadd_ps(p, z, set1(2.06390887954e-2f));
    p = _mm512_fmadd_ps(p, z, set1(-5.37397155531e-2f));
    p = _mm512_fmadd_ps(p, z, set1(1.33314422036e-1f));
    p = _mm512_fmadd_ps(p, z, set1(-3.33332819422e-1f));
    __m512 small = _mm512_fmadd_ps(_mm512_mul_ps(p, z), x, x);
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(ax, set1(0.625f), _CMP_LT_OQ), big, small);
}

/* Sum of the 16 floats widened to double, added into two accumulators of 8. */
static inline void acc_double(__m512d *lo, __m512d *hi, __m512 v)
{
    *lo = _mm512_add_pd(*lo, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
    *hi = _mm512_add_pd(*hi, _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1)));
}

/* ---------------------------------------------------------------- bias */

static void bias_add(float *y, const float *bias, int64_t rows, int64_t cols)
{
    for (int64_t r = 0; r < rows; r++) {
        float *yr = y + r * cols;
        for (int64_t j = 0; j < cols; j += W)
            st(yr + j, cols - j, _mm512_add_ps(ld(yr + j, cols - j), ld(bias + j, cols - j)));
    }
}

/* Each column summed over the rows in order, in double: the reference's sum, bit for bit. */
static void bias_grad(float *gbias, const float *dy, int64_t rows, int64_t cols)
{
    for (int64_t j = 0; j < cols; j += W) {
        __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
        for (int64_t r = 0; r < rows; r++) acc_double(&lo, &hi, ld(dy + r * cols + j, cols - j));
        __m512 sum =
            _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(lo)), _mm512_cvtpd_ps(hi), 1);
        st(gbias + j, cols - j, _mm512_add_ps(ld(gbias + j, cols - j), sum));
    }
}

/* ---------------------------------------------------------------- activations */

static void relu_fwd(float *y, const float *x, int64_t n)
{
    /* max returns its second operand for NaN and for -0: 0, as the reference's x > 0 ? x : 0 */
    for (int64_t i = 0; i < n; i += W)
        st(y + i, n - i, _mm512_max_ps(ld(x + i, n - i), _mm512_setzero_ps()));
}

static void relu_bwd(float *dx, const float *x, const float *dy, int64_t n)
{
    for (int64_t i = 0; i < n; i += W) {
        __mmask16 pos = _mm512_cmp_ps_mask(ld(x + i, n - i), _mm512_setzero_ps(), _CMP_GT_OQ);
        st(dx + i, n - i, _mm512_maskz_mov_ps(pos, ld(dy + i, n - i)));
    }
}

static void leaky_relu_fwd(float *y, const float *x, int64_t n, float slope)
{
    for (int64_t i = 0; i < n; i += W) {
        __m512 v = ld(x + i, n - i);
        __mmask16 pos = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_GT_OQ);
        st(y + i, n - i, _mm512_mask_blend_ps(pos, _mm512_mul_ps(v, set1(slope)), v));
    }
}

static void leaky_relu_bwd(float *dx, const float *x, const float *dy, int64_t n, float slope)
{
    for (int64_t i = 0; i < n; i += W) {
        __m512 g = ld(dy + i, n - i);
        __mmask16 pos = _mm512_cmp_ps_mask(ld(x + i, n - i), _mm512_setzero_ps(), _CMP_GT_OQ);
        st(dx + i, n - i, _mm512_mask_blend_ps(pos, _mm512_mul_ps(g, set1(slope)), g));
    }
}

/* GELU(x) = x Phi(x) (Hendrycks and Gimpel 2016), exact erf form as the reference. */
static void gelu_fwd(float *y, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i += W) {
        __m512 v = ld(x + i, n - i);
        st(y + i, n - i, _mm512_mul_ps(v, v_norm_cdf(v)));
    }
}

/* d/dx x Phi(x) = Phi(x) + x exp(-x^2 / 2) / sqrt(2 pi). */
static void gelu_bwd(float *dx, const float *x, const float *dy, int64_t n)
{
    for (int64_t i = 0; i < n; i += W) {
        __m512 v = ld(x + i, n - i);
        __m512 pdf = _mm512_mul_ps(set1(0.3989422804014327f),
                                   v_exp(_mm512_mul_ps(set1(-0.5f), _mm512_mul_ps(v, v))));
        __m512 d = _mm512_fmadd_ps(v, pdf, v_norm_cdf(v));
        st(dx + i, n - i, _mm512_mul_ps(ld(dy + i, n - i), d));
    }
}

static void tanh_fwd(float *y, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i += W) st(y + i, n - i, v_tanh(ld(x + i, n - i)));
}

static void tanh_bwd(float *dx, const float *y, const float *dy, int64_t n)
{
    for (int64_t i = 0; i < n; i += W) {
        __m512 v = ld(y + i, n - i);
        __m512 d = _mm512_fnmadd_ps(v, v, set1(1.0f));
        st(dx + i, n - i, _mm512_mul_ps(ld(dy + i, n - i), d));
    }
}

static void sigmoid_fwd(float *y, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i += W) {
        __m512 e = v_exp(_mm512_xor_ps(ld(x + i, n - i), set1(-0.0f)));
        st(y + i, n - i, _mm512_div_ps(set1(1.0f), _mm512_add_ps(set1(1.0f), e)));
    }
}

static void sigmoid_bwd(float *dx, const float *y, const float *dy, int64_t n)
{
    for (int64_t i = 0; i < n; i += W) {
        __m512 v = ld(y + i, n - i);
        __m512 d = _mm512_mul_ps(v, _mm512_sub_ps(set1(1.0f), v));
        st(dx + i, n - i, _mm512_mul_ps(ld(dy + i, n - i), d));
    }
}

/* ---------------------------------------------------------------- softmax rows */

static float row_max(const float *z, int64_t cols)
{
    __m512 m = set1(-INFINITY);
    for (int64_t j = 0; j < cols; j += W)
        m = _mm512_mask_max_ps(m, lanes(cols - j), m, ld(z + j, cols - j));
    return _mm512_reduce_max_ps(m);
}

/* exp((z - m) inv_t) for the lanes that exist, 0 for the others. */
static inline __m512 shifted_exp(const float *z, int64_t left, __m512 m, __m512 inv_t)
{
    __m512 e = v_exp(_mm512_mul_ps(_mm512_sub_ps(ld(z, left), m), inv_t));
    return _mm512_maskz_mov_ps(lanes(left), e);
}

static void softmax_rows(float *p, const float *z, int64_t rows, int64_t cols, float inv_t)
{
    if (cols <= 0) return;
    for (int64_t r = 0; r < rows; r++) {
        const float *zr = z + r * cols;
        float *pr = p + r * cols;
        __m512 m = set1(row_max(zr, cols)), it = set1(inv_t);
        __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
        for (int64_t j = 0; j < cols; j += W) {
            __m512 e = shifted_exp(zr + j, cols - j, m, it);
            acc_double(&lo, &hi, e);
            st(pr + j, cols - j, e);
        }
        __m512 inv = set1((float)(1.0 / _mm512_reduce_add_pd(_mm512_add_pd(lo, hi))));
        for (int64_t j = 0; j < cols; j += W)
            st(pr + j, cols - j, _mm512_mul_ps(ld(pr + j, cols - j), inv));
    }
}

static void log_softmax_rows(float *lp, const float *z, int64_t rows, int64_t cols, float inv_t)
{
    if (cols <= 0) return;
    for (int64_t r = 0; r < rows; r++) {
        const float *zr = z + r * cols;
        float *out = lp + r * cols;
        __m512 m = set1(row_max(zr, cols)), it = set1(inv_t);
        __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
        for (int64_t j = 0; j < cols; j += W)
            acc_double(&lo, &hi, shifted_exp(zr + j, cols - j, m, it));
        __m512 log_s = set1((float)log(_mm512_reduce_add_pd(_mm512_add_pd(lo, hi))));
        for (int64_t j = 0; j < cols; j += W) {
            __m512 s = _mm512_mul_ps(_mm512_sub_ps(ld(zr + j, cols - j), m), it);
            st(out + j, cols - j, _mm512_sub_ps(s, log_s));
        }
    }
}

/* ---------------------------------------------------------------- vectors */

static void axpy(float *y, float a, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i += W)
        st(y + i, n - i, _mm512_fmadd_ps(set1(a), ld(x + i, n - i), ld(y + i, n - i)));
}

static void scale(float *x, float a, int64_t n)
{
    for (int64_t i = 0; i < n; i += W) st(x + i, n - i, _mm512_mul_ps(ld(x + i, n - i), set1(a)));
}

static void mul(float *y, const float *x, const float *mask, float s, int64_t n)
{
    for (int64_t i = 0; i < n; i += W) {
        __m512 v = _mm512_mul_ps(ld(x + i, n - i), ld(mask + i, n - i));
        st(y + i, n - i, _mm512_mul_ps(v, set1(s)));
    }
}

/* acc[0..1] += a * b, the 16 products in double. */
static inline void fma_double(__m512d *acc, __m512 a, __m512 b)
{
    acc[0] = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(a)),
                             _mm512_cvtps_pd(_mm512_castps512_ps256(b)), acc[0]);
    acc[1] = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm512_extractf32x8_ps(a, 1)),
                             _mm512_cvtps_pd(_mm512_extractf32x8_ps(b, 1)), acc[1]);
}

/* Products of two floats are exact in double, so this differs from the reference's sequential
 * sum only by the order of the additions (four chains, to hide the adder's latency). */
static double dot(const float *x, const float *y, int64_t n)
{
    __m512d acc[4] = {_mm512_setzero_pd(), _mm512_setzero_pd(), _mm512_setzero_pd(),
                      _mm512_setzero_pd()};
    int64_t i = 0;
    for (; i + 2 * W <= n; i += 2 * W) {
        fma_double(acc, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i));
        fma_double(acc + 2, _mm512_loadu_ps(x + i + W), _mm512_loadu_ps(y + i + W));
    }
    for (; i < n; i += W) fma_double(acc, ld(x + i, n - i), ld(y + i, n - i));
    return _mm512_reduce_add_pd(
        _mm512_add_pd(_mm512_add_pd(acc[0], acc[1]), _mm512_add_pd(acc[2], acc[3])));
}

static double sum(const float *x, int64_t n)
{
    __m512d acc[4] = {_mm512_setzero_pd(), _mm512_setzero_pd(), _mm512_setzero_pd(),
                      _mm512_setzero_pd()};
    int64_t i = 0;
    for (; i + 2 * W <= n; i += 2 * W) {
        __m512 a = _mm512_loadu_ps(x + i), b = _mm512_loadu_ps(x + i + W);
        acc[0] = _mm512_add_pd(acc[0], _mm512_cvtps_pd(_mm512_castps512_ps256(a)));
        acc[1] = _mm512_add_pd(acc[1], _mm512_cvtps_pd(_mm512_extractf32x8_ps(a, 1)));
        acc[2] = _mm512_add_pd(acc[2], _mm512_cvtps_pd(_mm512_castps512_ps256(b)));
        acc[3] = _mm512_add_pd(acc[3], _mm512_cvtps_pd(_mm512_extractf32x8_ps(b, 1)));
    }
    for (; i < n; i += W) {
        __m512 a = ld(x + i, n - i);
        acc[0] = _mm512_add_pd(acc[0], _mm512_cvtps_pd(_mm512_castps512_ps256(a)));
        acc[1] = _mm512_add_pd(acc[1], _mm512_cvtps_pd(_mm512_extractf32x8_ps(a, 1)));
    }
    return _mm512_reduce_add_pd(
        _mm512_add_pd(_mm512_add_pd(acc[0], acc[1]), _mm512_add_pd(acc[2], acc[3])));
}

static double sum_sq(const float *x, int64_t n) { return dot(x, x, n); }

/* ---------------------------------------------------------------- optimizer updates */

/* PyTorch's SGD, as the reference: g' = g + wd w; v = mu v + g'; w -= lr (nesterov ? g' + mu v : v). */
static void sgd_update(float *w, float *v, const float *g, int64_t n, float lr, float momentum,
                       float weight_decay, int nesterov)
{
    __m512 vlr = set1(lr), mu = set1(momentum), wd = set1(weight_decay);
    for (int64_t i = 0; i < n; i += W) {
        int64_t left = n - i;
        __m512 wi = ld(w + i, left), d = _mm512_fmadd_ps(wd, wi, ld(g + i, left));
        if (momentum != 0.0f) {
            __m512 vi = _mm512_fmadd_ps(mu, ld(v + i, left), d);
            st(v + i, left, vi);
            d = nesterov ? _mm512_fmadd_ps(mu, vi, d) : vi;
        }
        st(w + i, left, _mm512_fnmadd_ps(vlr, d, wi));
    }
}

/* Adam(W) in torch.optim.Adam's order of operations, as the reference. */
static void adam_update(float *w, float *m, float *v, const float *g, int64_t n, float lr,
                        float beta1, float beta2, float eps, float weight_decay, float bias_corr1,
                        float bias_corr2, int decoupled)
{
    __m512 keep = set1(decoupled ? 1.0f - lr * weight_decay : 1.0f);
    __m512 l2 = set1(decoupled ? 0.0f : weight_decay);
    __m512 b1 = set1(beta1), c1 = set1(1.0f - beta1), b2 = set1(beta2), c2 = set1(1.0f - beta2);
    __m512 step = set1(lr / bias_corr1), sqrt_bc2 = set1(sqrtf(bias_corr2)), e = set1(eps);
    for (int64_t i = 0; i < n; i += W) {
        int64_t left = n - i;
        __m512 wi = ld(w + i, left), d = _mm512_fmadd_ps(l2, wi, ld(g + i, left));
        __m512 mi = _mm512_fmadd_ps(b1, ld(m + i, left), _mm512_mul_ps(c1, d));
        __m512 vi = _mm512_fmadd_ps(b2, ld(v + i, left), _mm512_mul_ps(_mm512_mul_ps(c2, d), d));
        __m512 denom = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(vi), sqrt_bc2), e);
        __m512 upd = _mm512_div_ps(_mm512_mul_ps(step, mi), denom);
        st(m + i, left, mi);
        st(v + i, left, vi);
        st(w + i, left, _mm512_sub_ps(_mm512_mul_ps(wi, keep), upd));
    }
}

const kdi_kernels kdi_kernels_avx512 = {
    .name = "avx512",
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
