/* The int8 layers of quantised models (kd_model_quantize; docs/QUANTIZATION.md): they read and
 * write uint8 codes (real = scale * (q - zero_point), per tensor) kept in the chain's float buffers,
 * and compute with int8 weights (real = weight_scale[o] * w, per output channel) and int32 sums
 * (Jacob et al. 2018, arXiv:1712.05877, eqs. 4-7; ONNX QLinearConv's conventions):
 *
 *   quantize                       float -> codes        I.scale F32 [1], I.zero_point U8 [1]
 *   qdense N [relu=1] [dequant=1]  codes -> codes|float  I.weight I8 [N, in], I.weight_scale F32 [N],
 *   qconv C K [stride=S] [pad=P] [relu=1] [dequant=1]    I.weight I8 [C, Cin, K, K], ...
 *                                  I.bias I32 [N] (scale s_in * weight_scale[o]) and, unless dequant,
 *                                  I.output_scale F32 [1], I.output_zero_point U8 [1]
 *   qmaxpool K [stride=S], qflatten   codes -> codes (max commutes with the increasing dequantisation)
 *   dequantize                     codes -> float
 *
 * A layer's input scale and zero point are the output ones of the nearest earlier quantize, qdense or
 * qconv (found by link, kept as pointers into it). acc[o] = bias[o] + sum_k (x_k - z_in) w[o, k] is
 * computed as qgemm's sum_k x_k w[o, k] plus corr[o] = bias[o] - z_in * sum_k w[o, k], which changed
 * recomputes whenever the values are set. They only predict: a training forward is refused.
 *
 * Codes of images are kept channels-last (NHWC) between int8 layers, whatever the file's PyTorch
 * layouts: a conv's patch is then a few contiguous runs of k * Cin bytes, its result [pixels, C]
 * is already the next layer's input, and max pooling runs over contiguous channels. quantize
 * transposes into that order, qflatten and dequantize back to C, H, W order; the weights are
 * reordered to match when packed (changed). One channel or one pixel: the orders coincide. */
#include <float.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "kernels/kernels.h"
#include "nn/layers/layers.h"

enum { Q_QUANTIZE, Q_DENSE, Q_CONV, Q_MAXPOOL, Q_FLATTEN, Q_DEQUANTIZE };
enum { P_WEIGHT, P_WSCALE, P_BIAS, P_OSCALE, P_OZP };

typedef struct qlayer {
    int kind;
    int relu, dequant;
    int64_t k, stride, pad; /* qconv and qmaxpool */
    const float *in_scale;  /* the producer's output scale, [1] */
    const uint8_t *in_zp;   /* and zero point */
    int32_t *corr;          /* [out]: bias - z_in * sum_k w */
    float *mult;            /* [out]: s_in s_w / s_out, or s_in s_w with dequant */
    int8_t *packed;         /* the weights as qgemm_u8s8 reads them (kdi_qpack) */
    int8_t *reordered;      /* the weights with columns in the input's channels-last order */
    kdi_buf acc;    /* int32 [rows, out] in a float buffer (same size); qconv: one image's */
    kdi_buf cols;   /* qconv: uint8 [P, row], one image's patches (row: cols_row) */
    kdi_buf tmp;    /* qconv: one image's [P, C] result before NCHW */
    kdi_buf padded; /* qconv: one image with its border (padded_size) */
    int border;     /* the zero point padded's border holds, -1 when unknown */
} qlayer;

static const uint8_t *codes_in(const float *x) { return (const uint8_t *)x; }
/* Whether codes of shape s are stored channels-last, differently from C, H, W. */
static int hwc(kdi_shape s) { return s.c > 1 && s.h * s.w > 1; }

/* NCHW <-> NHWC of one image: out[p * c + ch] = in[ch * hw + p], or the reverse. */
static void to_hwc(uint8_t *out, const uint8_t *in, int64_t c, int64_t hw)
{
    for (int64_t ch = 0; ch < c; ch++)
        for (int64_t p = 0; p < hw; p++) out[p * c + ch] = in[ch * hw + p];
}
static void to_chw(uint8_t *out, const uint8_t *in, int64_t c, int64_t hw)
{
    for (int64_t p = 0; p < hw; p++)
        for (int64_t ch = 0; ch < c; ch++) out[ch * hw + p] = in[p * c + ch];
}
static uint8_t *codes_out(float *y) { return (uint8_t *)y; }

