/* libFuzzer target for the .npy parser (lib/data/npy.c) and kd_dataset_load_npy on top of it.
 *
 * Not built by default. From the repository root, with a configured build directory BUILD (for
 * kd_version.h):
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_POSIX_C_SOURCE=200809L -DKD_BUILDING \
 *         -Iinclude -IBUILD/include -Ilib tests/fuzz/fuzz_npy.c lib/data/npy.c lib/io/atomic.c \
 *         lib/data/numpy.c lib/data/dataset.c lib/data/idx.c lib/core/rng.c lib/core/error.c \
 *         lib/core/tensor.c -lzip -lz -lm -o fuzz_npy
 *   mkdir -p corpus && cp tests/data/numpy/x_f32.npy tests/data/numpy/y_u8.npy corpus/
 *   ./fuzz_npy -max_total_time=60 corpus
 *
 * An accepted array must lie inside the input, and converting it (to floats, to labels) must stay
 * inside the buffers the dataset allocates; the sanitizers check both. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/npy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kdi_npy a;
    if (kdi_npy_parse(data, size, "fuzz", &a) == KD_OK) {
        if (a.count < 0 || a.data < data || a.data > data + size) abort();
        if (a.count <= 4096) {
            float *f = malloc(sizeof(float) * (size_t)(a.count > 0 ? a.count : 1));
            int32_t *l = malloc(sizeof(int32_t) * (size_t)(a.count > 0 ? a.count : 1));
            kdi_npy_floats(&a, 1, f);
            (void)kdi_npy_labels(&a, "fuzz", l);
            free(f);
            free(l);
        }
    }
    char path[128];
    snprintf(path, sizeof path, "%s/fuzz_npy.%d",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp", (int)getpid());
    FILE *fp = fopen(path, "wb");
    if (fp == NULL) abort();
    if (size > 0 && fwrite(data, 1, size, fp) != size) abort();
    fclose(fp);
    kd_dataset *d = NULL;
    if (kd_dataset_load_npy(path, NULL, &d) == KD_OK) {
        int64_t n, c, h, w;
        if (kd_dataset_size(d, &n) != KD_OK || kd_dataset_shape(d, &c, &h, &w) != KD_OK || n < 1)
            abort();
        volatile float last = kd_dataset_images(d)[n * c * h * w - 1];
        (void)last;
        kd_dataset_destroy(d);
    } else if (d != NULL) {
        abort();
    }
    unlink(path);
    return 0;
}
