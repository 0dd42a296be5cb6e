/* kd eval: what a model file is worth on a test set, and what it costs to run. */
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "common.h"

static const char *const fashion_names[10] = {"T-shirt/top", "Trouser",   "Pullover", "Dress",
                                              "Coat",        "Sandal",    "Shirt",    "Sneaker",
                                              "Bag",         "Ankle boot"};

typedef struct eval_result {
    int64_t n, correct, classes, params, bytes;
    int64_t *confusion; /* [classes][classes], row = label */
    double latency_us, throughput, peak_mib;
    char shape[128];
    const kd_dataset *test; /* for the class names a CSV or an ImageFolder gives */
} eval_result;

static const char *class_name(const options *o, const eval_result *r, int64_t i)
{
    int32_t named = 0;
    const char *name = NULL;
    kd_dataset_class_count(r->test, &named);
    if (i < named && kd_dataset_class_name(r->test, (int32_t)i, &name) == KD_OK && name != NULL)
        return name;
    return data_is_fashion(o) && r->classes == 10 ? fashion_names[i] : "";
}

static double class_acc(const eval_result *r, int64_t i, int64_t *total)
{
    *total = 0;
    for (int64_t j = 0; j < r->classes; j++) *total += r->confusion[i * r->classes + j];
    return *total > 0 ? 100.0 * (double)r->confusion[i * r->classes + i] / (double)*total : 0.0;
}

static void print_confusion(const eval_result *r)
{
    if (r->classes > 20) {
        printf("\n(confusion matrix not shown for %lld classes; see --json)\n",
               (long long)r->classes);
        return;
    }
    printf("\nconfusion matrix (rows: label, columns: prediction)\n      ");
    for (int64_t j = 0; j < r->classes; j++) printf(" %5lld", (long long)j);
    printf("\n");
    for (int64_t i = 0; i < r->classes; i++) {
        printf(" %5lld", (long long)i);
        for (int64_t j = 0; j < r->classes; j++)
            printf(" %5lld", (long long)r->confusion[i * r->classes + j]);
        printf("\n");
    }
}

static void print_text(const options *o, const kd_model *m, const char *test, const eval_result *r)
{
    char params[32], size[32];
    format_count(r->params, params, sizeof params);
    format_bytes((double)r->bytes, size, sizeof size);
    printf("model         %s (%s)\n", o->positional, size);
    printf("architecture  %s: %s\n", r->shape, kd_model_spec(m));
    printf("parameters    %s\n", params);
    printf("test set      %s: %lld images\n", test, (long long)r->n);
    printf("accuracy      %.2f%% (%lld of %lld)\n\nclass  %-12s accuracy   images\n",
           100.0 * (double)r->correct / (double)r->n, (long long)r->correct, (long long)r->n, "");
    for (int64_t i = 0; i < r->classes; i++) {
        int64_t total;
        double acc = class_acc(r, i, &total);
        if (total == 0) /* a test set with only some of the model's classes */
            printf("%5lld  %-12s %8s %8lld\n", (long long)i, class_name(o, r, i), "-", 0LL);
        else
            printf("%5lld  %-12s %7.2f%% %8lld\n", (long long)i, class_name(o, r, i), acc,
                   (long long)total);
    }
    print_confusion(r);
    char thr[32];
    format_count((int64_t)(r->throughput + 0.5), thr, sizeof thr);
    printf("\nlatency       %.1f us per image (batch 1, median)\n", r->latency_us);
    printf("throughput    %s images/s (batch %d)\n", thr, o->batch);
    printf("peak memory   %.1f MiB (maximum resident set of this process)\n", r->peak_mib);
}

static void print_json(const options *o, const kd_model *m, const char *test, const eval_result *r)
{
    printf("{\"model\":");
    json_string(stdout, o->positional);
    printf(",\"spec\":");
    json_string(stdout, kd_model_spec(m));
    printf(",\"params\":%lld,\"file_bytes\":%lld,\"test\":", (long long)r->params,
           (long long)r->bytes);
    json_string(stdout, test);
    printf(",\"images\":%lld,\"correct\":%lld,\"accuracy\":%.4f,\"per_class\":[", (long long)r->n,
           (long long)r->correct, 100.0 * (double)r->correct / (double)r->n);
    for (int64_t i = 0; i < r->classes; i++) {
        int64_t total;
        double acc = class_acc(r, i, &total);
        if (total == 0)
            printf("%snull", i ? "," : "");
        else
            printf("%s%.4f", i ? "," : "", acc);
    }
    printf("],\"confusion\":[");
    for (int64_t i = 0; i < r->classes; i++) {
        printf("%s[", i ? "," : "");
        for (int64_t j = 0; j < r->classes; j++)
            printf("%s%lld", j ? "," : "", (long long)r->confusion[i * r->classes + j]);
        printf("]");
    }
    printf("],\"latency_us\":%.3f,\"throughput\":%.1f,\"throughput_batch\":%d,\"peak_mib\":%.1f}\n",
           r->latency_us, r->throughput, o->batch, r->peak_mib);
}

