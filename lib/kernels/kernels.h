/* The kernel dispatch table: one struct of function pointers, filled once from the CPU's features or
 * from KD_KERNELS=ref|avx2|avx512. Variants live in their own files, compiled with their own -m
 * flags; the rest of the library is built for the baseline ISA and calls only through this table. */
#ifndef KDI_KERNELS_H
#define KDI_KERNELS_H

#include <stdint.h>

/* gemm_route's answers. */
enum { KDI_GEMM_BY_GEMM = 0, KDI_GEMM_BY_SMALL = 1, KDI_GEMM_BY_PACKED = 2 };

/* The signature of gemm, gemm_small and gemm_packed. */
typedef void kdi_gemm_fn(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                         const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                         float *c, int64_t ldc);

typedef struct kdi_kernels {
    const char *name; /* "ref", "avx2", "avx512" */

    /* C[m,n] = alpha * op(A) * op(B) + beta * C, row-major; op transposes when trans is 1.
     * ref: a naive loop (the oracle of the tests); others: cblas_sgemm. */
    void (*gemm)(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                 const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                 int64_t ldc);

    /* The same product without BLAS: register-blocked tiles, no packing, no threads, for shapes
     * where a BLAS call costs more than its arithmetic (gemm itself routes them here when it
     * measured faster). Sums in float (ref: gemm's double loop). */
    void (*gemm_small)(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                       const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                       float *c, int64_t ldc);

    /* The same product for big shapes without BLAS: B packed a block of columns at a time on the
     * stack, register tiles of C over it, no threads (gemm routes to it where it measured faster
     * than cblas_sgemm). Sums in float (ref: gemm's double loop). */
    void (*gemm_packed)(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                        const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                        float *c, int64_t ldc);

    /* Which of its kernels gemm runs for this product: KDI_GEMM_BY_SMALL (gemm_small),
     * KDI_GEMM_BY_PACKED (gemm_packed) or KDI_GEMM_BY_GEMM (BLAS or the reference loop). kdi_gemm
     * runs every slice of a product it splits over threads on the whole product's kernel: a
     * slice's smaller shape would otherwise pick another, whose sums round apart, and the result
     * would depend on the thread count. */
    int (*gemm_route)(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k);

    /* Implicit GEMM: gemm's C[m, n] = alpha A B + beta C (A [m, k], row stride lda) with B's row
     * p the n floats at b + b_rows[p], a convolution's im2col rows read in place from its padded
     * planes. The same tiles as gemm_small and gemm_packed, so the same sums, bit for bit, as gemm
     * gives on the rows copied out wherever it takes those routes (AVX2 sends gemm's big shapes
     * to OpenBLAS; these take the packed tiles). ref: gemm's double loop. */
    void (*gemm_rows_b)(int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                        const float *b, const int64_t *b_rows, float beta, float *c, int64_t ldc);
    /* Which tiles gemm_rows_b takes for this product: KDI_GEMM_BY_SMALL or KDI_GEMM_BY_PACKED
     * (ref: KDI_GEMM_BY_GEMM, its loop). A caller that splits the product's rows keeps every part
     * on the whole product's tiles (see gemm_route). */
    int (*gemm_rows_b_route)(int64_t m, int64_t n, int64_t k);

    /* y[r, j] += bias[j] for rows x cols. */
    void (*bias_add)(float *y, const float *bias, int64_t rows, int64_t cols);
    /* gbias[j] += sum_r dy[r, j]. */
    void (*bias_grad)(float *gbias, const float *dy, int64_t rows, int64_t cols);
    /* A convolution's output plane: y[i, j] = src[i ld + j] + b for rows x cols (b = -0: a copy,
     * -0 kept), and r = relu(y) as relu_fwd writes it when r is not NULL; y may be NULL (r only).
     * y and r must not overlap src: a row's last vector may be stored whole, into the row after it,
     * which the call writes again. */
    void (*plane_out)(float *y, float *r, const float *src, int64_t rows, int64_t cols, int64_t ld,
                      float b);
    /* Its inverse layout: y[i ld + j] = x[i cols + j] for rows x cols, and y[i ld + j] = 0 for
     * cols <= j < ld after every row but the last (a convolution's wide rows, a padded plane's
     * inside). A call a plane: a memcpy call a row of 7 to 28 floats cost the small CNN's step
     * about 10% in the calls alone. */
    void (*plane_in)(float *y, const float *x, int64_t rows, int64_t cols, int64_t ld);

    /* Activations, n values. Backward writes dx = dy * f'(.) from the input x or output y. */
    void (*relu_fwd)(float *y, const float *x, int64_t n);
    void (*relu_bwd)(float *dx, const float *x, const float *dy, int64_t n);
    void (*leaky_relu_fwd)(float *y, const float *x, int64_t n, float slope);
    void (*leaky_relu_bwd)(float *dx, const float *x, const float *dy, int64_t n, float slope);
    /* GELU, exact erf form as PyTorch's default. */
    void (*gelu_fwd)(float *y, const float *x, int64_t n);
    void (*gelu_bwd)(float *dx, const float *x, const float *dy, int64_t n);
    void (*tanh_fwd)(float *y, const float *x, int64_t n);
    void (*tanh_bwd)(float *dx, const float *y, const float *dy, int64_t n);
    void (*sigmoid_fwd)(float *y, const float *x, int64_t n);
    void (*sigmoid_bwd)(float *dx, const float *y, const float *dy, int64_t n);

    /* Row-wise p = softmax(z * inv_t) and lp = log_softmax(z * inv_t), max-subtracted, for every
     * finite z and finite inv_t > 0: no intermediate overflows where the result does not (rows
     * that kdi_row_is_wide are done in double). A log-probability below -FLT_MAX, which a float
     * cannot hold, is returned as -FLT_MAX (its probability is 0 in float), so the losses built
     * on it stay finite; a term p log q with p > 0 on such a q understates the exact one. */
    void (*softmax_rows)(float *p, const float *z, int64_t rows, int64_t cols, float inv_t);
    void (*log_softmax_rows)(float *lp, const float *z, int64_t rows, int64_t cols, float inv_t);

    /* LayerNorm (Ba et al. 2016) over rows of n, as PyTorch's nn.LayerNorm(n): mean m, then the
     * biased variance of x - m (both summed in double by the table's sum and sum_sq), inv_std[r] =
     * 1 / sqrt(var + eps), xhat = (x - m) inv_std, y = gamma xhat + beta. xhat [rows, n] and
     * inv_std [rows] are kept for the backward. */
    void (*layernorm_fwd)(float *y, float *xhat, float *inv_std, const float *x, const float *gamma,
                          const float *beta, int64_t rows, int64_t n, float eps);
    /* Its backward: ggamma += sum_r dy xhat, gbeta += sum_r dy; with u = gamma dy (written to the
     * scratch u, n floats), dx = inv_std / n (n u - sum u - xhat sum(u xhat)) unless dx is NULL. */
    void (*layernorm_bwd)(float *dx, float *ggamma, float *gbeta, float *u, const float *xhat,
                          const float *inv_std, const float *gamma, const float *dy, int64_t rows,
                          int64_t n);

    /* Max pooling 2x2, stride 2, of a plane x of width w into oh x ow outputs (a call a plane: a
     * call a row cost more than its work on the small CNN's 14- and 7-wide rows). With r0, r1 the
     * rows 2 oy and 2 oy + 1: y[oy][ox] is the largest of r0[2 ox], r0[2 ox + 1], r1[2 ox],
     * r1[2 ox + 1], compared with > in that order (the first of equal maxima wins; a NaN wins only
     * in the first place), and argmax its offset in the plane as a float: at + {0, 1, w, w + 1}
     * with at = 2 oy w + 2 ox (exact below 2^24). */
    void (*max_pool2_fwd)(float *y, float *argmax, const float *x, int64_t oh, int64_t ow,
                          int64_t w);
    /* Its adjoint, a plane dx of width w: dx[2 oy + i][2 ox + j] (i, j = 0, 1) gets dy[oy][ox]
     * where argmax names it, else 0; writes all 4 oh ow values of the windows, not an odd last row
     * or column. keep: NULL, or oh x ow values (the pooled outputs, after a ReLU) where dy counts
     * only if keep > 0 (0 otherwise, NaN included). */
    void (*max_pool2_bwd)(float *dx, const float *dy, const float *keep, const float *argmax,
                          int64_t oh, int64_t ow, int64_t w);

    /* y += a * x;  x *= a;  y = x * mask * scale (dropout, mask of 0/1 floats). */
    void (*axpy)(float *y, float a, const float *x, int64_t n);
    void (*scale)(float *x, float a, int64_t n);
    void (*mul)(float *y, const float *x, const float *mask, float scale, int64_t n);
    /* sum of x, of x^2 and of x*y, accumulated in double. */
    double (*sum)(const float *x, int64_t n);
    double (*sum_sq)(const float *x, int64_t n);
    double (*dot)(const float *x, const float *y, int64_t n);

    /* sum of x and sum of x*y (y may be x: the sum of squares) in one pass, in double: the same
     * values as sum and dot. */
    void (*sum_dot)(const float *x, const float *y, int64_t n, double *sum_x, double *sum_xy);
    /* Batch norm on a plane of n values (Ioffe and Szegedy 2015, Algorithm 1): xhat = (x - mean)
     * inv_std, y = gamma xhat + beta (xhat NULL: y only, inference), without fused
     * multiply-adds; and its input gradient dx = k (count dy - sum_dy - xhat sum_dy_xhat). */
    void (*bn_apply)(float *y, float *xhat, const float *x, int64_t n, float mean, float inv_std,
                     float gamma, float beta);
    void (*bn_input_grad)(float *dx, const float *dy, const float *xhat, int64_t n, float k,
                          float count, float sum_dy, float sum_dy_xhat);

    /* PyTorch's SGD: g' = g + wd * w; v = mu * v + g'; w -= lr * (nesterov ? g' + mu * v : v).
     * With mu == 0, v is not touched (may be NULL). */
    void (*sgd_update)(float *w, float *v, const float *g, int64_t n, float lr, float momentum,
                       float weight_decay, int nesterov);
    /* Adam(W): m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; w -= lr * (m / bc1) / (sqrt(v / bc2) + eps),
     * with weight decay added to g (Adam, decoupled == 0) or w *= 1 - lr * wd first (AdamW). */
    void (*adam_update)(float *w, float *m, float *v, const float *g, int64_t n, float lr,
                        float beta1, float beta2, float eps, float weight_decay, float bias_corr1,
                        float bias_corr2, int decoupled);

    /* ---- int8 (quantised models). Every variant gives the reference's result bit for bit: the
     * sums are integers (wrapping modulo 2^32, as the SIMD adds do) and the float steps are the
     * same single IEEE operations in the same order, rounded half to even.
     * C[i, j] = sum_k A[i, k] B[j, k]: A uint8 [m, k] (row stride lda), B int8 [n, k] packed by
     * kdi_qpack (blocks of 16 columns, 4 consecutive k of a column together: the layout of VNNI's
     * vpdpbusd), C int32 [m, n] (ldc). A row of C is built 16 columns at a time from broadcast
     * groups of 4 bytes of A, so no horizontal sums are needed. AVX-512: VNNI vpdpbusd; AVX2:
     * 16-bit multiply-adds (vpmaddwd; not vpmaddubsw, which saturates). With lda >= 4 ceil(k/4),
     * rows are read as 4 ceil(k/4) bytes (A holds m lda bytes then): the bytes past k meet the
     * packed zeros, whatever they are. */
    void (*qgemm_u8s8)(int64_t m, int64_t n, int64_t k, const uint8_t *a, int64_t lda,
                       const int8_t *bp, int32_t *c, int64_t ldc);
    /* q[i] = clamp(round(x[i] / scale) + zp, 0, 255) (ONNX QuantizeLinear, uint8). */
    void (*quantize_u8)(uint8_t *q, const float *x, int64_t n, float scale, int32_t zp);
    /* y[r, j] = clamp(round(float(acc[r, j] + corr[j]) * mult[j]) + zp, lo, 255): requantisation,
     * with a ReLU fused when lo = zp. acc and y are [rows, cols]. */
    void (*requant_u8)(uint8_t *y, const int32_t *acc, int64_t rows, int64_t cols,
                       const int32_t *corr, const float *mult, int32_t zp, int32_t lo);
    /* y[r, j] = float(acc[r, j] + corr[j]) * scale[j]: back to float (the logits). */
    void (*dequant_i32)(float *y, const int32_t *acc, int64_t rows, int64_t cols,
                        const int32_t *corr, const float *scale);
} kdi_kernels;

