/* libFuzzer target for the IDX reader and the dataset and batcher built on it.
 *
 * Not built by default. From the repository root, with a configured build directory BUILD (for
 * kd_version.h):
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_POSIX_C_SOURCE=200809L \
 *         -Iinclude -IBUILD/include -Ilib tests/fuzz/fuzz_idx.c lib/data/idx.c lib/data/dataset.c \
 *         lib/core/rng.c lib/core/error.c lib/core/tensor.c -lz -lm -o fuzz_idx
 *   mkdir -p corpus && cp tests/data/fmnist-test-500-labels-idx1-ubyte.gz corpus/
 *   ./fuzz_idx -max_total_time=60 corpus
 *
 * Inputs are plain or gzip IDX files (gzread reads both). A file the reader accepts is loaded as
 * an image set and, when small, walked for two epochs by a batcher that must visit every example
 * once per epoch. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/idx.h"

static const char *scratch(void)
{
    static char p[128];
    const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(p, sizeof p, "%s/fuzz_idx.%d", dir, (int)getpid());
    return p;
}

static void put_file(const char *path, const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL) abort();
    if (size > 0 && fwrite(data, 1, size, f) != size) abort();
    fclose(f);
}

/* Two epochs: rows add up to n each time, then *rows == 0. */
static void walk(const kd_dataset *d)
{
    int64_t n, c, h, w, rows;
    if (kd_dataset_size(d, &n) != KD_OK || kd_dataset_shape(d, &c, &h, &w) != KD_OK) abort();
    if (c * h * w > 4096 || n > 4096) return;
    kd_batcher *b;
    if (kd_batcher_create(d, 7, 1, &b) != KD_OK) abort();
    float *x = malloc(sizeof(float) * (size_t)(7 * c * h * w));
    int32_t y[7];
    for (int epoch = 0; epoch < 2; epoch++) {
        int64_t seen = 0;
        do {
            if (kd_batcher_next(b, x, y, &rows) != KD_OK || rows < 0 || rows > 7) abort();
            seen += rows;
        } while (rows > 0);
        if (seen != n) abort();
    }
    free(x);
    kd_batcher_destroy(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = scratch();
    put_file(path, data, size);
    kdi_idx idx;
    if (kdi_idx_read(path, 1, KDI_IDX_MAX_DIMS, &idx) == KD_OK) {
        int64_t count = 1;
        for (int32_t i = 0; i < idx.ndim; i++) count *= idx.dims[i];
        if (count != idx.count || count < 1) abort();
        volatile uint8_t last = idx.data[count - 1]; /* the sanitizer checks the buffer's size */
        (void)last;
        kdi_idx_free(&idx);
    }
    kd_dataset *d = NULL;
    if (kd_dataset_load_idx(path, NULL, &d) == KD_OK) {
        walk(d);
        kd_dataset_destroy(d);
    } else if (d != NULL) {
        abort(); /* a failed load must leave *out alone */
    }
    unlink(path);
    return 0;
}
