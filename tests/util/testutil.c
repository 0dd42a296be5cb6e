#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "nn/sequence.h"

int kdt_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

void kdt_fill(float *x, int64_t n, uint64_t seed, float lo, float hi)
{
    kdi_rng r;
    kdi_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * kdi_rng_uniform(&r);
}

double kdt_gradcheck(double (*f)(void *ctx), void *ctx, float *x, const float *grad, int64_t n,
                     double eps, int64_t max_probe)
{
    double worst = 0.0;
    int64_t step = n > max_probe ? n / max_probe : 1;
    for (int64_t i = 0; i < n; i += step) {
        float keep = x[i];
        x[i] = (float)(keep + eps);
        double up = f(ctx);
        x[i] = (float)(keep - eps);
        double down = f(ctx);
        x[i] = keep;
        /* divide by the step actually taken in float, not the nominal one */
        double h = (double)(float)(keep + eps) - (double)(float)(keep - eps);
        double fd = (up - down) / h;
        double g = grad[i];
        double err = fabs(g - fd) / fmax(1e-3, fabs(g) + fabs(fd));
        if (err > worst) worst = err;
    }
    return worst;
}

const char *kdt_tmpdir(void)
{
    static char dir[64];
    if (dir[0] == '\0') {
        strcpy(dir, "/tmp/kdtestXXXXXX");
        if (mkdtemp(dir) == NULL) strcpy(dir, "/tmp");
    }
    return dir;
}

typedef struct fd_ctx {
    kdi_seq *s;
    const float *x;
    const float *w; /* objective: sum_i w_i * y_i */
    int64_t batch, nout;
} fd_ctx;

static double objective(void *p)
{
    fd_ctx *c = p;
    const float *y;
    ck_assert_int_eq(kdi_seq_forward(c->s, c->x, c->batch, 1, &y), KD_OK);
    double sum = 0.0;
    for (int64_t i = 0; i < c->batch * c->nout; i++) sum += (double)c->w[i] * y[i];
    return sum;
}

void kdt_check_gradients(const char *spec, kdi_shape shape, int64_t batch, float lo, float hi)
{
    kdi_seq s;
    ck_assert_msg(kdi_seq_build(&s, spec, shape, 7) == KD_OK, "%s: %s", spec, kd_last_error());
    int64_t nout = kdi_shape_size(s.out), in = kdi_shape_size(shape);
    float *x = malloc(sizeof(float) * batch * in), *dx = malloc(sizeof(float) * batch * in);
    float *w = malloc(sizeof(float) * batch * nout);
    kdt_fill(x, batch * in, 1, lo, hi);
    /* With lo > 0 the inputs straddle a kink at 0 from both sides but never come near it. */
    for (int64_t i = 0; lo > 0 && i < batch * in; i += 2) x[i] = -x[i];
    kdt_fill(w, batch * nout, 2, -1.0f, 1.0f);
    kdi_param_list params = {0};
    ck_assert_int_eq(kdi_seq_collect(&s, "", &params), KD_OK);
    for (int32_t i = 0; i < params.n; i++)
        if (params.items[i].p->grad != NULL)
            memset(params.items[i].p->grad, 0, sizeof(float) * params.items[i].p->count);

    fd_ctx c = {&s, x, w, batch, nout};
    objective(&c);
    ck_assert_int_eq(kdi_seq_backward(&s, w, dx), KD_OK);
    double err = kdt_gradcheck(objective, &c, x, dx, batch * in, 3e-3, 200);
    ck_assert_msg(err < 2e-2, "%s: input gradient error %g", spec, err);
    for (int32_t i = 0; i < params.n; i++) {
        kdi_param *p = params.items[i].p;
        if (p->grad == NULL) continue;
        float *g = malloc(sizeof(float) * p->count);
        memcpy(g, p->grad, sizeof(float) * p->count);
        err = kdt_gradcheck(objective, &c, p->value, g, p->count, 3e-3, 200);
        ck_assert_msg(err < 2e-2, "%s: gradient of %s off by %g", spec, params.items[i].name, err);
        free(g);
    }
    kdi_param_list_free(&params);
    kdi_seq_free(&s);
    free(x);
    free(dx);
    free(w);
}

