/* kd prune MODEL --sparsity S [--structured] [--teacher T] --out FILE: pruning, then distillation
 * fine-tuning from a teacher (by default the unpruned model itself).
 *   unstructured  kd_pruner masks the smallest weights, rising to S on Zhu and Gupta's cubic
 *                 schedule over the first --prune-epochs, and keeps them at zero to the end;
 *   --structured  kd_model_prune_channels removes the fraction S of neurons / conv channels of
 *                 smallest L1 norm at once, giving a smaller model, which is then fine-tuned.
 * Fine-tuning: Hinton's loss (T 4, alpha 0.9), SGD with momentum 0.9 and a cosine schedule.
 * Parses its own options. */
#include <stdlib.h>
#include <string.h>

#include "common.h"

void prune_help(FILE *f)
{
    fputs(
        "usage: kd prune MODEL.safetensors --sparsity S [--structured] [--teacher T]\n"
        "                --out FILE.safetensors [OPTIONS]\n"
        "\n"
        "Prunes a model, then fine-tunes it by distillation from a teacher (default: the\n"
        "unpruned MODEL), and reports test accuracy before, right after pruning and after\n"
        "each epoch.\n"
        "  unstructured (default): the fraction S of every weight matrix and kernel with the\n"
        "      smallest magnitudes is zeroed, gradually over --prune-epochs (Zhu and Gupta\n"
        "      2017), and kept at zero through fine-tuning; the file keeps its shapes.\n"
        "  --structured: the fraction S of neurons / conv channels with the smallest L1\n"
        "      norms is removed at once (Li et al. 2017), and the next layers' inputs with\n"
        "      them: a smaller, faster model (see its spec with kd info).\n"
        "\noptions:\n"
        "  --sparsity S        fraction in [0, 0.999] to prune (required)\n"
        "  --structured        remove neurons / channels instead of single weights\n"
        "  --teacher FILE      the teacher of fine-tuning (default: MODEL, unpruned)\n"
        "  --out FILE          where to save the pruned model (required)\n"
        "  --epochs N          fine-tuning epochs (5); 0 prunes only\n"
        "  --prune-epochs N    unstructured: epochs over which sparsity rises (half of\n"
        "                      --epochs; 0: at once)\n"
        "  --lr LR             SGD learning rate (0.01), momentum 0.9, cosine to 0\n"
        "  --batch B           examples per step (128)\n"
        "  --temperature T     distillation temperature (4); --alpha A soft weight (0.9)\n"
        "  --seed S            batch order (1)\n"
        "  --threads N         threads of libkd (default: every core; see kd help train)\n"
        "  --data DIR          Fashion-MNIST's IDX files (" DEFAULT_DATA_DIR ")\n"
        "  --train DATA        the training set (DIR/train); --test DATA (DIR/t10k): an IDX\n"
        "                      PREFIX, FILE.npz, FILE.npy (labels: --train-y / --test-y\n"
        "                      FILE.npy), FILE.csv (labels: --label-column NAME) or an\n"
        "                      ImageFolder DIR/, as for kd train (--x-name, --y-name,\n"
        "                      --channels too)\n"
        "\nexamples:\n"
        "  kd prune student.safetensors --sparsity 0.8 --out sparse.safetensors\n"
        "  kd prune student.safetensors --sparsity 0.5 --structured --teacher big.safetensors \\\n"
        "           --out small.safetensors\n",
        f);
}

typedef struct prune_opts {
    const char *model, *teacher, *out;
    options d; /* the data: --data, --train, --test and their formats' options, as train's */
    float sparsity, lr, temperature, alpha;
    int structured;
    int64_t epochs, prune_epochs, batch;
    uint64_t seed;
} prune_opts;

static int number(const char *opt, const char *v, double lo, double hi, double *out)
{
    char *end;
    double x = strtod(v, &end);
    if (end == v || *end != '\0' || !(x >= lo && x <= hi)) {
        fail_msg("%s %s: expected a number in [%g, %g]", opt, v, lo, hi);
        return EXIT_USAGE;
    }
    *out = x;
    return EXIT_OK;
}

