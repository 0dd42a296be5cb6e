/* omitted_class: Hinton, Vinyals and Dean (2015, section 3)'s experiment with a class left out of
 * the transfer set, on Fashion-MNIST, through the public API only.
 *
 * A 784-1200-1200-10 teacher sees every class. A 784-300-300-10 student is distilled (T = 8,
 * alpha = 0.9) on training images 0..54999 with every image of one class removed, so the class is
 * one it has never seen; a second student learns from the same images' labels alone. The paper
 * found the distilled student still knows the class from the soft targets, but with a bias far
 * too low, and raised that bias by a constant (3.5 on MNIST, chosen on the test set). Here the
 * constant is chosen without labels, on the 5000 held-out training images 55000..59999 the
 * students never saw: the smallest delta for which the student predicts the class for at least
 * 10% of them (the share Fashion-MNIST's classes have). For reference, the delta that maximises
 * held-out accuracy (with labels, as the paper's choice on the test set) is reported too.
 * Same protocol as methods_distill: SGD with momentum 0.9, lr 0.05 cosine, batch 128.
 *
 *   omitted_class [--omit K] [--epochs N] [--teacher-epochs N] [--seed S]
 *                 [--train PREFIX] [--test PREFIX]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kd.h"

#define BATCH 128
#define CLASSES 10
#define HELD_OUT 5000
#define TEACHER "input 784 | dense 1200 | relu | dense 1200 | relu | dense 10"
#define STUDENT "input 784 | dense 300 | relu | dense 300 | relu | dense 10"

static const char *const names[CLASSES] = {"T-shirt/top", "trouser",   "pullover", "dress",
                                           "coat",        "sandal",    "shirt",    "sneaker",
                                           "bag",         "ankle boot"};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void die(const char *what, kd_status st)
{
    fprintf(stderr, "omitted_class: %s: %s (%s)\n", what, kd_strerror(st), kd_last_error());
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

static kd_dataset *load(const char *prefix)
{
    char images[1024], labels[1024];
    snprintf(images, sizeof images, "%s-images-idx3-ubyte.gz", prefix);
    snprintf(labels, sizeof labels, "%s-labels-idx1-ubyte.gz", prefix);
    kd_dataset *d;
    if (kd_dataset_load_idx(images, labels, &d) != KD_OK) {
        fprintf(stderr,
                "omitted_class: cannot read %s: %s\n(install Debian's "
                "dataset-fashion-mnist, or pass --train/--test)\n",
                images, kd_last_error());
        exit(1);
    }
    return d;
}

/* The examples a run trains on: indices into the training set, shuffled by the host. */
typedef struct subset {
    const float *x;
    const int32_t *y;
    int64_t *idx, n;
} subset;

static void shuffle(subset *s, uint64_t seed)
{
    uint64_t r = seed * 0x9E3779B97F4A7C15ULL + 1;
    for (int64_t i = s->n - 1; i > 0; i--) {
        r ^= r >> 12;
        r ^= r << 25;
        r ^= r >> 27;
        int64_t j = (int64_t)((r * 2685821657736338717ULL) % (uint64_t)(i + 1)), t = s->idx[i];
        s->idx[i] = s->idx[j];
        s->idx[j] = t;
    }
}

/* Trains a fresh model of spec on s: labels alone with teacher_logits NULL, else Hinton's KD
 * from those cached logits ([training set][classes]). */
