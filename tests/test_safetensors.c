/* safetensors: round trips, the reference layout, and hostile files that must fail cleanly. */
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
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

/* The whole file (malloc'd) and its size. */
static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)size + 1);
    ck_assert_uint_eq(fread(b, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    *n = (size_t)size;
    return b;
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

/* A fresh, empty directory under the test's temporary directory. */
static const char *fresh_dir(const char *name)
{
    static char dir[300];
    snprintf(dir, sizeof dir, "%s/%s", kdt_tmpdir(), name);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir '%s'", dir, dir);
    ck_assert_int_eq(system(cmd), 0);
    return dir;
}

/* A file from a header text and n data bytes (0, 1, 2, ...). */
static void write_st(const char *path, const char *header, size_t ndata)
{
    size_t h = strlen(header);
    unsigned char *buf = calloc(1, 8 + h + ndata);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)h >> (8 * i));
    memcpy(buf + 8, header, h);
    for (size_t i = 0; i < ndata; i++) buf[8 + h + i] = (unsigned char)i;
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
    kdi_st_tensor t[4] = {
        {.name = "0.weight",
         .dtype = KDI_ST_F32,
         .ndim = 2,
         .dims = {2, 3},
         .data = w,
         .nbytes = 24},
        {.name = "1.num_batches_tracked",
         .dtype = KDI_ST_I64,
         .ndim = 0,
         .data = &steps,
         .nbytes = 8},
        {.name = "empty",
         .dtype = KDI_ST_F32,
         .ndim = 2,
         .dims = {3, 0},
         .data = NULL,
         .nbytes = 0},
        {.name = "eight \xc3\xa9",
         .dtype = KDI_ST_F32,
         .ndim = 8,
         .dims = {1, 1, 1, 1, 1, 2, 1, 1},
         .data = w,
         .nbytes = 8},
    };
    const char *keys[] = {"kd.spec", "note", "ctl"};
    const char *vals[] = {
        "input 3 | dense 2",
        "quote \" backslash \\ slash / unicode \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
        "tab \t newline \n bell \x07 del \x7f"};
    const char *p = path_of("rt.safetensors");
    ck_assert_int_eq(kdi_st_write(p, t, 4, keys, vals, 3), KD_OK);
    kdi_st_file f;
    ck_assert_int_eq(kdi_st_read(p, &f), KD_OK);
    ck_assert_int_eq(f.n, 4);
    ck_assert_int_eq(f.nmeta, 3);
    for (int i = 0; i < 4; i++) {
        const kdi_st_tensor *a = kdi_st_find(&f, t[i].name);
        ck_assert_ptr_nonnull(a);
        ck_assert_int_eq(a->dtype, t[i].dtype);
        ck_assert_int_eq(a->ndim, t[i].ndim);
        for (int d = 0; d < t[i].ndim; d++) ck_assert_int_eq(a->dims[d], t[i].dims[d]);
        ck_assert_int_eq(a->nbytes, t[i].nbytes);
        if (a->nbytes > 0) ck_assert(memcmp(a->data, t[i].data, (size_t)a->nbytes) == 0);
    }
    for (int i = 0; i < 3; i++) ck_assert_str_eq(kdi_st_meta(&f, keys[i]), vals[i]);
    ck_assert_ptr_null(kdi_st_meta(&f, "absent"));
    ck_assert_ptr_null(kdi_st_find(&f, "absent"));
    kdi_st_free(&f);
    struct stat sb;
    ck_assert_int_eq(stat(p, &sb), 0);
    ck_assert_int_eq(sb.st_mode & 0777, 0644);
    /* an empty file set, and an overwrite */
    ck_assert_int_eq(kdi_st_write(p, NULL, 0, NULL, NULL, 0), KD_OK);
    ck_assert_int_eq(kdi_st_read(p, &f), KD_OK);
    ck_assert(f.n == 0 && f.nmeta == 0);
    kdi_st_free(&f);
    unlink(p);
}
END_TEST

/* The writer's bytes are the reference's (the format's compact JSON, __metadata__ first, spaces to
 * a multiple of 8): huggingface/safetensors serializes these three cases to exactly these files. */
static void expect_file(const char *path, const char *header, const void *data, size_t ndata)
{
    size_t n, h = strlen(header);
    unsigned char *b = slurp(path, &n);
    ck_assert_uint_eq(n, 8 + h + ndata);
    for (int i = 0; i < 8; i++) ck_assert_uint_eq(b[i], (h >> (8 * i)) & 0xff);
    ck_assert(memcmp(b + 8, header, h) == 0);
    ck_assert(ndata == 0 || memcmp(b + 8 + h, data, ndata) == 0);
    free(b);
}

