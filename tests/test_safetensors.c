/* safetensors: round trips, and hostile files that must fail cleanly. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "testutil.h"

/* A path in the test's directory; four live at once. */
static const char *path_of(const char *name)
{
    static char p[4][256];
    static int next;
    char *out = p[next++ % 4];
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

static kd_status read_header(const char *header, size_t ndata)
{
    const char *p = path_of("hostile.safetensors");
    write_st(p, header, ndata);
    kdi_st_file f;
    kd_status st = kdi_st_read(p, &f);
    if (st == KD_OK) kdi_st_free(&f);
    return st;
}

START_TEST(round_trip)
{
    float w[6] = {1, -2, 3.5f, 0, 1e-30f, -7};
    int64_t steps = 123456789012LL;
    kdi_st_tensor t[2] = {
        {.name = "0.weight", .dtype = KDI_ST_F32, .ndim = 2, .dims = {2, 3}, .data = w, .nbytes = 24},
        {.name = "1.num_batches_tracked", .dtype = KDI_ST_I64, .ndim = 0, .data = &steps, .nbytes = 8},
    };
    const char *keys[] = {"kd.spec", "note"};
    const char *vals[] = {"input 3 | dense 2", "quote \" backslash \\ tab \t unicode \xc3\xa9 \xf0\x9f\x98\x80"};
    const char *p = path_of("rt.safetensors");
    ck_assert_int_eq(kdi_st_write(p, t, 2, keys, vals, 2), KD_OK);
    kdi_st_file f;
    ck_assert_int_eq(kdi_st_read(p, &f), KD_OK);
    ck_assert_int_eq(f.n, 2);
    const kdi_st_tensor *a = kdi_st_find(&f, "0.weight"), *b = kdi_st_find(&f, "1.num_batches_tracked");
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(a->dtype, KDI_ST_F32);
    ck_assert_int_eq(a->ndim, 2);
    ck_assert_int_eq(a->dims[1], 3);
    ck_assert(memcmp(a->data, w, sizeof w) == 0);
    ck_assert_int_eq(b->dtype, KDI_ST_I64);
    ck_assert_int_eq(b->ndim, 0);
    ck_assert(memcmp(b->data, &steps, 8) == 0);
    ck_assert_str_eq(kdi_st_meta(&f, "kd.spec"), vals[0]);
    ck_assert_str_eq(kdi_st_meta(&f, "note"), vals[1]);
    ck_assert_ptr_null(kdi_st_meta(&f, "absent"));
    ck_assert_ptr_null(kdi_st_find(&f, "absent"));
    kdi_st_free(&f);
    unlink(p);
}
END_TEST

/* Every prefix of a valid file is refused with a status, never a crash. */
START_TEST(every_truncation_fails)
{
    float w[4] = {1, 2, 3, 4};
    kdi_st_tensor t = {.name = "w", .dtype = KDI_ST_F32, .ndim = 1, .dims = {4}, .data = w, .nbytes = 16};
    const char *k[] = {"a"}, *v[] = {"b"};
    const char *p = path_of("full.safetensors");
    ck_assert_int_eq(kdi_st_write(p, &t, 1, k, v, 1), KD_OK);
    FILE *fp = fopen(p, "rb");
    unsigned char buf[512];
    size_t n = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    const char *q = path_of("cut.safetensors");
    for (size_t cut = 0; cut < n; cut++) {
        write_bytes(q, buf, cut);
        kdi_st_file f;
        kd_status st = kdi_st_read(q, &f);
        ck_assert_msg(st == KD_ERR_FORMAT, "cut at %zu of %zu gave %d", cut, n, st);
    }
    unlink(p);
    unlink(q);
}
END_TEST

START_TEST(hostile_headers)
{
    static const struct {
        const char *header;
        size_t ndata;
    } bad[] = {
        {"{", 0},
        {"[]", 0},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}} x", 8},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,12]}}", 12},  /* size mismatch */
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4},    /* past the end */
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8},    /* reversed */
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"v\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[2,6]}}", 8},     /* overlap */
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8},     /* duplicate */
        {"{\"w\":{\"dtype\":\"Q4\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4},     /* dtype */
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
         "\"data_offsets\":[0,4]}}", 4},                                            /* overflow */
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,4]}}", 4},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4},                           /* no offsets */
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4},
        {"{\"w\\u0000\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4},
        {"{\"w\\ud800\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4},
        {"{\"w\\q\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4},
        {"{\"__metadata__\":{\"a\":1}}", 0},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kd_status st = read_header(bad[i].header, bad[i].ndata);
        ck_assert_msg(st == KD_ERR_FORMAT, "case %zu (%s) gave %d", i, bad[i].header, st);
        ck_assert(strlen(kd_last_error()) > 0);
    }
    /* and the good ones around them */
    ck_assert_int_eq(read_header("{}", 0), KD_OK);
    ck_assert_int_eq(read_header(" {\"w\":{\"data_offsets\":[0,8],\"shape\":[2],\"dtype\":\"F32\"}} ", 8), KD_OK);
}
END_TEST

START_TEST(header_length_lies)
{
    unsigned char buf[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, '{', '}'};
    const char *p = path_of("len.safetensors");
    write_bytes(p, buf, sizeof buf);
    kdi_st_file f;
    ck_assert_int_eq(kdi_st_read(p, &f), KD_ERR_FORMAT);
    buf[0] = 200, buf[1] = buf[2] = buf[3] = buf[4] = buf[5] = buf[6] = buf[7] = 0;
    write_bytes(p, buf, sizeof buf);
    ck_assert_int_eq(kdi_st_read(p, &f), KD_ERR_FORMAT);
    ck_assert_int_eq(kdi_st_read(path_of("does-not-exist"), &f), KD_ERR_IO);
    ck_assert_int_eq(kdi_st_read(kdt_tmpdir(), &f), KD_ERR_IO);
    unlink(p);
}
END_TEST

/* A failed write leaves the old file as it was and no temporary file behind. */
START_TEST(atomic_write)
{
    float w = 1;
    kdi_st_tensor t = {.name = "w", .dtype = KDI_ST_F32, .ndim = 1, .dims = {1}, .data = &w, .nbytes = 4};
    ck_assert_int_eq(kdi_st_write("/nonexistent-dir/x.safetensors", &t, 1, NULL, NULL, 0), KD_ERR_IO);
    char dir[300];
    snprintf(dir, sizeof dir, "%s/atomic", kdt_tmpdir());
    char cmd[1300];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir %s", dir, dir);
    ck_assert_int_eq(system(cmd), 0);
    char p[400];
    snprintf(p, sizeof p, "%s/m.safetensors", dir);
    ck_assert_int_eq(kdi_st_write(p, &t, 1, NULL, NULL, 0), KD_OK);
    /* a directory where the file should go makes rename fail */
    char q[400];
    snprintf(q, sizeof q, "%s/d.safetensors", dir);
    snprintf(cmd, sizeof cmd, "mkdir %s && touch %s/inside", q, q);
    ck_assert_int_eq(system(cmd), 0);
    ck_assert_int_eq(kdi_st_write(q, &t, 1, NULL, NULL, 0), KD_ERR_IO);
    snprintf(cmd, sizeof cmd, "test $(ls %s | wc -l) -eq 2", dir);
    ck_assert_msg(system(cmd) == 0, "a temporary file was left behind");
    kdi_st_file f;
    ck_assert_int_eq(kdi_st_read(p, &f), KD_OK);
    kdi_st_free(&f);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("safetensors");
    TCase *t = tcase_create("safetensors");
    tcase_add_test(t, round_trip);
    tcase_add_test(t, every_truncation_fails);
    tcase_add_test(t, hostile_headers);
    tcase_add_test(t, header_length_lies);
    tcase_add_test(t, atomic_write);
    suite_add_tcase(s, t);
    return kdt_run(s);
}
