/* kd_tensors: round trips through safetensors, replacement, metadata, and refusals. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static const char *path_of(const char *name)
{
    static char p[2][256];
    static int next;
    char *out = p[next++ % 2];
    snprintf(out, sizeof p[0], "%s/%s", kdt_tmpdir(), name);
    return out;
}

static void write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

/* A file from a header text and n data bytes. */
static void write_st(const char *path, const char *header, size_t ndata)
{
    size_t h = strlen(header);
    unsigned char *buf = calloc(1, 8 + h + ndata);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)h >> (8 * i));
    memcpy(buf + 8, header, h);
    write_bytes(path, buf, 8 + h + ndata);
    free(buf);
}

START_TEST(round_trip)
{
    kd_tensors *t;
    ck_assert_int_eq(kd_tensors_create(&t), KD_OK);
    float logits[6] = {1.5f, -2.0f, 0.25f, 3.0f, 4.0f, -0.5f};
    int32_t labels[3] = {2, 0, 1};
    int64_t idx[2] = {INT64_C(1) << 40, -7};
    int64_t d23[2] = {2, 3}, d3[1] = {3}, d2[1] = {2};
    ck_assert_int_eq(kd_tensors_set(t, "logits", KD_DTYPE_F32, 2, d23, logits), KD_OK);
    ck_assert_int_eq(kd_tensors_set(t, "labels", KD_DTYPE_I32, 1, d3, labels), KD_OK);
    ck_assert_int_eq(kd_tensors_set(t, "ids", KD_DTYPE_I64, 1, d2, idx), KD_OK);
    ck_assert_int_eq(kd_tensors_set(t, "empty", KD_DTYPE_F32, 2, (int64_t[]){0, 5}, NULL), KD_OK);
    ck_assert_int_eq(kd_tensors_set_meta(t, "kd.kind", "logits"), KD_OK);
    ck_assert_int_eq(kd_tensors_set_meta(t, "note", "caf\xc3\xa9 \"quoted\"\n"), KD_OK);
    /* bad UTF-8 and empty keys are refused when set (a later save would fail), nothing changed */
    ck_assert_int_eq(kd_tensors_set_meta(t, "k2", "\xff\xfe"), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_tensors_set_meta(t, "k\xc3", "v"), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_tensors_set(t, "bad\xff", KD_DTYPE_I32, 1, d3, labels), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_tensors_set_meta(t, "gone", "soon"), KD_OK);
    ck_assert_int_eq(kd_tensors_remove_meta(t, "gone"), KD_OK);
    ck_assert_int_eq(kd_tensors_remove_meta(t, "gone"), KD_ERR_ARGUMENT);
    const char *none;
    ck_assert_int_eq(kd_tensors_get_meta(t, "gone", &none), KD_OK);
    ck_assert_ptr_null(none);
    const char *path = path_of("set.safetensors");
    ck_assert_int_eq(kd_tensors_save(t, path), KD_OK);
    kd_tensors_destroy(t);

    ck_assert_int_eq(kd_tensors_load(path, &t), KD_OK);
    int32_t n, ndim, found;
    ck_assert_int_eq(kd_tensors_count(t, &n), KD_OK);
    ck_assert_int_eq(n, 4);
    const char *name;
    ck_assert_int_eq(kd_tensors_name(t, 0, &name), KD_OK);
    ck_assert_str_eq(name, "logits");
    kd_dtype dt;
    int64_t dims[KD_TENSORS_MAX_DIMS], nbytes;
    ck_assert_int_eq(kd_tensors_info(t, "logits", &dt, &ndim, dims), KD_OK);
    ck_assert_int_eq(dt, KD_DTYPE_F32);
    ck_assert_int_eq(ndim, 2);
    ck_assert(dims[0] == 2 && dims[1] == 3 && dims[2] == 0);
    const void *data;
    ck_assert_int_eq(kd_tensors_data(t, "logits", &data, &nbytes), KD_OK);
    ck_assert_int_eq(nbytes, 24);
    ck_assert_mem_eq(data, logits, sizeof logits);
    ck_assert_int_eq(kd_tensors_info(t, "labels", &dt, NULL, NULL), KD_OK);
    ck_assert_int_eq(dt, KD_DTYPE_I32);
    ck_assert_int_eq(kd_tensors_data(t, "labels", &data, NULL), KD_OK);
    ck_assert_mem_eq(data, labels, sizeof labels);
    ck_assert_int_eq(kd_tensors_data(t, "ids", &data, NULL), KD_OK);
    ck_assert_mem_eq(data, idx, sizeof idx);
    ck_assert_int_eq(kd_tensors_data(t, "empty", &data, &nbytes), KD_OK);
    ck_assert_int_eq(nbytes, 0);
    const char *v;
    ck_assert_int_eq(kd_tensors_get_meta(t, "note", &v), KD_OK);
    ck_assert_str_eq(v, "caf\xc3\xa9 \"quoted\"\n");
    ck_assert_int_eq(kd_tensors_get_meta(t, "absent", &v), KD_OK);
    ck_assert_ptr_null(v);
    ck_assert_int_eq(kd_tensors_meta_count(t, &n), KD_OK);
    ck_assert_int_eq(n, 2);
    ck_assert_int_eq(kd_tensors_has(t, "ids", &found), KD_OK);
    ck_assert_int_eq(found, 1);
    ck_assert_int_eq(kd_tensors_remove(t, "ids"), KD_OK);
    ck_assert_int_eq(kd_tensors_has(t, "ids", &found), KD_OK);
    ck_assert_int_eq(found, 0);
    ck_assert_int_eq(kd_tensors_remove(t, "ids"), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_tensors_data(t, "ids", &data, NULL), KD_ERR_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(kd_last_error(), "'ids'"));
    kd_tensors_destroy(t);
}
END_TEST