START_TEST(reference_layout)
{
    float x[6] = {0, 1, 2, 3, 4, 5};
    kdi_st_tensor t = {.name = "attn.0",
                       .dtype = KDI_ST_F32,
                       .ndim = 3,
                       .dims = {1, 2, 3},
                       .data = x,
                       .nbytes = 24};
    const char *p = path_of("ref.safetensors");
    ck_assert_int_eq(kdi_st_write(p, &t, 1, NULL, NULL, 0), KD_OK);
    expect_file(p, "{\"attn.0\":{\"dtype\":\"F32\",\"shape\":[1,2,3],\"data_offsets\":[0,24]}}", x,
                24);
    t.name = "attn0";
    t.ndim = 4;
    t.dims[0] = 1, t.dims[1] = 1, t.dims[2] = 2, t.dims[3] = 3;
    ck_assert_int_eq(kdi_st_write(p, &t, 1, NULL, NULL, 0), KD_OK);
    expect_file(
        p, "{\"attn0\":{\"dtype\":\"F32\",\"shape\":[1,1,2,3],\"data_offsets\":[0,24]}}       ", x,
        24);
    ck_assert_int_eq(kdi_st_write(p, NULL, 0, NULL, NULL, 0), KD_OK);
    expect_file(p, "{}      ", NULL, 0);
    const char *k[] = {"framework"}, *v[] = {"pt"};
    ck_assert_int_eq(kdi_st_write(p, NULL, 0, k, v, 1), KD_OK);
    expect_file(p, "{\"__metadata__\":{\"framework\":\"pt\"}}     ", NULL, 0);
    kdi_st_file f;
    ck_assert_int_eq(kdi_st_read(p, &f), KD_OK);
    ck_assert_str_eq(kdi_st_meta(&f, "framework"), "pt");
    kdi_st_free(&f);
    unlink(p);
}
END_TEST

/* A small valid file in buf; returns its size. */
static size_t small_file(unsigned char *buf, size_t cap)
{
    float w[4] = {1, 2, 3, 4};
    int64_t s = 7;
    kdi_st_tensor t[2] = {
        {.name = "w", .dtype = KDI_ST_F32, .ndim = 2, .dims = {2, 2}, .data = w, .nbytes = 16},
        {.name = "s", .dtype = KDI_ST_I64, .ndim = 1, .dims = {1}, .data = &s, .nbytes = 8},
    };
    const char *k[] = {"a\"\\"}, *v[] = {"b\xc3\xa9"};
    const char *p = path_of("full.safetensors");
    ck_assert_int_eq(kdi_st_write(p, t, 2, k, v, 1), KD_OK);
    size_t n;
    unsigned char *b = slurp(p, &n);
    ck_assert_uint_le(n, cap);
    memcpy(buf, b, n);
    free(b);
    unlink(p);
    return n;
}

/* Every prefix of a valid file is refused with a status and a sentence, never a crash. */
START_TEST(every_truncation_fails)
{
    unsigned char buf[512];
    size_t n = small_file(buf, sizeof buf);
    const char *q = path_of("cut.safetensors");
    for (size_t cut = 0; cut < n; cut++) {
        write_bytes(q, buf, cut);
        kdi_st_file f;
        kd_status st = kdi_st_read(q, &f);
        ck_assert_msg(st == KD_ERR_FORMAT, "cut at %zu of %zu gave %d", cut, n, st);
        ck_assert(strlen(kd_last_error()) > 0);
    }
    write_bytes(q, buf, n);
    kdi_st_file f;
    ck_assert_int_eq(kdi_st_read(q, &f), KD_OK);
    kdi_st_free(&f);
    unlink(q);
}
END_TEST

/* Every byte changed three ways: the reader accepts or refuses, and what it accepts stays inside
 * the file (the sanitizer build checks the reads). */
