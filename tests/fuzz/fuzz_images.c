/* libFuzzer target for kd_dataset_load_image_folder's decoders (libpng and libjpeg behind
 * lib/data/images.c): each input becomes the one image of a one-class folder.
 *
 * Not built by default. From the repository root, with a configured build directory BUILD (for
 * kd_version.h):
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_POSIX_C_SOURCE=200809L -DKD_BUILDING \
 *         -Iinclude -IBUILD/include -Ilib tests/fuzz/fuzz_images.c lib/data/images.c \
 *         lib/data/dataset.c lib/data/idx.c lib/core/rng.c lib/core/error.c lib/core/tensor.c \
 *         -lpng -ljpeg -lz -lm -o fuzz_images
 *   mkdir -p corpus && cp tests/data/images/folder/cat/a.png tests/data/images/folder/dog/f.jpg \
 *         corpus/
 *   ./fuzz_images -max_total_time=60 -rss_limit_mb=2048 corpus
 *
 * An accepted image must give values in [0, 1]; a refused one must leave *out alone. An image's
 * size is checked from its header (at most 2^24 pixels) before its pixels are allocated. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char root[128], dir[160], path[200];
    if (root[0] == '\0') {
        snprintf(root, sizeof root, "%s/fuzz_images.%d",
                 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp", (int)getpid());
        snprintf(dir, sizeof dir, "%s/class", root);
        snprintf(path, sizeof path, "%s/x.png", dir);
        mkdir(root, 0700);
        mkdir(dir, 0700);
    }
    FILE *fp = fopen(path, "wb");
    if (fp == NULL) abort();
    if (size > 0 && fwrite(data, 1, size, fp) != size) abort();
    fclose(fp);
    for (int64_t channels = 1; channels <= 3; channels += 2) {
        kd_dataset *d = NULL;
        if (kd_dataset_load_image_folder(root, channels, 0, 0, &d) == KD_OK) {
            int64_t n, c, h, w;
            if (kd_dataset_size(d, &n) != KD_OK || kd_dataset_shape(d, &c, &h, &w) != KD_OK ||
                n != 1 || c != channels)
                abort();
            for (int64_t i = 0; i < c * h * w; i++)
                if (!(kd_dataset_images(d)[i] >= 0.0f && kd_dataset_images(d)[i] <= 1.0f)) abort();
            kd_dataset_destroy(d);
        } else if (d != NULL) {
            abort();
        }
    }
    return 0;
}