/* A replaced array keeps its place; a refused set changes nothing. */
START_TEST(replace_and_refuse)
{
    kd_tensors *t;
    ck_assert_int_eq(kd_tensors_create(&t), KD_OK);
    float a[2] = {1, 2}, b[3] = {3, 4, 5};
    ck_assert_int_eq(kd_tensors_set(t, "a", KD_DTYPE_F32, 1, (int64_t[]){2}, a), KD_OK);
    ck_assert_int_eq(kd_tensors_set(t, "b", KD_DTYPE_F32, 1, (int64_t[]){2}, a), KD_OK);
    ck_assert_int_eq(kd_tensors_set(t, "a", KD_DTYPE_F32, 1, (int64_t[]){3}, b), KD_OK);
    const char *name;
    ck_assert_int_eq(kd_tensors_name(t, 0, &name), KD_OK);
    ck_assert_str_eq(name, "a");
    ck_assert_int_eq(kd_tensors_name(t, 2, &name), KD_ERR_ARGUMENT);
    float bad[2] = {1, 0};
    bad[1] = bad[1] / bad[1];
    ck_assert_int_eq(kd_tensors_set(t, "a", KD_DTYPE_F32, 1, (int64_t[]){2}, bad), KD_ERR_NUMERIC);
    ck_assert_int_eq(kd_tensors_set(t, "a", (kd_dtype)7, 1, (int64_t[]){2}, a), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_tensors_set(t, "a", KD_DTYPE_F32, 9, (int64_t[9]){0}, a), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_tensors_set(t, "a", KD_DTYPE_F32, 1, (int64_t[]){-1}, a), KD_ERR_ARGUMENT);
    ck_assert_int_eq(
        kd_tensors_set(t, "a", KD_DTYPE_F32, 2, (int64_t[]){INT64_C(1) << 40, INT64_C(1) << 40}, a),
        KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_tensors_set(t, "", KD_DTYPE_F32, 1, (int64_t[]){2}, a), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_tensors_set(t, "__metadata__", KD_DTYPE_F32, 1, (int64_t[]){2}, a),
                     KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_tensors_set(t, "c", KD_DTYPE_F32, 1, (int64_t[]){2}, NULL),
                     KD_ERR_ARGUMENT);
    int64_t dims[KD_TENSORS_MAX_DIMS];
    int32_t n;
    ck_assert_int_eq(kd_tensors_info(t, "a", NULL, NULL, dims), KD_OK);
    ck_assert_int_eq(dims[0], 3);
    ck_assert_int_eq(kd_tensors_count(t, &n), KD_OK);
    ck_assert_int_eq(n, 2);
    /* A name the writer could not write is refused when set (it was accepted, and every later
     * save failed), nothing changed. */
    ck_assert_int_eq(kd_tensors_set(t, "\xff", KD_DTYPE_F32, 1, (int64_t[]){2}, a),
                     KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_tensors_count(t, &n), KD_OK);
    ck_assert_int_eq(n, 2);
    ck_assert_int_eq(kd_tensors_save(t, path_of("refused.safetensors")), KD_OK);
    kd_tensors_destroy(t);
}
END_TEST

/* Hostile and foreign files: a clear status, *out untouched. */
START_TEST(malformed)
{
    kd_tensors *t = (kd_tensors *)0x1;
    const char *p = path_of("bad.safetensors");
    ck_assert_int_eq(kd_tensors_load(path_of("missing.safetensors"), &t), KD_ERR_IO);
    write_bytes(p, "\x10\x00\x00", 3);
    ck_assert_int_eq(kd_tensors_load(p, &t), KD_ERR_FORMAT);
    /* A header length far beyond the file: refused before anything is allocated. */
    write_bytes(p, "\xff\xff\xff\xff\xff\x00\x00\x00{}", 10);
    ck_assert_int_eq(kd_tensors_load(p, &t), KD_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(kd_last_error(), "header length"));
    /* Truncated data. */
    write_st(p, "{\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8);
    ck_assert_int_eq(kd_tensors_load(p, &t), KD_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(kd_last_error(), "truncated"));
    /* A dtype the set does not hold. */
    write_st(p, "{\"x\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,16]}}", 16);
    ck_assert_int_eq(kd_tensors_load(p, &t), KD_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(kd_last_error(), "'x'"));
    write_st(p, "{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4);
    ck_assert_int_eq(kd_tensors_load(p, &t), KD_ERR_FORMAT);
    ck_assert_ptr_eq(t, (kd_tensors *)0x1);
    /* A file written elsewhere (I32, metadata, any order of fields) loads. */
    write_st(p,
             "{\"__metadata__\":{\"format\":\"np\"},\"y\":{\"shape\":[2],\"data_offsets\":[0,8],"
             "\"dtype\":\"I32\"}}",
             8);
    ck_assert_int_eq(kd_tensors_load(p, &t), KD_OK);
    const char *v;
    ck_assert_int_eq(kd_tensors_get_meta(t, "format", &v), KD_OK);
    ck_assert_str_eq(v, "np");
    kd_tensors_destroy(t);
    kd_tensors_destroy(NULL);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("tensors");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, round_trip);
    tcase_add_test(tc, replace_and_refuse);
    tcase_add_test(tc, malformed);
    suite_add_tcase(s, tc);
    return kdt_run(s);
}