START_TEST(byte_flips)
{
    unsigned char buf[512], bad[512];
    size_t n = small_file(buf, sizeof buf);
    const char *q = path_of("flip.safetensors");
    static const unsigned char masks[] = {0x01, 0x20, 0xff};
    for (size_t i = 0; i < n; i++)
        for (size_t m = 0; m < sizeof masks; m++) {
            memcpy(bad, buf, n);
            bad[i] ^= masks[m];
            write_bytes(q, bad, n);
            kdi_st_file f;
            kd_status st = kdi_st_read(q, &f);
            ck_assert_msg(st == KD_OK || st == KD_ERR_FORMAT, "byte %zu ^ %02x gave %d", i,
                          masks[m], st);
            if (st != KD_OK) continue;
            int64_t total = 0;
            for (int32_t t = 0; t < f.n; t++) {
                const unsigned char *d = f.tensors[t].data, *s = f.storage;
                ck_assert(d >= s && d + f.tensors[t].nbytes <= s + n);
                total += f.tensors[t].nbytes;
            }
            ck_assert_int_eq(total, 24);
            kdi_st_free(&f);
        }
    unlink(q);
}
END_TEST

/* One tensor entry of a header, and the usual one-tensor header. */
#define E(name, dtype, shape, offsets)                                                             \
    "\"" name "\":{\"dtype\":\"" dtype "\",\"shape\":[" shape "],\"data_offsets\":[" offsets "]}"
#define T1 E("w", "F32", "2", "0,8")

