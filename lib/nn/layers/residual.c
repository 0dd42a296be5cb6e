/* Residual blocks (He et al. 2016): y = body(x) + shortcut(x), the shortcut the identity unless a
 * second body is given. Spec: residual(BODY) or residual(BODY)(SHORTCUT), for example
 *   residual(conv 64 3 stride=2 pad=1 | bn | relu | conv 64 3 pad=1 | bn)(conv 64 1 stride=2 | bn)
 * The activation after the sum is the next layer of the spec. Parameters are named as a PyTorch
 * module with attributes body and shortcut would name them: "<i>.body.<j>.weight". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/rng.h"
#include "kernels/kernels.h"
#include "nn/layers/layers.h"
#include "nn/sequence.h"

typedef struct residual {
    kdi_seq body, shortcut;
    int has_shortcut;
    kdi_buf dx; /* the shortcut's input gradient, before it is added to the body's */
} residual;

static kd_status res_reserve(kdi_layer *l, int64_t batch)
{
    residual *r = l->priv;
    return kdi_buf_reserve(&r->dx, batch * kdi_shape_size(l->in));
}

static kd_status res_check(kdi_layer *l, int64_t batch, int train)
{
    residual *r = l->priv;
    KDI_TRY(kdi_seq_prepare(&r->body, batch, train));
    return r->has_shortcut ? kdi_seq_prepare(&r->shortcut, batch, train) : KD_OK;
}

static kd_status res_forward(kdi_layer *l, const float *x, float *y, int64_t batch, int train)
{
    residual *r = l->priv;
    const float *yb, *ys = x;
    KDI_TRY(kdi_seq_forward(&r->body, x, batch, train, &yb));
    if (r->has_shortcut) KDI_TRY(kdi_seq_forward(&r->shortcut, x, batch, train, &ys));
    int64_t n = batch * kdi_shape_size(l->out);
    memcpy(y, yb, sizeof(float) * (size_t)n);
    kdi_kernels_get()->axpy(y, 1.0f, ys, n);
    return KD_OK;
}

static kd_status res_backward(kdi_layer *l, const float *x, const float *y, const float *dy,
                              float *dx, int64_t batch)
{
    (void)x;
    (void)y;
    residual *r = l->priv;
    int64_t n = batch * kdi_shape_size(l->in);
    KDI_TRY(kdi_seq_backward(&r->body, dy, dx));
    if (r->has_shortcut) {
        KDI_TRY(kdi_seq_backward(&r->shortcut, dy, dx != NULL ? r->dx.data : NULL));
        if (dx != NULL) kdi_kernels_get()->axpy(dx, 1.0f, r->dx.data, n);
    } else if (dx != NULL) {
        kdi_kernels_get()->axpy(dx, 1.0f, dy, n);
    }
    return KD_OK;
}

static kd_status res_step(kdi_layer *l, const float *x, float *y, int64_t pos)
{
    residual *r = l->priv;
    const float *yb, *ys = x;
    KDI_TRY(kdi_seq_step(&r->body, x, pos, &yb));
    if (r->has_shortcut) KDI_TRY(kdi_seq_step(&r->shortcut, x, pos, &ys));
    int64_t n = kdi_seq_width(l->out, 1);
    memcpy(y, yb, sizeof(float) * (size_t)n);
    kdi_kernels_get()->axpy(y, 1.0f, ys, n);
    return KD_OK;
}

static kd_status res_collect(kdi_layer *l, const char *prefix, kdi_param_list *list)
{
    residual *r = l->priv;
    char name[96];
    snprintf(name, sizeof name, "%sbody.", prefix);
    KDI_TRY(kdi_seq_collect(&r->body, name, list));
    snprintf(name, sizeof name, "%sshortcut.", prefix);
    return r->has_shortcut ? kdi_seq_collect(&r->shortcut, name, list) : KD_OK;
}

static kdi_seq *res_child(kdi_layer *l, int32_t k, const char **name)
{
    residual *r = l->priv;
    *name = k == 0 ? "body" : "shortcut";
    return k == 0 ? &r->body : k == 1 && r->has_shortcut ? &r->shortcut : NULL;
}

static void res_destroy(kdi_layer *l)
{
    residual *r = l->priv;
    if (r == NULL) return;
    kdi_seq_free(&r->body);
    kdi_seq_free(&r->shortcut);
    kdi_buf_free(&r->dx);
    kdi_free(r);
}

static const kdi_layer_ops res_ops = {.kind = "residual",
                                      .forward = res_forward,
                                      .backward = res_backward,
                                      .reserve = res_reserve,
                                      .check = res_check,
                                      .collect = res_collect,
                                      .child = res_child,
                                      .step = res_step,
                                      .destroy = res_destroy};

static int same(kdi_shape a, kdi_shape b) { return a.c == b.c && a.h == b.h && a.w == b.w; }

static kd_status res_spec(kdi_layer *l)
{
    residual *r = l->priv;
    char *body = kdi_seq_spec(&r->body), *cut = r->has_shortcut ? kdi_seq_spec(&r->shortcut) : NULL;
    kd_status st = body == NULL || (r->has_shortcut && cut == NULL)
                       ? kdi_fail(KD_ERR_NOMEM, "cannot allocate a residual spec")
                   : cut != NULL ? kdi_layer_set_spec(l, "residual(%s)(%s)", body, cut)
                                 : kdi_layer_set_spec(l, "residual(%s)", body);
    kdi_free(body);
    kdi_free(cut);
    return st;
}

kd_status kdi_residual_create(const kdi_args *a, kdi_shape in, uint64_t seed, kdi_layer *l)
{
    residual *r = kdi_calloc(1, sizeof *r);
    if (r == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot allocate a residual layer");
    l->ops = &res_ops;
    l->priv = r;
    KDI_TRY(kdi_args_check(a, 0, NULL, 2));
    if (a->nbody < 1 || a->body[0][0] == '\0')
        return kdi_fail(KD_ERR_FORMAT, "residual needs a body: residual(LAYERS)");
    KDI_TRY(kdi_seq_build_as(&r->body, a->body[0], in, a->seq, 0, kdi_rng_derive(seed, 0)));
    r->has_shortcut = a->nbody == 2;
    if (r->has_shortcut)
        KDI_TRY(kdi_seq_build_as(&r->shortcut, a->body[1], in, a->seq, 0, kdi_rng_derive(seed, 1)));
    kdi_shape want = r->has_shortcut ? r->shortcut.out : in;
    int32_t want_seq = r->has_shortcut ? r->shortcut.seq_out : a->seq;
    if (r->body.seq_out != want_seq)
        return kdi_fail(KD_ERR_SHAPE, "residual: one branch gives a sequence, the other does not");
    l->seq = r->body.seq_out ? 1 : -1;
    if (!same(r->body.out, want))
        return kdi_fail(
            KD_ERR_SHAPE, "residual: the body gives %lldx%lldx%lld but the shortcut %lldx%lldx%lld",
            (long long)r->body.out.c, (long long)r->body.out.h, (long long)r->body.out.w,
            (long long)want.c, (long long)want.h, (long long)want.w);
    l->in = in;
    l->out = r->body.out;
    return res_spec(l);
}