static int64_t fan_in(const kdi_layer *l)
{
    return l->params[P_WEIGHT].count / l->params[P_WEIGHT].dims[0];
}
static int64_t channels(const kdi_layer *l) { return l->params[P_WEIGHT].dims[0]; }

static kd_status q_check(kdi_layer *l, int64_t batch, int train)
{
    (void)batch;
    if (train)
        return kdi_fail(KD_ERR_UNSUPPORTED,
                        "layer '%s' is int8 and only predicts: train the float model, then "
                        "quantise it (kd_model_quantize)",
                        l->ops->kind);
    return KD_OK;
}

static kd_status q_backward(kdi_layer *l, const float *x, const float *y, const float *dy,
                            float *dx, int64_t batch)
{
    (void)x, (void)y, (void)dy, (void)dx, (void)batch;
    return kdi_fail(KD_ERR_UNSUPPORTED, "layer '%s' is int8 and has no gradient", l->ops->kind);
}

static void q_destroy(kdi_layer *l)
{
    qlayer *q = l->priv;
    if (q == NULL) return;
    kdi_free(q->corr);
    kdi_free(q->mult);
    kdi_free(q->packed);
    kdi_free(q->reordered);
    kdi_buf_free(&q->acc);
    kdi_buf_free(&q->cols);
    kdi_buf_free(&q->tmp);
    kdi_buf_free(&q->padded);
    kdi_free(q);
}

/* ---------------------------------------------------------------- quantize, dequantize */

static kd_status quantize_forward(kdi_layer *l, const float *x, float *y, int64_t batch, int train)
{
    (void)train;
    const uint8_t *zp = l->params[1].raw;
    qlayer *q = l->priv;
    int64_t size = kdi_shape_size(l->in);
    uint8_t *t = hwc(l->in) ? (uint8_t *)q->tmp.data : codes_out(y);
    kdi_kernels_get()->quantize_u8(t, x, batch * size, l->params[0].value[0], zp[0]);
    if (hwc(l->in))
        for (int64_t b = 0; b < batch; b++)
            to_hwc(codes_out(y) + b * size, t + b * size, l->in.c, l->in.h * l->in.w);
    return KD_OK;
}

static kd_status quantize_reserve(kdi_layer *l, int64_t batch)
{
    qlayer *q = l->priv;
    return hwc(l->in) ? kdi_buf_reserve(&q->tmp, (batch * kdi_shape_size(l->in) + 3) / 4) : KD_OK;
}

static kd_status dequantize_forward(kdi_layer *l, const float *x, float *y, int64_t batch,
                                    int train)
{
    (void)train;
    const qlayer *q = l->priv;
    const uint8_t *c = codes_in(x);
    float s = q->in_scale[0];
    int32_t z = q->in_zp[0];
    int64_t size = kdi_shape_size(l->in), hw = l->in.h * l->in.w, ch = l->in.c;
    for (int64_t b = 0; b < batch; b++) {
        const uint8_t *cb = c + b * size;
        float *yb = y + b * size;
        if (hwc(l->in)) {
            for (int64_t p = 0; p < hw; p++)
                for (int64_t k = 0; k < ch; k++)
                    yb[k * hw + p] = s * (float)((int32_t)cb[p * ch + k] - z);
        } else {
            for (int64_t i = 0; i < size; i++) yb[i] = s * (float)((int32_t)cb[i] - z);
        }
    }
    return KD_OK;
}

/* ---------------------------------------------------------------- qdense, qconv */

