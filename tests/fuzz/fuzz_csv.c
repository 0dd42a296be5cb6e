/* libFuzzer target for kd_dataset_load_csv (lib/data/csv.c).
 *
 * Not built by default. From the repository root, with a configured build directory BUILD (for
 * kd_version.h):
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_POSIX_C_SOURCE=200809L -DKD_BUILDING \
 *         -Iinclude -IBUILD/include -Ilib tests/fuzz/fuzz_csv.c lib/data/csv.c lib/data/npy.c lib/io/atomic.c \
 *         lib/data/dataset.c lib/data/idx.c lib/core/rng.c lib/core/error.c lib/core/tensor.c \
 *         -lz -lm -o fuzz_csv
 *   mkdir -p corpus && cp tests/data/csv/iris.csv tests/data/csv/quoted.csv corpus/
 *   ./fuzz_csv -max_total_time=60 corpus
 *
 * Each input is read with the label column "label" and without one. An accepted table must give
 * labels inside its class list and finite features. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "kd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[128];
    snprintf(path, sizeof path, "%s/fuzz_csv.%d",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp", (int)getpid());
    FILE *fp = fopen(path, "wb");
    if (fp == NULL) abort();
    if (size > 0 && fwrite(data, 1, size, fp) != size) abort();
    fclose(fp);
    for (int labelled = 0; labelled < 2; labelled++) {
        kd_dataset *d = NULL;
        if (kd_dataset_load_csv(path, labelled ? "label" : NULL, &d) == KD_OK) {
            int64_t n, c;
            int32_t k;
            if (kd_dataset_size(d, &n) != KD_OK || kd_dataset_shape(d, &c, NULL, NULL) != KD_OK ||
                kd_dataset_class_count(d, &k) != KD_OK || n < 1 || c < 1)
                abort();
            for (int64_t i = 0; i < n * c; i++)
                if (!isfinite(kd_dataset_images(d)[i])) abort();
            for (int64_t i = 0; labelled && i < n; i++)
                if (kd_dataset_labels(d)[i] < 0 || kd_dataset_labels(d)[i] >= k) abort();
            kd_dataset_destroy(d);
        } else if (d != NULL) {
            abort();
        }
    }
    unlink(path);
    return 0;
}