static int parse(prune_opts *o, int argc, char **argv)
{
    *o = (prune_opts){.d = {.data_dir = DEFAULT_DATA_DIR, .x_name = "x", .y_name = "y"},
                      .sparsity = -1.0f,
                      .lr = 0.01f,
                      .temperature = 4.0f,
                      .alpha = 0.9f,
                      .epochs = 5,
                      .prune_epochs = -1,
                      .batch = 128,
                      .seed = 1};
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        double x;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            prune_help(stdout);
            return -1;
        }
        if (strcmp(a, "--structured") == 0) {
            o->structured = 1;
            continue;
        }
        if (a[0] != '-' || a[1] == '\0') {
            if (o->model != NULL) {
                fail_msg("one model at a time: '%s' after '%s'", a, o->model);
                return EXIT_USAGE;
            }
            o->model = a;
            continue;
        }
        static const char *const known[] = {
            "--teacher",      "--out",     "--data",        "--train",  "--test",
            "--sparsity",     "--lr",      "--temperature", "--alpha",  "--epochs",
            "--prune-epochs", "--batch",   "--threads",     "--seed",   "--channels",
            "--label-column", "--train-y", "--test-y",      "--x-name", "--y-name"};
        size_t k = 0;
        while (k < sizeof known / sizeof known[0] && strcmp(a, known[k]) != 0) k++;
        if (k == sizeof known / sizeof known[0]) {
            fail_msg("unknown option '%s' (see 'kd help prune')", a);
            return EXIT_USAGE;
        }
        if (v == NULL) {
            fail_msg("%s needs a value (see 'kd help prune')", a);
            return EXIT_USAGE;
        }
        i++;
        int rc = EXIT_OK;
        if (strcmp(a, "--teacher") == 0)
            o->teacher = v;
        else if (strcmp(a, "--out") == 0)
            o->out = v;
        else if (strcmp(a, "--data") == 0)
            o->d.data_dir = v;
        else if (strcmp(a, "--train") == 0)
            o->d.train_prefix = v;
        else if (strcmp(a, "--test") == 0)
            o->d.test_prefix = v;
        else if (data_format_option(&o->d, a, v))
            continue;
        else if (strcmp(a, "--channels") == 0) {
            if ((rc = number(a, v, 1, 3, &x)) == EXIT_OK && x != 2) o->d.channels = (int)x;
            if (rc == EXIT_OK && x == 2) {
                fail_msg("--channels %s: expected 1 or 3", v);
                rc = EXIT_USAGE;
            }
        } else if (strcmp(a, "--sparsity") == 0) {
            if ((rc = number(a, v, 0.0, 0.999, &x)) == EXIT_OK) o->sparsity = (float)x;
        } else if (strcmp(a, "--lr") == 0) {
            if ((rc = number(a, v, 1e-9, 10.0, &x)) == EXIT_OK) o->lr = (float)x;
        } else if (strcmp(a, "--temperature") == 0) {
            if ((rc = number(a, v, 1e-3, 1e3, &x)) == EXIT_OK) o->temperature = (float)x;
        } else if (strcmp(a, "--alpha") == 0) {
            if ((rc = number(a, v, 0.0, 1.0, &x)) == EXIT_OK) o->alpha = (float)x;
        } else if (strcmp(a, "--epochs") == 0) {
            if ((rc = number(a, v, 0, 10000, &x)) == EXIT_OK) o->epochs = (int64_t)x;
        } else if (strcmp(a, "--prune-epochs") == 0) {
            if ((rc = number(a, v, 0, 10000, &x)) == EXIT_OK) o->prune_epochs = (int64_t)x;
        } else if (strcmp(a, "--batch") == 0) {
            if ((rc = number(a, v, 1, 1 << 20, &x)) == EXIT_OK) o->batch = (int64_t)x;
        } else if (strcmp(a, "--threads") == 0) {
            rc = threads_option(v);
        } else if (strcmp(a, "--seed") == 0) {
            if ((rc = number(a, v, 0, 1e18, &x)) == EXIT_OK) o->seed = (uint64_t)x;
        } else {
            fail_msg("unknown option '%s' (see 'kd help prune')", a);
            return EXIT_USAGE;
        }
        if (rc != EXIT_OK) return rc;
    }
    if (o->model == NULL || o->out == NULL || o->sparsity < 0.0f) {
        fail_msg("usage: kd prune MODEL --sparsity S [--structured] [--teacher T] --out FILE");
        return EXIT_USAGE;
    }
    if (o->d.channels == 0) o->d.channels = 3; /* an ImageFolder's default: RGB */
    int rc = check_data_options(&o->d);
    if (rc != EXIT_OK) return rc;
    if (o->structured && o->prune_epochs >= 0) {
        fail_msg("--prune-epochs does not apply to --structured (it removes the channels at once); "
                 "leave it out");
        return EXIT_USAGE;
    }
    if (o->prune_epochs < 0) o->prune_epochs = o->structured ? 0 : o->epochs / 2;
    if (o->prune_epochs > o->epochs) o->prune_epochs = o->epochs;
    return EXIT_OK;
}

