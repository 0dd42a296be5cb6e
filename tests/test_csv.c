/* CSV datasets: features, a named label column mapped to sorted classes, quoting, and malformed
 * tables refused with the line and column. Fixtures: tests/data/csv. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define CSV KDT_DATA "/csv/"

START_TEST(iris)
{
    kd_dataset *d;
    ck_assert_msg(kd_dataset_load_csv(CSV "iris.csv", "species", &d) == KD_OK, "%s",
                  kd_last_error());
    int64_t n, c, h, w;
    ck_assert_int_eq(kd_dataset_size(d, &n), KD_OK);
    ck_assert_int_eq(n, 4);
    ck_assert_int_eq(kd_dataset_shape(d, &c, &h, &w), KD_OK);
    ck_assert(c == 3 && h == 1 && w == 1);
    static const float x[12] = {5.1f, 3.5f, 1.4f, 7.0f, 3.2f, 4.7f,
                                6.3f, 3.3f, 6.0f, 4.9f, 3.0f, 1.4f};
    for (int i = 0; i < 12; i++) ck_assert_float_eq(kd_dataset_images(d)[i], x[i]);
    static const int32_t y[4] = {0, 1, 2, 0};
    for (int i = 0; i < 4; i++) ck_assert_int_eq(kd_dataset_labels(d)[i], y[i]);
    int32_t k;
    const char *name;
    ck_assert_int_eq(kd_dataset_class_count(d, &k), KD_OK);
    ck_assert_int_eq(k, 3);
    ck_assert_int_eq(kd_dataset_class_name(d, 1, &name), KD_OK);
    ck_assert_str_eq(name, "versicolor");
    ck_assert_int_eq(kd_dataset_class_name(d, 3, &name), KD_ERR_ARGUMENT);
    /* A validation split keeps the class names in both parts. */
    kd_dataset *parts[2];
    ck_assert_int_eq(kd_dataset_split(d, 0.5f, 1, &parts[0], &parts[1]), KD_OK);
    for (int p = 0; p < 2; p++) {
        ck_assert_int_eq(kd_dataset_class_count(parts[p], &k), KD_OK);
        ck_assert_int_eq(k, 3);
        ck_assert_int_eq(kd_dataset_class_name(parts[p], 2, &name), KD_OK);
        ck_assert_str_eq(name, "virginica");
        kd_dataset_destroy(parts[p]);
    }
    kd_dataset_destroy(d);

    /* Unlabelled: every column must then be numeric. */
    d = (kd_dataset *)0x1;
    ck_assert_int_eq(kd_dataset_load_csv(CSV "iris.csv", NULL, &d), KD_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(kd_last_error(), "line 2, column 3 ('species')"));
    ck_assert_int_eq(kd_dataset_load_csv(CSV "iris.csv", "class", &d), KD_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(kd_last_error(), "no column 'class'"));
    ck_assert_ptr_eq(d, (kd_dataset *)0x1);
}
END_TEST

/* A BOM, CRLF, quotes, "" escapes, spaces, blank lines; integer labels sorted by value. */
START_TEST(quoted)
{
    kd_dataset *d;
    ck_assert_msg(kd_dataset_load_csv(CSV "quoted.csv", "label", &d) == KD_OK, "%s",
                  kd_last_error());
    int64_t n, c;
    ck_assert_int_eq(kd_dataset_size(d, &n), KD_OK);
    ck_assert_int_eq(n, 3);
    ck_assert_int_eq(kd_dataset_shape(d, &c, NULL, NULL), KD_OK);
    ck_assert_int_eq(c, 2);
    static const float x[6] = {1, 2.5f, -300, 4, 0.5f, 1};
    for (int i = 0; i < 6; i++) ck_assert_float_eq(kd_dataset_images(d)[i], x[i]);
    static const int32_t y[3] = {1, 0, 1};
    for (int i = 0; i < 3; i++) ck_assert_int_eq(kd_dataset_labels(d)[i], y[i]);
    const char *name;
    ck_assert_int_eq(kd_dataset_class_name(d, 0, &name), KD_OK);
    ck_assert_str_eq(name, "9");
    kd_dataset_destroy(d);
    /* The quoted header names are unescaped; labels that are not all integers sort as text. */
    ck_assert_int_eq(kd_dataset_load_csv(CSV "quoted.csv", "b \"x\"", &d), KD_OK);
    static const int32_t yb[3] = {1, 2, 0}; /* "2.5", "4", "1" */
    for (int i = 0; i < 3; i++) ck_assert_int_eq(kd_dataset_labels(d)[i], yb[i]);
    kd_dataset_destroy(d);
}
END_TEST

static void refused(const char *file, const char *words)
{
    kd_dataset *d = (kd_dataset *)0x1;
    char path[512];
    snprintf(path, sizeof path, CSV "%s", file);
    kd_status st = kd_dataset_load_csv(path, "label", &d);
    ck_assert_msg(st == KD_ERR_FORMAT, "%s: %d (%s)", file, (int)st, kd_last_error());
    ck_assert_ptr_eq(d, (kd_dataset *)0x1);
    ck_assert_msg(strstr(kd_last_error(), words) != NULL, "'%s' lacks '%s'", kd_last_error(),
                  words);
}

START_TEST(malformed)
{
    refused("ragged.csv", "line 3 has 2 cells, the header has 3");
    refused("long_row.csv", "line 3 has more than the header's 3 cells");
    refused("non_numeric.csv", "line 3, column 2 ('b'): 'abc' is not a finite number");
    refused("empty_cell.csv", "line 3, column 2 ('b'): '' is not");
    refused("nan.csv", "line 2, column 2 ('b'): 'nan'");
    refused("no_rows.csv", "no rows");
    refused("open_quote.csv", "line 2, column 2: a quote is not closed");
    kd_dataset *d;
    ck_assert_int_eq(kd_dataset_load_csv(CSV "absent.csv", "label", &d), KD_ERR_IO);
}
END_TEST

/* Tables written here: labels only, NUL bytes, a header alone without a newline. */
START_TEST(edge_tables)
{
    char path[512];
    snprintf(path, sizeof path, "%s/t.csv", kdt_tmpdir());
    kd_dataset *d = (kd_dataset *)0x1;
    FILE *f = fopen(path, "wb");
    fputs("label\nx\n", f);
    fclose(f);
    ck_assert_int_eq(kd_dataset_load_csv(path, "label", &d), KD_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(kd_last_error(), "no feature column"));
    f = fopen(path, "wb");
    fwrite("a,label\n1,x\0\n", 1, 14, f);
    fclose(f);
    ck_assert_int_eq(kd_dataset_load_csv(path, "label", &d), KD_ERR_FORMAT);
    f = fopen(path, "wb");
    fclose(f);
    ck_assert_int_eq(kd_dataset_load_csv(path, "label", &d), KD_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(kd_last_error(), "header"));
    f = fopen(path, "wb");
    fputs("a,label\n1,x\n2,x", f); /* no final newline */
    fclose(f);
    ck_assert_int_eq(kd_dataset_load_csv(path, "label", &d), KD_OK);
    int64_t n;
    ck_assert_int_eq(kd_dataset_size(d, &n), KD_OK);
    ck_assert_int_eq(n, 2);
    kd_dataset_destroy(d);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("csv");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, iris);
    tcase_add_test(tc, quoted);
    tcase_add_test(tc, malformed);
    tcase_add_test(tc, edge_tables);
    suite_add_tcase(s, tc);
    return kdt_run(s);
}
