/* Core buffers and scans: kdi_all_finite, the one input scan every public call makes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* Every non-finite kind at every position of buffers of every length up to 70 (vector bodies and
 * tails), among finite values that include the extremes. */
START_TEST(all_finite_finds_every_nonfinite)
{
    const float finite[] = {0.0f,           -0.0f,           1.0f,   -1.0f,  3.4028235e38f,
                            -3.4028235e38f, 1.17549435e-38f, 1e-45f, -1e-45f};
    const float bad[] = {INFINITY, -INFINITY, NAN, -NAN};
    float x[70];
    for (int n = 0; n <= 70; n++) {
        for (int i = 0; i < n; i++) x[i] = finite[i % 9];
        ck_assert(kdi_all_finite(x, n));
        for (int at = 0; at < n; at++)
            for (int k = 0; k < 4; k++) {
                float keep = x[at];
                x[at] = bad[k];
                ck_assert_msg(!kdi_all_finite(x, n), "n %d, %g at %d", n, (double)bad[k], at);
                x[at] = keep;
            }
    }
    /* A NaN with another payload. */
    uint32_t bits = 0x7f800001u;
    memcpy(&x[3], &bits, sizeof bits);
    ck_assert(!kdi_all_finite(x, 8));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("tensor");
    TCase *t = tcase_create("tensor");
    tcase_add_test(t, all_finite_finds_every_nonfinite);
    suite_add_tcase(s, t);
    return kdt_run(s);
}
