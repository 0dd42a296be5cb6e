/* ONNX export (kd_model_export_onnx): arguments, every kind of model, atomic saves. That ONNX Runtime
 * computes libkd's numbers from the files, and onnx.checker accepts them, is tests/onnx/run.sh. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

static char *read_all(const char *path, long *size)
{
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) return NULL;
    fseek(fp, 0, SEEK_END);
    *size = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *b = malloc((size_t)*size + 1);
    ck_assert_uint_eq(fread(b, 1, (size_t)*size, fp), (size_t)*size);
    fclose(fp);
    return b;
}

static const char *tmp(const char *name)
{
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s", kdt_tmpdir(), name);
    return path;
}

START_TEST(writes_a_model)
{
    kd_model *m;
    ck_assert_int_eq(
        kd_model_create("input 1x8x8 | conv 4 3 | bn | relu | gap | flatten | dense 3", 1, &m),
        KD_OK);
    const char *path = tmp("m.onnx");
    ck_assert_int_eq(kd_model_export_onnx(m, path), KD_OK);
    long size;
    char *b = read_all(path, &size);
    ck_assert_ptr_nonnull(b);
    /* Field 1 (ir_version), a varint: 8. */
    ck_assert_int_ge(size, 100);
    ck_assert_int_eq(b[0], 0x08);
    ck_assert_int_eq(b[1], 8);
    b[size] = '\0';
    int found = 0;
    for (long i = 0; i + 7 < size; i++) found |= memcmp(b + i, "kd.spec", 7) == 0;
    ck_assert(found);
    free(b);
    kd_model_destroy(m);
}
END_TEST

START_TEST(sequences_and_tokens)
{
    static const char *const specs[] = {
        "tokens 16 4 | embed 8 | residual(layernorm | attention 2 causal) | lmhead 16 tied",
        "sequence 4 8 | dense 8 | flatten | dense 2",
    };
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        kd_model *m;
        ck_assert_int_eq(kd_model_create(specs[i], 1, &m), KD_OK);
        ck_assert_int_eq(kd_model_export_onnx(m, tmp("seq.onnx")), KD_OK);
        kd_model_destroy(m);
    }
}
END_TEST

START_TEST(failed_save_keeps_the_file)
{
    kd_model *m;
    ck_assert_int_eq(kd_model_create("input 4 | dense 2", 1, &m), KD_OK);
    /* A directory in the way: the rename fails (even for root), the temporary file goes. */
    const char *path = tmp("adir");
    ck_assert_int_eq(mkdir(path, 0700), 0);
    ck_assert_int_eq(kd_model_export_onnx(m, path), KD_ERR_IO);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert(S_ISDIR(st.st_mode));
    DIR *d = opendir(kdt_tmpdir());
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        ck_assert_msg(strncmp(e->d_name, "adir.tmp", 8) != 0, "left %s", e->d_name);
    closedir(d);
    rmdir(path);
    kd_model_destroy(m);
}
END_TEST

START_TEST(bad_arguments)
{
    kd_model *m;
    ck_assert_int_eq(kd_model_create("input 4 | dense 2", 1, &m), KD_OK);
    ck_assert_int_eq(kd_model_export_onnx(NULL, tmp("x.onnx")), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_model_export_onnx(m, NULL), KD_ERR_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(kd_last_error(), "path"));
    ck_assert_int_eq(kd_model_export_onnx(m, tmp("no/such/dir/x.onnx")), KD_ERR_IO);
    kd_model_destroy(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("onnx");
    TCase *tc = tcase_create("export");
    tcase_add_test(tc, writes_a_model);
    tcase_add_test(tc, sequences_and_tokens);
    tcase_add_test(tc, failed_save_keeps_the_file);
    tcase_add_test(tc, bad_arguments);
    suite_add_tcase(s, tc);
    return kdt_run(s);
}
