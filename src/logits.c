/* The teachers' logits on the transfer set, computed once per run (the teachers are fixed and the
 * data is not augmented, so every epoch reuses them), and optionally kept in a cache file.
 *
 * The cache is a safetensors file with one F32 tensor "logits" [teachers, n, classes] and the
 * fingerprint of the teachers and the data in its metadata. The header is always written the same
 * way, so reading compares it byte for byte with the expected one instead of parsing JSON. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

static size_t cache_header(char *out, size_t size, uint64_t fingerprint, int t, int64_t n,
                           int64_t classes)
{
    uint64_t bytes = (uint64_t)t * (uint64_t)n * (uint64_t)classes * sizeof(float);
    int len = snprintf(
        out + 8, size - 8,
        "{\"__metadata__\":{\"kd.kind\":\"teacher-logits\",\"kd.fingerprint\":\"%016llx\"},"
        "\"logits\":{\"dtype\":\"F32\",\"shape\":[%d,%lld,%lld],\"data_offsets\":[0,%llu]}}",
        (unsigned long long)fingerprint, t, (long long)n, (long long)classes,
        (unsigned long long)bytes);
    while (len % 8 != 0) out[8 + len++] = ' '; /* the data starts 8-aligned */
    uint64_t h = (uint64_t)len;
    for (int i = 0; i < 8; i++) out[i] = (char)(h >> (8 * i)); /* little-endian u64 */
    return 8 + (size_t)len;
}

static int read_cache(const char *path, const char *header, size_t hsize, float *out, size_t count)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) return -1;
    char *got = malloc(hsize);
    int ok = got != NULL && fread(got, 1, hsize, f) == hsize && memcmp(got, header, hsize) == 0 &&
             fread(out, sizeof(float), count, f) == count && fgetc(f) == EOF;
    free(got);
    fclose(f);
    return ok ? 0 : -1;
}

static int write_cache(const char *path, const char *header, size_t hsize, const float *z,
                       size_t count)
{
    char *buf = malloc(hsize + count * sizeof(float));
    if (buf == NULL) return -1;
    memcpy(buf, header, hsize);
    memcpy(buf + hsize, z, count * sizeof(float));
    int rc = write_atomic(path, buf, hsize + count * sizeof(float));
    free(buf);
    return rc;
}

static int compute(kd_model *const *teachers, int nt, const kd_dataset *d, float *z)
{
    int64_t n, in, classes;
    kd_dataset_size(d, &n);
    kd_model_input_size(teachers[0], &in);
    kd_model_output_size(teachers[0], &classes);
    const float *x = kd_dataset_images(d);
    for (int t = 0; t < nt; t++) {
        for (int64_t s = 0; s < n; s += 1000) {
            int64_t rows = n - s < 1000 ? n - s : 1000;
            kd_status st =
                kd_model_predict(teachers[t], x + s * in, rows, z + (t * n + s) * classes);
            if (st != KD_OK) return fail_kd("teacher logits", st);
        }
    }
    return EXIT_OK;
}

int teacher_logits(kd_model *const *teachers, int nt, const kd_dataset *d, const char *cache_path,
                   uint64_t fingerprint, const progress *p, float **out)
{
    int64_t n, classes;
    kd_dataset_size(d, &n);
    kd_model_output_size(teachers[0], &classes);
    size_t count = (size_t)nt * (size_t)n * (size_t)classes;
    char header[512];
    size_t hsize = cache_header(header, sizeof header, fingerprint, nt, n, classes);
    float *z = malloc(count * sizeof(float));
    if (z == NULL) {
        fail_msg("out of memory for the teachers' logits (%zu values)", count);
        return EXIT_RUNTIME;
    }
    if (cache_path != NULL && read_cache(cache_path, header, hsize, z, count) == 0) {
        note(p, "teacher logits: reused %s", cache_path);
        *out = z;
        return EXIT_OK;
    }
    double start = now_seconds();
    int rc = compute(teachers, nt, d, z);
    if (rc != EXIT_OK) {
        free(z);
        return rc;
    }
    note(p, "teacher logits: %lld examples x %d teacher%s in %.1f s", (long long)n, nt,
         nt > 1 ? "s" : "", now_seconds() - start);
    if (cache_path != NULL) {
        if (write_cache(cache_path, header, hsize, z, count) != 0)
            fail_msg("warning: cannot write the logits cache %s: %s", cache_path, strerror(errno));
        else
            note(p, "teacher logits: saved to %s", cache_path);
    }
    *out = z;
    return EXIT_OK;
}
