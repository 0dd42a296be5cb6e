/* libFuzzer target for kd_dataset_load_npz: .npz archives read through libzip, then each member
 * through the .npy parser.
 *
 * Not built by default. From the repository root, with a configured build directory BUILD (for
 * kd_version.h):
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_POSIX_C_SOURCE=200809L -DKD_BUILDING \
 *         -Iinclude -IBUILD/include -Ilib tests/fuzz/fuzz_npz.c lib/data/npy.c lib/io/atomic.c \
 *         lib/data/numpy.c lib/data/dataset.c lib/data/idx.c lib/core/rng.c lib/core/error.c \
 *         lib/core/tensor.c -lzip -lz -lm -o fuzz_npz
 *   mkdir -p corpus && cp tests/data/numpy/set.npz tests/data/numpy/set_compressed.npz corpus/
 *   ./fuzz_npz -max_total_time=60 corpus
 *
 * The archive is read for arrays "x" and "y" (as numpy.savez(f, x=..., y=...)), labelled and not.
 * libzip itself is fuzzed by its own project (OSS-Fuzz); this target checks what libkd adds: the
 * size limits before allocation and the hand-over to the .npy parser. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "kd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[128];
    snprintf(path, sizeof path, "%s/fuzz_npz.%d",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp", (int)getpid());
    FILE *fp = fopen(path, "wb");
    if (fp == NULL) abort();
    if (size > 0 && fwrite(data, 1, size, fp) != size) abort();
    fclose(fp);
    for (int labelled = 0; labelled < 2; labelled++) {
        kd_dataset *d = NULL;
        if (kd_dataset_load_npz(path, "x", labelled ? "y" : NULL, &d) == KD_OK) {
            int64_t n, c, h, w;
            if (kd_dataset_size(d, &n) != KD_OK || kd_dataset_shape(d, &c, &h, &w) != KD_OK)
                abort();
            volatile float last = kd_dataset_images(d)[n * c * h * w - 1];
            (void)last;
            if (labelled && kd_dataset_labels(d)[n - 1] < 0) abort();
            kd_dataset_destroy(d);
        } else if (d != NULL) {
            abort();
        }
    }
    unlink(path);
    return 0;
}
