/* mlp_distill: Hinton distillation of an MLP on Fashion-MNIST, through the public API only.
 *
 * Trains a 784-1200-1200-10 ReLU teacher, then the 784-800-800-10 student alone and distilled
 * (T = 4, alpha = 0.9, and T = 2, alpha = 0.5), all with one protocol: SGD with momentum 0.9,
 * learning rate 0.05 with cosine decay, batch 128, no dropout. Prints every test accuracy with
 * parameter counts and wall times.
 *
 *   mlp_distill [--epochs N] [--train PREFIX] [--test PREFIX] [--seed S]
 *
 * PREFIX names IDX files PREFIX-images-idx3-ubyte.gz and PREFIX-labels-idx1-ubyte.gz; the defaults
 * are Debian's dataset-fashion-mnist files in /usr/share/datasets/fashion-mnist.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kd.h"

#define BATCH 128
#define CLASSES 10
#define TEACHER "input 784 | dense 1200 | relu | dense 1200 | relu | dense 10"
#define STUDENT "input 784 | dense 800 | relu | dense 800 | relu | dense 10"

typedef struct run {
    const char *name;
    const char *spec;
    float temperature, alpha; /* alpha 0: trained alone */
    float accuracy;
    int64_t params;
    double seconds;
} run;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void die(const char *what, kd_status st)
{
    fprintf(stderr, "mlp_distill: %s: %s (%s)\n", what, kd_strerror(st), kd_last_error());
    exit(1);
}
#define CHECK(call)                                                                                \
    do {                                                                                           \
        kd_status st_ = (call);                                                                    \
        if (st_ != KD_OK) die(#call, st_);                                                         \
    } while (0)

static kd_dataset *load(const char *prefix)
{
    char images[1024], labels[1024];
    snprintf(images, sizeof images, "%s-images-idx3-ubyte.gz", prefix);
    snprintf(labels, sizeof labels, "%s-labels-idx1-ubyte.gz", prefix);
    kd_dataset *d;
    kd_status st = kd_dataset_load_idx(images, labels, &d);
    if (st != KD_OK) {
        fprintf(stderr,
                "mlp_distill: cannot read %s: %s\n(install Debian's dataset-fashion-mnist, "
                "or pass --train/--test)\n",
                images, kd_last_error());
        exit(1);
    }
    return d;
}

static float accuracy(kd_model *m, const kd_dataset *test)
{
    int64_t n, correct;
    CHECK(kd_dataset_size(test, &n));
    CHECK(kd_model_evaluate(m, kd_dataset_images(test), kd_dataset_labels(test), n, 1000, &correct,
                            NULL));
    return 100.0f * (float)correct / (float)n;
}

/* Teacher logits for the whole transfer set, computed once: the teacher is fixed and there is no
 * augmentation, so every epoch reuses them (gathered per batch through kd_batcher_indices). */
static float *teacher_logits(kd_model *teacher, const kd_dataset *train)
{
    int64_t n, in;
    CHECK(kd_dataset_size(train, &n));
    CHECK(kd_model_input_size(teacher, &in));
    float *logits = malloc(sizeof(float) * (size_t)(n * CLASSES));
    if (logits == NULL) die("malloc", KD_ERR_NOMEM);
    for (int64_t s = 0; s < n; s += 1000) {
        int64_t rows = n - s < 1000 ? n - s : 1000;
        CHECK(kd_model_predict(teacher, kd_dataset_images(train) + s * in, rows,
                               logits + s * CLASSES));
    }
    return logits;
}

static kd_model *train(run *r, const kd_dataset *train_set, const kd_dataset *test,
                       const float *cached, int epochs, uint64_t seed)
{
    int64_t n, c, h, w;
    CHECK(kd_dataset_size(train_set, &n));
    CHECK(kd_dataset_shape(train_set, &c, &h, &w));
    kd_model *m;
    kd_loss *loss;
    kd_optimizer *opt;
    kd_trainer *t;
    kd_batcher *b;
    CHECK(kd_model_create(r->spec, seed, &m));
    CHECK(kd_model_param_count(m, &r->params));
    CHECK(kd_loss_create(KD_LOSS_HINTON, &loss));
    CHECK(kd_loss_set_float(loss, KD_LOSS_TEMPERATURE, r->temperature));
    CHECK(kd_loss_set_float(loss, KD_LOSS_ALPHA, r->alpha));
    CHECK(kd_optimizer_create(KD_OPTIMIZER_SGD, m, &opt));
    CHECK(kd_optimizer_set_float(opt, KD_OPT_LEARNING_RATE, 0.05f));
    CHECK(kd_optimizer_set_float(opt, KD_OPT_MOMENTUM, 0.9f));
    CHECK(kd_optimizer_set_int(opt, KD_OPT_SCHEDULE, KD_SCHEDULE_COSINE));
    CHECK(kd_optimizer_set_int(opt, KD_OPT_TOTAL_STEPS, epochs * ((n + BATCH - 1) / BATCH)));
    CHECK(kd_trainer_create(m, loss, opt, &t));
    CHECK(kd_batcher_create(train_set, BATCH, seed + 1, &b));

    float *x = malloc(sizeof(float) * (size_t)(BATCH * c * h * w));
    float *z = malloc(sizeof(float) * BATCH * CLASSES);
    int32_t labels[BATCH];
    double start = now();
    for (int e = 1; e <= epochs; e++) {
        double sum = 0.0;
        int64_t rows, steps = 0;
        for (;;) {
            CHECK(kd_batcher_next(b, x, labels, &rows));
            if (rows == 0) break;
            const float *tz = NULL;
            if (cached != NULL) {
                const int64_t *idx;
                CHECK(kd_batcher_indices(b, &idx, &rows));
                for (int64_t i = 0; i < rows; i++)
                    memcpy(z + i * CLASSES, cached + idx[i] * CLASSES, sizeof(float) * CLASSES);
                tz = z;
            }
            float value;
            CHECK(kd_trainer_step(t, x, labels, tz, rows, &value));
            sum += value;
            steps++;
        }
        r->accuracy = accuracy(m, test);
        printf("  %-26s epoch %2d/%d  loss %.4f  test %.2f%%  %.0f s\n", r->name, e, epochs,
               sum / (double)steps, (double)r->accuracy, now() - start);
        fflush(stdout);
    }
    r->seconds = now() - start;
    free(x);
    free(z);
    kd_batcher_destroy(b);
    kd_trainer_destroy(t);
    kd_optimizer_destroy(opt);
    kd_loss_destroy(loss);
    return m;
}

int main(int argc, char **argv)
{
    int epochs = 20;
    uint64_t seed = 1;
    const char *train_prefix = "/usr/share/datasets/fashion-mnist/train";
    const char *test_prefix = "/usr/share/datasets/fashion-mnist/t10k";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--epochs") == 0 && i + 1 < argc)
            epochs = atoi(argv[++i]);
        else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--train") == 0 && i + 1 < argc)
            train_prefix = argv[++i];
        else if (strcmp(argv[i], "--test") == 0 && i + 1 < argc)
            test_prefix = argv[++i];
        else {
            fprintf(stderr, "usage: mlp_distill [--epochs N] [--train PREFIX] [--test PREFIX] "
                            "[--seed S]\n");
            return 2;
        }
    }
    if (epochs < 1) epochs = 1;
    kd_dataset *train_set = load(train_prefix), *test = load(test_prefix);
    int64_t ntrain, ntest;
    CHECK(kd_dataset_size(train_set, &ntrain));
    CHECK(kd_dataset_size(test, &ntest));
    printf("libkd %s, kernels %s; Fashion-MNIST %lld train / %lld test; %d epochs, batch %d, SGD "
           "momentum 0.9, lr 0.05 cosine\n",
           kd_version(), kd_kernels_name(), (long long)ntrain, (long long)ntest, epochs, BATCH);

    run runs[] = {
        {.name = "teacher 1200-1200", .spec = TEACHER, .temperature = 1, .alpha = 0},
        {.name = "student 800-800 alone", .spec = STUDENT, .temperature = 1, .alpha = 0},
        {.name = "student KD T=4 a=0.9", .spec = STUDENT, .temperature = 4, .alpha = 0.9f},
        {.name = "student KD T=2 a=0.5", .spec = STUDENT, .temperature = 2, .alpha = 0.5f},
    };
    int nruns = (int)(sizeof runs / sizeof runs[0]);
    kd_model *teacher = train(&runs[0], train_set, test, NULL, epochs, seed);
    float *cached = teacher_logits(teacher, train_set);
    for (int i = 1; i < nruns; i++) {
        kd_model *m = train(&runs[i], train_set, test, runs[i].alpha > 0 ? cached : NULL, epochs,
                            seed + (uint64_t)i);
        kd_model_destroy(m);
    }

    printf("\n%-26s %10s %8s %10s\n", "model", "params", "test %", "wall s");
    for (int i = 0; i < nruns; i++)
        printf("%-26s %10lld %8.2f %10.1f\n", runs[i].name, (long long)runs[i].params,
               (double)runs[i].accuracy, runs[i].seconds);
    free(cached);
    kd_model_destroy(teacher);
    kd_dataset_destroy(train_set);
    kd_dataset_destroy(test);
    return 0;
}
