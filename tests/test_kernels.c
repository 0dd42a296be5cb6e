/* Every kernel variant this CPU supports against the portable reference, on sizes around the
 * vector widths (8, 16) and well past them, with unaligned pointers and guard values after the
 * end; GEMM of every table against a double-precision loop; the choice of the table.
 *
 * Tolerances, |variant - ref| <= atol + rtol |ref|:
 *   exact      relu, leaky ReLU, bias add and gradient, scale, dropout mul: bit for bit (the same
 *              operations in the same order);
 *   fused      axpy, tanh/sigmoid backward: rtol 1e-6, atol 1e-7 (an FMA rounds once, not twice);
 *   transc.    tanh, sigmoid: rtol 1e-6 (vectorised exp of about 1 ulp); GELU rtol 2e-6 (the
 *              rounding of -x^2/2 inside exp costs up to 1e-6 at |x| = 6), its backward also
 *              atol 5e-7, as it crosses zero near x = -0.75;
 *   softmax    rtol 1e-6, atol 1e-30 (denormals); log-softmax rtol 1e-6, atol 3e-7;
 *   sums       sum, sum_sq and dot in double: 1e-12 of the sum of |x_i y_i| (only the order differs);
 *   optimizer  rtol 1e-5, atol 1e-6 after 5 steps;
 *   GEMM       1e-5 of alpha sum |a_ip b_pj| + |beta c_ij| for each entry, gemm_small and
 *              gemm_packed too (float sums against the reference's double ones). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernels/kernels.h"
#include "testutil.h"

static const int64_t sizes[] = {1, 7, 8, 9, 15, 16, 17, 33, 1000, 4097};
#define NSIZES (sizeof sizes / sizeof sizes[0])
#define MAXN 4097
#define GUARD 32
#define CANARY 12345.0f

static const char *const variants[] = {"avx2", "avx512"};
#define NVARIANTS (sizeof variants / sizeof variants[0])

/* A buffer of MAXN values plus guards, filled from a seed; data starts one float in, so vector
 * loads are unaligned. */
static float *buf(uint64_t seed, float lo, float hi)
{
    float *p = malloc(sizeof(float) * (MAXN + 1 + GUARD));
    ck_assert_ptr_nonnull(p);
    kdt_fill(p, MAXN + 1 + GUARD, seed, lo, hi);
    return p + 1;
}

static void unbuf(float *p) { free(p - 1); }

static void set_guard(float *p, int64_t n)
{
    for (int i = 0; i < GUARD; i++) p[n + i] = CANARY;
}

static void check_guard(const float *p, int64_t n, const char *what, const char *variant)
{
    for (int i = 0; i < GUARD; i++)
        ck_assert_msg(p[n + i] == CANARY, "%s %s n=%lld wrote past the end", variant, what,
                      (long long)n);
}

static void check_close(const float *got, const float *want, int64_t n, double rtol, double atol,
                        const char *what, const char *variant)
{
    for (int64_t i = 0; i < n; i++) {
        double g = got[i], w = want[i];
        int same = (isnan(g) && isnan(w)) || g == w || fabs(g - w) <= atol + rtol * fabs(w);
        ck_assert_msg(same, "%s %s n=%lld [%lld]: %.9g, ref %.9g", variant, what, (long long)n,
                      (long long)i, g, w);
    }
}

/* ---------------------------------------------------------------- elementwise kernels */

/* Runs one kernel: out may be read (in-place kernels) and is written. */
typedef void (*elem_fn)(const kdi_kernels *k, float *out, const float *x, const float *y,
                        int64_t n);

static void e_relu_fwd(const kdi_kernels *k, float *o, const float *x, const float *y, int64_t n)
{
    (void)y;
    k->relu_fwd(o, x, n);
}
static void e_relu_bwd(const kdi_kernels *k, float *o, const float *x, const float *y, int64_t n)
{
    k->relu_bwd(o, x, y, n);
}
static void e_leaky_fwd(const kdi_kernels *k, float *o, const float *x, const float *y, int64_t n)
{
    (void)y;
    k->leaky_relu_fwd(o, x, n, 0.01f);
}
static void e_leaky_bwd(const kdi_kernels *k, float *o, const float *x, const float *y, int64_t n)
{
    k->leaky_relu_bwd(o, x, y, n, 0.2f);
}
static void e_gelu_fwd(const kdi_kernels *k, float *o, const float *x, const float *y, int64_t n)
{
    (void)y;
    k->gelu_fwd(o, x, n);
}
static void e_gelu_bwd(const kdi_kernels *k, float *o, const float *x, const float *y, int64_t n)
{
    k->gelu_bwd(o, x, y, n);
}
static void e_tanh_fwd(const kdi_kernels *k, float *o, const float *x, const float *y, int64_t n)
{
    (void)y;
    k->tanh_fwd(o, x, n);
}
static void e_tanh_bwd(const kdi_kernels *k, float *o, const float *x, const float *y, int64_t n)
{
    k->tanh_bwd(o, x, y, n);
}
static void e_sigmoid_fwd(const kdi_kernels *k, float *o, const float *x, const float *y, int64_t n)
{
    (void)y;
    k->sigmoid_fwd(o, x, n);
}
static void e_sigmoid_bwd(const kdi_kernels *k, float *o, const float *x, const float *y, int64_t n)
{
    k->sigmoid_bwd(o, x, y, n);
}
static void e_axpy(const kdi_kernels *k, float *o, const float *x, const float *y, int64_t n)
{
    memcpy(o, y, sizeof(float) * (size_t)n);
    k->axpy(o, -0.37f, x, n);
}
static void e_scale(const kdi_kernels *k, float *o, const float *x, const float *y, int64_t n)
{
    (void)y;
    memcpy(o, x, sizeof(float) * (size_t)n);
    k->scale(o, 1.7f, n);
}
static void e_mul(const kdi_kernels *k, float *o, const float *x, const float *y, int64_t n)
{
    float mask[MAXN];
    for (int64_t i = 0; i < n; i++) mask[i] = y[i] > 0.0f ? 1.0f : 0.0f;
    k->mul(o, x, mask, 1.25f, n);
}

typedef struct elem_case {
    const char *name;
    elem_fn run;
    float lo, hi; /* range of x; y is in [-1, 1] (tanh/sigmoid backward: their outputs) */
    double rtol, atol;
} elem_case;

static const elem_case elem_cases[] = {
    {"relu_fwd", e_relu_fwd, -2, 2, 0, 0},
    {"relu_bwd", e_relu_bwd, -2, 2, 0, 0},
    {"leaky_relu_fwd", e_leaky_fwd, -2, 2, 0, 0},
    {"leaky_relu_bwd", e_leaky_bwd, -2, 2, 0, 0},
    {"scale", e_scale, -3, 3, 0, 0},
    {"mul", e_mul, -3, 3, 0, 0},
    {"axpy", e_axpy, -3, 3, 1e-6, 1e-7},
    {"tanh_bwd", e_tanh_bwd, -1, 1, 1e-6, 1e-7},
    {"sigmoid_bwd", e_sigmoid_bwd, 0, 1, 1e-6, 1e-7},
    {"gelu_fwd", e_gelu_fwd, -6, 6, 2e-6, 0},
    {"gelu_fwd small", e_gelu_fwd, -1e-3f, 1e-3f, 2e-6, 0},
    {"gelu_bwd", e_gelu_bwd, -6, 6, 2e-6, 5e-7},
    {"tanh_fwd", e_tanh_fwd, -6, 6, 1e-6, 0},
    {"tanh_fwd small", e_tanh_fwd, -1e-3f, 1e-3f, 1e-6, 0},
    {"tanh_fwd large", e_tanh_fwd, -100, 100, 1e-6, 0},
    {"sigmoid_fwd", e_sigmoid_fwd, -20, 20, 1e-6, 0},
    {"sigmoid_fwd large", e_sigmoid_fwd, -100, 100, 1e-6, 1e-38},
};

