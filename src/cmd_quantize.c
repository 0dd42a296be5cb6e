/* kd quantize MODEL --calib DATA --out FILE: post-training int8 quantisation (kd_model_quantize),
 * calibrated on the first examples of DATA; with --test, the float and int8 models side by side
 * (accuracy, file size, batch-1 latency, throughput). Its options are its own (as kd generate's). */
#include <stdlib.h>
#include <string.h>

#include "common.h"

typedef struct quant_options {
    const char *model, *calib, *out, *test;
    options d; /* the formats' options: --label-column, --test-y, --x-name, --y-name */
    int64_t count;
    int method;
    float percentile;
    int percentile_given;
    int channels;
    double seconds;
    int seconds_given;
} quant_options;

static const char usage[] =
    "usage: kd quantize MODEL --calib DATA --out FILE [--calib-count N] [--calibration "
    "minmax|percentile]\n"
    "                   [--percentile P] [--test DATA] [--seconds S] [--channels 1|3]\n"
    "                   [--label-column NAME] [--test-y FILE.npy] [--x-name X] [--y-name Y]\n"
    "                   [--threads N]\n";

void quantize_help(FILE *f)
{
    fputs(usage, f);
    fputs(
        "\nPost-training int8 quantisation (kd_model_quantize): int8 weights per output channel,\n"
        "uint8 activations per tensor with ranges from the first N examples of DATA (default\n"
        "1000): min-max (default) or the percentile P and 100 - P (default 99.99). Dense and conv\n"
        "layers (bn folded, relu fused), maxpool, flatten and dropout have int8 forms. With\n"
        "--test, the float and int8 models side by side: accuracy, file size, batch-1 latency\n"
        "and throughput at batch 256, each timed for --seconds (default 1).\n"
        "DATA is an IDX PREFIX (or an IDX image file alone for --calib), FILE.npz, FILE.npy\n"
        "(--test's labels: --test-y FILE.npy), FILE.csv (labels: --label-column NAME, which a\n"
        "labelled --calib table needs too) or an ImageFolder DIR/, as for kd train.\n"
        "\nexamples:\n"
        "  kd quantize student.safetensors --calib /usr/share/datasets/fashion-mnist/train \\\n"
        "              --out student-int8.safetensors --test "
        "/usr/share/datasets/fashion-mnist/t10k\n"
        "  kd eval student-int8.safetensors\n",
        f);
}

