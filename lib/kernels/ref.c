/* The portable reference kernels: plain C, the formulas as kernels.h states them. Every other
 * variant is tested against this table, and it is what KD_KERNELS=ref selects. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"

/* Row-major C = alpha op(A) op(B) + beta C, accumulated in double: slow, but the oracle. With B
 * untransposed the loop runs i-k-j over a block of C's row held in double, so B is read along its
 * rows; with B transposed each entry is a dot product along rows of B (and of A unless it is
 * transposed too). As in BLAS, beta == 0 never reads C. */
#define GEMM_BLOCK 256

static float gemm_out(float alpha, double sum, float beta, const float *c)
{
    return (float)(alpha * sum) + (beta == 0.0f ? 0.0f : beta * *c);
}

/* B's row p at b + p ldb, or at b + b_rows[p] when b_rows is not NULL (gemm_rows_b). */
static void gemm_nn(int ta, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                    int64_t lda, const float *b, int64_t ldb, const int64_t *b_rows, float beta,
                    float *c, int64_t ldc)
{
    double acc[GEMM_BLOCK];
    for (int64_t i = 0; i < m; i++)
        for (int64_t j0 = 0; j0 < n; j0 += GEMM_BLOCK) {
            int64_t w = n - j0 < GEMM_BLOCK ? n - j0 : GEMM_BLOCK;
            memset(acc, 0, sizeof(double) * (size_t)w);
            for (int64_t p = 0; p < k; p++) {
                double av = ta ? a[p * lda + i] : a[i * lda + p];
                const float *bp = (b_rows != NULL ? b + b_rows[p] : b + p * ldb) + j0;
                for (int64_t j = 0; j < w; j++) acc[j] += av * bp[j];
            }
            float *cr = c + i * ldc + j0;
            for (int64_t j = 0; j < w; j++) cr[j] = gemm_out(alpha, acc[j], beta, cr + j);
        }
}

static void gemm_nt(int ta, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                    int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            const float *bj = b + j * ldb;
            double s = 0.0;
            if (ta)
                for (int64_t p = 0; p < k; p++) s += (double)a[p * lda + i] * bj[p];
            else
                for (int64_t p = 0; p < k; p++) s += (double)a[i * lda + p] * bj[p];
            c[i * ldc + j] = gemm_out(alpha, s, beta, c + i * ldc + j);
        }
}

static void gemm(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                 int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    if (tb)
        gemm_nt(ta, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    else
        gemm_nn(ta, m, n, k, alpha, a, lda, b, ldb, NULL, beta, c, ldc);
}

/* The reference has one GEMM: the small one is the same loop. */
static void gemm_small(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                       int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/* And the packed one. */
static void gemm_packed(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
                        const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                        float *c, int64_t ldc)
{
    gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/* One loop for every shape. */
static int gemm_route(int ta, int tb, int64_t m, int64_t n, int64_t k)
{
    (void)ta, (void)tb, (void)m, (void)n, (void)k;
    return KDI_GEMM_BY_GEMM;
}

static int gemm_rows_b_route(int64_t m, int64_t n, int64_t k)
{
    (void)m, (void)n, (void)k;
    return KDI_GEMM_BY_GEMM;
}

/* gemm_nn's loop with B's row p at b + b_rows[p]. */
static void gemm_rows_b(int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                        const float *b, const int64_t *b_rows, float beta, float *c, int64_t ldc)
{
    gemm_nn(0, m, n, k, alpha, a, lda, b, 0, b_rows, beta, c, ldc);
}

static void plane_out(float *y, float *r, const float *src, int64_t rows, int64_t cols, int64_t ld,
                      float b)
{
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) {
            float v = src[i * ld + j] + b;
            if (y != NULL) y[i * cols + j] = v;
            if (r != NULL) r[i * cols + j] = v > 0.0f ? v : 0.0f;
        }
}

static void plane_in(float *y, const float *x, int64_t rows, int64_t cols, int64_t ld)
{
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < (i + 1 < rows ? ld : cols); j++)
            y[i * ld + j] = j < cols ? x[i * cols + j] : 0.0f;
}

static void bias_add(float *y, const float *bias, int64_t rows, int64_t cols)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++) y[r * cols + j] += bias[j];
}

static void bias_grad(float *gbias, const float *dy, int64_t rows, int64_t cols)
{
    for (int64_t j = 0; j < cols; j++) {
        double s = 0.0;
        for (int64_t r = 0; r < rows; r++) s += dy[r * cols + j];
        gbias[j] += (float)s;
    }
}