static void check_elem(const kdi_kernels *k, const elem_case *c, uint64_t seed)
{
    float *x = buf(seed, c->lo, c->hi), *y = buf(seed + 1, -1, 1);
    float *want = buf(0, 0, 0), *got = buf(0, 0, 0);
    if (c->run == e_sigmoid_bwd) kdt_fill(y, MAXN, seed + 1, 0, 1);
    for (size_t s = 0; s < NSIZES; s++) {
        int64_t n = sizes[s];
        set_guard(got, n);
        c->run(&kdi_kernels_ref, want, x, y, n);
        c->run(k, got, x, y, n);
        check_close(got, want, n, c->rtol, c->atol, c->name, k->name);
        check_guard(got, n, c->name, k->name);
    }
    unbuf(x), unbuf(y), unbuf(want), unbuf(got);
}

START_TEST(elementwise)
{
    for (size_t v = 0; v < NVARIANTS; v++) {
        const kdi_kernels *k = kdi_kernels_variant(variants[v]);
        if (k == NULL) continue;
        for (size_t c = 0; c < sizeof elem_cases / sizeof elem_cases[0]; c++)
            check_elem(k, &elem_cases[c], 10 + c);
    }
}
END_TEST

/* NaN, infinities and signed zeros go through as in the reference. */
START_TEST(special_values)
{
    static const float in[] = {NAN,   INFINITY, -INFINITY, 0.0f,   -0.0f,
                               88.0f, -88.0f,   1e-30f,    -1e-30f};
    const int64_t n = sizeof in / sizeof in[0];
    float want[16], got[16];
    for (size_t v = 0; v < NVARIANTS; v++) {
        const kdi_kernels *k = kdi_kernels_variant(variants[v]);
        if (k == NULL) continue;
        for (size_t c = 0; c < sizeof elem_cases / sizeof elem_cases[0]; c++) {
            const elem_case *ec = &elem_cases[c];
            if (ec->run == e_gelu_bwd || ec->run == e_tanh_bwd || ec->run == e_sigmoid_bwd ||
                ec->run == e_axpy)
                continue; /* derivatives at +-inf are inf * 0 in any formula */
            ec->run(&kdi_kernels_ref, want, in, in, n);
            ec->run(k, got, in, in, n);
            check_close(got, want, n, ec->rtol, ec->atol, ec->name, k->name);
        }
    }
}
END_TEST

/* ---------------------------------------------------------------- 2x2 max pooling: bit for bit */

/* Planes of oh x ow windows, width w (2 ow or 2 ow + 1) and 2 oh (+1) rows, from a few values,
 * so that ties are common; a NaN now and then in any place. Forward against ref, then backward
 * from its argmax, without and with keep. */
START_TEST(max_pool2)
{
    static const int64_t ows[] = {1, 3, 4, 7, 8, 9, 15, 16, 17, 31, 33, 100};
    for (size_t v = 0; v < NVARIANTS; v++) {
        const kdi_kernels *k = kdi_kernels_variant(variants[v]);
        if (k == NULL) continue;
        for (size_t s = 0; s < sizeof ows / sizeof ows[0]; s++)
            for (int odd = 0; odd < 2; odd++)
                for (int64_t oh = 1; oh <= 3; oh++) {
                    int64_t ow = ows[s], w = 2 * ow + odd, h = 2 * oh + odd, n = oh * ow;
                    float *x = buf(70 + s, 0.0f, 1.0f), *dy = buf(90 + s, -1.0f, 1.0f);
                    float *y0 = buf(1, 0, 1), *y1 = buf(1, 0, 1), *a0 = buf(1, 0, 1),
                          *a1 = buf(1, 0, 1);
                    float *d0 = buf(1, 0, 1), *d1 = buf(1, 0, 1);
                    for (int64_t i = 0; i < h * w; i++) {
                        x[i] = (float)((int)(x[i] * 4.0f)) - 2.0f; /* -2..1, many ties */
                        if (i % 37 == 11) x[i] = NAN;
                        if (i % 41 == 3) x[i] = -0.0f;
                    }
                    set_guard(y0, n);
                    set_guard(y1, n);
                    set_guard(a1, n);
                    kdi_kernels_ref.max_pool2_fwd(y0, a0, x, oh, ow, w);
                    k->max_pool2_fwd(y1, a1, x, oh, ow, w);
                    ck_assert_int_eq(memcmp(y0, y1, sizeof(float) * (size_t)n), 0);
                    ck_assert_int_eq(memcmp(a0, a1, sizeof(float) * (size_t)n), 0);
                    check_guard(y1, n, "max_pool2_fwd", k->name);
                    check_guard(a1, n, "max_pool2_fwd argmax", k->name);
                    /* keep: the outputs (-2..1, NaN, -0), as a ReLU's mask would be */
                    for (int masked = 0; masked < 2; masked++) {
                        const float *keep = masked ? y0 : NULL;
                        set_guard(d1, h * w);
                        for (int64_t r = 0; r < h; r++) /* not the kernel's: an odd last column */
                            if (odd) d1[r * w + w - 1] = CANARY;
                        if (odd)
                            for (int64_t c = 0; c < w; c++) d1[(h - 1) * w + c] = CANARY;
                        kdi_kernels_ref.max_pool2_bwd(d0, dy, keep, a0, oh, ow, w);
                        k->max_pool2_bwd(d1, dy, keep, a0, oh, ow, w);
                        for (int64_t r = 0; r < 2 * oh; r++)
                            ck_assert_msg(
                                memcmp(d0 + r * w, d1 + r * w, sizeof(float) * 2 * ow) == 0,
                                "%s max_pool2_bwd ow=%lld oh=%lld row %lld keep %d", k->name,
                                (long long)ow, (long long)oh, (long long)r, masked);
                        if (odd) {
                            for (int64_t r = 0; r < h; r++) ck_assert(d1[r * w + w - 1] == CANARY);
                            for (int64_t c = 0; c < w; c++)
                                ck_assert(d1[(h - 1) * w + c] == CANARY);
                        }
                        check_guard(d1, h * w, "max_pool2_bwd", k->name);
                    }
                    unbuf(x), unbuf(dy), unbuf(y0), unbuf(y1), unbuf(a0), unbuf(a1), unbuf(d0),
                        unbuf(d1);
                }
    }
}
END_TEST

/* ---------------------------------------------------------------- batch norm */

/* sum_dot gives the table's own sum and dot, bit for bit; bn_apply (with and without xhat) and
 * bn_input_grad the reference's within the fused tolerance (exact unless the compiler fuses a
 * multiply and an add). */