static int parse(quant_options *o, int argc, char **argv)
{
    memset(o, 0, sizeof *o);
    o->count = 1000;
    o->method = KD_CALIBRATION_MINMAX;
    o->percentile = 99.99f;
    o->channels = 3;
    o->seconds = 1.0;
    o->d.x_name = "x";
    o->d.y_name = "y";
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            quantize_help(stdout);
            return -1;
        }
        if (a[0] != '-') {
            if (o->model != NULL) {
                fail_msg("one model only; '%s' is a second", a);
                return EXIT_USAGE;
            }
            o->model = a;
            continue;
        }
        static const char *const known[] = {
            "--calib",      "--out",     "--test",    "--calib-count", "--calibration",
            "--percentile", "--seconds", "--threads", "--channels",    "--label-column",
            "--test-y",     "--x-name",  "--y-name"};
        size_t k = 0;
        while (k < sizeof known / sizeof known[0] && strcmp(a, known[k]) != 0) k++;
        if (k == sizeof known / sizeof known[0]) {
            fail_msg("unknown option %s (see 'kd help quantize')", a);
            return EXIT_USAGE;
        }
        if (v == NULL) {
            fail_msg("%s needs a value (see 'kd help quantize')", a);
            return EXIT_USAGE;
        }
        char *end = NULL;
        i++;
        if (strcmp(a, "--calib") == 0) {
            o->calib = v;
        } else if (strcmp(a, "--out") == 0) {
            o->out = v;
        } else if (strcmp(a, "--test") == 0) {
            o->test = v;
        } else if (strcmp(a, "--train-y") != 0 && data_format_option(&o->d, a, v)) {
            continue;
        } else if (strcmp(a, "--calib-count") == 0) {
            o->count = strtoll(v, &end, 10);
            if (*end != '\0' || o->count < 1) {
                fail_msg("--calib-count %s: expected a count >= 1", v);
                return EXIT_USAGE;
            }
        } else if (strcmp(a, "--calibration") == 0) {
            if (strcmp(v, "minmax") == 0)
                o->method = KD_CALIBRATION_MINMAX;
            else if (strcmp(v, "percentile") == 0)
                o->method = KD_CALIBRATION_PERCENTILE;
            else {
                fail_msg("--calibration %s: expected minmax or percentile", v);
                return EXIT_USAGE;
            }
        } else if (strcmp(a, "--percentile") == 0) {
            o->percentile_given = 1;
            o->percentile = strtof(v, &end);
            if (*end != '\0' || !(o->percentile > 50.0f && o->percentile <= 100.0f)) {
                fail_msg("--percentile %s: expected a number in (50, 100], such as 99.99", v);
                return EXIT_USAGE;
            }
        } else if (strcmp(a, "--seconds") == 0) {
            o->seconds_given = 1;
            o->seconds = strtod(v, &end);
            if (*end != '\0' || !(o->seconds > 0.0 && o->seconds <= 600.0)) {
                fail_msg("--seconds %s: expected a time in (0, 600]", v);
                return EXIT_USAGE;
            }
        } else if (strcmp(a, "--threads") == 0) {
            int rc = threads_option(v);
            if (rc != EXIT_OK) return rc;
        } else if (strcmp(a, "--channels") == 0) {
            o->channels = (int)strtol(v, &end, 10);
            if (*end != '\0' || (o->channels != 1 && o->channels != 3)) {
                fail_msg("--channels %s: expected 1 or 3", v);
                return EXIT_USAGE;
            }
        } else {
            fail_msg("unknown option %s\n%s", a, usage);
            return EXIT_USAGE;
        }
    }
    if (o->model == NULL || o->calib == NULL || o->out == NULL) {
        fail_msg("a model, --calib DATA and --out FILE are required\n%s", usage);
        return EXIT_USAGE;
    }
    /* Refused by name, as the other commands do an option they would ignore: min-max reads no P. */
    if (o->percentile_given && o->method != KD_CALIBRATION_PERCENTILE) {
        fail_msg("--percentile does not apply without --calibration percentile; leave it out");
        return EXIT_USAGE;
    }
    if (o->seconds_given && o->test == NULL) {
        fail_msg("--seconds does not apply without --test (it times the comparison); leave it out");
        return EXIT_USAGE;
    }
    o->d.input = o->calib; /* examples without labels, as predict's --input */
    o->d.test_prefix = o->test;
    o->d.channels = o->channels;
    return check_data_options(&o->d);
}

typedef struct row {
    const char *name;
    double accuracy, latency_us, throughput;
    int64_t bytes, params;
} row;

static int measure_row(row *r, const char *name, kd_model *m, const char *path,
                       const kd_dataset *test)
{
    r->name = name;
    r->bytes = file_size(path);
    kd_model_param_count(m, &r->params);
    return test_accuracy(m, test, &r->accuracy);
}

static void print_rows(const row *r, int n)
{
    printf("\n%-6s %9s %11s %10s %8s %14s %9s %16s %9s\n", "model", "test acc", "params",
           "file size", "smaller", "latency/image", "speed-up", "throughput", "speed-up");
    for (int i = 0; i < n; i++) {
        char params[32], size[32], thr[32];
        format_count(r[i].params, params, sizeof params);
        format_bytes((double)r[i].bytes, size, sizeof size);
        format_count((int64_t)(r[i].throughput + 0.5), thr, sizeof thr);
        printf("%-6s %8.2f%% %11s %10s %7.2fx %11.1f us %8.2fx %11s img/s %8.2fx\n", r[i].name,
               r[i].accuracy, params, size, (double)r[0].bytes / (double)r[i].bytes,
               r[i].latency_us, r[0].latency_us / r[i].latency_us, thr,
               r[i].throughput / r[0].throughput);
    }
    printf("(latency: median of batch-1 predictions; throughput: batch 256; kernels %s)\n",
           kd_kernels_name());
}