static void q_changed(kdi_layer *l)
{
    qlayer *q = l->priv;
    int64_t n = channels(l), k = fan_in(l);
    const int8_t *w = l->params[P_WEIGHT].raw;
    const int32_t *bias = l->params[P_BIAS].raw;
    const float *sw = l->params[P_WSCALE].value;
    float s_in = q->in_scale[0];
    uint32_t z = q->in_zp[0];
    /* The columns in the order of the channels-last input: (i, j, c) for a conv's patch, (h, w, c)
     * for a dense layer on codes of an image. */
    int64_t ch = q->kind == Q_CONV ? l->in.c : hwc(l->in) ? l->in.c : 1, sp = k / ch;
    for (int64_t o = 0; o < n; o++)
        for (int64_t c = 0; c < ch; c++)
            for (int64_t p = 0; p < sp; p++)
                q->reordered[o * k + p * ch + c] = w[o * k + c * sp + p];
    kdi_qpack(q->packed, q->reordered, n, k, k);
    for (int64_t o = 0; o < n; o++) {
        int32_t sum = 0;
        for (int64_t i = 0; i < k; i++) sum += w[o * k + i];
        /* Wrapping, as the kernels' int32 sums. */
        q->corr[o] = (int32_t)((uint32_t)bias[o] - z * (uint32_t)sum);
        float m = s_in * sw[o];
        if (!q->dequant) m = m / l->params[P_OSCALE].value[0];
        /* Scales are finite and > 0 (checked on load), but their quotient can overflow. */
        q->mult[o] = m > FLT_MAX ? FLT_MAX : m;
    }
}

static void finish_rows(kdi_layer *l, const int32_t *acc, int64_t rows, void *out)
{
    const qlayer *q = l->priv;
    const kdi_kernels *kk = kdi_kernels_get();
    int64_t n = channels(l);
    if (q->dequant) {
        kk->dequant_i32(out, acc, rows, n, q->corr, q->mult);
    } else {
        int32_t zp = ((const uint8_t *)l->params[P_OZP].raw)[0];
        kk->requant_u8(out, acc, rows, n, q->corr, q->mult, zp, q->relu ? zp : 0);
    }
}

static kd_status qdense_reserve(kdi_layer *l, int64_t batch)
{
    qlayer *q = l->priv;
    return kdi_buf_reserve(&q->acc, batch * channels(l));
}

static kd_status qdense_forward(kdi_layer *l, const float *x, float *y, int64_t batch, int train)
{
    (void)train;
    qlayer *q = l->priv;
    int64_t n = channels(l), k = fan_in(l);
    int32_t *acc = (int32_t *)q->acc.data;
    kdi_kernels_get()->qgemm_u8s8(batch, n, k, codes_in(x), k, q->packed, acc, n);
    finish_rows(l, acc, batch, y);
    return KD_OK;
}

static int64_t conv_pixels(const kdi_layer *l) { return l->out.h * l->out.w; }

/* A patch row's stride in cols: Cin K K rounded up to whole groups of 4, which qgemm_u8s8 then
 * reads without a partial last group. */
static int64_t cols_row(const kdi_layer *l) { return (fan_in(l) + 3) / 4 * 4; }

/* Slack past the end of cols and of the padded image: im2row moves whole 16-byte chunks, which may
 * run up to 15 bytes past a run (into bytes written later, or into this slack). */
#define Q_SLACK 16

/* The image with its zero-point border, [H + 2 pad, W + 2 pad, Cin]: every kernel row of a patch
 * is then one contiguous run, copied without bounds checks. */
static int64_t padded_size(const kdi_layer *l)
{
    const qlayer *q = l->priv;
    return (l->in.h + 2 * q->pad) * (l->in.w + 2 * q->pad) * l->in.c;
}

/* Buffers for one image at a time, whatever the batch: its patches, sums and result stay in the
 * caches between im2row, the GEMM and the requantisation. */
static kd_status qconv_reserve(kdi_layer *l, int64_t batch)
{
    (void)batch;
    qlayer *q = l->priv;
    int64_t rows = conv_pixels(l), n = channels(l);
    KDI_TRY(kdi_buf_reserve(&q->acc, rows * n));
    KDI_TRY(kdi_buf_reserve(&q->cols, (rows * cols_row(l) + Q_SLACK + 3) / 4));
    float *before = q->padded.data;
    KDI_TRY(kdi_buf_reserve(&q->padded, (padded_size(l) + Q_SLACK + 3) / 4));
    if (q->padded.data != before) q->border = -1;
    return kdi_buf_reserve(&q->tmp, rows * n); /* floats with dequant, else bytes */
}

/* d[0..n) = s[0..n) in whole 16-byte moves (n rounded up: see Q_SLACK). */
static inline void copy_chunks(uint8_t *d, const uint8_t *s, int64_t n)
{
    for (int64_t i = 0; i < n; i += 16) memcpy(d + i, s + i, 16);
}

