/* Text corpora (kd_text_*): reading and UTF-8 validation, the split, random windows, tokens in
 * order; and the language-model metrics (kd_perplexity, kd_bits_per_byte). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define SAMPLE KDT_DATA "/text/sample.txt"
#define SAMPLE_BYTES 1410

static kd_text *open_sample(void)
{
    kd_text *t;
    ck_assert_int_eq(kd_text_open(SAMPLE, 0, &t), KD_OK);
    return t;
}

static unsigned char *file_bytes(const char *path, long *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    *n = ftell(f);
    rewind(f);
    unsigned char *b = malloc((size_t)*n);
    ck_assert(fread(b, 1, (size_t)*n, f) == (size_t)*n);
    fclose(f);
    return b;
}

/* A file holding the n bytes s, under the temporary directory. */
static const char *write_tmp(const char *name, const char *s, size_t n)
{
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s", kdt_tmpdir(), name);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert(fwrite(s, 1, n, f) == n);
    fclose(f);
    return path;
}

START_TEST(reads_and_splits)
{
    kd_text *t = open_sample();
    int64_t n, train, val;
    ck_assert_int_eq(kd_text_size(t, &n), KD_OK);
    ck_assert_int_eq(n, SAMPLE_BYTES);
    ck_assert_int_eq(kd_text_part_size(t, KD_TEXT_TRAIN, &train), KD_OK);
    ck_assert_int_eq(kd_text_part_size(t, KD_TEXT_VALIDATION, &val), KD_OK);
    ck_assert_int_eq(val, SAMPLE_BYTES / 10); /* the default split, 0.1 */
    ck_assert_int_eq(train + val, n);
    ck_assert_int_eq(kd_text_split(t, 0.25f), KD_OK);
    ck_assert_int_eq(kd_text_part_size(t, KD_TEXT_VALIDATION, &val), KD_OK);
    ck_assert_int_eq(val, 352); /* floor(1410 * 0.25) */
    ck_assert_int_eq(kd_text_split(t, 1.0f), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_text_split(t, -0.1f), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_text_split(t, NAN), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_text_part_size(t, KD_TEXT_VALIDATION, &val), KD_OK);
    ck_assert_int_eq(val, 352); /* failed splits changed nothing */
    ck_assert_int_eq(kd_text_part_size(t, (kd_text_part)2, &val), KD_ERR_ARGUMENT);
    /* tokens in order are the file's bytes, the validation part its end */
    long len;
    unsigned char *b = file_bytes(SAMPLE, &len);
    int32_t ids[SAMPLE_BYTES];
    ck_assert_int_eq(kd_text_tokens(t, KD_TEXT_TRAIN, 0, n - 352, ids), KD_OK);
    for (int64_t i = 0; i < n - 352; i++) ck_assert_int_eq(ids[i], b[i]);
    ck_assert_int_eq(kd_text_tokens(t, KD_TEXT_VALIDATION, 2, 350, ids), KD_OK);
    for (int64_t i = 0; i < 350; i++) ck_assert_int_eq(ids[i], b[n - 350 + i]);
    ck_assert_int_eq(kd_text_tokens(t, KD_TEXT_VALIDATION, 2, 351, ids), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_text_tokens(t, KD_TEXT_VALIDATION, -1, 1, ids), KD_ERR_ARGUMENT);
    free(b);
    kd_text_destroy(t);
    kd_text_destroy(NULL);
}
END_TEST

/* Windows: targets are the inputs shifted by one, every window lies inside its part, the same seed
 * gives the same batch. */