static double accuracy(kd_model *m, const kd_dataset *test)
{
    int64_t n = 0, correct = 0;
    kd_dataset_size(test, &n);
    if (kd_model_evaluate(m, kd_dataset_images(test), kd_dataset_labels(test), n, 256, &correct,
                          NULL) != KD_OK)
        return -1.0;
    return 100.0 * (double)correct / (double)n;
}

static void describe(const char *what, kd_model *m, double acc)
{
    int64_t params;
    float sparsity = 0.0f;
    kd_model_param_count(m, &params);
    kd_model_sparsity(m, &sparsity);
    printf("%-22s test %6.2f%%  %lld parameters, weights %.1f%% zero  (%s)\n", what, acc,
           (long long)params, 100.0 * sparsity, kd_model_spec(m));
}

/* Fine-tunes student by distillation from teacher; pruner (may be NULL) keeps its masks. */
static int fine_tune(const prune_opts *o, kd_model *student, kd_model *teacher,
                     const kd_dataset *train, const kd_dataset *test, kd_pruner *pruner)
{
    int64_t n, in;
    kd_dataset_size(train, &n);
    kd_model_input_size(student, &in);
    int64_t per_epoch = (n + o->batch - 1) / o->batch, total = per_epoch * o->epochs;
    kd_loss *loss = NULL;
    kd_optimizer *opt = NULL;
    kd_trainer *t = NULL;
    kd_batcher *b = NULL;
    float *x = malloc(sizeof *x * (size_t)(o->batch * in));
    int32_t *y = malloc(sizeof *y * (size_t)o->batch);
    kd_status st = x == NULL || y == NULL ? KD_ERR_NOMEM : KD_OK;
    if (st == KD_OK) st = kd_loss_create(KD_LOSS_HINTON, &loss);
    if (st == KD_OK) st = kd_loss_set_float(loss, KD_LOSS_TEMPERATURE, o->temperature);
    if (st == KD_OK) st = kd_loss_set_float(loss, KD_LOSS_ALPHA, o->alpha);
    if (st == KD_OK) st = kd_optimizer_create(KD_OPTIMIZER_SGD, student, &opt);
    if (st == KD_OK) st = kd_optimizer_set_float(opt, KD_OPT_LEARNING_RATE, o->lr);
    if (st == KD_OK) st = kd_optimizer_set_float(opt, KD_OPT_MOMENTUM, 0.9f);
    if (st == KD_OK) st = kd_optimizer_set_int(opt, KD_OPT_SCHEDULE, KD_SCHEDULE_COSINE);
    if (st == KD_OK) st = kd_optimizer_set_int(opt, KD_OPT_TOTAL_STEPS, total > 0 ? total : 1);
    if (st == KD_OK) st = kd_trainer_create(student, loss, opt, &t);
    if (st == KD_OK) st = kd_trainer_add_teacher(t, teacher, 1.0f);
    if (st == KD_OK) st = kd_batcher_create(train, o->batch, o->seed, &b);
    if (pruner != NULL && st == KD_OK) {
        st = kd_pruner_set_int(pruner, KD_PRUNER_END_STEP, o->prune_epochs * per_epoch);
        if (st == KD_OK) st = kd_pruner_set_int(pruner, KD_PRUNER_FREQUENCY, 50);
        if (st == KD_OK) st = kd_pruner_step(pruner, 0);
    }
    int64_t step = 0;
    for (int64_t e = 0; st == KD_OK && e < o->epochs; e++) {
        double start = now_seconds(), sum = 0.0;
        int64_t rows, batches = 0;
        while (st == KD_OK && (st = kd_batcher_next(b, x, y, &rows)) == KD_OK && rows > 0) {
            float l;
            st = kd_trainer_step(t, x, y, NULL, rows, &l);
            if (st == KD_OK && pruner != NULL) st = kd_pruner_step(pruner, ++step);
            sum += l;
            batches++;
        }
        if (st != KD_OK) break;
        char what[64];
        snprintf(what, sizeof what, "fine-tune %lld/%lld", (long long)(e + 1),
                 (long long)o->epochs);
        printf("%-22s loss %.4f  test %6.2f%%  %.0f s\n", what,
               sum / (double)(batches ? batches : 1), accuracy(student, test),
               now_seconds() - start);
        fflush(stdout);
    }
    /* The final sparsity even when training ended before the schedule did. */
    if (st == KD_OK && pruner != NULL) st = kd_pruner_step(pruner, o->prune_epochs * per_epoch);
    kd_batcher_destroy(b);
    kd_trainer_destroy(t);
    kd_optimizer_destroy(opt);
    kd_loss_destroy(loss);
    free(x);
    free(y);
    return st == KD_OK ? EXIT_OK : fail_kd("fine-tuning failed", st);
}