/* cols[p][(i K + j) Cin + c] = x[oy s - pad + i][ox s - pad + j][c] (channels-last), the input's
 * zero point (real 0) outside: one row of cols (stride cols_row) a pixel, a kernel row of it one
 * run of K Cin bytes from the padded image. Runs are written in increasing order, so a chunk's
 * overrun is overwritten by the next run; a row's last one lands in its padding bytes (which meet
 * qgemm_u8s8's zeros) or in the next row. */
static void im2row(const kdi_layer *l, const uint8_t *x, uint8_t *cols, uint8_t *pad_img,
                   uint8_t zp)
{
    qlayer *q = l->priv;
    int64_t cin = l->in.c, h = l->in.h, w = l->in.w, oh = l->out.h, ow = l->out.w, k = q->k;
    int64_t run = k * cin, stride = cols_row(l), p = q->pad, wp = w + 2 * p;
    /* Copied even without a border: the chunks may read past the image, not past the slack. The
     * border is written once, the interior every image. */
    if (q->border != zp) {
        memset(pad_img, zp, (size_t)padded_size(l));
        q->border = zp;
    }
    for (int64_t y = 0; y < h; y++)
        memcpy(pad_img + ((p + y) * wp + p) * cin, x + y * w * cin, (size_t)(w * cin));
    const uint8_t *src = pad_img;
    for (int64_t oy = 0; oy < oh; oy++)
        for (int64_t ox = 0; ox < ow; ox++) {
            uint8_t *row = cols + (oy * ow + ox) * stride;
            const uint8_t *at = src + (oy * q->stride * wp + ox * q->stride) * cin;
            for (int64_t i = 0; i < k; i++) copy_chunks(row + i * run, at + i * wp * cin, run);
        }
}

static kd_status qconv_forward(kdi_layer *l, const float *x, float *y, int64_t batch, int train)
{
    (void)train;
    qlayer *q = l->priv;
    int64_t n = channels(l), k = fan_in(l), np = conv_pixels(l), in = kdi_shape_size(l->in);
    uint8_t *cols = (uint8_t *)q->cols.data;
    int32_t *acc = (int32_t *)q->acc.data;
    const kdi_kernels *kk = kdi_kernels_get();
    for (int64_t b = 0; b < batch; b++) {
        im2row(l, codes_in(x) + b * in, cols, (uint8_t *)q->padded.data, q->in_zp[0]);
        kk->qgemm_u8s8(np, n, k, cols, cols_row(l), q->packed, acc, n);
        if (!q->dequant) {
            finish_rows(l, acc, np, codes_out(y) + b * np * n); /* [P, C]: channels-last codes */
            continue;
        }
        /* Floats leave in NCHW. */
        finish_rows(l, acc, np, q->tmp.data);
        const float *t = q->tmp.data;
        float *o = y + b * n * np;
        for (int64_t p = 0; p < np; p++)
            for (int64_t c = 0; c < n; c++) o[c * np + p] = t[p * n + c];
    }
    return KD_OK;
}

/* ---------------------------------------------------------------- qmaxpool, qflatten */

/* m = max(m, v) over n bytes; the fixed 16-byte inner loop is vectorised by the compiler. */
static inline void max_run(uint8_t *m, const uint8_t *v, int64_t n)
{
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int t = 0; t < 16; t++) m[i + t] = v[i + t] > m[i + t] ? v[i + t] : m[i + t];
    for (; i < n; i++) m[i] = v[i] > m[i] ? v[i] : m[i];
}

/* Channels-last: the window's pixels are runs of C bytes, maxed a run at a time. */
static kd_status qmaxpool_forward(kdi_layer *l, const float *x, float *y, int64_t batch, int train)
{
    (void)train;
    const qlayer *q = l->priv;
    int64_t h = l->in.h, w = l->in.w, oh = l->out.h, ow = l->out.w, c = l->in.c;
    for (int64_t b = 0; b < batch; b++) {
        const uint8_t *xb = codes_in(x) + b * h * w * c;
        uint8_t *yb = codes_out(y) + b * oh * ow * c;
        for (int64_t oy = 0; oy < oh; oy++)
            for (int64_t ox = 0; ox < ow; ox++) {
                uint8_t *m = yb + (oy * ow + ox) * c;
                const uint8_t *v0 = xb + (oy * q->stride * w + ox * q->stride) * c;
                memcpy(m, v0, (size_t)c); /* the window's first pixel; the others maxed in */
                for (int64_t i = 0; i < q->k; i++)
                    for (int64_t j = i == 0; j < q->k; j++) max_run(m, v0 + (i * w + j) * c, c);
            }
    }
    return KD_OK;
}

