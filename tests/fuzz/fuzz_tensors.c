/* libFuzzer target for kd_tensors_load (the public set of named tensors over the safetensors
 * reader) and, for what it accepts, kd_tensors_save and a second load.
 *
 * Not built by default. From the repository root, with a configured build directory BUILD (for
 * kd_version.h):
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_POSIX_C_SOURCE=200809L -DKD_BUILDING \
 *         -Iinclude -IBUILD/include -Ilib tests/fuzz/fuzz_tensors.c lib/io/tensors.c \
 *         lib/io/safetensors.c lib/io/atomic.c lib/core/error.c lib/core/tensor.c -o fuzz_tensors
 *   mkdir -p corpus && ./fuzz_tensors -max_total_time=60 corpus
 *
 * Seeds: any .safetensors file (tests/data/transformer_block.safetensors). An accepted set must
 * save and load back with the same names, dtypes, shapes, bytes and metadata. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kd.h"

static const char *scratch(const char *name)
{
    static char paths[2][128];
    static int n;
    const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    char *p = paths[n++ % 2];
    snprintf(p, sizeof paths[0], "%s/%s.%d", dir, name, (int)getpid());
    return p;
}

static void same(const kd_tensors *a, const kd_tensors *b)
{
    int32_t n, m;
    if (kd_tensors_count(a, &n) != KD_OK || kd_tensors_count(b, &m) != KD_OK || n != m) abort();
    for (int32_t i = 0; i < n; i++) {
        const char *name;
        kd_dtype da, db;
        int32_t na, nb;
        int64_t ga[KD_TENSORS_MAX_DIMS], gb[KD_TENSORS_MAX_DIMS], sa, sb;
        const void *pa, *pb;
        if (kd_tensors_name(a, i, &name) != KD_OK ||
            kd_tensors_info(a, name, &da, &na, ga) != KD_OK ||
            kd_tensors_info(b, name, &db, &nb, gb) != KD_OK || da != db || na != nb ||
            memcmp(ga, gb, sizeof ga) != 0 || kd_tensors_data(a, name, &pa, &sa) != KD_OK ||
            kd_tensors_data(b, name, &pb, &sb) != KD_OK || sa != sb ||
            (sa > 0 && memcmp(pa, pb, (size_t)sa) != 0))
            abort();
    }
    if (kd_tensors_meta_count(a, &n) != KD_OK || kd_tensors_meta_count(b, &m) != KD_OK || n != m)
        abort();
    for (int32_t i = 0; i < n; i++) {
        const char *key, *va, *vb;
        if (kd_tensors_meta_key(a, i, &key) != KD_OK || kd_tensors_get_meta(a, key, &va) != KD_OK ||
            kd_tensors_get_meta(b, key, &vb) != KD_OK || vb == NULL || strcmp(va, vb) != 0)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = scratch("fuzz_tensors_in"), *out = scratch("fuzz_tensors_out");
    FILE *f = fopen(in, "wb");
    if (f == NULL) abort();
    if (size > 0 && fwrite(data, 1, size, f) != size) abort();
    fclose(f);
    kd_tensors *t = NULL;
    if (kd_tensors_load(in, &t) == KD_OK) {
        kd_status st = kd_tensors_save(t, out);
        if (st == KD_OK) {
            kd_tensors *back = NULL;
            if (kd_tensors_load(out, &back) != KD_OK) abort();
            same(t, back);
            kd_tensors_destroy(back);
        } else if (st != KD_ERR_ARGUMENT) {
            abort();
        }
        kd_tensors_destroy(t);
        unlink(out);
    } else if (t != NULL) {
        abort();
    }
    unlink(in);
    return 0;
}