static kd_model *train(const char *spec, subset *s, const float *teacher_logits, float t,
                       float alpha, int epochs, uint64_t seed, double *seconds)
{
    kd_model *m;
    kd_loss *loss;
    kd_optimizer *opt;
    kd_trainer *tr;
    CHECK(kd_model_create(spec, seed, &m));
    CHECK(kd_loss_create(KD_LOSS_HINTON, &loss));
    CHECK(kd_loss_set_float(loss, KD_LOSS_TEMPERATURE, t));
    CHECK(kd_loss_set_float(loss, KD_LOSS_ALPHA, teacher_logits != NULL ? alpha : 0.0f));
    CHECK(kd_optimizer_create(KD_OPTIMIZER_SGD, m, &opt));
    CHECK(kd_optimizer_set_float(opt, KD_OPT_LEARNING_RATE, 0.05f));
    CHECK(kd_optimizer_set_float(opt, KD_OPT_MOMENTUM, 0.9f));
    CHECK(kd_optimizer_set_int(opt, KD_OPT_SCHEDULE, KD_SCHEDULE_COSINE));
    CHECK(kd_optimizer_set_int(opt, KD_OPT_TOTAL_STEPS, epochs * ((s->n + BATCH - 1) / BATCH)));
    CHECK(kd_trainer_create(m, loss, opt, &tr));
    float *x = xmalloc(sizeof(float) * BATCH * 784), z[BATCH * CLASSES], value;
    int32_t y[BATCH];
    double start = now();
    for (int e = 0; e < epochs; e++) {
        shuffle(s, seed + 1 + (uint64_t)e);
        for (int64_t b = 0; b < s->n; b += BATCH) {
            int64_t rows = s->n - b < BATCH ? s->n - b : BATCH;
            for (int64_t i = 0; i < rows; i++) {
                int64_t k = s->idx[b + i];
                memcpy(x + i * 784, s->x + k * 784, sizeof(float) * 784);
                y[i] = s->y[k];
                if (teacher_logits != NULL)
                    memcpy(z + i * CLASSES, teacher_logits + k * CLASSES, sizeof(float) * CLASSES);
            }
            CHECK(kd_trainer_step(tr, x, y, teacher_logits != NULL ? z : NULL, rows, &value));
        }
    }
    *seconds = now() - start;
    free(x);
    kd_trainer_destroy(tr);
    kd_optimizer_destroy(opt);
    kd_loss_destroy(loss);
    return m;
}

/* The teacher, trained on all 60000 images; loaded from methods_distill's file for the same seed
 * and epochs when that exists, else from this program's own earlier run. */
static kd_model *teacher(const kd_dataset *train_set, int epochs, uint64_t seed)
{
    int64_t n;
    CHECK(kd_dataset_size(train_set, &n));
    char path[256];
    kd_model *m;
    for (int own = 0; own < 2; own++) {
        snprintf(path, sizeof path, "/tmp/libkd_%s_s%llu_e%d_n%lld.safetensors",
                 own ? "omitted_teacher" : "methods_mlp1", (unsigned long long)seed, epochs,
                 (long long)n);
        if (kd_model_load(path, &m) != KD_OK) continue;
        if (strcmp(kd_model_spec(m), TEACHER) == 0) {
            printf("teacher loaded from %s\n", path);
            return m;
        }
        kd_model_destroy(m);
    }
    subset all = {kd_dataset_images(train_set), kd_dataset_labels(train_set),
                  xmalloc(sizeof(int64_t) * (size_t)n), n};
    for (int64_t i = 0; i < n; i++) all.idx[i] = i;
    double sec;
    m = train(TEACHER, &all, NULL, 1.0f, 0.0f, epochs, seed, &sec);
    free(all.idx);
    CHECK(kd_model_save(m, path));
    printf("teacher trained for %d epochs in %.0f s (saved to %s)\n", epochs, sec, path);
    return m;
}

/* Test accuracy overall and on class k, from the confusion matrix. */
static void score(kd_model *m, const kd_dataset *test, int k, double *overall, double *on_k)
{
    int64_t n, correct, confusion[CLASSES * CLASSES] = {0}, total_k = 0;
    CHECK(kd_dataset_size(test, &n));
    CHECK(kd_model_evaluate(m, kd_dataset_images(test), kd_dataset_labels(test), n, 1000, &correct,
                            confusion));
    for (int c = 0; c < CLASSES; c++) total_k += confusion[k * CLASSES + c];
    *overall = 100.0 * (double)correct / (double)n;
    *on_k = 100.0 * (double)confusion[k * CLASSES + k] / (double)total_k;
}