static int measure(const options *o, kd_model *m, const kd_dataset *test, eval_result *r)
{
    r->test = test;
    kd_dataset_size(test, &r->n);
    kd_model_output_size(m, &r->classes);
    kd_model_param_count(m, &r->params);
    model_shape_name(m, r->shape, sizeof r->shape);
    r->bytes = file_size(o->positional);
    r->confusion = calloc((size_t)(r->classes * r->classes), sizeof *r->confusion);
    if (r->confusion == NULL) {
        fail_msg("out of memory");
        return EXIT_RUNTIME;
    }
    kd_status st = kd_model_evaluate(m, kd_dataset_images(test), kd_dataset_labels(test), r->n,
                                     EVAL_BATCH, &r->correct, r->confusion);
    if (st != KD_OK) return fail_kd("evaluation", st);
    if (o->quiet) return EXIT_OK;
    int rc = measure_latency(m, test, o->seconds, &r->latency_us);
    if (rc == EXIT_OK) rc = measure_throughput(m, test, o->batch, o->seconds, &r->throughput);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    r->peak_mib = (double)ru.ru_maxrss / 1024.0; /* Linux reports kilobytes */
    return rc;
}

/* ---- qat (issue 14): several models side by side (float, int8, pruned) */

static const char *base_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash != NULL ? slash + 1 : path;
}

/* A row of the table without its timings: name, architecture (with the zero share of a pruned
 * float model), parameters, file size and accuracy in percent. */
static void table_row(const char *path, kd_model *m, double accuracy, model_stats *st)
{
    memset(st, 0, sizeof *st);
    snprintf(st->name, sizeof st->name, "%s", base_of(path));
    model_shape_name(m, st->shape, sizeof st->shape);
    kd_model_param_count(m, &st->params);
    st->bytes = file_size(path);
    float zero = 0.0f;
    int32_t quantized = 0;
    kd_model_is_quantized(m, &quantized);
    if (!quantized && kd_model_sparsity(m, &zero) == KD_OK && zero >= 0.01f) {
        size_t used = strlen(st->shape);
        snprintf(st->shape + used, sizeof st->shape - used, " %.0f%% zero", 100.0 * zero);
    }
    st->accuracy = accuracy;
}

/* Loads and evaluates one model of the table; *out keeps it for the timing rounds. */
static int one_model(const char *path, const kd_dataset *test, model_stats *st, kd_model **out)
{
    kd_model *m;
    *out = NULL;
    int loaded = load_model(path, &m);
    if (loaded != EXIT_OK) return loaded;
    int64_t n, correct = 0;
    kd_dataset_size(test, &n);
    char what[4200]; /* "the model PATH is a language model", as check_fits_eval words it */
    snprintf(what, sizeof what, "model %s", path);
    int rc = check_fits_eval(what, m, test);
    if (rc == EXIT_OK) {
        kd_status s = kd_model_evaluate(m, kd_dataset_images(test), kd_dataset_labels(test), n,
                                        EVAL_BATCH, &correct, NULL);
        if (s != KD_OK) rc = fail_kd("evaluation", s);
    }
    if (rc == EXIT_OK) table_row(path, m, 100.0 * (double)correct / (double)n, st);
    if (rc == EXIT_OK)
        *out = m;
    else
        kd_model_destroy(m);
    return rc;
}

static int time_models(const options *o, kd_model **m, int n, const kd_dataset *test,
                       model_stats *st)
{
    double lat[MAX_EVAL_MODELS], thr[MAX_EVAL_MODELS];
    int rc = measure_models(m, n, test, o->batch, o->seconds, lat, thr);
    for (int i = 0; i < n && rc == EXIT_OK; i++) {
        st[i].latency_us = lat[i];
        st[i].throughput = thr[i];
        st[i].throughput_batch = o->batch;
    }
    return rc;
}

static void side_json(const model_stats *st, const char *const *paths, int n)
{
    printf("[");
    for (int i = 0; i < n; i++) {
        printf("%s{\"model\":", i ? "," : "");
        json_string(stdout, paths[i]);
        printf(",\"architecture\":");
        json_string(stdout, st[i].shape);
        printf(",\"params\":%lld,\"file_bytes\":%lld,\"accuracy\":%.4f,\"latency_us\":%.3f,"
               "\"throughput\":%.1f,\"throughput_batch\":%d}",
               (long long)st[i].params, (long long)st[i].bytes, st[i].accuracy, st[i].latency_us,
               st[i].throughput, st[i].throughput_batch);
    }
    printf("]\n");
}