START_TEST(windows)
{
    enum { NB = 16, T = 24 };
    kd_text *t = open_sample();
    long len;
    unsigned char *b = file_bytes(SAMPLE, &len);
    int32_t ids[NB * T], tg[NB * T], ids2[NB * T], tg2[NB * T];
    int64_t train;
    ck_assert_int_eq(kd_text_part_size(t, KD_TEXT_TRAIN, &train), KD_OK);
    for (int part = 0; part < 2; part++) {
        int64_t lo = part ? train : 0, hi = part ? len : train;
        ck_assert_int_eq(kd_text_batch(t, (kd_text_part)part, NB, T, 7, ids, tg), KD_OK);
        for (int w = 0; w < NB; w++) {
            unsigned char win[T + 1];
            for (int i = 0; i < T; i++) {
                ck_assert(ids[w * T + i] >= 0 && ids[w * T + i] < KD_TEXT_VOCAB);
                if (i + 1 < T) ck_assert_int_eq(tg[w * T + i], ids[w * T + i + 1]);
                win[i] = (unsigned char)ids[w * T + i];
            }
            win[T] = (unsigned char)tg[w * T + T - 1];
            int found = 0;
            for (int64_t s = lo; s + T + 1 <= hi && !found; s++)
                found = memcmp(b + s, win, T + 1) == 0;
            ck_assert_msg(found, "part %d window %d is not in the part", part, w);
        }
        ck_assert_int_eq(kd_text_batch(t, (kd_text_part)part, NB, T, 7, ids2, tg2), KD_OK);
        ck_assert(memcmp(ids, ids2, sizeof ids) == 0 && memcmp(tg, tg2, sizeof tg) == 0);
        ck_assert_int_eq(kd_text_batch(t, (kd_text_part)part, NB, T, 8, ids2, tg2), KD_OK);
        ck_assert(memcmp(ids, ids2, sizeof ids) != 0);
    }
    /* a part too short for T + 1 bytes, no validation part, bad sizes */
    ck_assert_int_eq(kd_text_batch(t, KD_TEXT_VALIDATION, 1, 141, 1, ids, tg), KD_ERR_SHAPE);
    ck_assert_int_eq(kd_text_batch(t, KD_TEXT_VALIDATION, 1, 140, 1, ids, tg), KD_OK);
    ck_assert_int_eq(kd_text_split(t, 0.0f), KD_OK);
    ck_assert_int_eq(kd_text_batch(t, KD_TEXT_VALIDATION, 1, 1, 1, ids, tg), KD_ERR_SHAPE);
    ck_assert_int_eq(kd_text_batch(t, KD_TEXT_TRAIN, 0, T, 1, ids, tg), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_text_batch(t, KD_TEXT_TRAIN, 1, 0, 1, ids, tg), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_text_batch(t, KD_TEXT_TRAIN, 1, T, 1, NULL, tg), KD_ERR_ARGUMENT);
    free(b);
    kd_text_destroy(t);
}
END_TEST

START_TEST(bad_files)
{
    kd_text *t = (kd_text *)&t; /* must stay as it is on failure */
    kd_text *const before = t;
    ck_assert_int_eq(kd_text_open(KDT_DATA "/text/empty.txt", 0, &t), KD_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(kd_last_error(), "empty"));
    ck_assert_int_eq(kd_text_open(KDT_DATA "/text/invalid-utf8.txt", 0, &t), KD_ERR_FORMAT);
    ck_assert_msg(strstr(kd_last_error(), "byte 54 (0xE9)") != NULL, "%s", kd_last_error());
    ck_assert_int_eq(kd_text_open(KDT_DATA "/text/missing.txt", 0, &t), KD_ERR_IO);
    ck_assert_int_eq(kd_text_open(KDT_DATA "/text", 0, &t), KD_ERR_IO); /* a directory */
    ck_assert_int_eq(kd_text_open(SAMPLE, SAMPLE_BYTES - 1, &t), KD_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(kd_last_error(), "limit"));
    ck_assert_int_eq(kd_text_open(SAMPLE, -1, &t), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_text_open(NULL, 0, &t), KD_ERR_ARGUMENT);
    ck_assert_ptr_eq(t, before);
    ck_assert_int_eq(kd_text_open(SAMPLE, SAMPLE_BYTES, &t), KD_OK); /* exactly the limit */
    kd_text_destroy(t);
}
END_TEST

