/* Image folders (torchvision's ImageFolder layout): PNG of every colour type and JPEG, in RGB and
 * gray, against PIL's decoding (tests/data/images/make_fixtures.py); wrong sizes, corrupt and
 * foreign files refused naming the file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define IMG KDT_DATA "/images/"
#define W 4
#define H 3

/* The expected bytes [h, w, c] of file in mode ("RGB" or "L"), from expected.txt. */
static int expected(const char *file, const char *mode, int *out)
{
    FILE *f = fopen(IMG "folder/expected.txt", "r");
    ck_assert_ptr_nonnull(f);
    char name[64], m[8];
    int found = 0;
    while (!found && fscanf(f, "%63s %7s", name, m) == 2) {
        int n = strcmp(m, "RGB") == 0 ? W * H * 3 : W * H;
        for (int i = 0; i < n; i++) ck_assert_int_eq(fscanf(f, "%d", &out[i]), 1);
        found = strcmp(name, file) == 0 && strcmp(m, mode) == 0;
    }
    fclose(f);
    return found;
}

/* Example i of d against PIL's bytes, within tol (in 1/255). */
static void compare(const kd_dataset *d, int64_t i, const char *file, int c, int tol)
{
    int want[W * H * 3];
    ck_assert_msg(expected(file, c == 3 ? "RGB" : "L", want), "%s not in expected.txt", file);
    const float *x = kd_dataset_images(d) + i * c * H * W;
    for (int p = 0; p < H * W; p++)
        for (int k = 0; k < c; k++) {
            float got = x[k * H * W + p] * 255.0f;
            ck_assert_msg(got >= (float)(want[p * c + k] - tol) - 1e-3f &&
                              got <= (float)(want[p * c + k] + tol) + 1e-3f,
                          "%s channel %d pixel %d: %g, PIL %d", file, k, p, (double)got,
                          want[p * c + k]);
        }
}

START_TEST(folder_rgb)
{
    kd_dataset *d;
    ck_assert_msg(kd_dataset_load_image_folder(IMG "folder", 3, 0, 0, &d) == KD_OK, "%s",
                  kd_last_error());
    int64_t n, c, h, w;
    ck_assert_int_eq(kd_dataset_size(d, &n), KD_OK);
    ck_assert_int_eq(n, 6); /* cat: a, b; dog: c, d, e, f (notes.txt and .hidden skipped) */
    ck_assert_int_eq(kd_dataset_shape(d, &c, &h, &w), KD_OK);
    ck_assert(c == 3 && h == H && w == W);
    static const int32_t y[6] = {0, 0, 1, 1, 1, 1};
    for (int i = 0; i < 6; i++) ck_assert_int_eq(kd_dataset_labels(d)[i], y[i]);
    int32_t k;
    const char *name;
    ck_assert_int_eq(kd_dataset_class_count(d, &k), KD_OK);
    ck_assert_int_eq(k, 2);
    ck_assert_int_eq(kd_dataset_class_name(d, 1, &name), KD_OK);
    ck_assert_str_eq(name, "dog");
    compare(d, 0, "cat/a.png", 3, 0);
    compare(d, 1, "cat/b.png", 3, 0);
    compare(d, 2, "dog/c.png", 3, 0);
    compare(d, 3, "dog/d.PNG", 3, 0);
    compare(d, 5, "dog/f.jpg", 3, 3); /* two builds of libjpeg may round the IDCT apart */
    /* e.png is 16-bit gray, values 0x0100, 0x0302, ... (PIL's I;16 is little-endian); 8 bits are
     * the high byte of each (libpng's png_set_strip_16). */
    const float *e = kd_dataset_images(d) + 4 * 3 * H * W;
    for (int p = 0; p < H * W; p++) ck_assert_float_eq(e[p] * 255.0f, (float)(2 * p + 1));
    kd_dataset_destroy(d);
}
END_TEST

START_TEST(folder_gray)
{
    kd_dataset *d;
    ck_assert_msg(kd_dataset_load_image_folder(IMG "folder", 1, H, W, &d) == KD_OK, "%s",
                  kd_last_error());
    int64_t c;
    ck_assert_int_eq(kd_dataset_shape(d, &c, NULL, NULL), KD_OK);
    ck_assert_int_eq(c, 1);
    compare(d, 0, "cat/a.png", 1, 1); /* libpng's and PIL's fixed-point luma round apart */
    compare(d, 1, "cat/b.png", 1, 0);
    compare(d, 2, "dog/c.png", 1, 1);
    compare(d, 5, "dog/f.jpg", 1, 3);
    kd_dataset_destroy(d);
}
END_TEST

static void refused(const char *root, int64_t h, int64_t w, kd_status want, const char *words)
{
    kd_dataset *d = (kd_dataset *)0x1;
    kd_status st = kd_dataset_load_image_folder(root, 3, h, w, &d);
    ck_assert_msg(st == want, "%s: %d (%s)", root, (int)st, kd_last_error());
    ck_assert_ptr_eq(d, (kd_dataset *)0x1);
    ck_assert_msg(strstr(kd_last_error(), words) != NULL, "'%s' lacks '%s'", kd_last_error(),
                  words);
}

START_TEST(refusals)
{
    refused(IMG "bad", 0, 0, KD_ERR_SHAPE, "b.png is 3x5");
    refused(IMG "folder", 5, 5, KD_ERR_SHAPE, "a.png is 3x4");
    refused(IMG "corrupt", 0, 0, KD_ERR_FORMAT, "b.png is not a readable PNG");
    refused(IMG "notimage", 0, 0, KD_ERR_FORMAT, "a.png is neither a PNG nor a JPEG");
    refused(IMG "absent", 0, 0, KD_ERR_IO, "absent");
    refused(IMG "folder/cat", 0, 0, KD_ERR_FORMAT, "no class sub-folders");
    refused(IMG "folder", 3, 0, KD_ERR_ARGUMENT, "both");
    kd_dataset *d;
    ck_assert_int_eq(kd_dataset_load_image_folder(IMG "folder", 2, 0, 0, &d), KD_ERR_ARGUMENT);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("images");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, folder_rgb);
    tcase_add_test(tc, folder_gray);
    tcase_add_test(tc, refusals);
    suite_add_tcase(s, tc);
    return kdt_run(s);
}
