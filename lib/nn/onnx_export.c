/* ONNX export of a float model (kd_model_export_onnx): the layers as ONNX operators of opset 17
 * (io/onnx.h), the weights as initializers named as in the safetensors file ("3.weight"), the
 * input normalisation as Sub and Div at the head of the graph.
 *
 * libkd keeps every activation as flat rows; ONNX operators want ranks. A value here is [N, C]
 * (flat: dense outputs, flatten, flat inputs), [N, T, d] (a sequence) or [N, C, H, W] (conv,
 * pooling, image inputs), and a layer that needs another rank gets a Flatten or a Reshape first:
 * the data's order is the same in all, so the numbers are libkd's. Layers on sequences act on the
 * last axis (MatMul with a transposed weight instead of Gemm, LayerNormalization on axis -1). */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "io/onnx.h"
#include "nn/model.h"

typedef struct val {
    const char *name;
    int rank; /* 2, 3 (a sequence [N, T, d]) or 4 */
    kdi_shape s;
    const char *embed; /* the initializer of the chain's token embedding, for a tied LM head */
    /* uint8 codes (int8 models): their scale and zero point, as initializers and values */
    const char *qs, *qz;
    float s_in;
    uint8_t z_in;
} val;

static kd_status flat(kdi_onnx *o, val *v)
{
    if (v->rank == 2) return KD_OK;
    const char *out = kdi_onnx_name(o, "flat");
    KDI_TRY(kdi_onnx_node(o, "Flatten", &v->name, 1, out));
    KDI_TRY(kdi_onnx_attr_int(o, "axis", 1));
    v->name = out;
    v->rank = 2;
    return KD_OK;
}

static kd_status image(kdi_onnx *o, val *v)
{
    if (v->rank == 4) return KD_OK;
    const char *shape = kdi_onnx_name(o, "shape"), *out = kdi_onnx_name(o, "image");
    int64_t dims[4] = {-1, v->s.c, v->s.h, v->s.w}, n = 4;
    KDI_TRY(kdi_onnx_tensor_i64(o, shape, dims, 1, &n));
    const char *in[2] = {v->name, shape};
    KDI_TRY(kdi_onnx_node(o, "Reshape", in, 2, out));
    v->name = out;
    v->rank = 4;
    return KD_OK;
}

/* Adds layer l's parameter k as an initializer named prefix + its name; *name gets it. */
static kd_status param(kdi_onnx *o, const kdi_layer *l, int k, const char *prefix,
                       const char **name)
{
    char full[192];
    const kdi_param *p = &l->params[k];
    snprintf(full, sizeof full, "%s%s", prefix, p->name);
    *name = kdi_onnx_name(o, full); /* unique even when a prefix repeats */
    return kdi_onnx_tensor(o, *name, p->value, p->ndim, p->dims);
}

/* A layer's options, read back from its canonical spec (the one description a model has). */
static kd_status args_of(const kdi_layer *l, char *buf, size_t cap, kdi_args *a)
{
    snprintf(buf, cap, "%s", l->spec);
    return kdi_spec_parse_layer(buf, a);
}

static kd_status unary(kdi_onnx *o, const char *op, val *v)
{
    const char *out = kdi_onnx_name(o, op);
    KDI_TRY(kdi_onnx_node(o, op, &v->name, 1, out));
    v->name = out;
    return KD_OK;
}

static kd_status binary(kdi_onnx *o, const char *op, val *v, const char *b)
{
    const char *out = kdi_onnx_name(o, op), *in[2] = {v->name, b};
    KDI_TRY(kdi_onnx_node(o, op, in, 2, out));
    v->name = out;
    return KD_OK;
}

static kd_status scalar(kdi_onnx *o, const char *base, float x, const char **name)
{
    *name = kdi_onnx_name(o, base);
    return kdi_onnx_tensor(o, *name, &x, 0, NULL);
}

/* GELU, erf form (Hendrycks and Gimpel 2016): x * 0.5 * (1 + erf(x / sqrt 2)); opset 17 has no
 * Gelu operator (it came in opset 20). */
static kd_status gelu(kdi_onnx *o, val *v)
{
    const char *r2, *one, *half, *x = v->name;
    KDI_TRY(scalar(o, "sqrt2", 1.41421356237309504880f, &r2));
    KDI_TRY(scalar(o, "one", 1.0f, &one));
    KDI_TRY(scalar(o, "half", 0.5f, &half));
    KDI_TRY(binary(o, "Div", v, r2));
    KDI_TRY(unary(o, "Erf", v));
    KDI_TRY(binary(o, "Add", v, one));
    KDI_TRY(binary(o, "Mul", v, x));
    return binary(o, "Mul", v, half);
}