/* For each delta of the grid, the share of held-out predictions that are class k and the held-out
 * accuracy, from logits z [HELD_OUT][classes] computed once. */
static void sweep(const float *z, const int32_t *labels, int k, float delta, double *share,
                  double *acc)
{
    int64_t hits = 0, right = 0;
    for (int64_t i = 0; i < HELD_OUT; i++) {
        int best = 0;
        for (int c = 1; c < CLASSES; c++) {
            float a = z[i * CLASSES + c] + (c == k ? delta : 0.0f);
            float b = z[i * CLASSES + best] + (best == k ? delta : 0.0f);
            if (a > b) best = c;
        }
        hits += best == k;
        right += best == labels[i];
    }
    *share = (double)hits / HELD_OUT;
    *acc = (double)right / HELD_OUT;
}

/* Chooses delta on the held-out images: the smallest that reaches a 10% share (no labels), and
 * the one with the best held-out accuracy (labels, for reference). */
static void choose(kd_model *m, const float *x, const int32_t *labels, int k, float *by_share,
                   float *by_accuracy)
{
    float *z = xmalloc(sizeof(float) * HELD_OUT * CLASSES);
    CHECK(kd_model_predict(m, x, HELD_OUT, z));
    double best_acc = -1.0, share, acc;
    *by_share = -1.0f;
    for (int step = 0; step <= 600; step++) {
        float delta = 0.05f * (float)step;
        sweep(z, labels, k, delta, &share, &acc);
        if (*by_share < 0.0f && share >= 0.10) *by_share = delta;
        if (acc > best_acc) {
            best_acc = acc;
            *by_accuracy = delta;
        }
    }
    if (*by_share < 0.0f) *by_share = 30.0f; /* never reached: the largest tried */
    free(z);
}

typedef struct line {
    char what[64];
    float delta;
    double overall, on_k;
} line;

static line lines[8];
static int nlines;

static void add(const char *what, kd_model *m, float delta, const kd_dataset *test, int k)
{
    line *l = &lines[nlines++];
    snprintf(l->what, sizeof l->what, "%s", what);
    l->delta = delta;
    CHECK(kd_model_adjust_output_bias(m, k, delta));
    score(m, test, k, &l->overall, &l->on_k);
    CHECK(kd_model_adjust_output_bias(m, k, -delta)); /* back as trained */
    printf("  %-44s delta %5.2f  test: class %d %6.2f%%, all %6.2f%%\n", l->what, (double)delta, k,
           l->on_k, l->overall);
    fflush(stdout);
}

/* The student's rows of the table: as trained, corrected by share, corrected by accuracy. */
static void evaluate(const char *name, kd_model *m, const float *hx, const int32_t *hy,
                     const kd_dataset *test, int k)
{
    float by_share = 0.0f, by_acc = 0.0f;
    char what[64];
    choose(m, hx, hy, k, &by_share, &by_acc);
    snprintf(what, sizeof what, "%s", name);
    add(what, m, 0.0f, test, k);
    snprintf(what, sizeof what, "%s + bias (10%% share, no labels)", name);
    add(what, m, by_share, test, k);
    snprintf(what, sizeof what, "%s + bias (best held-out acc.)", name);
    add(what, m, by_acc, test, k);
}

