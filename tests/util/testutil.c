#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

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