/* The models side by side, printed when console is set; with --report also DIR/index.html (one
 * model's report: its row, after the single-model output). */
/* --report DIR: checked before the measuring, as train and distill check theirs. */
static int check_report(const options *o)
{
    if (o->report_dir == NULL) return EXIT_OK;
    if (o->quiet) {
        fail_msg("--report shows the measurements, which -q leaves out: drop one of them");
        return EXIT_USAGE;
    }
    return check_output_dir("the report", o->report_dir);
}

/* DIR/index.html: the table of the n models measured on test_prefix. */
static int write_report(const options *o, const char *test_prefix, const model_stats *st, int n)
{
    char subtitle[1400];
    snprintf(subtitle, sizeof subtitle,
             "Test set %s. Latency: the median time of one image at batch 1; throughput: "
             "images per second in batches of %d; speed-up relative to the first model. "
             "libkd %s, kernels %s.",
             test_prefix, o->batch, kd_version(), kd_kernels_name());
    report rep = {"Models side by side", subtitle, NULL, NULL, 0, st, n, 0, NULL, 0};
    int rc = report_write(o->report_dir, &rep);
    /* on stderr under --json, so the standard output stays one JSON document */
    if (rc == EXIT_OK)
        fprintf(o->json ? stderr : stdout, "\nreport: %s/index.html\n", o->report_dir);
    return rc;
}

static int side_by_side(const options *o)
{
    const char *paths[MAX_EVAL_MODELS];
    model_stats st[MAX_EVAL_MODELS];
    int n = 0;
    paths[n++] = o->positional;
    for (int i = 0; i < o->nmore; i++) paths[n++] = o->more[i];
    int rc = check_report(o);
    if (rc != EXIT_OK) return rc;
    dataset_pair d;
    kd_model *models[MAX_EVAL_MODELS] = {NULL};
    rc = load_data(o, 0, 1, &d);
    for (int i = 0; i < n && rc == EXIT_OK; i++)
        rc = one_model(paths[i], d.test, &st[i], &models[i]);
    if (rc == EXIT_OK && !o->quiet) rc = time_models(o, models, n, d.test, st);
    for (int i = 0; i < n; i++) kd_model_destroy(models[i]);
    if (rc == EXIT_OK) {
        int64_t ntest;
        kd_dataset_size(d.test, &ntest);
        if (o->json) {
            side_json(st, paths, n);
        } else if (o->quiet) {
            for (int i = 0; i < n; i++) printf("%.2f\n", st[i].accuracy);
        } else {
            printf("%s: %lld images; latency: one image at a time, median; throughput: batches "
                   "of %d; kernels %s\n\n",
                   d.test_prefix, (long long)ntest, o->batch, kd_kernels_name());
            print_comparison(stdout, st, n, 0);
        }
    }
    if (rc == EXIT_OK && o->report_dir != NULL) rc = write_report(o, d.test_prefix, st, n);
    if (d.test != NULL) free_data(&d);
    return rc;
}

int cmd_eval(const options *o)
{
    if (o->nmore > 0) return side_by_side(o);
    int checked = check_report(o);
    if (checked != EXIT_OK) return checked;
    kd_model *m;
    int loaded = load_model(o->positional, &m);
    if (loaded != EXIT_OK) return loaded;
    dataset_pair d;
    int rc = load_data(o, 0, 1, &d);
    eval_result r = {0};
    if (rc == EXIT_OK) rc = check_fits_eval("model", m, d.test);
    if (rc == EXIT_OK) rc = measure(o, m, d.test, &r);
    if (rc == EXIT_OK) {
        if (o->json)
            print_json(o, m, d.test_prefix, &r);
        else if (o->quiet)
            printf("%.2f\n", 100.0 * (double)r.correct / (double)r.n);
        else
            print_text(o, m, d.test_prefix, &r);
    }
    if (rc == EXIT_OK && o->report_dir != NULL) { /* the table's one row, as measured above */
        model_stats st;
        table_row(o->positional, m, 100.0 * (double)r.correct / (double)r.n, &st);
        st.latency_us = r.latency_us;
        st.throughput = r.throughput;
        st.throughput_batch = o->batch;
        rc = write_report(o, d.test_prefix, &st, 1);
    }
    free(r.confusion);
    if (d.test != NULL) free_data(&d);
    kd_model_destroy(m);
    return rc;
}
