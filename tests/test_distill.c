/* End to end on real data: a teacher trained and distilled into a smaller student on the committed
 * Fashion-MNIST subset, through the public API only; and checkpoints that resume bit for bit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn/model.h"
#include "testutil.h"

#define DATA(f) KDT_DATA "/fmnist-" f
#define BATCH 64

static kd_dataset *load(const char *images, const char *labels)
{
    kd_dataset *d;
    ck_assert_msg(kd_dataset_load_idx(images, labels, &d) == KD_OK, "%s", kd_last_error());
    return d;
}

typedef struct setup {
    kd_model *m;
    kd_loss *loss;
    kd_optimizer *opt;
    kd_trainer *t;
    kd_batcher *b;
} setup;

static setup make(const char *spec, const kd_dataset *train, float t, float alpha, uint64_t seed)
{
    setup s;
    ck_assert_int_eq(kd_model_create(spec, seed, &s.m), KD_OK);
    ck_assert_int_eq(kd_loss_create(KD_LOSS_HINTON, &s.loss), KD_OK);
    ck_assert_int_eq(kd_loss_set_float(s.loss, KD_LOSS_TEMPERATURE, t), KD_OK);
    ck_assert_int_eq(kd_loss_set_float(s.loss, KD_LOSS_ALPHA, alpha), KD_OK);
    ck_assert_int_eq(kd_optimizer_create(KD_OPTIMIZER_SGD, s.m, &s.opt), KD_OK);
    ck_assert_int_eq(kd_optimizer_set_float(s.opt, KD_OPT_LEARNING_RATE, 0.05f), KD_OK);
    ck_assert_int_eq(kd_optimizer_set_float(s.opt, KD_OPT_MOMENTUM, 0.9f), KD_OK);
    ck_assert_int_eq(kd_trainer_create(s.m, s.loss, s.opt, &s.t), KD_OK);
    ck_assert_int_eq(kd_batcher_create(train, BATCH, seed, &s.b), KD_OK);
    return s;
}

static void unmake(setup *s, int keep_model)
{
    kd_batcher_destroy(s->b);
    kd_trainer_destroy(s->t);
    kd_optimizer_destroy(s->opt);
    kd_loss_destroy(s->loss);
    if (!keep_model) kd_model_destroy(s->m);
}

static void run_epochs(setup *s, int n, int train)
{
    float x[BATCH * 784];
    int32_t y[BATCH];
    int64_t rows;
    for (int e = 0; e < n; e++)
        for (;;) {
            ck_assert_int_eq(kd_batcher_next(s->b, x, y, &rows), KD_OK);
            if (rows == 0) break;
            float loss;
            if (train)
                ck_assert_msg(kd_trainer_step(s->t, x, y, NULL, rows, &loss) == KD_OK, "%s",
                              kd_last_error());
        }
}

static void epochs(setup *s, int n) { run_epochs(s, n, 1); }

static double accuracy(kd_model *m, const kd_dataset *test)
{
    int64_t n, correct;
    ck_assert_int_eq(kd_dataset_size(test, &n), KD_OK);
    ck_assert_int_eq(kd_model_evaluate(m, kd_dataset_images(test), kd_dataset_labels(test), n, 100,
                                       &correct, NULL),
                     KD_OK);
    return (double)correct / (double)n;
}

START_TEST(student_learns_from_teacher)
{
    kd_dataset *train =
        load(DATA("train-2000-images-idx3-ubyte.gz"), DATA("train-2000-labels-idx1-ubyte.gz"));
    kd_dataset *test =
        load(DATA("test-500-images-idx3-ubyte.gz"), DATA("test-500-labels-idx1-ubyte.gz"));
    setup teacher = make("input 784 | dense 256 | relu | dense 10", train, 1, 0, 1);
    epochs(&teacher, 5);
    double ta = accuracy(teacher.m, test);
    unmake(&teacher, 1);
    /* the student sees the teacher's soft targets only: no labels at all */
    setup student = make("input 784 | dense 32 | relu | dense 10", train, 4, 1, 2);
    ck_assert_int_eq(kd_trainer_add_teacher(student.t, teacher.m, 1.0f), KD_OK);
    epochs(&student, 5);
    double sa = accuracy(student.m, test);
    printf("teacher %.1f%%, student distilled without labels %.1f%% (chance 10%%)\n", 100 * ta,
           100 * sa);
    ck_assert_msg(ta > 0.70, "teacher reached only %.3f", ta);
    ck_assert_msg(sa > 0.65, "student reached only %.3f", sa);
    unmake(&student, 0);
    kd_model_destroy(teacher.m);
    kd_dataset_destroy(train);
    kd_dataset_destroy(test);
}
END_TEST

/* Two epochs, a checkpoint, two more; against a fresh trainer that loads the checkpoint and runs the
 * same two: the weights must be bit-identical (momentum and dropout streams included). */
START_TEST(resume_is_exact)
{
    kd_dataset *train =
        load(DATA("train-2000-images-idx3-ubyte.gz"), DATA("train-2000-labels-idx1-ubyte.gz"));
    const char *spec = "input 784 | dense 64 | relu | dropout 0.3 | dense 10";
    char path[256];
    snprintf(path, sizeof path, "%s/ckpt.safetensors", kdt_tmpdir());
    setup a = make(spec, train, 1, 0, 7);
    epochs(&a, 2);
    ck_assert_int_eq(kd_trainer_save(a.t, path), KD_OK);
    epochs(&a, 2);

    setup b = make(spec, train, 1, 0, 99); /* other initial weights: the checkpoint replaces them */
    ck_assert_msg(kd_trainer_load(b.t, path) == KD_OK, "%s", kd_last_error());
    int64_t step;
    ck_assert_int_eq(kd_optimizer_get_int(b.opt, KD_OPT_STEP, &step), KD_OK);
    ck_assert_int_eq(step, 2 * ((2000 + BATCH - 1) / BATCH));
    /* the batcher replays epochs 2 and 3: its order depends only on (seed, epoch) */
    kd_batcher_destroy(b.b);
    ck_assert_int_eq(kd_batcher_create(train, BATCH, 7, &b.b), KD_OK);
    run_epochs(&b, 2, 0); /* epochs 0 and 1 went into the checkpoint */
    run_epochs(&b, 2, 1);
    const kdi_param_list *pa = kdi_model_params(a.m), *pb = kdi_model_params(b.m);
    for (int32_t i = 0; i < pa->n; i++)
        ck_assert_msg(memcmp(pa->items[i].p->value, pb->items[i].p->value,
                             sizeof(float) * (size_t)pa->items[i].p->count) == 0,
                      "%s differs after resume", pa->items[i].name);
    /* a checkpoint of another architecture is refused and changes nothing */
    setup c = make("input 784 | dense 32 | relu | dense 10", train, 1, 0, 3);
    ck_assert_int_eq(kd_trainer_load(c.t, path), KD_ERR_SHAPE);
    unmake(&c, 0);
    unmake(&b, 0);
    unmake(&a, 0);
    kd_dataset_destroy(train);
    unlink(path);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("distill");
    TCase *t = tcase_create("distill");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, student_learns_from_teacher);
    tcase_add_test(t, resume_is_exact);
    suite_add_tcase(s, t);
    return kdt_run(s);
}