typedef struct dir_ctx {
    kdi_seq *s;
    const float *x, *w;
    int64_t batch, nout;
    double size; /* sum |w_i y_i|: the scale of the float rounding in the objective */
} dir_ctx;

static double dir_objective(void *p)
{
    dir_ctx *c = p;
    const float *y;
    ck_assert_int_eq(kdi_seq_forward(c->s, c->x, c->batch, 1, &y), KD_OK);
    double sum = 0.0, size = 0.0;
    for (int64_t i = 0; i < c->batch * c->nout; i++) {
        sum += (double)c->w[i] * y[i];
        size += fabs((double)c->w[i] * y[i]);
    }
    c->size = size;
    return sum;
}

void kdt_directional(double (*f)(void *ctx), void *ctx, float *v, const float *g, int64_t n,
                     uint64_t seed, double *fd, double *want)
{
    float *keep = malloc(sizeof(float) * n), *u = malloc(sizeof(float) * n);
    memcpy(keep, v, sizeof(float) * n);
    kdt_fill(u, n, seed, -1.0f, 1.0f);
    double w = 0.0, eps = 2e-3;
    for (int64_t i = 0; i < n; i++) w += (double)g[i] * u[i];
    for (int64_t i = 0; i < n; i++) v[i] = keep[i] + (float)eps * u[i];
    double up = f(ctx);
    for (int64_t i = 0; i < n; i++) v[i] = keep[i] - (float)eps * u[i];
    double down = f(ctx);
    memcpy(v, keep, sizeof(float) * n);
    free(keep);
    free(u);
    *fd = (up - down) / (2.0 * eps);
    *want = w;
}

static double directional_error(dir_ctx *c, float *v, const float *g, int64_t n, uint64_t seed)
{
    double fd, want;
    kdt_directional(dir_objective, c, v, g, n, seed, &fd, &want);
    /* The float objective rounds at about 1e-7 of its size, which the step magnifies: below a
     * floor tied to that size a derivative is compared absolutely (a bias just before a batch
     * norm has a zero gradient, and its difference is all rounding). */
    return fabs(fd - want) / fmax(1e-2 * c->size, fabs(fd) + fabs(want));
}

void kdt_check_directional(const char *spec, kdi_shape shape, int64_t batch)
{
    kdi_seq s;
    ck_assert_msg(kdi_seq_build(&s, spec, shape, 7) == KD_OK, "%s: %s", spec, kd_last_error());
    int64_t nin = batch * kdi_shape_size(shape), nout = kdi_shape_size(s.out);
    float *x = malloc(sizeof(float) * nin), *dx = malloc(sizeof(float) * nin);
    float *w = malloc(sizeof(float) * batch * nout);
    kdt_fill(x, nin, 1, -1.0f, 1.0f);
    kdt_fill(w, batch * nout, 2, -1.0f, 1.0f);
    kdi_param_list pl = {0};
    ck_assert_int_eq(kdi_seq_collect(&s, "", &pl), KD_OK);
    dir_ctx c = {&s, x, w, batch, nout, 0.0};
    dir_objective(&c);
    ck_assert_int_eq(kdi_seq_backward(&s, w, dx), KD_OK);
    for (int k = 0; k < 3; k++) {
        double err = directional_error(&c, x, dx, nin, 10 + (uint64_t)k);
        ck_assert_msg(err < 1e-2, "%s: input directional error %g", spec, err);
    }
    for (int32_t i = 0; i < pl.n; i++) {
        kdi_param *p = pl.items[i].p;
        if (p->grad == NULL) continue;
        double err = directional_error(&c, p->value, p->grad, p->count, 20 + (uint64_t)i);
        ck_assert_msg(err < 1e-2, "%s: directional error of %s %g", spec, pl.items[i].name, err);
    }
    kdi_param_list_free(&pl);
    kdi_seq_free(&s);
    free(x);
    free(dx);
    free(w);
}