START_TEST(batch_norm)
{
    float *x = buf(5, -3, 3), *y = buf(6, -1, 1), *h0 = buf(1, 0, 1), *h1 = buf(1, 0, 1);
    float *o0 = buf(1, 0, 1), *o1 = buf(1, 0, 1);
    for (size_t v = 0; v < NVARIANTS + 1; v++) {
        const kdi_kernels *k = v < NVARIANTS ? kdi_kernels_variant(variants[v]) : &kdi_kernels_ref;
        if (k == NULL) continue;
        for (size_t s = 0; s < NSIZES; s++) {
            int64_t n = sizes[s];
            double sx, sxy;
            k->sum_dot(x, y, n, &sx, &sxy);
            ck_assert_msg(sx == k->sum(x, n) && sxy == k->dot(x, y, n), "%s sum_dot n=%lld",
                          k->name, (long long)n);
            k->sum_dot(x, x, n, &sx, &sxy);
            ck_assert_msg(sx == k->sum(x, n) && sxy == k->sum_sq(x, n), "%s sum_dot x x n=%lld",
                          k->name, (long long)n);
            set_guard(h1, n);
            set_guard(o1, n);
            kdi_kernels_ref.bn_apply(o0, h0, x, n, 0.25f, 1.5f, -0.75f, 0.125f);
            k->bn_apply(o1, h1, x, n, 0.25f, 1.5f, -0.75f, 0.125f);
            check_close(h1, h0, n, 1e-6, 1e-7, "bn_apply xhat", k->name);
            check_close(o1, o0, n, 1e-6, 1e-7, "bn_apply", k->name);
            k->bn_apply(o1, NULL, x, n, 0.25f, 1.5f, -0.75f, 0.125f);
            check_close(o1, o0, n, 1e-6, 1e-7, "bn_apply (inference)", k->name);
            check_guard(h1, n, "bn_apply xhat", k->name);
            check_guard(o1, n, "bn_apply", k->name);
            kdi_kernels_ref.bn_input_grad(o0, y, h0, n, 0.01f, 64.0f, 0.5f, -2.0f);
            k->bn_input_grad(o1, y, h0, n, 0.01f, 64.0f, 0.5f, -2.0f);
            check_close(o1, o0, n, 1e-6, 1e-7, "bn_input_grad", k->name);
            check_guard(o1, n, "bn_input_grad", k->name);
        }
    }
    unbuf(x), unbuf(y), unbuf(h0), unbuf(h1), unbuf(o0), unbuf(o1);
}
END_TEST

/* A convolution's output planes: rows of a wider source plus a scalar, and the ReLU of them; bit
 * for bit against ref and, for r, against relu_fwd itself (NaN, -0 and a -0 "bias" that copies). */
START_TEST(plane_out)
{
    /* short rows too, whose last vector spills into the rows after it (3 x 3, 14 x 14) */
    static const int64_t shapes[][3] = {{1, 1, 1},   {1, 15, 15},  {3, 7, 9},   {5, 16, 18},
                                        {2, 17, 17}, {28, 28, 30}, {4, 33, 40}, {1, 100, 100},
                                        {3, 3, 5},   {14, 14, 16}, {7, 7, 7},   {2, 5, 5}};
    static const float biases[] = {0.25f, -0.0f, 0.0f};
    float *src = buf(8, -2, 2), *y0 = buf(1, 0, 1), *y1 = buf(1, 0, 1), *r0 = buf(1, 0, 1),
          *r1 = buf(1, 0, 1);
    for (int64_t i = 0; i < 200; i += 13) src[i] = i % 2 ? NAN : -0.0f;
    for (size_t v = 0; v < NVARIANTS; v++) {
        const kdi_kernels *k = kdi_kernels_variant(variants[v]);
        if (k == NULL) continue;
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (size_t b = 0; b < sizeof biases / sizeof biases[0]; b++)
                for (int relu = 0; relu < 2; relu++) {
                    int64_t rows = shapes[s][0], cols = shapes[s][1], ld = shapes[s][2];
                    int64_t n = rows * cols;
                    set_guard(y1, n);
                    set_guard(r1, n);
                    kdi_kernels_ref.plane_out(y0, relu ? r0 : NULL, src, rows, cols, ld, biases[b]);
                    k->plane_out(y1, relu ? r1 : NULL, src, rows, cols, ld, biases[b]);
                    ck_assert_msg(memcmp(y0, y1, sizeof(float) * (size_t)n) == 0,
                                  "%s plane_out %lldx%lld", k->name, (long long)rows,
                                  (long long)cols);
                    if (biases[b] == -0.0f && signbit(biases[b]))
                        for (int64_t i = 0; i < rows; i++)
                            ck_assert(memcmp(y1 + i * cols, src + i * ld,
                                             sizeof(float) * (size_t)cols) == 0);
                    check_guard(y1, n, "plane_out", k->name);
                    if (!relu) continue;
                    ck_assert(memcmp(r0, r1, sizeof(float) * (size_t)n) == 0);
                    set_guard(r0, n);
                    k->plane_out(NULL, r0, src, rows, cols, ld, biases[b]); /* r alone */
                    ck_assert(memcmp(r0, r1, sizeof(float) * (size_t)n) == 0);
                    check_guard(r0, n, "plane_out r alone", k->name);
                    k->relu_fwd(y0, y1, n); /* the ReLU layer's own kernel */
                    ck_assert(memcmp(y0, r1, sizeof(float) * (size_t)n) == 0);
                    check_guard(r1, n, "plane_out relu", k->name);
                }
    }
    unbuf(src), unbuf(y0), unbuf(y1), unbuf(r0), unbuf(r1);
}
END_TEST

/* plane_out's inverse layout: rows into a wider plane, zeros between them (not after the last),
 * bit for bit against ref (NaN and -0 copied), nothing written past the last row's values. */
START_TEST(plane_in)
{
    static const int64_t shapes[][3] = {{1, 1, 1},   {1, 15, 15},  {3, 7, 9},   {5, 16, 18},
                                        {2, 17, 17}, {28, 28, 30}, {4, 33, 40}, {14, 14, 16},
                                        {7, 7, 9},   {3, 5, 40}};
    float *x = buf(8, -2, 2), *y0 = buf(1, 0, 1), *y1 = buf(1, 0, 1);
    for (int64_t i = 0; i < 200; i += 13) x[i] = i % 2 ? NAN : -0.0f;
    for (size_t v = 0; v < NVARIANTS; v++) {
        const kdi_kernels *k = kdi_kernels_variant(variants[v]);
        if (k == NULL) continue;
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            int64_t rows = shapes[s][0], cols = shapes[s][1], ld = shapes[s][2];
            int64_t n = (rows - 1) * ld + cols;
            set_guard(y0, n);
            set_guard(y1, n);
            kdi_kernels_ref.plane_in(y0, x, rows, cols, ld);
            k->plane_in(y1, x, rows, cols, ld);
            ck_assert_msg(memcmp(y0, y1, sizeof(float) * (size_t)n) == 0, "%s plane_in %lldx%lld",
                          k->name, (long long)rows, (long long)cols);
            check_guard(y1, n, "plane_in", k->name);
            check_guard(y0, n, "plane_in ref", "ref");
            for (int64_t i = 0; i + 1 < rows; i++)
                for (int64_t j = cols; j < ld; j++) ck_assert(y1[i * ld + j] == 0.0f);
        }
    }
    unbuf(x), unbuf(y0), unbuf(y1);
}
END_TEST

/* ---------------------------------------------------------------- sums */