int main(int argc, char **argv)
{
    int k = 3, epochs = 5, teacher_epochs = 5;
    uint64_t seed = 1;
    const char *train_prefix = "/usr/share/datasets/fashion-mnist/train";
    const char *test_prefix = "/usr/share/datasets/fashion-mnist/t10k";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--omit") == 0 && i + 1 < argc)
            k = atoi(argv[++i]);
        else if (strcmp(argv[i], "--epochs") == 0 && i + 1 < argc)
            epochs = atoi(argv[++i]);
        else if (strcmp(argv[i], "--teacher-epochs") == 0 && i + 1 < argc)
            teacher_epochs = atoi(argv[++i]);
        else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--train") == 0 && i + 1 < argc)
            train_prefix = argv[++i];
        else if (strcmp(argv[i], "--test") == 0 && i + 1 < argc)
            test_prefix = argv[++i];
        else {
            fprintf(stderr, "usage: omitted_class [--omit K] [--epochs N] [--teacher-epochs N] "
                            "[--seed S] [--train PREFIX] [--test PREFIX]\n");
            return 2;
        }
    }
    if (k < 0 || k >= CLASSES || epochs < 1 || teacher_epochs < 1) {
        fprintf(stderr, "omitted_class: --omit is 0..9, epochs 1 or more\n");
        return 2;
    }
    kd_dataset *train_set = load(train_prefix), *test = load(test_prefix);
    int64_t n, c, h, w;
    CHECK(kd_dataset_size(train_set, &n));
    CHECK(kd_dataset_shape(train_set, &c, &h, &w));
    if (c * h * w != 784 || n <= HELD_OUT) {
        fprintf(stderr, "omitted_class: expects 28x28 images and more than %d of them\n", HELD_OUT);
        return 1;
    }
    const float *x = kd_dataset_images(train_set);
    const int32_t *y = kd_dataset_labels(train_set);
    printf("libkd %s; Fashion-MNIST; class %d (%s) left out of the transfer set; students %d "
           "epochs, batch %d, SGD momentum 0.9, lr 0.05 cosine\n",
           kd_version(), k, names[k], epochs, BATCH);

    kd_model *t = teacher(train_set, teacher_epochs, seed + 1);
    double overall, on_k;
    score(t, test, k, &overall, &on_k);
    printf("teacher 1200-1200 (all classes): test class %d %.2f%%, all %.2f%%\n", k, on_k, overall);

    /* The transfer set: the first n - HELD_OUT images without class k. */
    subset s = {x, y, xmalloc(sizeof(int64_t) * (size_t)n), 0};
    for (int64_t i = 0; i < n - HELD_OUT; i++)
        if (y[i] != k) s.idx[s.n++] = i;
    printf("transfer set: %lld images, none of class %d; held out: %d images (all classes)\n",
           (long long)s.n, k, HELD_OUT);
    float *tz = xmalloc(sizeof(float) * (size_t)(n * CLASSES));
    for (int64_t i = 0; i < n; i += 1000)
        CHECK(kd_model_predict(t, x + i * 784, n - i < 1000 ? n - i : 1000, tz + i * CLASSES));

    const float *hx = x + (n - HELD_OUT) * 784;
    const int32_t *hy = y + (n - HELD_OUT);
    double sec;
    kd_model *alone = train(STUDENT, &s, NULL, 1.0f, 0.0f, epochs, seed + 10, &sec);
    printf("\nstudent 300-300 on the labels alone (%.0f s)\n", sec);
    evaluate("labels alone", alone, hx, hy, test, k);
    kd_model *kd = train(STUDENT, &s, tz, 8.0f, 0.9f, epochs, seed + 10, &sec);
    printf("\nstudent 300-300 distilled, T = 8, alpha = 0.9 (%.0f s)\n", sec);
    evaluate("distilled", kd, hx, hy, test, k);

    printf("\n%-46s %6s %12s %10s\n", "student", "delta", "test class", "test all");
    for (int i = 0; i < nlines; i++)
        printf("%-46s %6.2f %11.2f%% %9.2f%%\n", lines[i].what, (double)lines[i].delta,
               lines[i].on_k, lines[i].overall);
    free(tz);
    free(s.idx);
    kd_model_destroy(alone);
    kd_model_destroy(kd);
    kd_model_destroy(t);
    kd_dataset_destroy(train_set);
    kd_dataset_destroy(test);
    return 0;
}
