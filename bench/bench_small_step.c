/* bench_small_step: the fixed cost of kd_trainer_step at small batches, where the work around the
 * GEMMs (argument checks, input scans, copies, the loss and the optimizer) is most of a step.
 *
 * A 784-256-10 teacher and a 784-64-10 student, Hinton's loss, SGD with momentum, at batch 1, 8
 * and 32, with a live teacher and with cached teacher logits. Prints microseconds per step. For a
 * figure that does not depend on the machine's load, count instructions instead:
 *   OPENBLAS_NUM_THREADS=1 valgrind --tool=callgrind build/bench/bench_small_step 200
 * The optional argument is the number of timed steps per row (default 20000 / batch).
 * Not a test: no pass or fail. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "kd.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void check(kd_status st, const char *what)
{
    if (st == KD_OK) return;
    fprintf(stderr, "bench: %s: %s\n", what, kd_last_error());
    exit(1);
}

int main(int argc, char **argv)
{
    const int batches[] = {1, 8, 32};
    int fixed = argc > 1 ? atoi(argv[1]) : 0;
    printf("libkd %s, kernels %s\n", kd_version(), kd_kernels_name());
    printf("%6s %-8s %12s\n", "batch", "teacher", "us/step");
    kd_model *teacher, *student;
    kd_loss *loss;
    kd_optimizer *opt;
    kd_trainer *tr;
    check(kd_model_create("input 784 | dense 256 | relu | dense 10", 1, &teacher), "teacher");
    check(kd_model_create("input 784 | dense 64 | relu | dense 10", 2, &student), "student");
    check(kd_loss_create(KD_LOSS_HINTON, &loss), "loss");
    check(kd_optimizer_create(KD_OPTIMIZER_SGD, student, &opt), "optimizer");
    check(kd_optimizer_set_float(opt, KD_OPT_MOMENTUM, 0.9f), "momentum");
    check(kd_trainer_create(student, loss, opt, &tr), "trainer");
    check(kd_trainer_add_teacher(tr, teacher, 1.0f), "teacher");
    float *x = malloc(sizeof(float) * 32 * 784), *logits = malloc(sizeof(float) * 32 * 10), value;
    int32_t labels[32];
    for (int i = 0; i < 32 * 784; i++) x[i] = (float)((i * 2654435761u) % 1000) / 1000.0f;
    for (int i = 0; i < 32 * 10; i++) logits[i] = (float)(i % 7) - 3.0f;
    for (int i = 0; i < 32; i++) labels[i] = i % 10;
    for (size_t bi = 0; bi < sizeof batches / sizeof batches[0]; bi++) {
        int batch = batches[bi], reps = fixed > 0 ? fixed : 20000 / batch;
        for (int live = 1; live >= 0; live--) {
            const float *cached = live ? NULL : logits;
            for (int i = 0; i < 3; i++)
                check(kd_trainer_step(tr, x, labels, cached, batch, &value), "step");
            double t0 = now();
            for (int i = 0; i < reps; i++)
                check(kd_trainer_step(tr, x, labels, cached, batch, &value), "step");
            printf("%6d %-8s %12.2f\n", batch, live ? "live" : "cached", 1e6 * (now() - t0) / reps);
        }
    }
    free(x);
    free(logits);
    kd_trainer_destroy(tr);
    kd_optimizer_destroy(opt);
    kd_loss_destroy(loss);
    kd_model_destroy(student);
    kd_model_destroy(teacher);
    return 0;
}
