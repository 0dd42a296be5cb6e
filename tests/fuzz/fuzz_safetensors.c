/* libFuzzer target for the safetensors reader (and, for what it accepts, the writer).
 *
 * Not built by default. From the repository root, with a configured build directory BUILD (for
 * kd_version.h):
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_POSIX_C_SOURCE=200809L \
 *         -Iinclude -IBUILD/include -Ilib tests/fuzz/fuzz_safetensors.c \
 *         lib/io/safetensors.c lib/io/atomic.c lib/core/error.c lib/core/tensor.c -o fuzz_safetensors
 *   mkdir -p corpus && ./fuzz_safetensors -max_total_time=60 corpus
 *
 * Any .safetensors file (a model saved by `kd`, tests' round-trip files) makes a good seed. The
 * input is written to a file because the reader takes a path; /dev/shm is used when present.
 * Every accepted file must have its tensors inside the file and, when it holds only F32, I32, I64
 * tensors, must survive a write and a read unchanged. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/safetensors.h"

static const char *scratch(const char *name)
{
    static char paths[2][128];
    static int n;
    const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    char *p = paths[n++ % 2];
    snprintf(p, sizeof paths[0], "%s/%s.%d", dir, name, (int)getpid());
    return p;
}

static void put_file(const char *path, const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL) abort();
    if (size > 0 && fwrite(data, 1, size, f) != size) abort();
    fclose(f);
}

static int writable(const kdi_st_file *f)
{
    for (int32_t i = 0; i < f->n; i++)
        if (f->tensors[i].dtype == KDI_ST_OTHER) return 0;
    return 1;
}

/* The file's tensors written again and read back: the same names, dtypes, shapes, bytes, metadata. */
static void round_trip(const kdi_st_file *f, const char *path)
{
    if (kdi_st_write(path, f->tensors, f->n, (const char *const *)f->meta_keys,
                     (const char *const *)f->meta_values, f->nmeta) != KD_OK)
        abort();
    kdi_st_file g;
    if (kdi_st_read(path, &g) != KD_OK || g.n != f->n || g.nmeta != f->nmeta) abort();
    for (int32_t i = 0; i < f->n; i++) {
        const kdi_st_tensor *a = &f->tensors[i], *b = kdi_st_find(&g, a->name);
        if (b == NULL || b->dtype != a->dtype || b->ndim != a->ndim || b->nbytes != a->nbytes ||
            memcmp(b->dims, a->dims, sizeof(int64_t) * (size_t)a->ndim) != 0 ||
            (a->nbytes > 0 && memcmp(a->data, b->data, (size_t)a->nbytes) != 0))
            abort();
    }
    for (int32_t i = 0; i < f->nmeta; i++) {
        const char *v = kdi_st_meta(&g, f->meta_keys[i]);
        if (v == NULL || strcmp(v, f->meta_values[i]) != 0) abort();
    }
    kdi_st_free(&g);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = scratch("fuzz_st_in"), *out = scratch("fuzz_st_out");
    put_file(in, data, size);
    kdi_st_file f;
    if (kdi_st_read(in, &f) == KD_OK) {
        const uint8_t *lo = f.storage, *hi = lo + size;
        for (int32_t i = 0; i < f.n; i++) {
            const uint8_t *d = f.tensors[i].data;
            if (d < lo || f.tensors[i].nbytes > hi - d) abort();
        }
        if (writable(&f)) round_trip(&f, out);
        kdi_st_free(&f);
    }
    unlink(in);
    unlink(out);
    return 0;
}