static void max_pool2_fwd(float *y, float *argmax, const float *x, int64_t oh, int64_t ow,
                          int64_t w)
{
    for (int64_t oy = 0; oy < oh; oy++) {
        const float *r0 = x + 2 * oy * w, *r1 = r0 + w;
        for (int64_t ox = 0; ox < ow; ox++) {
            int64_t at = 2 * oy * w + 2 * ox, best = at;
            float acc = r0[2 * ox];
            if (r0[2 * ox + 1] > acc) acc = r0[2 * ox + 1], best = at + 1;
            if (r1[2 * ox] > acc) acc = r1[2 * ox], best = at + w;
            if (r1[2 * ox + 1] > acc) acc = r1[2 * ox + 1], best = at + w + 1;
            y[oy * ow + ox] = acc;
            argmax[oy * ow + ox] = (float)best;
        }
    }
}

static void max_pool2_bwd(float *dx, const float *dy, const float *keep, const float *argmax,
                          int64_t oh, int64_t ow, int64_t w)
{
    for (int64_t oy = 0; oy < oh; oy++) {
        float *d0 = dx + 2 * oy * w, *d1 = d0 + w;
        for (int64_t ox = 0; ox < ow; ox++) {
            int64_t o = oy * ow + ox, at = 2 * oy * w + 2 * ox, best = (int64_t)argmax[o];
            float g = keep == NULL || keep[o] > 0.0f ? dy[o] : 0.0f;
            d0[2 * ox] = best == at ? g : 0.0f;
            d0[2 * ox + 1] = best == at + 1 ? g : 0.0f;
            d1[2 * ox] = best == at + w ? g : 0.0f;
            d1[2 * ox + 1] = best == at + w + 1 ? g : 0.0f;
        }
    }
}

static void relu_fwd(float *y, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

static void relu_bwd(float *dx, const float *x, const float *dy, int64_t n)
{
    for (int64_t i = 0; i < n; i++) dx[i] = x[i] > 0.0f ? dy[i] : 0.0f;
}

static void leaky_relu_fwd(float *y, const float *x, int64_t n, float slope)
{
    for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : slope * x[i];
}

static void leaky_relu_bwd(float *dx, const float *x, const float *dy, int64_t n, float slope)
{
    for (int64_t i = 0; i < n; i++) dx[i] = x[i] > 0.0f ? dy[i] : slope * dy[i];
}

/* GELU(x) = x Phi(x), Phi the standard normal CDF (Hendrycks and Gimpel 2016; PyTorch's default
 * "none" approximation). Phi(x) = erfc(-x / sqrt 2) / 2 is 0.5 (1 + erf(x / sqrt 2)) without its
 * cancellation for negative x, so the reference is accurate to a few ulp in relative terms. */
static float norm_cdf(float x) { return 0.5f * erfcf(-x * 0.7071067811865476f); }

static void gelu_fwd(float *y, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * norm_cdf(x[i]);
}

/* d/dx x Phi(x) = Phi(x) + x phi(x), phi(x) = exp(-x^2 / 2) / sqrt(2 pi). */
static void gelu_bwd(float *dx, const float *x, const float *dy, int64_t n)
{
    const float inv_sqrt_2pi = 0.3989422804014327f;
    for (int64_t i = 0; i < n; i++) {
        float pdf = inv_sqrt_2pi * expf(-0.5f * x[i] * x[i]);
        dx[i] = dy[i] * (norm_cdf(x[i]) + x[i] * pdf);
    }
}

static void tanh_fwd(float *y, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] = tanhf(x[i]);
}

static void tanh_bwd(float *dx, const float *y, const float *dy, int64_t n)
{
    for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * (1.0f - y[i] * y[i]);
}

static void sigmoid_fwd(float *y, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] = 1.0f / (1.0f + expf(-x[i]));
}

static void sigmoid_bwd(float *dx, const float *y, const float *dy, int64_t n)
{
    for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * y[i] * (1.0f - y[i]);
}

static float row_max(const float *z, int64_t cols)
{
    float m = z[0];
    for (int64_t j = 1; j < cols; j++) m = z[j] > m ? z[j] : m;
    return m;
}

/* The least logit other than -inf (a masked logit, which every path handles alike); +inf when
 * there is none. */
static float row_min(const float *z, int64_t cols)
{
    float m = INFINITY;
    for (int64_t j = 0; j < cols; j++) m = z[j] < m && z[j] > -INFINITY ? z[j] : m;
    return m;
}

/* The rows whose float (z - max) inv_t could overflow for finite z (a spread beyond FLT_MAX / 2,
 * or one that inv_t > 1 scales there) are done in double: there z - max may be -inf in float
 * although exp((z - max) inv_t) is not 0 when inv_t is small, and the log-probability is finite
 * when inv_t < 1. Log-probabilities below -FLT_MAX become -FLT_MAX (see kernels.h). */