int cmd_quantize(int argc, char **argv)
{
    quant_options o;
    int rc = parse(&o, argc, argv);
    if (rc == -1) return EXIT_OK;
    if (rc != EXIT_OK) return rc;
    const char *in[] = {o.model, o.calib, o.test, o.d.test_y};
    if ((rc = check_not_input("--out", o.out, in, 4)) != EXIT_OK) return rc;
    if ((rc = check_output(o.out)) != EXIT_OK) return rc;
    kd_model *m = NULL, *q = NULL;
    kd_dataset *calib = NULL, *test = NULL;
    if ((rc = load_model(o.model, &m)) != EXIT_OK) return rc;
    /* before the data: an embedding and attention have no int8 form, whatever --calib holds */
    if ((rc = check_not_language_model(o.model, m,
                                       "it has no int8 form; kd quantize takes models of dense "
                                       "and conv layers")) != EXIT_OK) {
        kd_model_destroy(m);
        return rc;
    }
    kd_status st;
    rc = load_user_data(&o.d, o.calib, NULL, 0, &calib);
    if (rc == EXIT_OK && o.test != NULL) rc = load_user_data(&o.d, o.test, o.d.test_y, 1, &test);
    if (rc == EXIT_OK && test != NULL) rc = check_fits_eval("model", m, test);
    if (rc == EXIT_OK) {
        int64_t n, in, din;
        kd_dataset_size(calib, &n);
        kd_model_input_size(m, &in);
        int64_t c, h, w;
        kd_dataset_shape(calib, &c, &h, &w);
        din = c * h * w;
        if (din != in) {
            fail_msg("%s has examples of %lld values; %s takes %lld", o.calib, (long long)din,
                     o.model, (long long)in);
            rc = EXIT_USAGE;
        } else {
            int64_t count = n < o.count ? n : o.count;
            double t0 = now_seconds();
            st = kd_model_quantize(m, kd_dataset_images(calib), count, (kd_calibration)o.method,
                                   o.percentile, &q);
            if (st != KD_OK) rc = fail_kd("quantisation failed", st);
            if (rc == EXIT_OK) {
                printf("calibrated on %lld examples of %s (%s) in %.2f s\n", (long long)count,
                       o.calib, o.method == KD_CALIBRATION_MINMAX ? "min-max" : "percentile",
                       now_seconds() - t0);
                if (o.method == KD_CALIBRATION_PERCENTILE)
                    printf("percentile    %g\n", (double)o.percentile);
                printf("int8 model    %s\n", kd_model_spec(q));
                st = kd_model_save(q, o.out);
                if (st != KD_OK) {
                    char what[1100];
                    snprintf(what, sizeof what, "cannot write %s", o.out);
                    rc = fail_kd(what, st);
                } else {
                    printf("wrote         %s\n", o.out);
                }
            }
        }
    }
    if (rc == EXIT_OK && test != NULL) {
        row r[2];
        rc = measure_row(&r[0], "float", m, o.model, test);
        if (rc == EXIT_OK) rc = measure_row(&r[1], "int8", q, o.out, test);
        kd_model *both[2] = {m, q};
        double us[2], ips[2];
        if (rc == EXIT_OK) rc = measure_models(both, 2, test, 256, o.seconds, us, ips);
        for (int i = 0; i < 2 && rc == EXIT_OK; i++) {
            r[i].latency_us = us[i];
            r[i].throughput = ips[i];
        }
        if (rc == EXIT_OK) {
            int64_t n;
            kd_dataset_size(test, &n);
            printf("test set      %s: %lld images", o.test, (long long)n);
            print_rows(r, 2);
        }
    }
    kd_dataset_destroy(calib);
    kd_dataset_destroy(test);
    kd_model_destroy(q);
    kd_model_destroy(m);
    return rc;
}