START_TEST(sums)
{
    float *x = buf(1, -3, 3), *y = buf(2, -1, 1);
    for (size_t v = 0; v < NVARIANTS; v++) {
        const kdi_kernels *k = kdi_kernels_variant(variants[v]);
        if (k == NULL) continue;
        for (size_t s = 0; s < NSIZES; s++) {
            int64_t n = sizes[s];
            double mag = 0, mag_sq = 0;
            for (int64_t i = 0; i < n; i++)
                mag += fabs((double)x[i] * y[i]), mag_sq += (double)x[i] * x[i];
            double want = kdi_kernels_ref.dot(x, y, n), got = k->dot(x, y, n);
            ck_assert_msg(fabs(got - want) <= 1e-12 * mag, "%s dot n=%lld: %.17g, ref %.17g",
                          k->name, (long long)n, got, want);
            double mag_x = 0;
            for (int64_t i = 0; i < n; i++) mag_x += fabs((double)x[i]);
            want = kdi_kernels_ref.sum(x, n), got = k->sum(x, n);
            ck_assert_msg(fabs(got - want) <= 1e-12 * mag_x, "%s sum n=%lld: %.17g, ref %.17g",
                          k->name, (long long)n, got, want);
            want = kdi_kernels_ref.sum_sq(x, n), got = k->sum_sq(x, n);
            ck_assert_msg(fabs(got - want) <= 1e-12 * mag_sq, "%s sum_sq n=%lld: %.17g, ref %.17g",
                          k->name, (long long)n, got, want);
        }
        ck_assert(k->dot(x, y, 0) == 0.0 && k->sum_sq(x, 0) == 0.0 && k->sum(x, 0) == 0.0);
    }
    unbuf(x), unbuf(y);
}
END_TEST

/* ---------------------------------------------------------------- rows */

static const int64_t row_shapes[][2] = {{1, 1},    {3, 10},   {17, 7},  {2, 17},
                                        {128, 10}, {5, 1000}, {2, 4097}};
#define NROWS (sizeof row_shapes / sizeof row_shapes[0])
static const float inv_ts[] = {1.0f, 0.25f, 4.0f};

static void check_rows(const kdi_kernels *k, const float *z, int64_t r, int64_t c, float inv_t)
{
    int64_t n = r * c;
    float *want = malloc(sizeof(float) * (size_t)(n + GUARD)),
          *got = malloc(sizeof(float) * (size_t)(n + GUARD));
    kdi_kernels_ref.softmax_rows(want, z, r, c, inv_t);
    set_guard(got, n);
    k->softmax_rows(got, z, r, c, inv_t);
    check_close(got, want, n, 1e-6, 1e-30, "softmax_rows", k->name);
    check_guard(got, n, "softmax_rows", k->name);
    for (int64_t i = 0; i < r; i++) {
        double sum = 0;
        for (int64_t j = 0; j < c; j++) sum += got[i * c + j];
        ck_assert_msg(fabs(sum - 1.0) < 1e-5, "%s softmax row %lld sums to %.9g", k->name,
                      (long long)i, sum);
    }
    kdi_kernels_ref.log_softmax_rows(want, z, r, c, inv_t);
    k->log_softmax_rows(got, z, r, c, inv_t);
    check_close(got, want, n, 1e-6, 3e-7, "log_softmax_rows", k->name);
    check_guard(got, n, "log_softmax_rows", k->name);
    for (int64_t i = 0; i < n; i++) ck_assert(isfinite(got[i]) && got[i] <= 0.0f);
    free(want), free(got);
}

START_TEST(rows)
{
    float *z = malloc(sizeof(float) * 2 * 4097);
    for (size_t v = 0; v < NVARIANTS; v++) {
        const kdi_kernels *k = kdi_kernels_variant(variants[v]);
        if (k == NULL) continue;
        for (size_t s = 0; s < NROWS; s++)
            for (size_t t = 0; t < sizeof inv_ts / sizeof inv_ts[0]; t++) {
                int64_t r = row_shapes[s][0], c = row_shapes[s][1];
                kdt_fill(z, r * c, 10 + s, -80, 80); /* exp(80) alone would overflow nothing, */
                check_rows(k, z, r, c, inv_ts[t]);
                kdt_fill(z, r * c, 20 + s, -3, 3); /* but exp(80 * 4) would */
                check_rows(k, z, r, c, inv_ts[t]);
                for (int64_t i = 0; i < r * c; i++) z[i] = 1e30f; /* a constant row: uniform */
                check_rows(k, z, r, c, inv_ts[t]);
            }
    }
    free(z);
}
END_TEST

/* A masked logit (-inf) gets probability 0 and does not disturb the others. */
START_TEST(rows_masked)
{
    float z[19], p[19];
    kdt_fill(z, 19, 5, -2, 2);
    z[3] = z[17] = -INFINITY;
    for (size_t v = 0; v < NVARIANTS; v++) {
        const kdi_kernels *k = kdi_kernels_variant(variants[v]);
        if (k == NULL) continue;
        k->softmax_rows(p, z, 1, 19, 1.0f);
        ck_assert(p[3] == 0.0f && p[17] == 0.0f);
        for (int j = 0; j < 19; j++) ck_assert(isfinite(p[j]));
        k->log_softmax_rows(p, z, 1, 19, 1.0f);
        ck_assert(isinf(p[3]) && p[3] < 0);
    }
}
END_TEST

START_TEST(bias)
{
    float *y = malloc(sizeof(float) * (5000 + GUARD)),
          *want = malloc(sizeof(float) * (5000 + GUARD));
    float *bias = buf(9, -1, 1), *g0 = buf(3, -1, 1);
    float *gw = buf(0, 0, 0), *gg = buf(0, 0, 0);
    for (size_t v = 0; v < NVARIANTS; v++) {
        const kdi_kernels *k = kdi_kernels_variant(variants[v]);
        if (k == NULL) continue;
        for (size_t s = 0; s < NROWS; s++) {
            int64_t r = row_shapes[s][0], c = row_shapes[s][1], n = r * c;
            if (n > 5000) continue;
            kdt_fill(y, n, s, -5, 5), kdt_fill(want, n, s, -5, 5);
            set_guard(y, n);
            kdi_kernels_ref.bias_add(want, bias, r, c);
            k->bias_add(y, bias, r, c);
            check_close(y, want, n, 0, 0, "bias_add", k->name);
            check_guard(y, n, "bias_add", k->name);
            memcpy(gw, g0, sizeof(float) * (size_t)c), memcpy(gg, g0, sizeof(float) * (size_t)c);
            set_guard(gg, c);
            kdi_kernels_ref.bias_grad(gw, y, r, c);
            k->bias_grad(gg, y, r, c);
            check_close(gg, gw, c, 0, 0, "bias_grad", k->name);
            check_guard(gg, c, "bias_grad", k->name);
        }
    }
    free(y), free(want), unbuf(bias), unbuf(g0), unbuf(gw), unbuf(gg);
}
END_TEST

/* ---------------------------------------------------------------- layer normalisation */

/* Each variant against the reference: the same float operations, only the double sums' order
 * differs (rtol 1e-6, atol 1e-6 for outputs near 0); the scales' gradients accumulate into what
 * was there. */