void kdi_softmax_row_wide(float *out, const float *z, int64_t cols, float m, float inv_t,
                          int want_log)
{
    double s = 0.0;
    for (int64_t j = 0; j < cols; j++) s += exp(((double)z[j] - m) * inv_t);
    double log_s = log(s);
    for (int64_t j = 0; j < cols; j++) {
        double x = ((double)z[j] - m) * inv_t;
        /* a masked logit keeps -inf; a finite one is clamped to the floats */
        double l = z[j] == -INFINITY ? x : fmax(x - log_s, -(double)FLT_MAX);
        out[j] = want_log ? (float)l : (float)(exp(x) / s);
    }
}

int kdi_row_is_wide(float max, float min, float inv_t)
{
    double spread = (double)max - (double)min;
    return spread > 0.5 * FLT_MAX || spread * inv_t > 0.5 * FLT_MAX;
}

static void softmax_rows(float *p, const float *z, int64_t rows, int64_t cols, float inv_t)
{
    if (cols <= 0) return;
    for (int64_t r = 0; r < rows; r++) {
        const float *zr = z + r * cols;
        float *pr = p + r * cols, m = row_max(zr, cols);
        if (kdi_row_is_wide(m, row_min(zr, cols), inv_t)) {
            kdi_softmax_row_wide(pr, zr, cols, m, inv_t, 0);
            continue;
        }
        double s = 0.0;
        for (int64_t j = 0; j < cols; j++) s += pr[j] = expf((zr[j] - m) * inv_t);
        float inv = (float)(1.0 / s);
        for (int64_t j = 0; j < cols; j++) pr[j] *= inv;
    }
}

static void log_softmax_rows(float *lp, const float *z, int64_t rows, int64_t cols, float inv_t)
{
    if (cols <= 0) return;
    for (int64_t r = 0; r < rows; r++) {
        const float *zr = z + r * cols;
        float *out = lp + r * cols, m = row_max(zr, cols);
        if (kdi_row_is_wide(m, row_min(zr, cols), inv_t)) {
            kdi_softmax_row_wide(out, zr, cols, m, inv_t, 1);
            continue;
        }
        double s = 0.0;
        for (int64_t j = 0; j < cols; j++) s += exp((double)((zr[j] - m) * inv_t));
        float log_s = (float)log(s);
        for (int64_t j = 0; j < cols; j++) out[j] = (zr[j] - m) * inv_t - log_s;
    }
}

static void axpy(float *y, float a, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

static void scale(float *x, float a, int64_t n)
{
    for (int64_t i = 0; i < n; i++) x[i] *= a;
}

static void mul(float *y, const float *x, const float *mask, float s, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * mask[i] * s;
}

static double sum(const float *x, int64_t n)
{
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += x[i];
    return s;
}

static double sum_sq(const float *x, int64_t n)
{
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return s;
}

static double dot(const float *x, const float *y, int64_t n)
{
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += (double)x[i] * y[i];
    return s;
}

static void sum_dot(const float *x, const float *y, int64_t n, double *sum_x, double *sum_xy)
{
    *sum_x = sum(x, n);
    *sum_xy = dot(x, y, n);
}

static void bn_apply(float *y, float *xhat, const float *x, int64_t n, float mean, float inv_std,
                     float gamma, float beta)
{
    for (int64_t i = 0; i < n; i++) {
        float h = (x[i] - mean) * inv_std;
        if (xhat != NULL) xhat[i] = h;
        y[i] = gamma * h + beta;
    }
}

static void bn_input_grad(float *dx, const float *dy, const float *xhat, int64_t n, float k,
                          float count, float sum_dy, float sum_dy_xhat)
{
    for (int64_t i = 0; i < n; i++) dx[i] = k * (count * dy[i] - sum_dy - xhat[i] * sum_dy_xhat);
}

/* LayerNorm's two passes, each sum in double (sum, sum_sq and dot above). */
static void layernorm_fwd(float *y, float *xhat, float *inv_std, const float *x, const float *gamma,
                          const float *beta, int64_t rows, int64_t n, float eps)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * n;
        float *h = xhat + r * n, *yr = y + r * n;
        float m = (float)(sum(xr, n) / (double)n);
        for (int64_t i = 0; i < n; i++) h[i] = xr[i] - m;
        float inv = (float)(1.0 / sqrt(sum_sq(h, n) / (double)n + eps));
        inv_std[r] = inv;
        for (int64_t i = 0; i < n; i++) {
            h[i] *= inv;
            yr[i] = gamma[i] * h[i] + beta[i];
        }
    }
}

