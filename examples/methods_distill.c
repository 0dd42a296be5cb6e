/* methods_distill: the distillation methods of libkd side by side on Fashion-MNIST, through the
 * public API only. One teacher/student pair, one protocol, one table: method, student test
 * accuracy, time per epoch.
 *
 * Teacher 784-1200-1200-10 (ReLU), student 784-100-10 (ReLU); SGD with momentum 0.9, learning
 * rate 0.05 with cosine decay, batch 128, no augmentation. The teachers are trained once and kept
 * in /tmp (reused when the file for the same seed and epochs exists). Feature methods compare the
 * student's hidden layer (100 values) with the teacher's second hidden layer (1200 values), with
 * the weights RepDistiller uses (cross-entropy + beta * feature loss: RKD 1, SP 3000, PKT 30000,
 * FitNets' hint 100); attention transfer needs spatial maps, so it runs on a CNN pair of its own.
 *
 *   methods_distill [--epochs N] [--teacher-epochs N] [--cnn-epochs N] [--no-cnn] [--seed S]
 *                   [--limit N] [--train PREFIX] [--test PREFIX]
 *
 * --limit uses the first N training images (a quick check). PREFIX names IDX files
 * PREFIX-images-idx3-ubyte.gz and PREFIX-labels-idx1-ubyte.gz; the defaults are Debian's
 * dataset-fashion-mnist files in /usr/share/datasets/fashion-mnist.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kd.h"

#define BATCH 128
#define CLASSES 10
#define TEACHER "input 784 | dense 1200 | relu | dense 1200 | relu | dense 10"
#define STUDENT "input 784 | dense 100 | relu | dense 10"
#define DKD_BETA 2.0f /* mdistiller's CIFAR beta, 8, kills this MLP (no batch norm) at lr 0.05 */
#define STUDENT_FEATURE 1 /* the student's hidden ReLU: 100 values */
#define TEACHER_FEATURE 3 /* the teacher's second hidden ReLU: 1200 values */
#define CNN_TEACHER                                                                                \
    "input 1x28x28 | conv 16 3 pad=1 | relu | maxpool 2 | conv 32 3 pad=1 | relu | maxpool 2 | "   \
    "flatten | dense 10"
#define CNN_STUDENT                                                                                \
    "input 1x28x28 | conv 4 3 pad=1 | relu | maxpool 2 | conv 8 3 pad=1 | relu | maxpool 2 | "     \
    "flatten | dense 10"

/* ---------------------------------------------------------------- plumbing */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void die(const char *what, kd_status st)
{
    fprintf(stderr, "methods_distill: %s: %s (%s)\n", what, kd_strerror(st), kd_last_error());
    exit(1);
}
#define CHECK(call)                                                                                \
    do {                                                                                           \
        kd_status st_ = (call);                                                                    \
        if (st_ != KD_OK) die(#call, st_);                                                         \
    } while (0)

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (p == NULL) die("malloc", KD_ERR_NOMEM);
    return p;
}

/* The training set as the host sees it: images, labels, and its own shuffled order. */
typedef struct set {
    const float *x;
    const int32_t *y;
    int64_t n, dim;
    int64_t *order;
    uint64_t rng;
} set;

static uint64_t next_random(uint64_t *s) /* xorshift64*: the host's shuffle */
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

static void shuffle(set *s, uint64_t seed)
{
    s->rng = seed * 0x9E3779B97F4A7C15ULL + 1;
    for (int64_t i = 0; i < s->n; i++) s->order[i] = i;
    for (int64_t i = s->n - 1; i > 0; i--) {
        int64_t j = (int64_t)(next_random(&s->rng) % (uint64_t)(i + 1)), t = s->order[i];
        s->order[i] = s->order[j];
        s->order[j] = t;
    }
}