START_TEST(layernorm)
{
    float *x = buf(31, -3, 3), *dy = buf(32, -1, 1), *gamma = buf(33, 0.5f, 1.5f),
          *beta = buf(34, -1, 1), *g0 = buf(35, -1, 1);
    float *y[2], *h[2], *inv[2], *dx[2], *gg[2], *gb[2], *u[2];
    for (int w = 0; w < 2; w++) {
        y[w] = malloc(sizeof(float) * MAXN), h[w] = malloc(sizeof(float) * MAXN);
        inv[w] = malloc(sizeof(float) * MAXN), dx[w] = malloc(sizeof(float) * MAXN);
        gg[w] = malloc(sizeof(float) * MAXN), gb[w] = malloc(sizeof(float) * MAXN);
        u[w] = malloc(sizeof(float) * MAXN);
    }
    for (size_t v = 0; v < NVARIANTS; v++) {
        const kdi_kernels *k = kdi_kernels_variant(variants[v]);
        if (k == NULL) continue;
        for (size_t s = 0; s < NROWS; s++) {
            int64_t r = row_shapes[s][0], c = row_shapes[s][1], n = r * c;
            if (n > MAXN) continue;
            const kdi_kernels *ks[2] = {&kdi_kernels_ref, k};
            for (int w = 0; w < 2; w++) {
                ks[w]->layernorm_fwd(y[w], h[w], inv[w], x, gamma, beta, r, c, 1e-5f);
                memcpy(gg[w], g0, sizeof(float) * (size_t)c);
                memcpy(gb[w], g0, sizeof(float) * (size_t)c);
                ks[w]->layernorm_bwd(dx[w], gg[w], gb[w], u[w], h[w], inv[w], gamma, dy, r, c);
            }
            check_close(y[1], y[0], n, 1e-6, 1e-6, "layernorm_fwd y", k->name);
            check_close(h[1], h[0], n, 1e-6, 1e-6, "layernorm_fwd xhat", k->name);
            check_close(inv[1], inv[0], r, 1e-6, 0, "layernorm_fwd inv_std", k->name);
            check_close(dx[1], dx[0], n, 1e-5, 1e-6, "layernorm_bwd dx", k->name);
            check_close(gg[1], gg[0], c, 1e-6, 1e-6, "layernorm_bwd ggamma", k->name);
            check_close(gb[1], gb[0], c, 1e-6, 1e-6, "layernorm_bwd gbeta", k->name);
            /* dx NULL: the scales' gradients alone */
            k->layernorm_bwd(NULL, gg[1], gb[1], u[1], h[1], inv[1], gamma, dy, r, c);
        }
    }
    for (int w = 0; w < 2; w++)
        free(y[w]), free(h[w]), free(inv[w]), free(dx[w]), free(gg[w]), free(gb[w]), free(u[w]);
    unbuf(x), unbuf(dy), unbuf(gamma), unbuf(beta), unbuf(g0);
}
END_TEST

/* ---------------------------------------------------------------- optimizer updates */

typedef struct opt_state {
    float *w, *v, *m;
} opt_state;

static opt_state opt_new(void)
{
    opt_state s = {buf(1, -1, 1), buf(2, 0, 1), buf(3, -0.1f, 0.1f)};
    return s;
}

static void opt_free(opt_state s) { unbuf(s.w), unbuf(s.v), unbuf(s.m); }

/* kind 0..2: SGD without momentum, with, Nesterov; 3, 4: Adam, AdamW. Five steps. */
static void opt_run(const kdi_kernels *k, opt_state s, int kind, const float *g, int64_t n)
{
    for (int t = 1; t <= 5; t++) {
        if (kind == 0)
            k->sgd_update(s.w, NULL, g, n, 0.05f, 0.0f, 1e-4f, 0);
        else if (kind < 3)
            k->sgd_update(s.w, s.v, g, n, 0.05f, 0.9f, 1e-4f, kind == 2);
        else
            k->adam_update(s.w, s.m, s.v, g, n, 1e-2f, 0.9f, 0.999f, 1e-8f, 0.01f,
                           1.0f - powf(0.9f, (float)t), 1.0f - powf(0.999f, (float)t), kind == 4);
    }
}

START_TEST(optimizer_updates)
{
    float *g = buf(4, -1, 1);
    for (size_t v = 0; v < NVARIANTS; v++) {
        const kdi_kernels *k = kdi_kernels_variant(variants[v]);
        if (k == NULL) continue;
        for (int kind = 0; kind < 5; kind++)
            for (size_t s = 0; s < NSIZES; s++) {
                int64_t n = sizes[s];
                opt_state want = opt_new(), got = opt_new();
                set_guard(got.w, n), set_guard(got.v, n), set_guard(got.m, n);
                opt_run(&kdi_kernels_ref, want, kind, g, n);
                opt_run(k, got, kind, g, n);
                check_close(got.w, want.w, n, 1e-5, 1e-6, "update w", k->name);
                check_close(got.v, want.v, n, 1e-5, 1e-6, "update v", k->name);
                check_close(got.m, want.m, n, 1e-5, 1e-6, "update m", k->name);
                check_guard(got.w, n, "update w", k->name);
                check_guard(got.v, n, "update v", k->name);
                check_guard(got.m, n, "update m", k->name);
                opt_free(want), opt_free(got);
            }
    }
    unbuf(g);
}
END_TEST

/* ---------------------------------------------------------------- GEMM */

typedef struct gemm_case {
    int ta, tb;
    int64_t m, n, k, lda, ldb, ldc;
    float alpha, beta;
} gemm_case;

/* Checks C = alpha op(A) op(B) + beta C0 entry by entry against a double-precision loop; small
 * selects the kernel: 0 gemm, 1 gemm_small, 2 gemm_packed. */
static void check_gemm_with(const kdi_kernels *kt, int small, const gemm_case *g)
{
    int64_t arows = g->ta ? g->k : g->m, brows = g->tb ? g->n : g->k;
    float *a = malloc(sizeof(float) * (size_t)(arows * g->lda + 1));
    float *b = malloc(sizeof(float) * (size_t)(brows * g->ldb + 1));
    float *c = malloc(sizeof(float) * (size_t)(g->m * g->ldc + 1));
    float *c0 = malloc(sizeof(float) * (size_t)(g->m * g->ldc + 1));
    kdt_fill(a, arows * g->lda, 1, -1, 1);
    kdt_fill(b, brows * g->ldb, 2, -1, 1);
    kdt_fill(c0, g->m * g->ldc, 3, -1, 1);
    /* beta == 0 must not read C: NaN there must not come through */
    for (int64_t i = 0; i < g->m * g->ldc; i++) c[i] = g->beta == 0.0f ? NAN : c0[i];
    (small == 2 ? kt->gemm_packed
     : small    ? kt->gemm_small
             : kt->gemm)(g->ta, g->tb, g->m, g->n, g->k, g->alpha, a, g->lda, b, g->ldb, g->beta, c,
                         g->ldc);
    for (int64_t i = 0; i < g->m; i++)
        for (int64_t j = 0; j < g->ldc; j++) {
            float was = g->beta == 0.0f ? NAN : c0[i * g->ldc + j];
            if (j >= g->n) { /* the padding between rows of C is left alone */
                ck_assert(memcmp(&c[i * g->ldc + j], &was, sizeof was) == 0);
                continue;
            }
            double want, norm = fabs(g->beta * c0[i * g->ldc + j]);
            double sum = 0, abs_sum = 0;
            for (int64_t p = 0; p < g->k; p++) {
                double av = g->ta ? a[p * g->lda + i] : a[i * g->lda + p];
                double bv = g->tb ? b[j * g->ldb + p] : b[p * g->ldb + j];
                sum += av * bv, abs_sum += fabs(av * bv);
            }
            want = g->alpha * sum + (g->beta == 0.0f ? 0.0 : g->beta * c0[i * g->ldc + j]);
            norm += fabs(g->alpha) * abs_sum;
            ck_assert_msg(fabs(c[i * g->ldc + j] - want) <= 1e-5 * norm + 1e-30,
                          "%s gemm%s ta=%d tb=%d %lldx%lldx%lld [%lld,%lld]: %.9g, want %.9g",
                          kt->name,
                          small == 2 ? "_packed"
                          : small    ? "_small"
                                     : "",
                          g->ta, g->tb, (long long)g->m, (long long)g->n, (long long)g->k,
                          (long long)i, (long long)j, c[i * g->ldc + j], want);
        }
    free(a), free(b), free(c), free(c0);
}