static kd_status dense(kdi_onnx *o, const kdi_layer *l, const char *prefix, val *v)
{
    const char *w, *b, *out = kdi_onnx_name(o, "gemm");
    KDI_TRY(flat(o, v));
    KDI_TRY(param(o, l, 0, prefix, &w));
    KDI_TRY(param(o, l, 1, prefix, &b));
    const char *in[3] = {v->name, w, b};
    KDI_TRY(kdi_onnx_node(o, "Gemm", in, 3, out));
    KDI_TRY(kdi_onnx_attr_int(o, "transB", 1)); /* W is [out, in], as nn.Linear's */
    *v = (val){.name = out, .rank = 2, .s = l->out, .embed = v->embed};
    return KD_OK;
}

static kd_status conv(kdi_onnx *o, const kdi_layer *l, const char *prefix, val *v)
{
    char buf[256];
    kdi_args a;
    int64_t k = l->params[0].dims[2], stride, pad;
    KDI_TRY(args_of(l, buf, sizeof buf, &a));
    KDI_TRY(kdi_args_int(&a, -1, "stride", 1, 1, 1, 64, &stride));
    KDI_TRY(kdi_args_int(&a, -1, "pad", 1, 0, 0, 64, &pad));
    const char *in[3] = {NULL, NULL, NULL}, *out = kdi_onnx_name(o, "conv");
    KDI_TRY(image(o, v));
    in[0] = v->name;
    KDI_TRY(param(o, l, 0, prefix, &in[1]));
    if (l->nparams > 1) KDI_TRY(param(o, l, 1, prefix, &in[2]));
    KDI_TRY(kdi_onnx_node(o, "Conv", in, l->nparams > 1 ? 3 : 2, out));
    int64_t ks[2] = {k, k}, st[2] = {stride, stride}, pads[4] = {pad, pad, pad, pad};
    KDI_TRY(kdi_onnx_attr_ints(o, "kernel_shape", ks, 2));
    KDI_TRY(kdi_onnx_attr_ints(o, "strides", st, 2));
    KDI_TRY(kdi_onnx_attr_ints(o, "pads", pads, 4));
    KDI_TRY(kdi_onnx_attr_int(o, "group", l->in.c / l->params[0].dims[1]));
    *v = (val){.name = out, .rank = 4, .s = l->out, .embed = v->embed};
    return KD_OK;
}

static kd_status pool(kdi_onnx *o, const kdi_layer *l, const char *op, val *v)
{
    char buf[256];
    kdi_args a;
    int64_t k, stride;
    KDI_TRY(args_of(l, buf, sizeof buf, &a));
    KDI_TRY(kdi_args_int(&a, 0, "k", 0, 0, 1, 1 << 16, &k));
    KDI_TRY(kdi_args_int(&a, -1, "stride", 1, k, 1, 1 << 16, &stride));
    KDI_TRY(image(o, v));
    KDI_TRY(unary(o, op, v)); /* no padding, floor: libkd's windows */
    int64_t ks[2] = {k, k}, st[2] = {stride, stride};
    KDI_TRY(kdi_onnx_attr_ints(o, "kernel_shape", ks, 2));
    KDI_TRY(kdi_onnx_attr_ints(o, "strides", st, 2));
    v->s = l->out;
    return KD_OK;
}

static kd_status batchnorm(kdi_onnx *o, const kdi_layer *l, const char *prefix, val *v)
{
    char buf[256];
    kdi_args a;
    float eps;
    KDI_TRY(args_of(l, buf, sizeof buf, &a));
    KDI_TRY(kdi_args_float(&a, -1, "eps", 1, 1e-5f, 1e-12f, 1.0f, &eps));
    const char *in[5] = {v->name}, *out = kdi_onnx_name(o, "bn");
    for (int k = 0; k < 4; k++) KDI_TRY(param(o, l, k, prefix, &in[k + 1]));
    /* Inference form, with the running estimates, as libkd's predict. */
    KDI_TRY(kdi_onnx_node(o, "BatchNormalization", in, 5, out));
    KDI_TRY(kdi_onnx_attr_float(o, "epsilon", eps));
    v->name = out;
    return KD_OK;
}

static kd_status layernorm(kdi_onnx *o, const kdi_layer *l, const char *prefix, val *v)
{
    char buf[256];
    kdi_args a;
    float eps;
    KDI_TRY(args_of(l, buf, sizeof buf, &a));
    KDI_TRY(kdi_args_float(&a, -1, "eps", 1, 1e-5f, 1e-12f, 1.0f, &eps));
    /* Over all C*H*W values of an example: the scale's rank must be the input's less one. */
    if (l->params[0].ndim == 1) KDI_TRY(flat(o, v));
    const char *in[3] = {v->name}, *out = kdi_onnx_name(o, "layernorm");
    KDI_TRY(param(o, l, 0, prefix, &in[1]));
    KDI_TRY(param(o, l, 1, prefix, &in[2]));
    KDI_TRY(kdi_onnx_node(o, "LayerNormalization", in, 3, out));
    KDI_TRY(kdi_onnx_attr_int(o, "axis", 1));
    KDI_TRY(kdi_onnx_attr_float(o, "epsilon", eps));
    v->name = out;
    return KD_OK;
}

