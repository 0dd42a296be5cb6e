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

/* Accuracy, size and speed of one model into st; the architecture says int8 or the zero share. */
/* Loads and evaluates one model of the table; *out keeps it for the timing rounds. */
static int one_model(const char *path, const kd_dataset *test, model_stats *st, kd_model **out)
{
    kd_model *m;
    *out = NULL;
    int loaded = load_model(path, &m);
    if (loaded != EXIT_OK) return loaded;
    int64_t n, correct = 0;
    kd_dataset_size(test, &n);
    int rc = check_fits_eval(path, m, test);
    if (rc == EXIT_OK) {
        kd_status s = kd_model_evaluate(m, kd_dataset_images(test), kd_dataset_labels(test), n,
                                        EVAL_BATCH, &correct, NULL);
        if (s != KD_OK) rc = fail_kd("evaluation", s);
    }
    if (rc == EXIT_OK) {
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
        st->accuracy = 100.0 * (double)correct / (double)n;
    }
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
static int side_by_side(const options *o, int console)
{
    const char *paths[MAX_EVAL_MODELS];
    model_stats st[MAX_EVAL_MODELS];
    int n = 0;
    paths[n++] = o->positional;
    for (int i = 0; i < o->nmore; i++) paths[n++] = o->more[i];
    if (o->report_dir != NULL && o->quiet) {
        fail_msg("--report shows the models' measurements, which -q leaves out: drop one of them");
        return EXIT_USAGE;
    }
    /* the report's place before the measuring, as train and distill check theirs */
    if (o->report_dir != NULL) {
        int out = check_output_dir("the report", o->report_dir);
        if (out != EXIT_OK) return out;
    }
    dataset_pair d;
    kd_model *models[MAX_EVAL_MODELS] = {NULL};
    int rc = load_data(o, 0, 1, &d);
    for (int i = 0; i < n && rc == EXIT_OK; i++)
        rc = one_model(paths[i], d.test, &st[i], &models[i]);
    if (rc == EXIT_OK && !o->quiet) rc = time_models(o, models, n, d.test, st);
    for (int i = 0; i < n; i++) kd_model_destroy(models[i]);
    if (rc == EXIT_OK) {
        int64_t ntest;
        kd_dataset_size(d.test, &ntest);
        if (!console) {
            /* the single-model output is printed already */
        } else if (o->json) {
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
    if (rc == EXIT_OK && o->report_dir != NULL) {
        char subtitle[1400];
        snprintf(subtitle, sizeof subtitle,
                 "Test set %s. Latency: the median time of one image at batch 1; throughput: "
                 "images per second in batches of %d; speed-up relative to the first model. "
                 "libkd %s, kernels %s.",
                 d.test_prefix, o->batch, kd_version(), kd_kernels_name());
        report rep = {"Models side by side", subtitle, NULL, NULL, 0, st, n, 0, NULL, 0};
        rc = report_write(o->report_dir, &rep);
        /* on stderr under --json, so the standard output stays one JSON document */
        if (rc == EXIT_OK)
            fprintf(o->json ? stderr : stdout, "\nreport: %s/index.html\n", o->report_dir);
    }
    if (d.test != NULL) free_data(&d);
    return rc;
}

int cmd_eval(const options *o)
{
    if (o->nmore > 0) return side_by_side(o, 1);
    if (o->report_dir != NULL) { /* checked before the measuring, as side_by_side does */
        if (o->quiet) {
            fail_msg("--report shows the model's measurements, which -q leaves out: drop one of "
                     "them");
            return EXIT_USAGE;
        }
        int out = check_output_dir("the report", o->report_dir);
        if (out != EXIT_OK) return out;
    }
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
    free(r.confusion);
    if (d.test != NULL) free_data(&d);
    kd_model_destroy(m);
    /* --report: the model's row, measured again for the report's table */
    if (rc == EXIT_OK && o->report_dir != NULL) rc = side_by_side(o, 0);
    return rc;
}