static void check_gemm(const kdi_kernels *kt, const gemm_case *g) { check_gemm_with(kt, 0, g); }
static void check_gemm_packed(const kdi_kernels *kt, const gemm_case *g)
{
    check_gemm_with(kt, 2, g);
}

/* with a few rows (3, 6, 12) B transposed takes the dot form or the packed kernel with AVX2 */
static const int64_t gemm_shapes[][3] = {{1, 1, 1},      {7, 5, 3},   {33, 17, 65}, {16, 31, 9},
                                         {128, 10, 800}, {3, 40, 70}, {6, 33, 100}, {12, 20, 130}};

START_TEST(gemm)
{
    const kdi_kernels *tables[] = {&kdi_kernels_ref, kdi_kernels_variant("avx2"),
                                   kdi_kernels_variant("avx512")};
    for (size_t v = 0; v < 3; v++) {
        if (tables[v] == NULL) continue;
        for (size_t s = 0; s < sizeof gemm_shapes / sizeof gemm_shapes[0]; s++)
            for (int t = 0; t < 4; t++)
                for (int pad = 0; pad < 2; pad++) {
                    gemm_case g = {
                        t >> 1, t & 1, gemm_shapes[s][0], gemm_shapes[s][1], gemm_shapes[s][2], 0,
                        0,      0,     pad ? 0.5f : 1.0f, pad ? 0.25f : 0.0f};
                    g.lda = (g.ta ? g.m : g.k) + 3 * pad;
                    g.ldb = (g.tb ? g.k : g.n) + 2 * pad;
                    g.ldc = g.n + pad;
                    check_gemm(tables[v], &g);
                }
    }
}
END_TEST

/* gemm_small's every tile and edge: rows 1..9 (tiles of 1, 2 and 4 rows), columns around one
 * and two vectors of 8 and 16 and past the GEMV's 8-row tile, depths around the vector widths. */
START_TEST(gemm_small)
{
    static const int64_t ms[] = {1, 2, 3, 4, 5, 9}, ns[] = {1, 3, 8, 9, 16, 17, 33, 40},
                         ks[] = {1, 7, 16, 17, 33, 100};
    const kdi_kernels *tables[] = {&kdi_kernels_ref, kdi_kernels_variant("avx2"),
                                   kdi_kernels_variant("avx512")};
    for (size_t v = 0; v < 3; v++) {
        if (tables[v] == NULL) continue;
        for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++)
            for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++)
                for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++)
                    for (int t = 0; t < 4; t++) {
                        int pad = (int)((mi + ni + ki + (size_t)t) & 1);
                        gemm_case g = {t >> 1,
                                       t & 1,
                                       ms[mi],
                                       ns[ni],
                                       ks[ki],
                                       0,
                                       0,
                                       0,
                                       pad ? -0.5f : 1.0f,
                                       pad ? 0.25f : 0.0f};
                        g.lda = (g.ta ? g.m : g.k) + 3 * pad;
                        g.ldb = (g.tb ? g.k : g.n) + 2 * pad;
                        g.ldc = g.n + pad;
                        check_gemm_with(tables[v], 1, &g);
                    }
        /* the dense layer's batch-1 forward and backward of a 784-256 layer */
        gemm_case fwd = {0, 1, 1, 256, 784, 784, 784, 256, 1.0f, 0.0f};
        gemm_case dw = {1, 0, 256, 784, 1, 256, 784, 784, 1.0f, 1.0f};
        gemm_case dx = {0, 0, 1, 784, 256, 256, 784, 784, 1.0f, 0.0f};
        check_gemm_with(tables[v], 1, &fwd);
        check_gemm_with(tables[v], 1, &dw);
        check_gemm_with(tables[v], 1, &dx);
        check_gemm(tables[v], &fwd); /* and gemm's route to it */
    }
}
END_TEST

/* gemm_packed's tiles and edges: rows around its 6- and 12-row tiles, columns around one and two
 * vectors (a strip of 2 W), depths around its 128-deep blocks of B (beta applied once, by the
 * first block), B transposed or not, A transposed or not, padded strides. */
START_TEST(gemm_packed)
{
    static const int64_t ms[] = {1, 5, 12, 13, 25}, ns[] = {1, 8, 9, 16, 17, 32, 33, 70},
                         ks[] = {1, 17, 128, 129, 300};
    const kdi_kernels *tables[] = {&kdi_kernels_ref, kdi_kernels_variant("avx2"),
                                   kdi_kernels_variant("avx512")};
    for (size_t v = 0; v < 3; v++) {
        if (tables[v] == NULL) continue;
        for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++)
            for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++)
                for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++)
                    for (int t = 0; t < 4; t++) {
                        int pad = (int)((mi + ni + ki + (size_t)t) & 1);
                        gemm_case g = {t >> 1,
                                       t & 1,
                                       ms[mi],
                                       ns[ni],
                                       ks[ki],
                                       0,
                                       0,
                                       0,
                                       pad ? -0.5f : 1.0f,
                                       pad ? 0.25f : 0.0f};
                        g.lda = (g.ta ? g.m : g.k) + 3 * pad;
                        g.ldb = (g.tb ? g.k : g.n) + 2 * pad;
                        g.ldc = g.n + pad;
                        check_gemm_packed(tables[v], &g);
                    }
        /* a transformer's projection, through gemm's route */
        gemm_case qkv = {0, 1, 64, 96, 32, 32, 32, 96, 1.0f, 0.0f};
        gemm_case dw = {1, 0, 96, 32, 200, 96, 32, 32, 1.0f, 1.0f};
        check_gemm(tables[v], &qkv);
        check_gemm(tables[v], &dw);
    }
}
END_TEST

/* gemm_rows_b: B's rows at offsets into a buffer (overlapping, out of order, as a convolution's
 * im2col rows are in its padded planes), small and packed shapes. Against the double loop, and
 * bit for bit against gemm on the rows copied out where gemm takes the same route (ref, and
 * AVX-512, where gemm's big shapes are the packed kernel's; AVX2 sends them to OpenBLAS). */