/* Every kernel of the table, once: the variants build their tables from it (KDI_KERNEL_TABLE) and
 * the tests check each entry is set. A new kernel is added here and in the struct above. */
/* clang-format off */
#define KDI_EACH_KERNEL(X)                                                                         \
    X(gemm) X(gemm_small) X(gemm_packed) X(gemm_route) X(gemm_rows_b) X(gemm_rows_b_route) X(bias_add) X(bias_grad) X(plane_out) X(plane_in)                                                 \
    X(relu_fwd) X(relu_bwd) X(leaky_relu_fwd) X(leaky_relu_bwd) X(gelu_fwd) X(gelu_bwd)            \
    X(tanh_fwd) X(tanh_bwd) X(sigmoid_fwd) X(sigmoid_bwd)                                          \
    X(softmax_rows) X(log_softmax_rows) X(layernorm_fwd) X(layernorm_bwd)                          \
    X(max_pool2_fwd) X(max_pool2_bwd)                                                              \
    X(axpy) X(scale) X(mul) X(sum) X(sum_sq) X(dot) X(sum_dot) X(bn_apply) X(bn_input_grad)        \
    X(sgd_update) X(adam_update)                                                                   \
    X(qgemm_u8s8) X(quantize_u8) X(requant_u8) X(dequant_i32)
