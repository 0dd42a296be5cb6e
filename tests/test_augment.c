/* Augmentation: shifts move pixels and fill with zeros, flips mirror, the seed decides. */
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* Finds the shift that maps a to b (zero fill), or fails. */
static int shift_of(const float *a, const float *b, int h, int w, int amount, int *sy, int *sx)
{
    for (int dy = -amount; dy <= amount; dy++)
        for (int dx = -amount; dx <= amount; dx++) {
            int ok = 1;
            for (int i = 0; ok && i < h; i++)
                for (int j = 0; ok && j < w; j++) {
                    int si = i - dy, sj = j - dx;
                    float want = si >= 0 && si < h && sj >= 0 && sj < w ? a[si * w + sj] : 0.0f;
                    ok = b[i * w + j] == want;
                }
            if (ok) {
                *sy = dy, *sx = dx;
                return 1;
            }
        }
    return 0;
}

START_TEST(translate)
{
    enum { B = 64, C = 2, H = 7, W = 9 };
    float *x = malloc(sizeof(float) * B * C * H * W), *orig = malloc(sizeof(float) * B * C * H * W);
    kdt_fill(orig, B * C * H * W, 1, 0.5f, 1.5f); /* no zeros, so the fill is visible */
    memcpy(x, orig, sizeof(float) * B * C * H * W);
    ck_assert_int_eq(kd_augment_images(x, B, C, H, W, KD_AUGMENT_TRANSLATE, 2, 9), KD_OK);
    int seen[5][5] = {{0}};
    for (int n = 0; n < B; n++) {
        int sy, sx, ty, tx;
        ck_assert(shift_of(orig + n * C * H * W, x + n * C * H * W, H, W, 2, &sy, &sx));
        /* every channel of an image moves together */
        ck_assert(shift_of(orig + (n * C + 1) * H * W, x + (n * C + 1) * H * W, H, W, 2, &ty, &tx));
        ck_assert(sy == ty && sx == tx);
        seen[sy + 2][sx + 2]++;
    }
    int distinct = 0;
    for (int i = 0; i < 25; i++) distinct += seen[i / 5][i % 5] > 0;
    ck_assert_int_ge(distinct, 12);
    /* the same seed gives the same batch; CROP is the same distribution and the same draw */
    float *y = malloc(sizeof(float) * B * C * H * W);
    memcpy(y, orig, sizeof(float) * B * C * H * W);
    ck_assert_int_eq(kd_augment_images(y, B, C, H, W, KD_AUGMENT_CROP, 2, 9), KD_OK);
    ck_assert(memcmp(x, y, sizeof(float) * B * C * H * W) == 0);
    free(x), free(y), free(orig);
}
END_TEST

START_TEST(flip)
{
    enum { B = 40, H = 3, W = 5 };
    float x[B * H * W], orig[B * H * W];
    kdt_fill(orig, B * H * W, 2, 0, 1);
    memcpy(x, orig, sizeof x);
    ck_assert_int_eq(kd_augment_images(x, B, 1, H, W, KD_AUGMENT_HFLIP, 0, 3), KD_OK);
    int flipped = 0;
    for (int n = 0; n < B; n++) {
        const float *a = orig + n * H * W, *b = x + n * H * W;
        int same = memcmp(a, b, sizeof(float) * H * W) == 0, mirrored = 1;
        for (int i = 0; i < H; i++)
            for (int j = 0; j < W; j++) mirrored &= b[i * W + j] == a[i * W + W - 1 - j];
        ck_assert(same || mirrored);
        flipped += !same;
    }
    ck_assert(flipped > 8 && flipped < 32);
}
END_TEST

START_TEST(bad_arguments)
{
    float x[16] = {0};
    ck_assert_int_eq(kd_augment_images(NULL, 1, 1, 4, 4, KD_AUGMENT_HFLIP, 0, 1), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_augment_images(x, 0, 1, 4, 4, KD_AUGMENT_HFLIP, 0, 1), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_augment_images(x, 1, 1, 4, 4, KD_AUGMENT_TRANSLATE, 4, 1), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_augment_images(x, 1, 1, 4, 4, KD_AUGMENT_TRANSLATE, -1, 1),
                     KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_augment_images(x, 1, 1, 4, 4, (kd_augment_kind)7, 1, 1), KD_ERR_ARGUMENT);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("augment");
    TCase *t = tcase_create("augment");
    tcase_add_test(t, translate);
    tcase_add_test(t, flip);
    tcase_add_test(t, bad_arguments);
    suite_add_tcase(s, t);
    return kdt_run(s);
}