/* Back to C, H, W order, as flatten sees a float image. */
static kd_status qflatten_forward(kdi_layer *l, const float *x, float *y, int64_t batch, int train)
{
    (void)train;
    int64_t size = kdi_shape_size(l->in);
    if (!hwc(l->in)) {
        memcpy(y, x, (size_t)(batch * size));
        return KD_OK;
    }
    for (int64_t b = 0; b < batch; b++)
        to_chw(codes_out(y) + b * size, codes_in(x) + b * size, l->in.c, l->in.h * l->in.w);
    return KD_OK;
}

/* ---------------------------------------------------------------- building */

/* The nearest earlier layer writing codes with a scale: quantize, or qdense / qconv without
 * dequant (qmaxpool and qflatten pass codes through). */
static kd_status q_link(kdi_layer *l, kdi_layer *before, int32_t n)
{
    qlayer *q = l->priv;
    for (int32_t i = n - 1; i >= 0; i--) {
        kdi_layer *b = &before[i];
        if (b->ops->codes != KDI_CODES_PASS) {
            if (b->ops->codes & KDI_CODES_OUT) {
                if (strcmp(b->ops->kind, "quantize") == 0) {
                    q->in_scale = b->params[0].value;
                    q->in_zp = b->params[1].raw;
                } else {
                    q->in_scale = b->params[P_OSCALE].value;
                    q->in_zp = b->params[P_OZP].raw;
                }
                return KD_OK;
            }
            break;
        }
    }
    return kdi_fail(KD_ERR_FORMAT,
                    "layer '%s' reads uint8 codes but no quantize, qdense or qconv (without "
                    "dequant=1) comes before it",
                    l->ops->kind);
}

#define Q_OPS(name, k, fwd, res, cod, chg)                                                         \
    static const kdi_layer_ops name = {.kind = k,                                                  \
                                       .forward = fwd,                                             \
                                       .backward = q_backward,                                     \
                                       .reserve = res,                                             \
                                       .check = q_check,                                           \
                                       .link = q_link,                                             \
                                       .changed = chg,                                             \
                                       .codes = cod,                                               \
                                       .destroy = q_destroy}

static const kdi_layer_ops quantize_ops = {.kind = "quantize",
                                           .forward = quantize_forward,
                                           .reserve = quantize_reserve,
                                           .backward = q_backward,
                                           .check = q_check,
                                           .codes = KDI_CODES_OUT,
                                           .destroy = q_destroy};
Q_OPS(dequantize_ops, "dequantize", dequantize_forward, NULL, KDI_CODES_IN, NULL);
Q_OPS(qdense_ops, "qdense", qdense_forward, qdense_reserve, KDI_CODES_IN | KDI_CODES_OUT,
      q_changed);
Q_OPS(qdense_f_ops, "qdense", qdense_forward, qdense_reserve, KDI_CODES_IN, q_changed);
Q_OPS(qconv_ops, "qconv", qconv_forward, qconv_reserve, KDI_CODES_IN | KDI_CODES_OUT, q_changed);
Q_OPS(qconv_f_ops, "qconv", qconv_forward, qconv_reserve, KDI_CODES_IN, q_changed);
Q_OPS(qmaxpool_ops, "qmaxpool", qmaxpool_forward, NULL, KDI_CODES_PASS, NULL);
Q_OPS(qflatten_ops, "qflatten", qflatten_forward, NULL, KDI_CODES_PASS, NULL);