START_TEST(hostile_headers)
{
    static const struct {
        const char *what, *header;
        size_t ndata;
    } bad[] = {
        {"empty", "", 0},
        {"unclosed", "{", 0},
        {"an array", "[]", 0},
        {"null", "null", 0},
        {"text after", "{" T1 "} x", 8},
        {"trailing comma", "{" T1 ",}", 8},
        {"two objects", "{" T1 "}{}", 8},
        {"no colon", "{\"w\" {\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8},
        {"size mismatch", "{" E("w", "F32", "2", "0,12") "}", 12},
        {"past the end", "{" T1 "}", 4},
        {"reversed", "{" E("w", "F32", "2", "8,0") "}", 8},
        {"a gap", "{" E("w", "F32", "2", "4,12") "}", 12},
        {"a tail", "{" T1 "}", 9},
        {"overlap", "{" E("w", "F32", "1", "0,4") "," E("v", "F32", "1", "2,6") "}", 8},
        {"empty inside", "{" E("w", "F32", "2", "0,8") "," E("v", "F32", "0", "4,4") "}", 8},
        {"duplicate", "{" E("w", "F32", "1", "0,4") "," E("w", "F32", "1", "4,8") "}", 8},
        {"field twice",
         "{\"w\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],"
         "\"data_offsets\":[0,8]}}",
         8},
        {"unknown dtype", "{" E("w", "Q4", "1", "0,4") "}", 4},
        {"numeric dtype", "{\"w\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]}}", 4},
        {"shape overflow", "{" E("w", "F32", "4294967296,4294967296,4294967296", "0,4") "}", 4},
        {"bytes overflow", "{" E("w", "F64", "2305843009213693952", "0,0") "}", 0},
        {"above 2^63", "{" E("w", "F32", "99999999999999999999", "0,4") "}", 4},
        {"9 dims", "{" E("w", "F32", "1,1,1,1,1,1,1,1,1", "0,4") "}", 4},
        {"negative", "{" E("w", "F32", "-1", "0,4") "}", 4},
        {"fraction", "{" E("w", "F32", "1.0", "0,4") "}", 4},
        {"leading zero", "{" E("w", "F32", "01", "0,4") "}", 4},
        {"comma in array", "{" E("w", "F32", "1,", "0,4") "}", 4},
        {"3 offsets", "{" E("w", "F32", "1", "0,4,8") "}", 4},
        {"1 offset", "{" E("w", "F32", "1", "0") "}", 4},
        {"no offsets", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4},
        {"unknown field",
         "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4},
        {"empty entry", "{\"w\":{}}", 0},
        {"array entry", "{\"w\":[]}", 0},
        {"\\u0000", "{" E("w\\u0000", "F32", "1", "0,4") "}", 4},
        {"lone high surrogate", "{" E("w\\ud800", "F32", "1", "0,4") "}", 4},
        {"lone low surrogate", "{" E("w\\udc00", "F32", "1", "0,4") "}", 4},
        {"broken pair", "{" E("w\\ud800\\u0041", "F32", "1", "0,4") "}", 4},
        {"short \\u", "{" E("w\\u12", "F32", "1", "0,4") "}", 4},
        {"unknown escape", "{" E("w\\q", "F32", "1", "0,4") "}", 4},
        {"raw tab", "{" E("w\t", "F32", "1", "0,4") "}", 4},
        {"backslash at end", "{\"w\\", 0},
        {"unterminated", "{\"w", 0},
        {"not UTF-8", "{" E("\xff", "F32", "1", "0,4") "}", 4},
        {"overlong UTF-8", "{" E("\xc0\xaf", "F32", "1", "0,4") "}", 4},
        {"UTF-8 surrogate", "{" E("\xed\xa0\x80", "F32", "1", "0,4") "}", 4},
        {"metadata number", "{\"__metadata__\":{\"a\":1}}", 0},
        {"metadata object", "{\"__metadata__\":{\"a\":{\"b\":\"c\"}}}", 0},
        {"metadata key twice", "{\"__metadata__\":{\"a\":\"b\",\"a\":\"c\"}}", 0},
        {"metadata twice", "{\"__metadata__\":{},\"__metadata__\":{}}", 0},
        {"metadata array", "{\"__metadata__\":[]}", 0},
        {"metadata nul", "{\"__metadata__\":nul}", 0},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kd_status st = read_header(bad[i].header, bad[i].ndata);
        ck_assert_msg(st == KD_ERR_FORMAT, "%s (%s) gave %d", bad[i].what, bad[i].header, st);
        ck_assert(strlen(kd_last_error()) > 0);
    }
}
END_TEST

/* What the format allows, the reader takes: whitespace, any field order, any entry order, zero-size
 * and scalar tensors, dtypes it does not compute with, escapes, a null __metadata__. */
START_TEST(good_headers)
{
    static const struct {
        const char *header;
        size_t ndata;
    } good[] = {
        {"{}", 0},
        {" {}  ", 0},
        {"{\"__metadata__\":null}", 0},
        {"{\"__metadata__\":{}}", 0},
        {" {\"w\" : {\"data_offsets\":[0,8],\"shape\":[2],\"dtype\":\"F32\"}}\n\t\r ", 8},
        {"{\"b\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[4,12]},"
         "\"z\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[12,12]},"
         "\"a\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]}}",
         12},
        {"{\"\\u00e9\\ud83d\\ude00\\\"\\\\\\/\\b\\f\\n\\r\\t\":{\"dtype\":\"U8\",\"shape\":[1],"
         "\"data_offsets\":[0,1]}}",
         1},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        ck_assert_msg(read_header(good[i].header, good[i].ndata) == KD_OK, "case %zu: %s", i,
                      kd_last_error());
    const char *p = path_of("good.safetensors");
    write_st(p, good[5].header, 12);
    kdi_st_file f;
    ck_assert_int_eq(kdi_st_read(p, &f), KD_OK);
    const kdi_st_tensor *a = kdi_st_find(&f, "a"), *b = kdi_st_find(&f, "b");
    ck_assert_int_eq(a->dtype, KDI_ST_OTHER);
    ck_assert_int_eq(b->dtype, KDI_ST_I64);
    ck_assert_int_eq(b->ndim, 0);
    ck_assert_int_eq(((const unsigned char *)b->data)[0], 4); /* data byte i holds i */
    ck_assert_int_eq(kdi_st_find(&f, "z")->nbytes, 0);
    kdi_st_free(&f);
    write_st(p, good[6].header, 1);
    ck_assert_int_eq(kdi_st_read(p, &f), KD_OK);
    ck_assert_str_eq(f.tensors[0].name, "\xc3\xa9\xf0\x9f\x98\x80\"\\/\b\f\n\r\t");
    kdi_st_free(&f);
    unlink(p);
}
END_TEST

START_TEST(header_length_lies)
{
    unsigned char buf[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}'};
    const char *p = path_of("len.safetensors");
    kdi_st_file f;
    write_bytes(p, buf, sizeof buf);
    ck_assert_int_eq(kdi_st_read(p, &f), KD_ERR_FORMAT);
    memset(buf, 0, 8);
    buf[0] = 9; /* one more than the file holds */
    write_bytes(p, buf, 16);
    ck_assert_int_eq(kdi_st_read(p, &f), KD_ERR_FORMAT);
    /* above the 100,000,000-byte limit in a (sparse) file big enough to hold it: refused before
     * anything is read */
    uint64_t big = 100000001;
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(big >> (8 * i));
    write_bytes(p, buf, 16);
    ck_assert_int_eq(truncate(p, 100000100), 0);
    ck_assert_int_eq(kdi_st_read(p, &f), KD_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(kd_last_error(), "100000001"));
    unlink(p);
}
END_TEST

START_TEST(bad_paths)
{
    kdi_st_file f;
    ck_assert_int_eq(kdi_st_read(path_of("does-not-exist"), &f), KD_ERR_IO);
    ck_assert_int_eq(kdi_st_read(kdt_tmpdir(), &f), KD_ERR_IO);
    ck_assert_int_eq(kdi_st_read(NULL, &f), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kdi_st_read(path_of("x"), NULL), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kdi_st_write(NULL, NULL, 0, NULL, NULL, 0), KD_ERR_ARGUMENT);
    kdi_st_free(NULL);
}
END_TEST

/* The writer refuses what the reader would refuse, before touching the file. */
START_TEST(writer_rejects)
{
    const char *dir = fresh_dir("rejects");
    char p[400];
    snprintf(p, sizeof p, "%s/old.safetensors", dir);
    float w[2] = {1, 2};
    kdi_st_tensor good = {
        .name = "w", .dtype = KDI_ST_F32, .ndim = 1, .dims = {2}, .data = w, .nbytes = 8};
    ck_assert_int_eq(kdi_st_write(p, &good, 1, NULL, NULL, 0), KD_OK);
    size_t n0;
    unsigned char *before = slurp(p, &n0);
    static const char *const what[] = {"F16 dtype", "short bytes", "I64 bytes",
                                       "NULL data", "NULL name",   "__metadata__",
                                       "not UTF-8", "9 dims",      "negative dims"};
    for (int i = 0; i < 9; i++) {
        kdi_st_tensor t = good; /* with one thing wrong */
        switch (i) {
        case 0: t.dtype = KDI_ST_OTHER; break;
        case 1: t.nbytes = 4; break;
        case 2: t.dtype = KDI_ST_I64; break;
        case 3: t.data = NULL; break;
        case 4: t.name = NULL; break;
        case 5: t.name = "__metadata__"; break;
        case 6: t.name = "\xff"; break;
        case 7: t.ndim = 9; break;
        default: t.ndim = 2, t.dims[0] = -2, t.dims[1] = -1; break;
        }
        kd_status st = kdi_st_write(p, &t, 1, NULL, NULL, 0);
        ck_assert_msg(st == (i == 0 ? KD_ERR_UNSUPPORTED : KD_ERR_ARGUMENT), "%s gave %d", what[i],
                      st);
    }
    kdi_st_tensor two[2] = {good, good};
    ck_assert_int_eq(kdi_st_write(p, two, 2, NULL, NULL, 0), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kdi_st_write(p, &good, -1, NULL, NULL, 0), KD_ERR_ARGUMENT);
    const char *k2[] = {"a", "a"}, *v2[] = {"x", "y"}, *kn[] = {NULL}, *vbad[] = {"\xc3"};
    ck_assert_int_eq(kdi_st_write(p, &good, 1, k2, v2, 2), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kdi_st_write(p, &good, 1, kn, v2, 1), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kdi_st_write(p, &good, 1, k2, vbad, 1), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kdi_st_write(p, &good, 1, NULL, v2, 1), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kdi_st_write(p, NULL, 1, NULL, NULL, 0), KD_ERR_ARGUMENT);
    size_t n1;
    unsigned char *after = slurp(p, &n1);
    ck_assert(n0 == n1 && memcmp(before, after, n0) == 0);
    ck_assert_int_eq(count_entries(dir), 1);
    free(before);
    free(after);
}
END_TEST

/* A failed write leaves the old file as it was and no temporary file behind. */
START_TEST(atomic_write)
{
    float w[4096] = {1};
    kdi_st_tensor t = {
        .name = "w", .dtype = KDI_ST_F32, .ndim = 1, .dims = {1}, .data = w, .nbytes = 4};
    char p[400], q[400], missing[400];
    const char *dir = fresh_dir("atomic");
    snprintf(missing, sizeof missing, "%s/no-such-dir/x.safetensors", dir);
    ck_assert_int_eq(kdi_st_write(missing, &t, 1, NULL, NULL, 0), KD_ERR_IO);
    ck_assert_ptr_nonnull(strstr(kd_last_error(), "no-such-dir"));
    ck_assert_int_eq(count_entries(dir), 0);

    snprintf(p, sizeof p, "%s/m.safetensors", dir);
    ck_assert_int_eq(kdi_st_write(p, &t, 1, NULL, NULL, 0), KD_OK);
    size_t n0;
    unsigned char *before = slurp(p, &n0);

    /* a directory where the file should go makes rename fail */
    snprintf(q, sizeof q, "%s/d.safetensors", dir);
    ck_assert_int_eq(mkdir(q, 0755), 0);
    ck_assert_int_eq(kdi_st_write(q, &t, 1, NULL, NULL, 0), KD_ERR_IO);
    ck_assert_int_eq(count_entries(dir), 2);
    ck_assert_int_eq(count_entries(q), 0);

    /* the file system refuses the data half way (a file size limit, which binds root too) */
    struct rlimit old, small = {.rlim_cur = 4096, .rlim_max = 0};
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    small.rlim_max = old.rlim_max;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &small), 0);
    kdi_st_tensor big = {
        .name = "w", .dtype = KDI_ST_F32, .ndim = 1, .dims = {4096}, .data = w, .nbytes = sizeof w};
    kd_status st = kdi_st_write(p, &big, 1, NULL, NULL, 0);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, prev);
    ck_assert_int_eq(st, KD_ERR_IO);
    ck_assert_int_eq(count_entries(dir), 2);
    size_t n1;
    unsigned char *after = slurp(p, &n1);
    ck_assert(n0 == n1 && memcmp(before, after, n0) == 0);
    /* and without the limit the same write replaces the file */
    ck_assert_int_eq(kdi_st_write(p, &big, 1, NULL, NULL, 0), KD_OK);
    kdi_st_file f;
    ck_assert_int_eq(kdi_st_read(p, &f), KD_OK);
    ck_assert_int_eq(f.tensors[0].nbytes, (int64_t)sizeof w);
    kdi_st_free(&f);
    ck_assert_int_eq(count_entries(dir), 2);
    free(before);
    free(after);
}
END_TEST

