/* The body of the SIMD variants: avx2.c and avx512.c include it after naming their table, and CMake
 * compiles each with its own -m flags and -O3, so the compiler vectorises these loops for that ISA
 * (straight loops over restrict pointers, no reductions in float that would change with the
 * width). GEMM goes to OpenBLAS. Transcendentals stay scalar libm calls: their inputs are small
 * (logits, activations of GELU/tanh/sigmoid nets), and exactness against ref matters more. */
#include <cblas.h>
#include <math.h>

#include "kernels.h"

#ifndef KDI_VARIANT_TABLE
#error "define KDI_VARIANT_TABLE and KDI_VARIANT_NAME before including simd_body.h"
#endif

static void gemm(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                 int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    /* Callers keep sizes below 2^31 (model sizes are checked at creation). */
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                (int)m, (int)n, (int)k, alpha, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

static void bias_add(float *restrict y, const float *restrict bias, int64_t rows, int64_t cols)
{
    for (int64_t r = 0; r < rows; r++) {
        float *restrict yr = y + r * cols;
        for (int64_t j = 0; j < cols; j++) yr[j] += bias[j];
    }
}

static void bias_grad(float *restrict gbias, const float *restrict dy, int64_t rows, int64_t cols)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *restrict dr = dy + r * cols;
        for (int64_t j = 0; j < cols; j++) gbias[j] += dr[j];
    }
}

static void relu_fwd(float *restrict y, const float *restrict x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

static void relu_bwd(float *restrict dx, const float *restrict x, const float *restrict dy, int64_t n)
{
    for (int64_t i = 0; i < n; i++) dx[i] = x[i] > 0.0f ? dy[i] : 0.0f;
}

static void leaky_relu_fwd(float *restrict y, const float *restrict x, int64_t n, float slope)
{
    for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : slope * x[i];
}

static void leaky_relu_bwd(float *restrict dx, const float *restrict x, const float *restrict dy,
                           int64_t n, float slope)
{
    for (int64_t i = 0; i < n; i++) dx[i] = x[i] > 0.0f ? dy[i] : slope * dy[i];
}

static void gelu_fwd(float *y, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.7071067811865476f));
}

static void gelu_bwd(float *dx, const float *x, const float *dy, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        float cdf = 0.5f * (1.0f + erff(x[i] * 0.7071067811865476f));
        float pdf = 0.3989422804014327f * expf(-0.5f * x[i] * x[i]);
        dx[i] = dy[i] * (cdf + x[i] * pdf);
    }
}

static void tanh_fwd(float *y, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] = tanhf(x[i]);
}

static void tanh_bwd(float *restrict dx, const float *restrict y, const float *restrict dy, int64_t n)
{
    for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * (1.0f - y[i] * y[i]);
}

static void sigmoid_fwd(float *y, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] = 1.0f / (1.0f + expf(-x[i]));
}

static void sigmoid_bwd(float *restrict dx, const float *restrict y, const float *restrict dy,
                        int64_t n)
{
    for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * y[i] * (1.0f - y[i]);
}

static float row_max(const float *z, int64_t cols)
{
    float m = z[0];
    for (int64_t j = 1; j < cols; j++) m = z[j] > m ? z[j] : m;
    return m;
}

static void softmax_rows(float *p, const float *z, int64_t rows, int64_t cols, float inv_t)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *zr = z + r * cols;
        float *pr = p + r * cols, m = row_max(zr, cols);
        double s = 0.0;
        for (int64_t j = 0; j < cols; j++) s += pr[j] = expf((zr[j] - m) * inv_t);
        float inv = (float)(1.0 / s);
        for (int64_t j = 0; j < cols; j++) pr[j] *= inv;
    }
}

static void log_softmax_rows(float *lp, const float *z, int64_t rows, int64_t cols, float inv_t)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *zr = z + r * cols;
        float *out = lp + r * cols, m = row_max(zr, cols);
        double s = 0.0;
        for (int64_t j = 0; j < cols; j++) s += exp((double)((zr[j] - m) * inv_t));
        float log_s = (float)log(s);
        for (int64_t j = 0; j < cols; j++) out[j] = (zr[j] - m) * inv_t - log_s;
    }
}

static void axpy(float *restrict y, float a, const float *restrict x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

static void scale(float *x, float a, int64_t n)
{
    for (int64_t i = 0; i < n; i++) x[i] *= a;
}

static void mul(float *restrict y, const float *restrict x, const float *restrict mask, float s,
                int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * mask[i] * s;
}

/* Sums in blocks of 256 floats, each block in float lanes, the blocks in double: the long sum
 * keeps double accuracy and the inner loop vectorises. */
static double sum_sq(const float *restrict x, int64_t n)
{
    double total = 0.0;
    for (int64_t s = 0; s < n; s += 256) {
        int64_t e = n - s < 256 ? n : s + 256;
        float block = 0.0f;
        for (int64_t i = s; i < e; i++) block += x[i] * x[i];
        total += block;
    }
    return total;
}

static double dot(const float *restrict x, const float *restrict y, int64_t n)
{
    double total = 0.0;
    for (int64_t s = 0; s < n; s += 256) {
        int64_t e = n - s < 256 ? n : s + 256;
        float block = 0.0f;
        for (int64_t i = s; i < e; i++) block += x[i] * y[i];
        total += block;
    }
    return total;
}

static void sgd_update(float *restrict w, float *restrict v, const float *restrict g, int64_t n,
                       float lr, float momentum, float weight_decay, int nesterov)
{
    if (momentum == 0.0f) {
        for (int64_t i = 0; i < n; i++) w[i] -= lr * (g[i] + weight_decay * w[i]);
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        float d = g[i] + weight_decay * w[i];
        v[i] = momentum * v[i] + d;
        w[i] -= lr * (nesterov ? d + momentum * v[i] : v[i]);
    }
}

static void adam_update(float *restrict w, float *restrict m, float *restrict v,
                        const float *restrict g, int64_t n, float lr, float beta1, float beta2,
                        float eps, float weight_decay, float bias_corr1, float bias_corr2,
                        int decoupled)
{
    float keep = decoupled ? 1.0f - lr * weight_decay : 1.0f, l2 = decoupled ? 0.0f : weight_decay;
    for (int64_t i = 0; i < n; i++) {
        float wi = w[i] * keep, d = g[i] + l2 * w[i];
        m[i] = beta1 * m[i] + (1.0f - beta1) * d;
        v[i] = beta2 * v[i] + (1.0f - beta2) * d * d;
        w[i] = wi - lr * (m[i] / bias_corr1) / (sqrtf(v[i] / bias_corr2) + eps);
    }
}

const kdi_kernels KDI_VARIANT_TABLE = {
    .name = KDI_VARIANT_NAME,
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
    .sum_sq = sum_sq,
    .dot = dot,
    .sgd_update = sgd_update,
    .adam_update = adam_update,
};