START_TEST(gemm_rows)
{
    static const int64_t ms[] = {1, 5, 12, 13, 32}, ns[] = {1, 9, 33, 70, 222},
                         ks[] = {1, 17, 129, 288};
    const kdi_kernels *tables[] = {&kdi_kernels_ref, kdi_kernels_variant("avx2"),
                                   kdi_kernels_variant("avx512")};
    enum { SPAN = 4096 };
    float *base = malloc(sizeof(float) * (SPAN + 300)), *a = malloc(sizeof(float) * 32 * 300);
    float *bm = malloc(sizeof(float) * 300 * 222), *c = malloc(sizeof(float) * 32 * 223),
          *c1 = malloc(sizeof(float) * 32 * 223), *c0 = malloc(sizeof(float) * 32 * 223);
    int64_t rows[300];
    ck_assert(base && a && bm && c && c1 && c0);
    kdt_fill(base, SPAN + 300, 4, -1, 1);
    kdt_fill(a, 32 * 300, 5, -1, 1);
    kdt_fill(c0, 32 * 223, 6, -1, 1);
    for (size_t v = 0; v < 3; v++) {
        const kdi_kernels *kt = tables[v];
        if (kt == NULL) continue;
        for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++)
            for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++)
                for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
                    int64_t m = ms[mi], n = ns[ni], k = ks[ki], lda = k + 1, ldc = n + 1;
                    float beta = (mi + ki) & 1 ? 0.5f : 0.0f, alpha = ni & 1 ? -0.75f : 1.0f;
                    for (int64_t p = 0; p < k; p++) {
                        rows[p] = (p * 37 + 11 * (p & 3)) % (SPAN - n);
                        memcpy(bm + p * n, base + rows[p], sizeof(float) * (size_t)n);
                    }
                    for (int64_t i = 0; i < m * ldc; i++) c[i] = c1[i] = beta == 0 ? NAN : c0[i];
                    kt->gemm_rows_b(m, n, k, alpha, a, lda, base, rows, beta, c, ldc);
                    kt->gemm(0, 0, m, n, k, alpha, a, lda, bm, n, beta, c1, ldc);
                    for (int64_t i = 0; i < m; i++)
                        for (int64_t j = 0; j < n; j++) {
                            double sum = 0, norm = 0;
                            for (int64_t p = 0; p < k; p++) {
                                double t = (double)a[i * lda + p] * bm[p * n + j];
                                sum += t, norm += fabs(t);
                            }
                            double was = beta == 0 ? 0.0 : c0[i * ldc + j];
                            double want = alpha * sum + beta * was;
                            ck_assert_msg(
                                fabs(c[i * ldc + j] - want) <=
                                    1e-5 * (fabs(alpha) * norm + fabs(beta * was)) + 1e-30,
                                "%s gemm_rows_b %lldx%lldx%lld [%lld,%lld]", kt->name, (long long)m,
                                (long long)n, (long long)k, (long long)i, (long long)j);
                        }
                    if (v != 1) /* the same route as gemm: the same bits */
                        ck_assert_msg(memcmp(c, c1, sizeof(float) * (size_t)(m * ldc)) == 0,
                                      "%s gemm_rows_b %lldx%lldx%lld differs from gemm", kt->name,
                                      (long long)m, (long long)n, (long long)k);
                }
    }
    free(base), free(a), free(bm), free(c), free(c1), free(c0);
}
END_TEST

/* Degenerate sizes: an empty C is not touched, an empty sum scales C by beta. */
START_TEST(gemm_degenerate)
{
    const kdi_kernels *tables[] = {&kdi_kernels_ref, kdi_kernels_variant("avx2"),
                                   kdi_kernels_variant("avx512")};
    for (size_t v = 0; v < 3; v++) {
        if (tables[v] == NULL) continue;
        float a[4] = {1, 2, 3, 4}, b[4] = {1, 2, 3, 4}, c[4] = {1, 2, 3, 4};
        tables[v]->gemm(0, 0, 0, 2, 2, 1.0f, a, 2, b, 2, 0.0f, c, 2);
        tables[v]->gemm(0, 0, 2, 0, 2, 1.0f, a, 2, b, 2, 0.0f, c, 2);
        ck_assert(c[0] == 1 && c[3] == 4);
        tables[v]->gemm(0, 0, 2, 2, 0, 1.0f, a, 1, b, 2, 0.5f, c, 2);
        ck_assert(c[0] == 0.5f && c[1] == 1.0f && c[2] == 1.5f && c[3] == 2.0f);
    }
}
END_TEST

/* ---------------------------------------------------------------- the choice of table */

#define EACH_KERNEL(X) KDI_EACH_KERNEL(X)

START_TEST(tables_complete)
{
    const char *names[] = {"ref", "avx2", "avx512"};
    for (int v = 0; v < 3; v++) {
        const kdi_kernels *k = kdi_kernels_variant(names[v]);
        if (k == NULL) continue;
        ck_assert_str_eq(k->name, names[v]);
#define NONNULL(f) ck_assert_msg(k->f != NULL, "%s has no " #f, names[v]);
        EACH_KERNEL(NONNULL)
#undef NONNULL
    }
}
END_TEST

/* What a fresh process chooses with KD_KERNELS set to `value` (NULL: unset). */
static const char *chosen_with(const char *value)
{
    static const char *names[] = {"ref", "avx2", "avx512", "?"};
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (value != NULL)
            setenv("KD_KERNELS", value, 1);
        else
            unsetenv("KD_KERNELS");
        const char *name = kd_kernels_name();
        int i = 0;
        while (i < 3 && strcmp(names[i], name) != 0) i++;
        _exit(i);
    }
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    return names[WEXITSTATUS(status) < 3 ? WEXITSTATUS(status) : 3];
}

START_TEST(dispatch)
{
    const kdi_kernels *best = kdi_kernels_variant("avx512");
    if (best == NULL) best = kdi_kernels_variant("avx2");
    if (best == NULL) best = &kdi_kernels_ref;
    ck_assert_ptr_eq(kdi_kernels_variant("ref"), &kdi_kernels_ref);
    ck_assert_ptr_null(kdi_kernels_variant("nonsense"));
    ck_assert_ptr_null(kdi_kernels_variant(""));
    ck_assert_ptr_null(kdi_kernels_variant(NULL));
    /* KD_KERNELS picks a supported table; anything else falls back to the best, silently */
    ck_assert_str_eq(chosen_with(NULL), best->name);
    ck_assert_str_eq(chosen_with("ref"), "ref");
    ck_assert_str_eq(chosen_with("nonsense"), best->name);
    ck_assert_str_eq(chosen_with(""), best->name);
    ck_assert_str_eq(chosen_with("avx2"), kdi_kernels_variant("avx2") ? "avx2" : best->name);
    ck_assert_str_eq(chosen_with("avx512"), kdi_kernels_variant("avx512") ? "avx512" : best->name);
    /* and in this process: chosen once, never NULL, named by kd_kernels_name */
    const kdi_kernels *k = kdi_kernels_get();
    ck_assert_ptr_nonnull(k);
    ck_assert_ptr_eq(kdi_kernels_get(), k);
    ck_assert_str_eq(kd_kernels_name(), k->name);
    if (getenv("KD_KERNELS") == NULL) ck_assert_ptr_eq(k, best);
}
END_TEST

/* ---------------------------------------------------------------- int8: equal to ref, bit for bit */

static uint64_t lcg(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return *s >> 33;
}

/* The int8 tables to check: the variants, and AVX2's int8 kernels on their own (what AVX-512
 * without VNNI uses). */
static const kdi_kernels *int8_table(int v)
{
    return v < (int)NVARIANTS ? kdi_kernels_variant(variants[v]) : NULL;
}