static kd_status leaky(kdi_onnx *o, const kdi_layer *l, val *v)
{
    char buf[256];
    kdi_args a;
    float slope;
    KDI_TRY(args_of(l, buf, sizeof buf, &a));
    KDI_TRY(kdi_args_float(&a, 0, "slope", 1, 0.01f, -1e3f, 1e3f, &slope));
    KDI_TRY(unary(o, "LeakyRelu", v));
    return kdi_onnx_attr_float(o, "alpha", slope);
}

static kd_status export_seq(kdi_onnx *o, const kdi_seq *s, const char *prefix, val *v);

/* prefix + part + "." into name[96], the size of a kdi_named_param's name. */
static kd_status join(char *name, const char *prefix, const char *part)
{
    int len = snprintf(name, 96, "%s%s.", prefix, part);
    if (len < 0 || len >= 96)
        return kdi_fail(KD_ERR_UNSUPPORTED, "layer name '%s%s.' is too long", prefix, part);
    return KD_OK;
}

/* y = body(x) + shortcut(x) (He et al. 2016). */
static kd_status residual(kdi_onnx *o, kdi_layer *l, const char *prefix, val *v)
{
    char name[96];
    const char *body_name, *cut_name;
    val body = *v, cut = *v;
    kdi_seq *b = l->ops->child(l, 0, &body_name), *c = l->ops->child(l, 1, &cut_name);
    KDI_TRY(join(name, prefix, body_name));
    KDI_TRY(export_seq(o, b, name, &body));
    if (c != NULL) {
        KDI_TRY(join(name, prefix, cut_name));
        KDI_TRY(export_seq(o, c, name, &cut));
    }
    if (body.rank != cut.rank) { /* both C x 1 x 1, one of them still an image */
        KDI_TRY(flat(o, &body));
        KDI_TRY(flat(o, &cut));
    }
    KDI_TRY(binary(o, "Add", &body, cut.name));
    *v = (val){.name = body.name, .rank = body.rank, .s = l->out, .embed = v->embed};
    return KD_OK;
}

/* ---------------------------------------------------------------- sequences [N, T, d] */

static kd_status ints(kdi_onnx *o, const char *base, const int64_t *x, int64_t n, const char **name)
{
    *name = kdi_onnx_name(o, base);
    return kdi_onnx_tensor_i64(o, *name, x, 1, &n);
}

/* v = v W^T for W [out, in] (nn.Linear's layout), on the last axis. */
static kd_status matmul_t(kdi_onnx *o, val *v, const char *w)
{
    const char *wt = kdi_onnx_name(o, "transpose");
    int64_t perm[2] = {1, 0};
    KDI_TRY(kdi_onnx_node(o, "Transpose", &w, 1, wt));
    KDI_TRY(kdi_onnx_attr_ints(o, "perm", perm, 2));
    return binary(o, "MatMul", v, wt);
}

static kd_status reshape(kdi_onnx *o, val *v, const int64_t *dims, int64_t n)
{
    const char *shape;
    KDI_TRY(ints(o, "shape", dims, n, &shape));
    return binary(o, "Reshape", v, shape);
}

static kd_status transpose(kdi_onnx *o, val *v, const int64_t *perm)
{
    KDI_TRY(unary(o, "Transpose", v));
    return kdi_onnx_attr_ints(o, "perm", perm, 4);
}

static kd_status seq_dense(kdi_onnx *o, const kdi_layer *l, const char *prefix, val *v)
{
    const char *w, *b;
    KDI_TRY(param(o, l, 0, prefix, &w));
    KDI_TRY(param(o, l, 1, prefix, &b));
    KDI_TRY(matmul_t(o, v, w));
    return binary(o, "Add", v, b);
}

/* Token ids (floats, as kd_model_predict takes them) to rows of the embedding. */
static kd_status embed(kdi_onnx *o, const kdi_layer *l, const char *prefix, val *v)
{
    const char *w, *in[2] = {NULL, NULL}, *out = kdi_onnx_name(o, "embed");
    KDI_TRY(param(o, l, 0, prefix, &w));
    KDI_TRY(unary(o, "Cast", v));
    KDI_TRY(kdi_onnx_attr_int(o, "to", 7)); /* INT64 */
    in[0] = w;
    in[1] = v->name;
    KDI_TRY(kdi_onnx_node(o, "Gather", in, 2, out));
    *v = (val){.name = out, .rank = 3, .s = l->out, .embed = w};
    return KD_OK;
}

