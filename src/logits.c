/* The teachers' logits on the transfer set, computed once per run (the teachers are fixed and the
 * data is not augmented, so every epoch reuses them), and optionally kept in a cache file.
 *
 * The cache is a safetensors file (kd_tensors) with one F32 tensor "logits" [teachers, n, classes]
 * and the fingerprint of the teachers and the data in its metadata ("kd.kind" "teacher-logits",
 * "kd.fingerprint"): a file of other teachers or data is not reused, but recomputed. The same
 * file is what kd distill --teacher-logits reads. */
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "parallel.h"

static int read_cache(const char *path, uint64_t fingerprint, int t, int64_t n, int64_t classes,
                      float *out)
{
    kd_tensors *ts;
    if (kd_tensors_load(path, &ts) != KD_OK) return -1;
    char print[32];
    snprintf(print, sizeof print, "%016llx", (unsigned long long)fingerprint);
    const char *kind = NULL, *got = NULL;
    kd_dtype dt = KD_DTYPE_I32;
    int32_t ndim = 0;
    int64_t dims[KD_TENSORS_MAX_DIMS];
    const void *data = NULL;
    int ok = kd_tensors_get_meta(ts, "kd.kind", &kind) == KD_OK && kind != NULL &&
             strcmp(kind, "teacher-logits") == 0 &&
             kd_tensors_get_meta(ts, "kd.fingerprint", &got) == KD_OK && got != NULL &&
             strcmp(got, print) == 0 && kd_tensors_info(ts, "logits", &dt, &ndim, dims) == KD_OK &&
             dt == KD_DTYPE_F32 && ndim == 3 && dims[0] == t && dims[1] == n &&
             dims[2] == classes && kd_tensors_data(ts, "logits", &data, NULL) == KD_OK;
    if (ok) memcpy(out, data, sizeof(float) * (size_t)t * (size_t)n * (size_t)classes);
    kd_tensors_destroy(ts);
    return ok ? 0 : -1;
}

static kd_status write_cache(const char *path, uint64_t fingerprint, int t, int64_t n,
                             int64_t classes, const float *z)
{
    kd_tensors *ts;
    kd_status st = kd_tensors_create(&ts);
    if (st != KD_OK) return st;
    char print[32];
    snprintf(print, sizeof print, "%016llx", (unsigned long long)fingerprint);
    int64_t dims[3] = {t, n, classes};
    st = kd_tensors_set_meta(ts, "kd.kind", "teacher-logits");
    if (st == KD_OK) st = kd_tensors_set_meta(ts, "kd.fingerprint", print);
    if (st == KD_OK) st = kd_tensors_set(ts, "logits", KD_DTYPE_F32, 3, dims, z);
    if (st == KD_OK) st = kd_tensors_save(ts, path);
    kd_tensors_destroy(ts);
    return st;
}

/* Under mpirun each rank computes its shard of the examples and the shards are summed into the
 * whole (zeros elsewhere), so every teacher forward runs once in the job. */
static int compute(kd_model *const *teachers, int nt, const kd_dataset *d, float *z)
{
    int64_t n, in, classes, lo, hi;
    kd_dataset_size(d, &n);
    kd_model_input_size(teachers[0], &in);
    kd_model_output_size(teachers[0], &classes);
    const float *x = kd_dataset_images(d);
    par_slice(n, &lo, &hi);
    if (par_world() > 1) memset(z, 0, sizeof(float) * (size_t)(nt * n * classes));
    for (int t = 0; t < nt; t++) {
        for (int64_t s = lo; s < hi; s += EVAL_BATCH) {
            int64_t rows = hi - s < EVAL_BATCH ? hi - s : EVAL_BATCH;
            kd_status st =
                kd_model_predict(teachers[t], x + s * in, rows, z + (t * n + s) * classes);
            if (st != KD_OK) return fail_kd("teacher logits", st);
        }
    }
    par_sum_floats(z, nt * n * classes);
    return EXIT_OK;
}

int teacher_logits(kd_model *const *teachers, int nt, const kd_dataset *d, const char *cache_path,
                   uint64_t fingerprint, const progress *p, float **out)
{
    int64_t n, classes;
    kd_dataset_size(d, &n);
    kd_model_output_size(teachers[0], &classes);
    size_t count = (size_t)nt * (size_t)n * (size_t)classes;
    float *z = malloc(count * sizeof(float));
    if (z == NULL) {
        fail_msg("out of memory for the teachers' logits (%zu values)", count);
        return EXIT_RUNTIME;
    }
    if (cache_path != NULL && read_cache(cache_path, fingerprint, nt, n, classes, z) == 0) {
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
    if (cache_path != NULL && par_rank() == 0) {
        if (write_cache(cache_path, fingerprint, nt, n, classes, z) != KD_OK)
            fail_msg("warning: cannot write the logits cache %s: %s", cache_path, kd_last_error());
        else
            note(p, "teacher logits: saved to %s", cache_path);
    }
    *out = z;
    return EXIT_OK;
}