static kd_status q_new(kdi_layer *l, int kind)
{
    qlayer *q = kdi_calloc(1, sizeof *q);
    if (q == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot allocate an int8 layer");
    q->kind = kind;
    q->border = -1;
    l->priv = q;
    return KD_OK;
}

static kd_status add_scale(kdi_layer *l, const char *name, int64_t n)
{
    KDI_TRY(kdi_layer_add_param(l, name, 0, 1, (int64_t[]){n}));
    kdi_param *p = &l->params[l->nparams - 1];
    p->positive = 1;
    for (int64_t i = 0; i < n; i++) p->value[i] = 1.0f;
    return KD_OK;
}

kd_status kdi_quantize_create(const kdi_args *a, kdi_shape in, uint64_t seed, kdi_layer *l)
{
    (void)seed;
    KDI_TRY(kdi_args_check(a, 0, NULL, 0));
    l->ops = &quantize_ops;
    KDI_TRY(q_new(l, Q_QUANTIZE));
    l->in = in;
    l->out = in;
    KDI_TRY(add_scale(l, "scale", 1));
    KDI_TRY(kdi_layer_add_raw_param(l, "zero_point", KDI_ST_U8, 1, (int64_t[]){1}));
    return kdi_layer_set_spec(l, "quantize");
}

kd_status kdi_dequantize_create(const kdi_args *a, kdi_shape in, uint64_t seed, kdi_layer *l)
{
    (void)seed;
    KDI_TRY(kdi_args_check(a, 0, NULL, 0));
    l->ops = &dequantize_ops;
    KDI_TRY(q_new(l, Q_DEQUANTIZE));
    l->in = in;
    l->out = in;
    return kdi_layer_set_spec(l, "dequantize");
}

/* weight, weight_scale, bias, and output_scale / output_zero_point unless dequant; the derived
 * arrays. */
static kd_status add_weights(kdi_layer *l, int32_t ndim, const int64_t *wdims)
{
    qlayer *q = l->priv;
    int64_t n = wdims[0];
    KDI_TRY(kdi_layer_add_raw_param(l, "weight", KDI_ST_I8, ndim, wdims));
    KDI_TRY(add_scale(l, "weight_scale", n));
    KDI_TRY(kdi_layer_add_raw_param(l, "bias", KDI_ST_I32, 1, (int64_t[]){n}));
    if (!q->dequant) {
        KDI_TRY(add_scale(l, "output_scale", 1));
        KDI_TRY(kdi_layer_add_raw_param(l, "output_zero_point", KDI_ST_U8, 1, (int64_t[]){1}));
    }
    q->corr = kdi_calloc((size_t)n, sizeof *q->corr);
    q->mult = kdi_calloc((size_t)n, sizeof *q->mult);
    q->packed = kdi_calloc((size_t)kdi_qpack_size(n, l->params[P_WEIGHT].count / n), 1);
    q->reordered = kdi_calloc((size_t)l->params[P_WEIGHT].count, 1);
    if (q->corr == NULL || q->mult == NULL || q->packed == NULL || q->reordered == NULL)
        return kdi_fail(KD_ERR_NOMEM, "cannot allocate an int8 layer's multipliers");
    return KD_OK;
}

static kd_status flags(const kdi_args *a, qlayer *q)
{
    int64_t relu, deq;
    KDI_TRY(kdi_args_int(a, -1, "relu", 1, 0, 0, 1, &relu));
    KDI_TRY(kdi_args_int(a, -1, "dequant", 1, 0, 0, 1, &deq));
    q->relu = (int)relu;
    q->dequant = (int)deq;
    return KD_OK;
}

static const char *flag_text(const qlayer *q)
{
    return q->relu && q->dequant ? " relu=1 dequant=1"
           : q->relu             ? " relu=1"
           : q->dequant          ? " dequant=1"
                                 : "";
}

kd_status kdi_qdense_create(const kdi_args *a, kdi_shape in, uint64_t seed, kdi_layer *l)
{
    (void)seed;
    static const char *const keys[] = {"out", "relu", "dequant", NULL};
    int64_t out;
    l->ops = &qdense_ops;
    KDI_TRY(q_new(l, Q_DENSE));
    qlayer *q = l->priv;
    KDI_TRY(kdi_args_check(a, 1, keys, 0));
    KDI_TRY(kdi_args_int(a, 0, "out", 0, 0, 1, 1 << 24, &out));
    KDI_TRY(flags(a, q));
    if (q->dequant) l->ops = &qdense_f_ops;
    l->in = in;
    l->out = kdi_shape_flat(out);
    l->seq = -1;
    KDI_TRY(add_weights(l, 2, (int64_t[]){out, kdi_shape_size(in)}));
    return kdi_layer_set_spec(l, "qdense %lld%s", (long long)out, flag_text(q));
}

kd_status kdi_qconv_create(const kdi_args *a, kdi_shape in, uint64_t seed, kdi_layer *l)
{
    (void)seed;
    static const char *const keys[] = {"out", "k", "stride", "pad", "relu", "dequant", NULL};
    int64_t out;
    l->ops = &qconv_ops;
    KDI_TRY(q_new(l, Q_CONV));
    qlayer *q = l->priv;
    KDI_TRY(kdi_args_check(a, 2, keys, 0));
    KDI_TRY(kdi_args_int(a, 0, "out", 0, 0, 1, 1 << 16, &out));
    KDI_TRY(kdi_args_int(a, 1, "k", 0, 0, 1, 64, &q->k));
    KDI_TRY(kdi_args_int(a, -1, "stride", 1, 1, 1, 64, &q->stride));
    KDI_TRY(kdi_args_int(a, -1, "pad", 1, 0, 0, 64, &q->pad));
    KDI_TRY(flags(a, q));
    if (q->dequant) l->ops = &qconv_f_ops;
    if (in.h + 2 * q->pad < q->k || in.w + 2 * q->pad < q->k)
        return kdi_fail(
            KD_ERR_SHAPE, "qconv: a %lldx%lld kernel does not fit a %lldx%lld input padded by %lld",
            (long long)q->k, (long long)q->k, (long long)in.h, (long long)in.w, (long long)q->pad);
    l->in = in;
    l->out = (kdi_shape){out, (in.h + 2 * q->pad - q->k) / q->stride + 1,
                         (in.w + 2 * q->pad - q->k) / q->stride + 1};
    KDI_TRY(add_weights(l, 4, (int64_t[]){out, in.c, q->k, q->k}));
    char extra[64] = "";
    size_t n = 0;
    if (q->stride != 1)
        n += (size_t)snprintf(extra + n, sizeof extra - n, " stride=%lld", (long long)q->stride);
    if (q->pad != 0) snprintf(extra + n, sizeof extra - n, " pad=%lld", (long long)q->pad);
    return kdi_layer_set_spec(l, "qconv %lld %lld%s%s", (long long)out, (long long)q->k, extra,
                              flag_text(q));
}

kd_status kdi_qmaxpool_create(const kdi_args *a, kdi_shape in, uint64_t seed, kdi_layer *l)
{
    (void)seed;
    static const char *const keys[] = {"k", "stride", NULL};
    l->ops = &qmaxpool_ops;
    KDI_TRY(q_new(l, Q_MAXPOOL));
    qlayer *q = l->priv;
    KDI_TRY(kdi_args_check(a, 1, keys, 0));
    KDI_TRY(kdi_args_int(a, 0, "k", 0, 0, 1, 1 << 16, &q->k));
    KDI_TRY(kdi_args_int(a, -1, "stride", 1, q->k, 1, 1 << 16, &q->stride));
    if (in.h < q->k || in.w < q->k)
        return kdi_fail(KD_ERR_SHAPE, "qmaxpool %lld does not fit a %lldx%lld input",
                        (long long)q->k, (long long)in.h, (long long)in.w);
    l->in = in;
    l->out = (kdi_shape){in.c, (in.h - q->k) / q->stride + 1, (in.w - q->k) / q->stride + 1};
    if (q->stride == q->k) return kdi_layer_set_spec(l, "qmaxpool %lld", (long long)q->k);
    return kdi_layer_set_spec(l, "qmaxpool %lld stride=%lld", (long long)q->k,
                              (long long)q->stride);
}

kd_status kdi_qflatten_create(const kdi_args *a, kdi_shape in, uint64_t seed, kdi_layer *l)
{
    (void)seed;
    KDI_TRY(kdi_args_check(a, 0, NULL, 0));
    l->ops = &qflatten_ops;
    KDI_TRY(q_new(l, Q_FLATTEN));
    l->in = in;
    l->out = kdi_shape_flat(kdi_shape_size(in));
    l->seq = -1;
    return kdi_layer_set_spec(l, "qflatten");
}