static kd_status lmhead(kdi_onnx *o, const kdi_layer *l, const char *prefix, val *v)
{
    const char *w = v->embed;
    if (l->nparams > 0) KDI_TRY(param(o, l, 0, prefix, &w)); /* untied: its own */
    return matmul_t(o, v, w);
}

/* nn/layers/attention.c: [Q K V] = x W_in^T + b_in; per head softmax(Q K^T / sqrt(D/H) + M) V
 * (Vaswani et al. 2017, eq. 1), M = -inf above the diagonal when causal; y = O W_out^T + b_out. */
static kd_status attention(kdi_onnx *o, const kdi_layer *l, const char *prefix, val *v)
{
    char buf[256];
    kdi_args a;
    int64_t heads;
    KDI_TRY(args_of(l, buf, sizeof buf, &a));
    KDI_TRY(kdi_args_int(&a, 0, "heads", 0, 0, 1, 4096, &heads));
    int causal = kdi_args_flag(&a, "causal");
    int64_t t = l->in.c, d = kdi_seq_width(l->in, 1), hd = d / heads;
    const char *w_in, *b_in, *w_out, *b_out, *axes, *scale;
    KDI_TRY(param(o, l, 0, prefix, &w_in));
    KDI_TRY(param(o, l, 1, prefix, &b_in));
    KDI_TRY(param(o, l, 2, prefix, &w_out));
    KDI_TRY(param(o, l, 3, prefix, &b_out));
    val qkv = *v, part[3];
    KDI_TRY(matmul_t(o, &qkv, w_in));
    KDI_TRY(binary(o, "Add", &qkv, b_in));
    int64_t axis = 2, heads_shape[4] = {-1, t, heads, hd};
    static const int64_t perm_q[4] = {0, 2, 1, 3}, perm_k[4] = {0, 2, 3, 1};
    KDI_TRY(ints(o, "axes", &axis, 1, &axes));
    for (int64_t k = 0; k < 3; k++) {
        int64_t lo = k * d, hi = (k + 1) * d;
        const char *starts, *ends, *in[4];
        KDI_TRY(ints(o, "starts", &lo, 1, &starts));
        KDI_TRY(ints(o, "ends", &hi, 1, &ends));
        in[0] = qkv.name, in[1] = starts, in[2] = ends, in[3] = axes;
        part[k] = qkv;
        part[k].name = kdi_onnx_name(o, k == 0 ? "q" : k == 1 ? "k" : "v");
        KDI_TRY(kdi_onnx_node(o, "Slice", in, 4, part[k].name));
        KDI_TRY(reshape(o, &part[k], heads_shape, 4));
        KDI_TRY(transpose(o, &part[k], k == 1 ? perm_k : perm_q)); /* [N, H, T, hd], K^T */
    }
    val s = part[0];
    KDI_TRY(binary(o, "MatMul", &s, part[1].name));
    KDI_TRY(scalar(o, "scale", 1.0f / sqrtf((float)hd), &scale));
    KDI_TRY(binary(o, "Mul", &s, scale));
    if (causal) {
        float *mask = kdi_malloc(sizeof *mask * (size_t)(t * t));
        if (mask == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot allocate a causal mask");
        for (int64_t i = 0; i < t * t; i++) mask[i] = i % t > i / t ? -INFINITY : 0.0f;
        int64_t dims[2] = {t, t};
        const char *m = kdi_onnx_name(o, "causal_mask");
        kd_status st = kdi_onnx_tensor(o, m, mask, 2, dims);
        kdi_free(mask);
        KDI_TRY(st);
        KDI_TRY(binary(o, "Add", &s, m));
    }
    KDI_TRY(unary(o, "Softmax", &s));
    KDI_TRY(kdi_onnx_attr_int(o, "axis", -1));
    KDI_TRY(binary(o, "MatMul", &s, part[2].name));
    KDI_TRY(transpose(o, &s, perm_q)); /* [N, T, H, hd] */
    int64_t back[3] = {-1, t, d};
    KDI_TRY(reshape(o, &s, back, 3));
    KDI_TRY(matmul_t(o, &s, w_out));
    KDI_TRY(binary(o, "Add", &s, b_out));
    v->name = s.name;
    return KD_OK;
}

/* A layer acting on a sequence: the same maths on the last axis of [N, T, d]. */
static kd_status seq_layer(kdi_onnx *o, kdi_layer *l, const char *prefix, val *v)
{
    const char *kind = l->ops->kind;
    kd_status st = KD_OK;
    if (strcmp(kind, "embed") == 0) return embed(o, l, prefix, v);
    if (strcmp(kind, "posembed") == 0) {
        const char *w;
        KDI_TRY(param(o, l, 0, prefix, &w));
        st = binary(o, "Add", v, w); /* [T, d] broadcast over the batch */
    } else if (strcmp(kind, "dense") == 0) {
        st = seq_dense(o, l, prefix, v);
    } else if (strcmp(kind, "lmhead") == 0) {
        st = lmhead(o, l, prefix, v);
    } else if (strcmp(kind, "attention") == 0) {
        st = attention(o, l, prefix, v);
    } else if (strcmp(kind, "layernorm") == 0) {
        char buf[256];
        kdi_args a;
        float eps;
        const char *in[3] = {v->name}, *out = kdi_onnx_name(o, "layernorm");
        KDI_TRY(args_of(l, buf, sizeof buf, &a));
        KDI_TRY(kdi_args_float(&a, -1, "eps", 1, 1e-5f, 1e-12f, 1.0f, &eps));
        KDI_TRY(param(o, l, 0, prefix, &in[1]));
        KDI_TRY(param(o, l, 1, prefix, &in[2]));
        KDI_TRY(kdi_onnx_node(o, "LayerNormalization", in, 3, out));
        KDI_TRY(kdi_onnx_attr_int(o, "axis", -1)); /* each token over its d values */
        KDI_TRY(kdi_onnx_attr_float(o, "epsilon", eps));
        v->name = out;
    } else {
        return kdi_fail(KD_ERR_UNSUPPORTED, "layer %s'%s' on a sequence has no ONNX export yet",
                        prefix, l->spec);
    }
    v->rank = 3;
    v->s = l->out;
    return st;
}

/* ---------------------------------------------------------------- int8 models */

/* nn/layers/int8.c, operator for operator and bit for bit: uint8 codes (real = s (q - z)), int8
 * weights with per-channel scales, int32 sums acc = bias + sum (x - z_in) w, then
 * y = saturate(rint(float(acc) * M[o]) + z_out) with M = float(s_in s_w[o] / s_out), or the float
 * float(acc) * s_in s_w[o] for the last layer (dequant=1). QuantizeLinear with scale 1 and the
 * output zero point is exactly that saturating round; a fused ReLU is Relu before it. */

static kd_status int_tensor(kdi_onnx *o, const char *base, int32_t type, const kdi_param *p,
                            int transpose, int32_t offset, const char **name)
{
    int64_t n = p->count, dims[KDI_MAX_DIMS];
    int32_t *v = kdi_malloc(sizeof *v * (size_t)(n > 0 ? n : 1));
    if (v == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot allocate %lld values", (long long)n);
    int64_t rows = p->ndim == 2 ? p->dims[0] : 1, cols = n / rows;
    for (int64_t i = 0; i < n; i++) {
        int64_t src = transpose ? (i % rows) * cols + i / rows : i;
        v[i] = p->raw_type == KDI_ST_I8   ? ((const int8_t *)p->raw)[src]
               : p->raw_type == KDI_ST_U8 ? ((const uint8_t *)p->raw)[src]
                                          : ((const int32_t *)p->raw)[src];
        v[i] += offset;
    }
    memcpy(dims, p->dims, sizeof dims);
    if (transpose) dims[0] = cols, dims[1] = rows;
    *name = kdi_onnx_name(o, base);
    kd_status st = kdi_onnx_tensor_int(o, *name, type, v, p->ndim, dims);
    kdi_free(v);
    return st;
}

static kd_status quantize(kdi_onnx *o, const kdi_layer *l, const char *prefix, val *v)
{
    char name[192];
    float s = l->params[0].value[0];
    uint8_t z = ((const uint8_t *)l->params[1].raw)[0];
    int32_t zi = z;
    snprintf(name, sizeof name, "%sscale", prefix);
    KDI_TRY(scalar(o, name, s, &v->qs));
    snprintf(name, sizeof name, "%szero_point", prefix);
    v->qz = kdi_onnx_name(o, name);
    KDI_TRY(kdi_onnx_tensor_int(o, v->qz, KDI_ONNX_UINT8, &zi, 0, NULL));
    const char *in[3] = {v->name, v->qs, v->qz}, *out = kdi_onnx_name(o, "quantize");
    KDI_TRY(kdi_onnx_node(o, "QuantizeLinear", in, 3, out));
    v->name = out;
    v->s_in = s;
    v->z_in = z;
    return KD_OK;
}

/* The scale of a requantised layer's codes is written here, where DequantizeLinear reads it (an
 * initializer that no node read made ONNX Runtime warn at every load). */
static kd_status dequantize(kdi_onnx *o, const char *prefix, val *v)
{
    if (v->qs == NULL) {
        char name[192];
        snprintf(name, sizeof name, "%sscale", prefix);
        KDI_TRY(scalar(o, name, v->s_in, &v->qs));
    }
    const char *in[3] = {v->name, v->qs, v->qz}, *out = kdi_onnx_name(o, "dequantize");
    KDI_TRY(kdi_onnx_node(o, "DequantizeLinear", in, 3, out));
    v->name = out;
    v->qs = v->qz = NULL;
    return KD_OK;
}

/* acc (int32 for qdense, exact-integer floats for qconv) to codes or floats; ch_dims shapes the
 * per-channel constants to broadcast ([C] or [C, 1, 1]). */
static kd_status requantize(kdi_onnx *o, const kdi_layer *l, const char *prefix, val *v,
                            int64_t ch_ndim, int relu, int dequant)
{
    char name[192];
    int64_t n = l->params[0].dims[0], dims[3] = {n, 1, 1};
    float *mult = kdi_malloc(sizeof *mult * (size_t)n);
    if (mult == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot allocate %lld scales", (long long)n);
    for (int64_t c = 0; c < n; c++) { /* as int8.c's q_changed */
        float m = v->s_in * l->params[1].value[c];
        if (!dequant) m = m / l->params[3].value[0];
        mult[c] = m > FLT_MAX ? FLT_MAX : m;
    }
    const char *mname = kdi_onnx_name(o, "multiplier");
    kd_status st = kdi_onnx_tensor(o, mname, mult, (int32_t)ch_ndim, dims);
    kdi_free(mult);
    KDI_TRY(st);
    KDI_TRY(binary(o, "Mul", v, mname));
    if (dequant) {
        v->qs = v->qz = NULL;
        return KD_OK;
    }
    if (relu) KDI_TRY(unary(o, "Relu", v));
    const char *one;
    KDI_TRY(scalar(o, "one", 1.0f, &one));
    snprintf(name, sizeof name, "%soutput_zero_point", prefix);
    const char *z = kdi_onnx_name(o, name);
    int32_t zi = ((const uint8_t *)l->params[4].raw)[0];
    KDI_TRY(kdi_onnx_tensor_int(o, z, KDI_ONNX_UINT8, &zi, 0, NULL));
    const char *in[3] = {v->name, one, z}, *out = kdi_onnx_name(o, "requantize");
    KDI_TRY(kdi_onnx_node(o, "QuantizeLinear", in, 3, out));
    v->qs = NULL; /* its scale, v->s_in, becomes an initializer at a dequantize (if any) */
    v->qz = z;
    v->name = out;
    v->s_in = l->params[3].value[0];
    v->z_in = (uint8_t)zi;
    return KD_OK;
}

static kd_status q_flags(const kdi_layer *l, int64_t *relu, int64_t *dequant)
{
    char buf[256];
    kdi_args a;
    KDI_TRY(args_of(l, buf, sizeof buf, &a));
    KDI_TRY(kdi_args_int(&a, -1, "relu", 1, 0, 0, 1, relu));
    return kdi_args_int(&a, -1, "dequant", 1, 0, 0, 1, dequant);
}

/* MatMulInteger(x, W^T + 128, z_in, 128): the int32 sums, exact. The weights go out as uint8
 * codes w + 128 with zero point 128, the same integers: ONNX Runtime's uint8 x int8 product on
 * x86 CPUs without VNNI (AVX2: Zen 3, Skylake) adds pairs of products in int16 with saturation
 * (VPMADDUBSW; its quantization guide says so), which changed int8_mlp's outputs by up to 6%
 * there; its uint8 x uint8 product widens to int16 first and is exact everywhere. */
static kd_status qdense(kdi_onnx *o, const kdi_layer *l, const char *prefix, val *v)
{
    char name[192];
    int64_t relu, dequant;
    const char *w, *b;
    KDI_TRY(q_flags(l, &relu, &dequant));
    KDI_TRY(flat(o, v));
    snprintf(name, sizeof name, "%sweight.T", prefix);
    KDI_TRY(int_tensor(o, name, KDI_ONNX_UINT8, &l->params[0], 1, 128, &w));
    snprintf(name, sizeof name, "%sweight_zero_point", prefix);
    const char *wz = kdi_onnx_name(o, name);
    int32_t wzi = 128;
    KDI_TRY(kdi_onnx_tensor_int(o, wz, KDI_ONNX_UINT8, &wzi, 0, NULL));
    snprintf(name, sizeof name, "%sbias", prefix);
    KDI_TRY(int_tensor(o, name, KDI_ONNX_INT32, &l->params[2], 0, 0, &b));
    const char *in[4] = {v->name, w, v->qz, wz}, *acc = kdi_onnx_name(o, "acc");
    KDI_TRY(kdi_onnx_node(o, "MatMulInteger", in, 4, acc));
    v->name = acc;
    KDI_TRY(binary(o, "Add", v, b));
    KDI_TRY(unary(o, "Cast", v));
    KDI_TRY(kdi_onnx_attr_int(o, "to", KDI_ONNX_FLOAT));
    v->s = l->out;
    return requantize(o, l, prefix, v, 1, (int)relu, (int)dequant);
}

/* Conv over (x - z_in) and w as floats: integers below 2^24 in magnitude, so the float sums are the
 * int32 ones while |acc| stays below 2^24 (always when Cin K K <= 518: 518 * 255 * 127 < 2^24),
 * with the zero padding of real 0 that int8.c's im2row pads with z_in for. */
static kd_status qconv(kdi_onnx *o, const kdi_layer *l, const char *prefix, val *v)
{
    char buf[256], name[192];
    kdi_args a;
    int64_t relu, dequant, stride, pad, k = l->params[0].dims[2];
    KDI_TRY(q_flags(l, &relu, &dequant));
    KDI_TRY(args_of(l, buf, sizeof buf, &a));
    KDI_TRY(kdi_args_int(&a, -1, "stride", 1, 1, 1, 64, &stride));
    KDI_TRY(kdi_args_int(&a, -1, "pad", 1, 0, 0, 64, &pad));
    KDI_TRY(image(o, v));
    const char *z, *w, *b;
    KDI_TRY(scalar(o, "input_zero_point", (float)v->z_in, &z));
    KDI_TRY(unary(o, "Cast", v));
    KDI_TRY(kdi_onnx_attr_int(o, "to", KDI_ONNX_FLOAT));
    KDI_TRY(binary(o, "Sub", v, z));
    snprintf(name, sizeof name, "%sweight", prefix);
    KDI_TRY(int_tensor(o, name, KDI_ONNX_INT8, &l->params[0], 0, 0, &w));
    val wf = {w, 4, l->out, NULL, NULL, NULL, 0.0f, 0};
    KDI_TRY(unary(o, "Cast", &wf));
    KDI_TRY(kdi_onnx_attr_int(o, "to", KDI_ONNX_FLOAT));
    const char *in[2] = {v->name, wf.name}, *out = kdi_onnx_name(o, "qconv");
    KDI_TRY(kdi_onnx_node(o, "Conv", in, 2, out));
    int64_t ks[2] = {k, k}, st[2] = {stride, stride}, pads[4] = {pad, pad, pad, pad};
    KDI_TRY(kdi_onnx_attr_ints(o, "kernel_shape", ks, 2));
    KDI_TRY(kdi_onnx_attr_ints(o, "strides", st, 2));
    KDI_TRY(kdi_onnx_attr_ints(o, "pads", pads, 4));
    v->name = out;
    v->s = l->out;
    /* + bias, [C, 1, 1] */
    kdi_param bias = l->params[2];
    bias.ndim = 3;
    bias.dims[1] = bias.dims[2] = 1;
    snprintf(name, sizeof name, "%sbias", prefix);
    KDI_TRY(int_tensor(o, name, KDI_ONNX_INT32, &bias, 0, 0, &b));
    val bf = {b, 3, l->out, NULL, NULL, NULL, 0.0f, 0};
    KDI_TRY(unary(o, "Cast", &bf));
    KDI_TRY(kdi_onnx_attr_int(o, "to", KDI_ONNX_FLOAT));
    KDI_TRY(binary(o, "Add", v, bf.name));
    return requantize(o, l, prefix, v, 3, (int)relu, (int)dequant);
}

static kd_status int8_layer(kdi_onnx *o, kdi_layer *l, const char *prefix, val *v, int *done)
{
    const char *kind = l->ops->kind;
    *done = 1;
    if (strcmp(kind, "quantize") == 0) return quantize(o, l, prefix, v);
    if (strcmp(kind, "dequantize") == 0) return dequantize(o, prefix, v);
    if (strcmp(kind, "qdense") == 0) return qdense(o, l, prefix, v);
    if (strcmp(kind, "qconv") == 0) return qconv(o, l, prefix, v);
    if (strcmp(kind, "qflatten") == 0) return flat(o, v);
    if (strcmp(kind, "qmaxpool") == 0) {
        KDI_TRY(pool(o, l, "MaxPool", v)); /* max commutes with the increasing dequantisation */
        return KD_OK;
    }
    *done = 0;
    return KD_OK;
}

static kd_status export_layer(kdi_onnx *o, kdi_layer *l, const char *prefix, val *v)
{
    const char *kind = l->ops->kind;
    int done;
    KDI_TRY(int8_layer(o, l, prefix, v, &done));
    if (done) {
        v->s = l->out;
        return KD_OK;
    }
    static const char *const per_token[] = {"embed",  "posembed",  "dense",
                                            "lmhead", "attention", "layernorm"};
    for (size_t i = 0; l->seq > 0 && i < sizeof per_token / sizeof per_token[0]; i++)
        if (strcmp(kind, per_token[i]) == 0) return seq_layer(o, l, prefix, v);
    kd_status st;
    if (strcmp(kind, "dense") == 0) return dense(o, l, prefix, v);
    if (strcmp(kind, "conv") == 0) return conv(o, l, prefix, v);
    if (strcmp(kind, "maxpool") == 0) return pool(o, l, "MaxPool", v);
    if (strcmp(kind, "avgpool") == 0) return pool(o, l, "AveragePool", v);
    if (strcmp(kind, "bn") == 0) return batchnorm(o, l, prefix, v);
    if (strcmp(kind, "layernorm") == 0) return layernorm(o, l, prefix, v);
    if (strcmp(kind, "leakyrelu") == 0) return leaky(o, l, v);
    if (strcmp(kind, "gelu") == 0) return gelu(o, v);
    if (strcmp(kind, "residual") == 0) return residual(o, l, prefix, v);
    if (strcmp(kind, "gap") == 0) {
        KDI_TRY(image(o, v));
        st = unary(o, "GlobalAveragePool", v);
    } else if (strcmp(kind, "flatten") == 0) {
        st = flat(o, v);
    } else if (strcmp(kind, "relu") == 0) {
        st = unary(o, "Relu", v);
    } else if (strcmp(kind, "tanh") == 0) {
        st = unary(o, "Tanh", v);
    } else if (strcmp(kind, "sigmoid") == 0) {
        st = unary(o, "Sigmoid", v);
    } else if (strcmp(kind, "dropout") == 0) {
        st = KD_OK; /* the identity in evaluation, as libkd's predict */
    } else {
        return kdi_fail(KD_ERR_UNSUPPORTED, "layer %s'%s' has no ONNX export yet", prefix, l->spec);
    }
    v->s = l->out;
    return st;
}

static kd_status export_seq(kdi_onnx *o, const kdi_seq *s, const char *prefix, val *v)
{
    char name[96], num[16];
    for (int32_t i = 0; i < s->n; i++) {
        snprintf(num, sizeof num, "%d", (int)i);
        KDI_TRY(join(name, prefix, num));
        KDI_TRY(export_layer(o, &s->layers[i], name, v));
    }
    return KD_OK;
}

/* x' = (x - mean[c]) / std[c] (nn/normalize.c), the constants shaped to broadcast over c. */
static kd_status normalize(kdi_onnx *o, const kd_model *m, val *v)
{
    int64_t dims[3] = {m->norm.channels, 1, 1};
    int32_t ndim = m->norm.channels == 1 ? 1 : v->rank - 1;
    const char *mean = kdi_onnx_name(o, "normalize.mean"), *std = kdi_onnx_name(o, "normalize.std");
    KDI_TRY(kdi_onnx_tensor(o, mean, m->norm.mean, ndim, dims));
    KDI_TRY(kdi_onnx_tensor(o, std, m->norm.std, ndim, dims));
    KDI_TRY(binary(o, "Sub", v, mean));
    return binary(o, "Div", v, std); /* a division, as torchvision's Normalize */
}

static kd_status build(kdi_onnx *o, const kd_model *m)
{
    kdi_shape in = m->seq.in;
    val v = {"input", in.h * in.w > 1 ? 4 : 2, in, NULL, NULL, NULL, 0.0f, 0};
    int64_t dims[4] = {-1, in.c, in.h, in.w};
    if (m->seq.seq_in) { /* sequence T D: [N, T, D]; tokens V T: ids [N, T] */
        v.rank = m->seq.vocab > 0 ? 2 : 3;
        dims[2] = in.h * in.w;
    }
    KDI_TRY(kdi_onnx_input(o, v.name, v.rank, dims));
    KDI_TRY(kdi_onnx_meta(o, "kd.spec", m->spec));
    if (m->norm.channels > 0) KDI_TRY(normalize(o, m, &v));
    KDI_TRY(export_seq(o, &m->seq, "", &v));
    KDI_TRY(kdi_onnx_node(o, "Identity", &v.name, 1, "logits"));
    int64_t out[4] = {-1, v.s.c, v.s.h, v.s.w};
    if (v.rank == 3) out[2] = v.s.h * v.s.w;
    return kdi_onnx_output(o, "logits", v.rank, out);
}

kd_status kd_model_export_onnx(const kd_model *m, const char *path)
{
    KDI_CHECK_NULL(m);
    KDI_CHECK_NULL(path);
    kdi_onnx *o;
    KDI_TRY(kdi_onnx_create(&o));
    kd_status st = build(o, m);
    if (st == KD_OK) st = kdi_onnx_save(o, "libkd", path);
    kdi_onnx_destroy(o);
    return st;
}