START_TEST(int8_qgemm)
{
    static const int64_t ks[] = {1, 3, 4, 9, 31, 32, 33, 63, 64, 65, 144, 200, 784};
    uint64_t seed = 7;
    for (size_t t = 0; t < sizeof ks / sizeof ks[0]; t++) {
        /* m past two 8-row tiles; n over bands of two 16-column blocks and a lone one; lda up to
         * k + 4, so rows padded to whole groups (read whole, over random padding) are met too. */
        int64_t m = 1 + (int64_t)(lcg(&seed) % 20), n = 1 + (int64_t)(lcg(&seed) % 40), k = ks[t];
        int64_t lda = k + (int64_t)(lcg(&seed) % 5), ldb = k + (int64_t)(lcg(&seed) % 3),
                ldc = n + 1;
        uint8_t *a = malloc((size_t)(m * lda + 1));
        int8_t *b = malloc((size_t)(n * ldb + 1));
        int32_t *want = calloc((size_t)(m * ldc), 4), *got = calloc((size_t)(m * ldc), 4);
        int8_t *bp = malloc((size_t)kdi_qpack_size(n, k));
        ck_assert(a && b && want && got && bp);
        /* Extremes included: 255 * -128 everywhere must still be exact. */
        for (int64_t i = 0; i < m * lda; i++) a[i + 0] = t % 3 == 0 ? 255 : (uint8_t)lcg(&seed);
        for (int64_t i = 0; i < n * ldb; i++)
            b[i] = t % 3 == 0 ? (int8_t)-128 : (int8_t)(int)(lcg(&seed) % 256 - 128);
        kdi_qpack(bp, b, n, k, ldb);
        /* The reference against the plain definition on the unpacked B. */
        kdi_kernels_ref.qgemm_u8s8(m, n, k, a, lda, bp, want, ldc);
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                int64_t s = 0;
                for (int64_t p = 0; p < k; p++) s += (int64_t)a[i * lda + p] * b[j * ldb + p];
                ck_assert_msg(want[i * ldc + j] == (int32_t)s, "ref qgemm k=%lld [%lld,%lld]",
                              (long long)k, (long long)i, (long long)j);
            }
        for (int v = 0; v < (int)NVARIANTS; v++) {
            const kdi_kernels *kt = int8_table(v);
            if (kt == NULL) continue;
            for (int64_t i = 0; i < m * ldc; i++) got[i] = -7;
            kt->qgemm_u8s8(m, n, k, a, lda, bp, got, ldc);
            for (int64_t i = 0; i < m; i++)
                for (int64_t j = 0; j < n; j++)
                    ck_assert_msg(got[i * ldc + j] == want[i * ldc + j],
                                  "%s qgemm m=%lld n=%lld k=%lld [%lld,%lld]: %d, ref %d",
                                  variants[v], (long long)m, (long long)n, (long long)k,
                                  (long long)i, (long long)j, got[i * ldc + j], want[i * ldc + j]);
            for (int64_t i = 0; i < m; i++) ck_assert_int_eq(got[i * ldc + n], -7); /* stride gap */
        }
        free(a);
        free(b);
        free(bp);
        free(want);
        free(got);
    }
}
END_TEST

START_TEST(int8_quantize_requant)
{
    uint64_t seed = 11;
    for (size_t t = 0; t < NSIZES; t++) {
        int64_t n = sizes[t];
        float *x = buf(300 + t, -40.0f, 40.0f);
        /* Exact halves, huge and tiny values: rounding ties and saturation. */
        x[0] = 2.5f * 0.25f;
        if (n > 1) x[1] = 3.0e38f;
        if (n > 2) x[2] = -3.0e38f;
        if (n > 3) x[3] = -0.0f;
        if (n > 4) x[4] = 0.125f * 7.0f;
        uint8_t *want = malloc((size_t)n + GUARD), *got = malloc((size_t)n + GUARD);
        int32_t *acc = malloc(sizeof(int32_t) * (size_t)n),
                *corr = malloc(sizeof(int32_t) * (size_t)n);
        float *mult = malloc(sizeof(float) * (size_t)n), *fw = malloc(sizeof(float) * (size_t)n),
              *fg = malloc(sizeof(float) * ((size_t)n + GUARD));
        ck_assert(want && got && acc && corr && mult && fw && fg);
        for (int64_t i = 0; i < n; i++) {
            acc[i] = (int32_t)(lcg(&seed) % 2000001) - 1000000;
            corr[i] = (int32_t)(lcg(&seed) % 20001) - 10000;
            mult[i] = (float)(lcg(&seed) % 1000 + 1) * 1e-6f;
        }
        acc[0] = INT32_MAX; /* wraps with corr, as the SIMD add does */
        corr[0] = 5;
        mult[0] = 1.0f;
        const int64_t rows = n % 3 == 0 ? 3 : 1, cols = n / rows;
        for (int pass = 0; pass < 3; pass++) {
            int32_t zp = pass == 0 ? 0 : pass == 1 ? 128 : 3, lo = pass == 2 ? 3 : 0;
            kdi_kernels_ref.quantize_u8(want, x, n, 0.25f, zp);
            for (int v = 0; v < (int)NVARIANTS; v++) {
                const kdi_kernels *kt = int8_table(v);
                if (kt == NULL) continue;
                memset(got, 0xA5, (size_t)n + GUARD);
                kt->quantize_u8(got, x, n, 0.25f, zp);
                ck_assert_msg(memcmp(got, want, (size_t)n) == 0, "%s quantize n=%lld", variants[v],
                              (long long)n);
                for (int g = 0; g < GUARD; g++) ck_assert_int_eq(got[n + g], 0xA5);
            }
            kdi_kernels_ref.requant_u8(want, acc, rows, cols, corr, mult, zp, lo);
            kdi_kernels_ref.dequant_i32(fw, acc, rows, cols, corr, mult);
            for (int v = 0; v < (int)NVARIANTS; v++) {
                const kdi_kernels *kt = int8_table(v);
                if (kt == NULL) continue;
                memset(got, 0xA5, (size_t)n + GUARD);
                kt->requant_u8(got, acc, rows, cols, corr, mult, zp, lo);
                ck_assert_msg(memcmp(got, want, (size_t)(rows * cols)) == 0,
                              "%s requant n=%lld zp=%d", variants[v], (long long)n, zp);
                ck_assert_int_eq(got[rows * cols], 0xA5);
                set_guard(fg, rows * cols);
                kt->dequant_i32(fg, acc, rows, cols, corr, mult);
                ck_assert_msg(memcmp(fg, fw, sizeof(float) * (size_t)(rows * cols)) == 0,
                              "%s dequant n=%lld", variants[v], (long long)n);
                check_guard(fg, rows * cols, "dequant", variants[v]);
            }
        }
        unbuf(x);
        free(want);
        free(got);
        free(acc);
        free(corr);
        free(mult);
        free(fw);
        free(fg);
    }
}
END_TEST

/* AVX-512 without VNNI uses AVX2's int8 kernels; they are checked above as "avx2". The table this
 * CPU gets for "avx512" has them or VNNI's, never NULL. */
START_TEST(int8_dispatch)
{
    const kdi_kernels *k = kdi_kernels_variant("avx512");
    if (k == NULL) return;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512vnni"))
        ck_assert(k->qgemm_u8s8 == kdi_kernels_avx512.qgemm_u8s8);
    else
        ck_assert(k->qgemm_u8s8 == kdi_kernels_avx2.qgemm_u8s8);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("kernels");
    TCase *t = tcase_create("kernels");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, dispatch);
    tcase_add_test(t, tables_complete);
    tcase_add_test(t, elementwise);
    tcase_add_test(t, special_values);
    tcase_add_test(t, max_pool2);
    tcase_add_test(t, batch_norm);
    tcase_add_test(t, sums);
    tcase_add_test(t, rows);
    tcase_add_test(t, rows_masked);
    tcase_add_test(t, bias);
    tcase_add_test(t, optimizer_updates);
    tcase_add_test(t, gemm);
    tcase_add_test(t, gemm_degenerate);
    tcase_add_test(t, gemm_small);
    tcase_add_test(t, gemm_packed);
    tcase_add_test(t, gemm_rows);
    tcase_add_test(t, layernorm);
    tcase_add_test(t, int8_qgemm);
    tcase_add_test(t, int8_quantize_requant);
    tcase_add_test(t, int8_dispatch);
    tcase_add_test(t, plane_out);
    tcase_add_test(t, plane_in);
    suite_add_tcase(s, t);
    return kdt_run(s);
}