/* clang-format on */
#define KDI_KERNEL_FIELD(k) .k = k,
/* Defines the table `table`, labelled `label`, from the functions of the kernels' names in scope. */
#define KDI_KERNEL_TABLE(table, label)                                                             \
    const kdi_kernels table = {.name = label, KDI_EACH_KERNEL(KDI_KERNEL_FIELD)}

/* The kernel a gemm_route answer names (KDI_GEMM_BY_GEMM: gemm itself), for a caller that splits a
 * product and runs every slice on the whole product's kernel. */
static inline kdi_gemm_fn *kdi_gemm_by(const kdi_kernels *k, int route)
{
    return route == KDI_GEMM_BY_SMALL    ? k->gemm_small
           : route == KDI_GEMM_BY_PACKED ? k->gemm_packed
                                         : k->gemm;
}

/* The table in use: chosen once (pthread_once) from KD_KERNELS or the CPU. Never NULL. */
const kdi_kernels *kdi_kernels_get(void);
/* A named variant if this build and CPU support it, else NULL: tests compare each with "ref". */
const kdi_kernels *kdi_kernels_variant(const char *name);

/* Whether a row with this max and min needs softmax_rows' double path, and that path (every
 * variant shares it: such rows are rare and not worth vectorising). */
int kdi_row_is_wide(float max, float min, float inv_t);
void kdi_softmax_row_wide(float *out, const float *z, int64_t cols, float m, float inv_t,
                          int want_log);

/* Packed B for qgemm_u8s8: bp[((jb * G + g) * 16 + jj) * 4 + t] = B[16 jb + jj, 4 g + t] (zero
 * past n and k), G = ceil(k / 4); kdi_qpack_size bytes. */
int64_t kdi_qpack_size(int64_t n, int64_t k);
void kdi_qpack(int8_t *bp, const int8_t *b, int64_t n, int64_t k, int64_t ldb);

/* The int8 kernels' names, for a table whose int8 entries come from another (dispatch.c). */
#define KDI_EACH_INT8_KERNEL(X) X(qgemm_u8s8) X(quantize_u8) X(requant_u8) X(dequant_i32)

/* The variants' tables, defined in ref.c, and in avx2.c and avx512.c from the one source
 * simd_kernels.h. */
extern const kdi_kernels kdi_kernels_ref;
extern const kdi_kernels kdi_kernels_avx2;
extern const kdi_kernels kdi_kernels_avx512;

#endif
