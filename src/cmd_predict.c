/* kd predict: a model's outputs on unlabelled examples, as .npy or CSV. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common.h"

/* Softmax of each row in place, shifted by its maximum so exp never overflows. */
static void softmax_rows(float *z, int64_t n, int64_t k)
{
    for (int64_t i = 0; i < n; i++) {
        float *r = z + i * k, top = r[0];
        double sum = 0.0;
        for (int64_t j = 1; j < k; j++) top = r[j] > top ? r[j] : top;
        for (int64_t j = 0; j < k; j++) sum += exp((double)(r[j] - top));
        for (int64_t j = 0; j < k; j++) r[j] = (float)(exp((double)(r[j] - top)) / sum);
    }
}

static void argmax_rows(const float *z, int64_t n, int64_t k, int64_t *cls)
{
    for (int64_t i = 0; i < n; i++) {
        int64_t best = 0;
        for (int64_t j = 1; j < k; j++) best = z[i * k + j] > z[i * k + best] ? j : best;
        cls[i] = best;
    }
}

/* To a file --out: built in memory, then written atomically (temporary file and rename, as the
 * .npy and the models), so an interrupted or failed write leaves no half file. A device or a pipe
 * (/dev/stdout, a FIFO) is written directly: a rename would replace it. */
static int write_csv(const options *o, const float *z, const int64_t *cls, int64_t n, int64_t k)
{
    char *text = NULL;
    size_t len = 0;
    struct stat sb;
    int atomic = o->out != NULL && (stat(o->out, &sb) != 0 || S_ISREG(sb.st_mode));
    FILE *f = atomic ? open_memstream(&text, &len) : o->out != NULL ? fopen(o->out, "w") : stdout;
    if (f == NULL) {
        fail_msg("cannot write %s: %s", o->out, strerror(errno));
        return EXIT_RUNTIME;
    }
    if (o->output_kind == 2) {
        fprintf(f, "class\n");
        for (int64_t i = 0; i < n; i++) fprintf(f, "%lld\n", (long long)cls[i]);
    } else {
        const char *head = o->output_kind == 0 ? "logit" : "prob";
        for (int64_t j = 0; j < k; j++) fprintf(f, "%s%s%lld", j ? "," : "", head, (long long)j);
        fputc('\n', f);
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < k; j++)
                fprintf(f, "%.9g%c", (double)z[i * k + j], j + 1 < k ? ',' : '\n');
    }
    int bad = ferror(f);
    if (f != stdout) bad |= fclose(f) != 0;
    if (atomic) {
        bad = bad || write_atomic(o->out, text, len) != 0;
        free(text);
    }
    if (!bad) return EXIT_OK;
    fail_msg("cannot write %s: %s", o->out != NULL ? o->out : "the standard output",
             strerror(errno));
    return EXIT_RUNTIME;
}

static int write_out(const options *o, float *z, int64_t n, int64_t k)
{
    int64_t *cls = malloc(sizeof(int64_t) * (size_t)(n > 0 ? n : 1));
    if (cls == NULL) {
        fail_msg("out of memory");
        return EXIT_RUNTIME;
    }
    argmax_rows(z, n, k, cls);
    if (o->output_kind == 1) softmax_rows(z, n, k);
    int rc = EXIT_OK;
    if (o->out != NULL && ends_with(o->out, ".npy")) {
        int64_t dims[2] = {n, k};
        kd_status st = o->output_kind == 2 ? kd_npy_save(o->out, KD_DTYPE_I64, 1, dims, cls)
                                           : kd_npy_save(o->out, KD_DTYPE_F32, 2, dims, z);
        if (st != KD_OK) {
            char what[4200];
            snprintf(what, sizeof what, "cannot write %s", o->out);
            rc = fail_kd(what, st);
        }
    } else {
        rc = write_csv(o, z, cls, n, k);
    }
    free(cls);
    return rc;
}

int cmd_predict(const options *o)
{
    if (o->out != NULL && !ends_with(o->out, ".npy") && !ends_with(o->out, ".csv")) {
        fail_msg("--out %s: the extension says the format, .npy or .csv", o->out);
        return EXIT_USAGE;
    }
    if (o->out != NULL) {
        const char *in[] = {o->positional, o->input, o->config};
        int rc = check_not_input("--out", o->out, in, 3);
        if (rc != EXIT_OK) return rc;
        /* a CSV goes straight into a pipe or a device (write_csv); a .npy is saved by a rename */
        struct stat sb;
        int direct = ends_with(o->out, ".csv") && stat(o->out, &sb) == 0 && !S_ISREG(sb.st_mode) &&
                     !S_ISDIR(sb.st_mode);
        if (!direct && (rc = check_output(o->out)) != EXIT_OK) return rc;
    }
    kd_model *m;
    int loaded = load_model(o->positional, &m);
    if (loaded != EXIT_OK) return loaded;
    int64_t vocab = 0, length = 0;
    kd_model_tokens(m, &vocab, &length);
    if (vocab > 0) { /* its outputs are logits a position: a class per example means nothing */
        fail_msg("%s is a language model (token ids in, logits a position out): kd predict "
                 "classifies examples; use kd generate, or kd eval MODEL --text FILE",
                 o->positional);
        kd_model_destroy(m);
        return EXIT_USAGE;
    }
    kd_dataset *d = NULL;
    int rc = load_user_data(o, o->input, NULL, 0, &d);
    int64_t n = 0, c = 0, h = 0, w = 0, in = 0, k = 0;
    float *z = NULL;
    if (rc == EXIT_OK) {
        kd_dataset_size(d, &n);
        kd_dataset_shape(d, &c, &h, &w);
        kd_model_input_size(m, &in);
        kd_model_output_size(m, &k);
        if (in != c * h * w) {
            fail_msg("the model takes %lld inputs but the examples of %s are %lldx%lldx%lld",
                     (long long)in, o->input, (long long)c, (long long)h, (long long)w);
            rc = EXIT_USAGE; /* a model that does not fit the data, as in every command */
        }
    }
    if (rc == EXIT_OK && (z = malloc(sizeof(float) * (size_t)(n * k > 0 ? n * k : 1))) == NULL) {
        fail_msg("out of memory");
        rc = EXIT_RUNTIME;
    }
    const float *x = d != NULL ? kd_dataset_images(d) : NULL;
    for (int64_t i = 0; rc == EXIT_OK && i < n; i += o->batch) {
        int64_t rows = n - i < o->batch ? n - i : o->batch;
        kd_status st = kd_model_predict(m, x + i * in, rows, z + i * k);
        if (st != KD_OK) rc = fail_kd("prediction", st);
    }
    if (rc == EXIT_OK) rc = write_out(o, z, n, k);
    free(z);
    kd_dataset_destroy(d);
    kd_model_destroy(m);
    return rc;
}