static void layernorm_bwd(float *dx, float *ggamma, float *gbeta, float *u, const float *xhat,
                          const float *inv_std, const float *gamma, const float *dy, int64_t rows,
                          int64_t n)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *h = xhat + r * n, *d = dy + r * n;
        for (int64_t i = 0; i < n; i++) {
            ggamma[i] += d[i] * h[i];
            gbeta[i] += d[i];
            u[i] = gamma[i] * d[i];
        }
        if (dx == NULL) continue;
        float c = inv_std[r] / (float)n, a = (float)sum(u, n), b = (float)dot(u, h, n),
              fn = (float)n;
        float *dr = dx + r * n;
        for (int64_t i = 0; i < n; i++) dr[i] = c * (fn * u[i] - a - h[i] * b);
    }
}

static void sgd_update(float *w, float *v, const float *g, int64_t n, float lr, float momentum,
                       float weight_decay, int nesterov)
{
    for (int64_t i = 0; i < n; i++) {
        float d = g[i] + weight_decay * w[i];
        if (momentum != 0.0f) {
            v[i] = momentum * v[i] + d;
            d = nesterov ? d + momentum * v[i] : v[i];
        }
        w[i] -= lr * d;
    }
}

/* In torch.optim.Adam's order of operations (single-tensor path): the step size lr / bc1, the
 * denominator sqrt(v) / sqrt(bc2) + eps, then addcdiv's w -= (step m) / denom. */
static void adam_update(float *w, float *m, float *v, const float *g, int64_t n, float lr,
                        float beta1, float beta2, float eps, float weight_decay, float bias_corr1,
                        float bias_corr2, int decoupled)
{
    float step = lr / bias_corr1, sqrt_bc2 = sqrtf(bias_corr2);
    for (int64_t i = 0; i < n; i++) {
        float d = g[i];
        if (decoupled)
            w[i] *= 1.0f - lr * weight_decay;
        else
            d += weight_decay * w[i];
        m[i] = beta1 * m[i] + (1.0f - beta1) * d;
        v[i] = beta2 * v[i] + (1.0f - beta2) * d * d;
        w[i] -= step * m[i] / (sqrtf(v[i]) / sqrt_bc2 + eps);
    }
}

/* ---------------------------------------------------------------- int8 */

int64_t kdi_qpack_size(int64_t n, int64_t k) { return (n + 15) / 16 * 16 * ((k + 3) / 4 * 4); }

void kdi_qpack(int8_t *bp, const int8_t *b, int64_t n, int64_t k, int64_t ldb)
{
    int64_t groups = (k + 3) / 4;
    for (int64_t jb = 0; jb < (n + 15) / 16; jb++)
        for (int64_t g = 0; g < groups; g++)
            for (int64_t jj = 0; jj < 16; jj++)
                for (int64_t t = 0; t < 4; t++) {
                    int64_t j = jb * 16 + jj, p = 4 * g + t;
                    bp[((jb * groups + g) * 16 + jj) * 4 + t] = j < n && p < k ? b[j * ldb + p] : 0;
                }
}

static void qgemm_u8s8(int64_t m, int64_t n, int64_t k, const uint8_t *a, int64_t lda,
                       const int8_t *bp, int32_t *c, int64_t ldc)
{
    int64_t groups = (k + 3) / 4;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            const int8_t *col = bp + ((j / 16) * groups * 16 + j % 16) * 4;
            uint32_t s = 0; /* wraps as the SIMD adds do */
            for (int64_t p = 0; p < k; p++)
                s += (uint32_t)((int32_t)a[i * lda + p] * (int32_t)col[(p / 4) * 64 + p % 4]);
            c[i * ldc + j] = (int32_t)s;
        }
}

/* v, integral, clamped to lo..255 as the SIMD max / min do (NaN becomes lo). */
static uint8_t clamp_u8(float v, float lo)
{
    v = fmaxf(v, lo);
    return (uint8_t)fminf(v, 255.0f);
}

static void quantize_u8(uint8_t *q, const float *x, int64_t n, float scale, int32_t zp)
{
    for (int64_t i = 0; i < n; i++) q[i] = clamp_u8(rintf(x[i] / scale) + (float)zp, 0.0f);
}

static void requant_u8(uint8_t *y, const int32_t *acc, int64_t rows, int64_t cols,
                       const int32_t *corr, const float *mult, int32_t zp, int32_t lo)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++) {
            int32_t v = (int32_t)((uint32_t)acc[r * cols + j] + (uint32_t)corr[j]);
            y[r * cols + j] = clamp_u8(rintf((float)v * mult[j]) + (float)zp, (float)lo);
        }
}

static void dequant_i32(float *y, const int32_t *acc, int64_t rows, int64_t cols,
                        const int32_t *corr, const float *scale)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++) {
            int32_t v = (int32_t)((uint32_t)acc[r * cols + j] + (uint32_t)corr[j]);
            y[r * cols + j] = (float)v * scale[j];
        }
}

KDI_KERNEL_TABLE(kdi_kernels_ref, "ref");