/* A save to a pipe (or a link to one) would replace it with a regular file: refused, the pipe left
 * as it was and no temporary file behind. A link to a regular file is replaced, as before. */
START_TEST(atomic_write_keeps_special_files)
{
    float w[1] = {1};
    kdi_st_tensor t = {
        .name = "w", .dtype = KDI_ST_F32, .ndim = 1, .dims = {1}, .data = w, .nbytes = 4};
    char fifo[400], link[400], file[400], to_file[400];
    const char *dir = fresh_dir("special");
    snprintf(fifo, sizeof fifo, "%s/f.safetensors", dir);
    ck_assert_int_eq(mkfifo(fifo, 0644), 0);
    ck_assert_int_eq(kdi_st_write(fifo, &t, 1, NULL, NULL, 0), KD_ERR_IO);
    ck_assert_ptr_nonnull(strstr(kd_last_error(), "not a regular file"));
    struct stat sb;
    ck_assert(lstat(fifo, &sb) == 0 && S_ISFIFO(sb.st_mode));
    ck_assert_int_eq(count_entries(dir), 1);

    snprintf(link, sizeof link, "%s/l.safetensors", dir);
    ck_assert_int_eq(symlink("f.safetensors", link), 0);
    ck_assert_int_eq(kdi_st_write(link, &t, 1, NULL, NULL, 0), KD_ERR_IO);
    ck_assert(lstat(link, &sb) == 0 && S_ISLNK(sb.st_mode));
    ck_assert(lstat(fifo, &sb) == 0 && S_ISFIFO(sb.st_mode));
    ck_assert_int_eq(count_entries(dir), 2);

    snprintf(file, sizeof file, "%s/r.safetensors", dir);
    snprintf(to_file, sizeof to_file, "%s/lr.safetensors", dir);
    write_bytes(file, "old", 3);
    ck_assert_int_eq(symlink("r.safetensors", to_file), 0);
    ck_assert_int_eq(kdi_st_write(to_file, &t, 1, NULL, NULL, 0), KD_OK);
    kdi_st_file f;
    ck_assert_int_eq(kdi_st_read(to_file, &f), KD_OK);
    kdi_st_free(&f);
    ck_assert_int_eq(count_entries(dir), 4);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("safetensors");
    TCase *t = tcase_create("safetensors");
    tcase_add_test(t, round_trip);
    tcase_add_test(t, reference_layout);
    tcase_add_test(t, every_truncation_fails);
    tcase_add_test(t, byte_flips);
    tcase_add_test(t, hostile_headers);
    tcase_add_test(t, good_headers);
    tcase_add_test(t, header_length_lies);
    tcase_add_test(t, bad_paths);
    tcase_add_test(t, writer_rejects);
    tcase_add_test(t, atomic_write);
    tcase_add_test(t, atomic_write_keeps_special_files);
    suite_add_tcase(s, t);
    return kdt_run(s);
}