static kd_dataset *load(const char *prefix)
{
    char images[1024], labels[1024];
    snprintf(images, sizeof images, "%s-images-idx3-ubyte.gz", prefix);
    snprintf(labels, sizeof labels, "%s-labels-idx1-ubyte.gz", prefix);
    kd_dataset *d;
    if (kd_dataset_load_idx(images, labels, &d) != KD_OK) {
        fprintf(stderr,
                "methods_distill: cannot read %s: %s\n(install Debian's "
                "dataset-fashion-mnist, or pass --train/--test)\n",
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

/* A model's logits for the whole training set, so distillation from a fixed teacher without
 * augmentation runs it once, not every epoch. */
static float *logits_of(kd_model *m, const set *s)
{
    float *z = xmalloc(sizeof(float) * (size_t)(s->n * CLASSES));
    for (int64_t i = 0; i < s->n; i += 1000) {
        int64_t rows = s->n - i < 1000 ? s->n - i : 1000;
        CHECK(kd_model_predict(m, s->x + i * s->dim, rows, z + i * CLASSES));
    }
    return z;
}

/* ---------------------------------------------------------------- one training run */

typedef struct run {
    kd_model *student;
    kd_loss *loss;
    kd_optimizer *opt;
    kd_trainer *trainer;
} run;

/* A student with Hinton's (or another) loss and the protocol's optimizer over total epochs. */
static run start(const char *spec, uint64_t seed, kd_loss_kind kind, float t, float alpha,
                 int64_t steps)
{
    run r;
    CHECK(kd_model_create(spec, seed, &r.student));
    CHECK(kd_loss_create(kind, &r.loss));
    if (kind != KD_LOSS_LOGIT_MSE) CHECK(kd_loss_set_float(r.loss, KD_LOSS_TEMPERATURE, t));
    CHECK(kd_loss_set_float(r.loss, KD_LOSS_ALPHA, alpha));
    CHECK(kd_optimizer_create(KD_OPTIMIZER_SGD, r.student, &r.opt));
    CHECK(kd_optimizer_set_float(r.opt, KD_OPT_LEARNING_RATE, 0.05f));
    CHECK(kd_optimizer_set_float(r.opt, KD_OPT_MOMENTUM, 0.9f));
    CHECK(kd_optimizer_set_int(r.opt, KD_OPT_SCHEDULE, KD_SCHEDULE_COSINE));
    CHECK(kd_optimizer_set_int(r.opt, KD_OPT_TOTAL_STEPS, steps));
    CHECK(kd_trainer_create(r.student, r.loss, r.opt, &r.trainer));
    return r;
}

/* Frees the run and hands back its student. */
static kd_model *finish(run *r)
{
    kd_trainer_destroy(r->trainer);
    kd_optimizer_destroy(r->opt);
    kd_loss_destroy(r->loss);
    return r->student;
}

/* Epochs of trainer steps over s; cached logits of nc teachers ([teacher][n][classes]) follow the
 * shuffle. A DKD loss given as warm gets its KD terms ramped up over the first epoch, as
 * mdistiller's warm-up (there over 20 epochs). Returns the seconds spent. */
static double epochs_of(kd_trainer *t, set *s, float *const *cache, int nc, int epochs,
                        uint64_t seed, kd_loss *warm)
{
    float *x = xmalloc(sizeof(float) * (size_t)(BATCH * s->dim));
    float *z = xmalloc(sizeof(float) * (size_t)(2 * BATCH * CLASSES));
    int32_t y[BATCH];
    int64_t step = 0, per_epoch = (s->n + BATCH - 1) / BATCH;
    double start = now();
    for (int e = 0; e < epochs; e++) {
        shuffle(s, seed + (uint64_t)e);
        for (int64_t b = 0; b < s->n; b += BATCH, step++) {
            int64_t rows = s->n - b < BATCH ? s->n - b : BATCH;
            for (int64_t i = 0; i < rows; i++) {
                int64_t k = s->order[b + i];
                memcpy(x + i * s->dim, s->x + k * s->dim, sizeof(float) * (size_t)s->dim);
                y[i] = s->y[k];
                for (int c = 0; c < nc; c++)
                    memcpy(z + (c * rows + i) * CLASSES, cache[c] + k * CLASSES,
                           sizeof(float) * CLASSES);
            }
            if (warm != NULL) {
                float ramp = step < per_epoch ? (float)(step + 1) / (float)per_epoch : 1.0f;
                CHECK(kd_loss_set_float(warm, KD_LOSS_ALPHA, ramp));
                CHECK(kd_loss_set_float(warm, KD_LOSS_BETA, DKD_BETA * ramp));
            }
            float loss;
            CHECK(kd_trainer_step(t, x, y, nc > 0 ? z : NULL, rows, &loss));
        }
    }
    double seconds = now() - start;
    free(x);
    free(z);
    return seconds;
}

/* ---------------------------------------------------------------- teachers */

/* Trains spec on s with labels alone, or loads it from /tmp when a previous run saved it. */
static kd_model *teacher(const char *tag, const char *spec, set *s, int epochs, uint64_t seed,
                         const kd_dataset *test)
{
    /* the data's own hash in the name too: a teacher of other data (same size) is not reused */
    uint64_t h = 1469598103934665603ULL;
    const unsigned char *bytes = (const unsigned char *)s->x;
    for (size_t i = 0; i < (size_t)(s->n * s->dim) * sizeof(float); i += 61)
        h = (h ^ bytes[i]) * 1099511628211ULL;
    for (int64_t i = 0; i < s->n; i++) h = (h ^ (uint64_t)s->y[i]) * 1099511628211ULL;
    char path[256];
    snprintf(path, sizeof path, "/tmp/libkd_methods_%s_s%llu_e%d_n%lld_%016llx.safetensors", tag,
             (unsigned long long)seed, epochs, (long long)s->n, (unsigned long long)h);
    kd_model *m;
    if (kd_model_load(path, &m) == KD_OK) {
        if (strcmp(kd_model_spec(m), spec) == 0) {
            printf("  teacher %-12s loaded from %s: test %.2f%%\n", tag, path,
                   (double)accuracy(m, test));
            return m;
        }
        kd_model_destroy(m);
    }
    run r = start(spec, seed, KD_LOSS_HINTON, 1.0f, 0.0f, epochs * ((s->n + BATCH - 1) / BATCH));
    double sec = epochs_of(r.trainer, s, NULL, 0, epochs, seed, NULL);
    m = finish(&r);
    CHECK(kd_model_save(m, path));
    printf("  teacher %-12s trained %d epochs in %.0f s: test %.2f%% (saved to %s)\n", tag, epochs,
           sec, (double)accuracy(m, test), path);
    return m;
}

/* ---------------------------------------------------------------- the methods */

typedef struct row {
    char name[64];
    float accuracy;
    double per_epoch;
} row;

static row table[32];
static int nrows;

static void report(const char *name, kd_model *m, const kd_dataset *test, double seconds,
                   int epochs)
{
    row *r = &table[nrows++];
    snprintf(r->name, sizeof r->name, "%s", name);
    r->accuracy = accuracy(m, test);
    r->per_epoch = seconds / epochs;
    printf("  %-44s test %.2f%%  %.1f s/epoch\n", r->name, (double)r->accuracy, r->per_epoch);
    fflush(stdout);
}

typedef struct context {
    set *train;
    const kd_dataset *test;
    int epochs;
    uint64_t seed;
    kd_model *teachers[2];
    float *cache[2]; /* their training-set logits */
} context;

static int64_t steps(const context *c, int epochs)
{
    return epochs * ((c->train->n + BATCH - 1) / BATCH);
}

/* Logit methods from cached logits: Hinton, logit MSE, DKD, DIST, logit standardisation, the
 * two-teacher ensemble. standardize sets KD_LOSS_LOGIT_STANDARDIZE (Sun et al. 2024). */
static kd_model *logit_method_ls(const context *c, const char *name, kd_loss_kind kind, float t,
                                 float alpha, int nteachers, int standardize)
{
    run r = start(STUDENT, c->seed + 10, kind, t, alpha, steps(c, c->epochs));
    if (standardize) CHECK(kd_loss_set_float(r.loss, KD_LOSS_LOGIT_STANDARDIZE, 1.0f));
    if (kind == KD_LOSS_DIST) { /* the authors' CIFAR-100 setting */
        CHECK(kd_loss_set_float(r.loss, KD_LOSS_BETA, 2.0f));
        CHECK(kd_loss_set_float(r.loss, KD_LOSS_GAMMA, 2.0f));
    }
    for (int i = 0; i < nteachers; i++)
        CHECK(kd_trainer_add_teacher(r.trainer, c->teachers[i], 1.0f));
    kd_loss *warm = kind == KD_LOSS_DKD ? r.loss : NULL;
    double sec = epochs_of(r.trainer, c->train, c->cache, nteachers, c->epochs, c->seed, warm);
    kd_model *m = finish(&r);
    report(name, m, c->test, sec, c->epochs);
    return m;
}

static kd_model *logit_method(const context *c, const char *name, kd_loss_kind kind, float t,
                              float alpha, int nteachers)
{
    return logit_method_ls(c, name, kind, t, alpha, nteachers, 0);
}

/* Cross-entropy (alpha 0) or KD, plus weight * a feature loss between the hidden layers. */
static void feature_method(const context *c, const char *name, kd_feature_loss_kind kind,
                           float weight, const char *regressor, float alpha)
{
    run r = start(STUDENT, c->seed + 10, KD_LOSS_HINTON, 4.0f, alpha, steps(c, c->epochs));
    kd_feature_loss *f;
    CHECK(kd_feature_loss_create(kind, &f));
    CHECK(kd_trainer_add_teacher(r.trainer, c->teachers[0], 1.0f));
    CHECK(kd_trainer_add_feature_loss(r.trainer, f, STUDENT_FEATURE, 0, TEACHER_FEATURE, regressor,
                                      weight));
    /* The teacher runs for its features anyway; its cached logits give the soft targets. */
    double sec = epochs_of(r.trainer, c->train, c->cache, alpha > 0.0f, c->epochs, c->seed, NULL);
    kd_model *m = finish(&r);
    kd_feature_loss_destroy(f);
    report(name, m, c->test, sec, c->epochs);
    kd_model_destroy(m);
}

/* FitNets (Romero et al. 2015): stage 1 trains the student up to its guided layer, with a
 * regressor, on the hint alone; stage 2 is Hinton's KD of the whole student. Both stages share
 * the optimizer and its schedule (a trainer each: stage 2 has no feature term). */
static void fitnets(const context *c, int hint_epochs)
{
    run r = start(STUDENT, c->seed + 10, KD_LOSS_HINTON, 4.0f, 0.9f, steps(c, c->epochs));
    kd_feature_loss *hint;
    CHECK(kd_feature_loss_create(KD_FEATURE_HINT, &hint));
    CHECK(kd_trainer_add_teacher(r.trainer, c->teachers[0], 1.0f));
    CHECK(kd_trainer_add_feature_loss(r.trainer, hint, STUDENT_FEATURE, 0, TEACHER_FEATURE,
                                      "dense 1200", 100.0f));
    CHECK(kd_trainer_set_int(r.trainer, KD_TRAINER_HINT_ONLY, 1));
    double sec = epochs_of(r.trainer, c->train, NULL, 0, hint_epochs, c->seed, NULL);
    float hint_value;
    CHECK(kd_trainer_feature_value(r.trainer, 0, &hint_value));
    kd_trainer *stage2;
    CHECK(kd_trainer_create(r.student, r.loss, r.opt, &stage2));
    CHECK(kd_trainer_add_teacher(stage2, c->teachers[0], 1.0f));
    sec += epochs_of(stage2, c->train, c->cache, 1, c->epochs - hint_epochs, c->seed + 100, NULL);
    kd_trainer_destroy(stage2);
    kd_model *m = finish(&r);
    kd_feature_loss_destroy(hint);
    char name[64];
    snprintf(name, sizeof name, "FitNets: %d hint + %d KD epochs", hint_epochs,
             c->epochs - hint_epochs);
    report(name, m, c->test, sec, c->epochs);
    kd_model_destroy(m);
}

/* Born-again networks (Furlanello et al. 2018): each generation, of the same architecture, learns
 * from the previous one (a clone of the trained student), starting from the student alone. */
static void born_again(const context *c, kd_model *alone, int generations)
{
    kd_model *teacher;
    CHECK(kd_model_clone(alone, &teacher));
    for (int g = 1; g <= generations; g++) {
        float *cache = logits_of(teacher, c->train);
        run r = start(STUDENT, c->seed + 10 + (uint64_t)g, KD_LOSS_HINTON, 4.0f, 0.9f,
                      steps(c, c->epochs));
        CHECK(kd_trainer_add_teacher(r.trainer, teacher, 1.0f));
        double sec = epochs_of(r.trainer, c->train, &cache, 1, c->epochs, c->seed, NULL);
        kd_model *m = finish(&r);
        char name[64];
        snprintf(name, sizeof name, "born-again generation %d (KD T=4 a=0.9)", g);
        report(name, m, c->test, sec, c->epochs);
        kd_model_destroy(teacher);
        free(cache);
        teacher = m; /* the next generation's teacher */
    }
    kd_model_destroy(teacher);
}

/* Attention transfer (Zagoruyko and Komodakis 2017) on a CNN pair: cross-entropy + beta x the
 * attention loss after each of the two conv stages, against the same CNN trained alone. Their
 * beta, 1000, is for maps of 32x32 to 8x8 in networks with batch norm; on these 14x14 and 7x7
 * maps without it, 1000 kills the student's ReLUs in the first steps, so beta is 100. */
static void attention(const context *c, set *images, int epochs)
{
    printf("\nattention transfer, CNN pair (%d epochs)\n", epochs);
    kd_model *t = teacher("cnn", CNN_TEACHER, images, epochs, c->seed + 200, c->test);
    for (int with_at = 0; with_at < 2; with_at++) {
        run r = start(CNN_STUDENT, c->seed + 210, KD_LOSS_HINTON, 4.0f, 0.0f,
                      epochs * ((images->n + BATCH - 1) / BATCH));
        kd_feature_loss *at;
        CHECK(kd_feature_loss_create(KD_FEATURE_ATTENTION, &at));
        if (with_at) {
            CHECK(kd_trainer_add_teacher(r.trainer, t, 1.0f));
            /* after each pooling: 16 vs 4 channels of 14x14, 32 vs 8 of 7x7 */
            CHECK(kd_trainer_add_feature_loss(r.trainer, at, 2, 0, 2, NULL, 100.0f));
            CHECK(kd_trainer_add_feature_loss(r.trainer, at, 5, 0, 5, NULL, 100.0f));
        }
        double sec = epochs_of(r.trainer, images, NULL, 0, epochs, c->seed, NULL);
        kd_model *m = finish(&r);
        report(with_at ? "CNN 4-8 student, CE + 100 x AT (2 maps)" : "CNN 4-8 student alone", m,
               c->test, sec, epochs);
        kd_feature_loss_destroy(at);
        kd_model_destroy(m);
    }
    kd_model_destroy(t);
}

int main(int argc, char **argv)
{
    int epochs = 5, teacher_epochs = 5, cnn_epochs = 5, cnn = 1;
    int64_t limit = 0;
    uint64_t seed = 1;
    const char *train_prefix = "/usr/share/datasets/fashion-mnist/train";
    const char *test_prefix = "/usr/share/datasets/fashion-mnist/t10k";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--epochs") == 0 && i + 1 < argc)
            epochs = atoi(argv[++i]);
        else if (strcmp(argv[i], "--teacher-epochs") == 0 && i + 1 < argc)
            teacher_epochs = atoi(argv[++i]);
        else if (strcmp(argv[i], "--cnn-epochs") == 0 && i + 1 < argc)
            cnn_epochs = atoi(argv[++i]);
        else if (strcmp(argv[i], "--no-cnn") == 0)
            cnn = 0;
        else if (strcmp(argv[i], "--limit") == 0 && i + 1 < argc)
            limit = atoll(argv[++i]);
        else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--train") == 0 && i + 1 < argc)
            train_prefix = argv[++i];
        else if (strcmp(argv[i], "--test") == 0 && i + 1 < argc)
            test_prefix = argv[++i];
        else {
            fprintf(stderr, "usage: methods_distill [--epochs N] [--teacher-epochs N] "
                            "[--cnn-epochs N] [--no-cnn] [--seed S] [--limit N] [--train PREFIX] "
                            "[--test PREFIX]\n");
            return 2;
        }
    }
    if (epochs < 2) epochs = 2; /* FitNets needs a stage of each */
    if (teacher_epochs < 1) teacher_epochs = 1;
    kd_dataset *train_set = load(train_prefix), *test = load(test_prefix);
    int64_t n, ch, h, w;
    CHECK(kd_dataset_size(train_set, &n));
    CHECK(kd_dataset_shape(train_set, &ch, &h, &w));
    if (limit > 0 && limit < n) n = limit;
    set train = {kd_dataset_images(train_set),
                 kd_dataset_labels(train_set),
                 n,
                 ch * h * w,
                 xmalloc(sizeof(int64_t) * (size_t)n),
                 0};
    printf("libkd %s, kernels %s; Fashion-MNIST %lld train images; student %d epochs, teachers "
           "%d; batch %d, SGD momentum 0.9, lr 0.05 cosine\n\nteachers\n",
           kd_version(), kd_kernels_name(), (long long)n, epochs, teacher_epochs, BATCH);
    context c = {.train = &train, .test = test, .epochs = epochs, .seed = seed};
    c.teachers[0] = teacher("mlp1", TEACHER, &train, teacher_epochs, seed + 1, test);
    c.teachers[1] = teacher("mlp2", TEACHER, &train, teacher_epochs, seed + 2, test);
    c.cache[0] = logits_of(c.teachers[0], &train);
    c.cache[1] = logits_of(c.teachers[1], &train);

    printf("\nstudents (784-100-10), %d epochs each\n", epochs);
    kd_model *alone = logit_method(&c, "student alone (cross-entropy)", KD_LOSS_HINTON, 1, 0, 0);
    kd_model_destroy(logit_method(&c, "Hinton KD, T=4 a=0.9", KD_LOSS_HINTON, 4, 0.9f, 1));
    kd_model_destroy(logit_method(&c, "logit MSE (Ba & Caruana), a=1", KD_LOSS_LOGIT_MSE, 1, 1, 1));
    kd_model_destroy(logit_method(&c, "DKD, T=4 a=1 b=2, 1-epoch warm-up", KD_LOSS_DKD, 4, 1, 1));
    kd_model_destroy(logit_method_ls(&c, "KD + logit standardisation, T=2 a=0.9", KD_LOSS_HINTON, 2,
                                     0.9f, 1, 1));
    kd_model_destroy(logit_method(&c, "DIST, T=4 b=2 g=2", KD_LOSS_DIST, 4, 1, 1));
    fitnets(&c, 1);
    feature_method(&c, "RKD: CE + 1 x (25 dist + 50 angle)", KD_FEATURE_RKD, 1.0f, NULL, 0.0f);
    feature_method(&c, "similarity-preserving: CE + 3000 x SP", KD_FEATURE_SIMILARITY, 3000.0f,
                   NULL, 0.0f);
    feature_method(&c, "PKT: CE + 30000 x PKT", KD_FEATURE_PKT, 30000.0f, NULL, 0.0f);
    feature_method(&c, "cosine (DistilBERT): KD + 1 x cos, regressor", KD_FEATURE_COSINE, 1.0f,
                   "dense 1200", 0.9f);
    kd_model_destroy(
        logit_method(&c, "2-teacher ensemble, KD T=4 a=0.9", KD_LOSS_HINTON, 4, 0.9f, 2));
    born_again(&c, alone, 2);
    kd_model_destroy(alone);
    if (cnn) attention(&c, &train, cnn_epochs);

    printf("\n%-46s %8s %10s\n", "method", "test %", "s/epoch");
    for (int i = 0; i < nrows; i++)
        printf("%-46s %8.2f %10.1f\n", table[i].name, (double)table[i].accuracy,
               table[i].per_epoch);
    for (int i = 0; i < 2; i++) {
        kd_model_destroy(c.teachers[i]);
        free(c.cache[i]);
    }
    free(train.order);
    kd_dataset_destroy(train_set);
    kd_dataset_destroy(test);
    return 0;
}