/* RFC 3629's edges, byte sequence by byte sequence. */
START_TEST(utf8_edges)
{
    static const struct {
        const char *s;
        size_t n;
        int ok;
    } cases[] = {
        {"a\0b", 3, 1},             /* NUL is a character */
        {"\xc2\x80", 2, 1},         /* U+0080 */
        {"\xdf\xbf", 2, 1},         /* U+07FF */
        {"\xe0\xa0\x80", 3, 1},     /* U+0800 */
        {"\xef\xbf\xbf", 3, 1},     /* U+FFFF */
        {"\xf0\x90\x80\x80", 4, 1}, /* U+10000 */
        {"\xf4\x8f\xbf\xbf", 4, 1}, /* U+10FFFF */
        {"\xef\xbb\xbfok", 5, 1},   /* a byte order mark is a character too */
        {"\xc0\xaf", 2, 0},         /* overlong '/' */
        {"\xc1\xbf", 2, 0},         /* overlong */
        {"\xe0\x9f\xbf", 3, 0},     /* overlong */
        {"\xf0\x8f\xbf\xbf", 4, 0}, /* overlong */
        {"\xed\xa0\x80", 3, 0},     /* a surrogate, U+D800 */
        {"\xed\xbf\xbf", 3, 0},     /* U+DFFF */
        {"\xf4\x90\x80\x80", 4, 0}, /* U+110000 */
        {"\xf5\x80\x80\x80", 4, 0}, /* no such lead byte */
        {"\x80", 1, 0},             /* a lone continuation */
        {"\xfe", 1, 0},             /* never in UTF-8 */
        {"ok\xe2\x82", 4, 0},       /* truncated at the end */
        {"\xe2\x82z", 3, 0},        /* a continuation missing */
        {"\xf0\x9f\x99\x82\xf0\x9f", 6, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kd_text *t = NULL;
        const char *path = write_tmp("edge.txt", cases[i].s, cases[i].n);
        kd_status st = kd_text_open(path, 0, &t);
        ck_assert_msg(st == (cases[i].ok ? KD_OK : KD_ERR_FORMAT), "case %zu: %s", i,
                      kd_last_error());
        kd_text_destroy(t);
    }
}
END_TEST

START_TEST(metrics)
{
    float v;
    ck_assert_int_eq(kd_perplexity((float)log(10.0), &v), KD_OK);
    ck_assert(fabsf(v - 10.0f) < 1e-5f);
    ck_assert_int_eq(kd_perplexity(0.0f, &v), KD_OK);
    ck_assert(v == 1.0f);
    ck_assert_int_eq(kd_bits_per_byte((float)log(2.0), 5, 5, &v), KD_OK);
    ck_assert(fabsf(v - 1.0f) < 1e-6f);
    /* uniform over 256 bytes: ln 256 nats = 8 bits per byte */
    ck_assert_int_eq(kd_bits_per_byte((float)log(256.0), 1, 1, &v), KD_OK);
    ck_assert(fabsf(v - 8.0f) < 1e-5f);
    /* a tokenizer of 4 bytes a token: 2 nats a token is 2 / (4 ln 2) bits a byte */
    ck_assert_int_eq(kd_bits_per_byte(2.0f, 100, 400, &v), KD_OK);
    ck_assert(fabsf(v - (float)(0.5 / log(2.0))) < 1e-6f);
    ck_assert_int_eq(kd_perplexity(-1.0f, &v), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_perplexity(NAN, &v), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_bits_per_byte(1.0f, 0, 1, &v), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_bits_per_byte(INFINITY, 1, 1, &v), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_perplexity(1.0f, NULL), KD_ERR_ARGUMENT);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("text");
    TCase *t = tcase_create("core");
    tcase_add_test(t, reads_and_splits);
    tcase_add_test(t, windows);
    tcase_add_test(t, bad_files);
    tcase_add_test(t, utf8_edges);
    tcase_add_test(t, metrics);
    suite_add_tcase(s, t);
    return s;
}

int main(void) { return kdt_run(suite()); }
