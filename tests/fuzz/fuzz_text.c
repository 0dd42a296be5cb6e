/* libFuzzer target for the text reader (kd_text_open's UTF-8 check) and its windows.
 *
 * Not built by default. From the repository root, with a configured build directory BUILD (for
 * kd_version.h):
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_POSIX_C_SOURCE=200809L \
 *         -Iinclude -IBUILD/include -Ilib tests/fuzz/fuzz_text.c lib/data/text.c \
 *         lib/core/rng.c lib/core/error.c -lm -o fuzz_text
 *   mkdir -p corpus && cp tests/data/text/sample.txt tests/data/text/invalid-utf8.txt corpus/
 *   ./fuzz_text -max_total_time=60 corpus
 *
 * The reader's verdict is compared with a second UTF-8 check written differently (decode the code
 * point, then test its range); an accepted file is read back in order and in random windows. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kd.h"

static const char *scratch(void)
{
    static char p[128];
    const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(p, sizeof p, "%s/fuzz_text.%d", dir, (int)getpid());
    return p;
}

/* 1 when s[0 .. n) is UTF-8: each sequence decoded, then its code point checked for its length
 * (no overlong form), for surrogates and for the U+10FFFF ceiling. */
static int oracle(const uint8_t *s, size_t n)
{
    static const uint32_t least[5] = {0, 0, 0x80, 0x800, 0x10000};
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (len == 0 || i + len > n) return 0;
        uint32_t cp = len == 1 ? c : (uint32_t)(c & (0x7F >> len));
        for (size_t j = 1; j < len; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + j] & 0x3F);
        }
        if (cp < least[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += len;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = scratch();
    FILE *f = fopen(path, "wb");
    if (f == NULL) abort();
    if (size > 0 && fwrite(data, 1, size, f) != size) abort();
    fclose(f);
    kd_text *t = NULL;
    kd_status st = kd_text_open(path, 1 << 20, &t);
    int valid = size > 0 && size <= (1 << 20) && oracle(data, size);
    if ((st == KD_OK) != valid) abort();
    if (st != KD_OK && t != NULL) abort(); /* a failed open leaves *out alone */
    if (st == KD_OK) {
        int64_t n, train;
        int32_t ids[64], tg[64];
        if (kd_text_size(t, &n) != KD_OK || n != (int64_t)size) abort();
        if (kd_text_part_size(t, KD_TEXT_TRAIN, &train) != KD_OK) abort();
        for (int64_t i = 0; i < train; i += 64) { /* the training part is the file's start */
            int64_t c = train - i < 64 ? train - i : 64;
            if (kd_text_tokens(t, KD_TEXT_TRAIN, i, c, ids) != KD_OK) abort();
            for (int64_t j = 0; j < c; j++)
                if (ids[j] != data[i + j]) abort();
        }
        if (train >= 9 && kd_text_batch(t, KD_TEXT_TRAIN, 8, 8, size, ids, tg) != KD_OK) abort();
        for (int j = 0; train >= 9 && j < 64; j++)
            if (ids[j] < 0 || ids[j] > 255 || (j % 8 != 7 && tg[j] != ids[j + 1])) abort();
        kd_text_destroy(t);
    }
    unlink(path);
    return 0;
}