int cmd_prune(int argc, char **argv)
{
    prune_opts o;
    int rc = parse(&o, argc, argv);
    if (rc == -1) return EXIT_OK;
    if (rc != EXIT_OK) return rc;
    /* before the fine-tuning's minutes: a typo in --out costs no run */
    const char *in[] = {o.model,         o.teacher,   o.d.data_dir, o.d.train_prefix,
                        o.d.test_prefix, o.d.train_y, o.d.test_y};
    if ((rc = check_not_input("--out", o.out, in, 7)) != EXIT_OK) return rc;
    if ((rc = check_output(o.out)) != EXIT_OK) return rc;
    kd_model *m = NULL, *teacher = NULL, *student = NULL;
    dataset_pair d = {0};
    kd_pruner *pruner = NULL;
    char what[4200];
    kd_status st = kd_model_load(o.model, &m);
    snprintf(what, sizeof what, "cannot load %s", o.model);
    if (st == KD_OK && o.teacher != NULL) {
        st = kd_model_load(o.teacher, &teacher);
        snprintf(what, sizeof what, "cannot load the teacher %s", o.teacher);
    }
    if (st != KD_OK) {
        rc = fail_kd(what, st);
        goto done;
    }
    int32_t int8 = 0;
    kd_model_is_quantized(m, &int8);
    if (int8) {
        fail_msg("%s is int8: prune the float model, then quantise it (kd quantize)", o.model);
        rc = EXIT_USAGE;
        goto done;
    }
    /* before the data: its fine-tuning is on labelled examples, which a language model (or a
     * teacher that is one) cannot take; it has no --text */
    const char *why = "kd prune fine-tunes on labelled examples and does not take language models";
    if ((rc = check_not_language_model(o.model, m, why)) != EXIT_OK ||
        (rc = check_not_language_model(o.teacher, teacher, why)) != EXIT_OK)
        goto done;
    if ((rc = load_data(&o.d, 1, 1, &d)) != EXIT_OK) goto done;
    /* before any step: a model of other inputs would be fed rows of the wrong width */
    if ((rc = check_fits("model", m, d.train, d.test)) != EXIT_OK ||
        (teacher != NULL && (rc = check_fits("teacher", teacher, d.train, d.test)) != EXIT_OK))
        goto done;
    const kd_dataset *train = d.train, *test = d.test;
    describe("unpruned", m, accuracy(m, test));
    if (o.structured) {
        st = kd_model_prune_channels(m, o.sparsity, &student);
    } else {
        st = kd_model_clone(m, &student);
        if (st == KD_OK) st = kd_pruner_create(student, o.sparsity, &pruner);
    }
    if (st != KD_OK) {
        rc = fail_kd("cannot prune", st);
        goto done;
    }
    if (o.structured || o.prune_epochs == 0) {
        if (pruner != NULL) kd_pruner_step(pruner, 0); /* one shot: what pruning alone costs */
        describe("pruned", student, accuracy(student, test));
    }
    if ((rc = fine_tune(&o, student, teacher != NULL ? teacher : m, train, test, pruner)) !=
        EXIT_OK)
        goto done;
    describe("pruned + fine-tuned", student, accuracy(student, test));
    if ((st = kd_model_save(student, o.out)) != KD_OK) {
        snprintf(what, sizeof what, "cannot save %s", o.out);
        rc = fail_kd(what, st);
        goto done;
    }
    char size[32];
    format_bytes((double)file_size(o.out), size, sizeof size);
    printf("saved %s (%s)\n", o.out, size);
done:
    kd_pruner_destroy(pruner);
    kd_model_destroy(student);
    kd_model_destroy(teacher);
    kd_model_destroy(m);
    free_data(&d);
    return rc;
}
