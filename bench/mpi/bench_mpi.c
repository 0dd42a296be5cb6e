/* One distillation epoch over MPI ranks (issue 15): Fashion-MNIST's 60,000 training images in
 * global batches of 128, each rank stepping on its slice through kd_mpi. bench/mpi/run.sh runs
 * it with 1 and 2 ranks of one thread each and prints the speed-up.
 *
 * usage: mpirun -np N bench_mpi [PREFIX] [mlp|cnn|all] [BUCKET] [SHARE] [strong|weak]
 *   PREFIX: Fashion-MNIST's IDX prefix (default /usr/share/datasets/fashion-mnist/train)
 *   mlp, mlp_cached, cnn: time that run alone (default all)
 *   BUCKET: KD_TRAINER_BUCKET_FLOATS (default the library's; -1 too; 0: one sum after the
 *           backward)
 *   SHARE: with one rank, step on 1/SHARE of each batch (a diagnosis: the work of one of SHARE
 *          ranks, without their all-reduce)
 *   strong (default): global batches of 128, a slice of each a rank (the 1-process run's
 *          training, to rounding); weak: 128 images a rank, global batches of 128 N (as
 *          DistributedDataParallel is mostly run: each process keeps its batch size), so N
 *          ranks take 1/N of the steps of an epoch */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kd.h"
#include "kd_mpi.h"

#define BATCH 128

static int rank, world;
static int64_t bucket = -1;
static int share = 1;
static int weak;

/* Where a rank's epoch goes: the time inside the all-reduce (the transfer and the wait for the
 * other ranks), its calls and floats. */
static double in_sum;
static int64_t sums, summed;

#define CHECK(call)                                                                                \
    do {                                                                                           \
        kd_status st_ = (call);                                                                    \
        if (st_ != KD_OK) {                                                                        \
            fprintf(stderr, "rank %d: %s: %s\n", rank, #call, kd_last_error());                    \
            MPI_Abort(MPI_COMM_WORLD, 1);                                                          \
        }                                                                                          \
    } while (0)

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static kd_status timed_allreduce(float *data, int64_t count, void *user)
{
    double t0 = now();
    kd_status st = kd_mpi_allreduce(data, count, user);
    in_sum += now() - t0;
    sums++;
    summed += count;
    return st;
}

/* The teacher's logits of every example of d, [n][classes], by one untimed pass: a cached teacher
 * (kd distill's logits cache), each rank gathers its slice's rows by the batcher's indices. */
static float *teacher_logits(const kd_dataset *d, kd_model *teacher, int64_t in, int64_t *classes)
{
    int64_t n, rows;
    kd_dataset_size(d, &n);
    CHECK(kd_model_output_size(teacher, classes));
    float *all = malloc(sizeof(float) * (size_t)(n * *classes)),
          *x = malloc(sizeof(float) * (size_t)(BATCH * in)),
          *y = malloc(sizeof(float) * (size_t)(BATCH * *classes));
    kd_batcher *b;
    CHECK(kd_batcher_create(d, BATCH, 1, &b));
    for (;;) {
        CHECK(kd_batcher_next(b, x, NULL, &rows));
        if (rows == 0) break;
        const int64_t *idx;
        CHECK(kd_batcher_indices(b, &idx, &rows));
        CHECK(kd_model_predict(teacher, x, rows, y));
        for (int64_t i = 0; i < rows; i++)
            memcpy(all + idx[i] * *classes, y + i * *classes, sizeof(float) * (size_t)*classes);
    }
    kd_batcher_destroy(b);
    free(x);
    free(y);
    return all;
}

/* One epoch of teacher -> student distillation (the teacher run, or its logits cached);
 * seconds on rank 0's clock. */
static double epoch(const kd_dataset *d, const char *tspec, const char *sspec, int sync_bn,
                    int cached, int64_t *steps)
{
    kd_model *teacher, *student;
    kd_loss *loss;
    kd_optimizer *opt;
    kd_trainer *t;
    kd_batcher *b;
    CHECK(kd_model_create(tspec, 1, &teacher));
    CHECK(kd_model_create(sspec, 2, &student));
    CHECK(kd_loss_create(KD_LOSS_HINTON, &loss));
    CHECK(kd_optimizer_create(KD_OPTIMIZER_SGD, student, &opt));
    CHECK(kd_optimizer_set_float(opt, KD_OPT_LEARNING_RATE, 0.05f));
    CHECK(kd_optimizer_set_float(opt, KD_OPT_MOMENTUM, 0.9f));
    CHECK(kd_trainer_create(student, loss, opt, &t));
    CHECK(kd_trainer_add_teacher(t, teacher, 1.0f));
    if (world > 1) { /* one rank is a lone trainer: the baseline pays for no all-reduce */
        /* kd_mpi_attach's all-reduce, timed */
        CHECK(kd_trainer_set_allreduce(t, timed_allreduce, NULL, rank, world));
        if (sync_bn) CHECK(kd_trainer_set_int(t, KD_TRAINER_SYNC_BATCHNORM, 1));
    }
    if (bucket >= 0) CHECK(kd_trainer_set_int(t, KD_TRAINER_BUCKET_FLOATS, bucket));
    CHECK(kd_trainer_broadcast(t));
    int64_t in, classes = 0;
    kd_model_input_size(student, &in);
    float *all = cached ? teacher_logits(d, teacher, in, &classes) : NULL;
    float *slice =
        cached ? malloc(sizeof(float) * (size_t)(BATCH * (weak ? world : 1) * classes)) : NULL;
    int64_t global = weak ? (int64_t)BATCH * world : BATCH;
    float *x = malloc(sizeof(float) * (size_t)(global * in));
    int32_t *labels = malloc(sizeof(int32_t) * (size_t)global);
    CHECK(kd_batcher_create(d, global, 7, &b));
    MPI_Barrier(MPI_COMM_WORLD);
    in_sum = 0.0;
    sums = summed = 0;
    double t0 = now();
    int64_t rows;
    *steps = 0;
    for (;;) {
        CHECK(kd_batcher_next(b, x, labels, &rows));
        if (rows == 0) break;
        int parts = world > 1 ? world : share;
        int64_t lo = (int64_t)rank * rows / parts, hi = (int64_t)(rank + 1) * rows / parts;
        float value;
        if (cached) {
            const int64_t *idx;
            CHECK(kd_batcher_indices(b, &idx, &rows));
            for (int64_t i = lo; i < hi; i++)
                memcpy(slice + (i - lo) * classes, all + idx[i] * classes,
                       sizeof(float) * (size_t)classes);
        }
        CHECK(kd_trainer_step(t, x + lo * in, labels + lo, slice, hi - lo, &value));
        ++*steps;
    }
    MPI_Barrier(MPI_COMM_WORLD);
    double seconds = now() - t0;
    kd_batcher_destroy(b);
    free(x);
    free(labels);
    free(all);
    free(slice);
    kd_trainer_destroy(t);
    kd_optimizer_destroy(opt);
    kd_loss_destroy(loss);
    kd_model_destroy(student);
    kd_model_destroy(teacher);
    return seconds;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    const char *prefix = argc > 1 ? argv[1] : "/usr/share/datasets/fashion-mnist/train";
    kd_dataset *d;
    CHECK(kd_dataset_load_idx_prefix(prefix, &d));
    int64_t n;
    kd_dataset_size(d, &n);
    static const struct {
        const char *key, *name, *teacher, *student;
        int sync_bn, cached;
    } runs[] = {
        {"mlp", "MLP 784-1200-1200-10 -> 784-800-800-10, live teacher",
         "input 784 | dense 1200 | relu | dense 1200 | relu | dense 10",
         "input 784 | dense 800 | relu | dense 800 | relu | dense 10", 0, 0},
        {"mlp_cached", "the same MLP pair, teacher logits cached",
         "input 784 | dense 1200 | relu | dense 1200 | relu | dense 10",
         "input 784 | dense 800 | relu | dense 800 | relu | dense 10", 0, 1},
        {"cnn", "small CNN + sync bn, live MLP teacher",
         "input 1x28x28 | flatten | dense 1200 | relu | dense 10",
         "input 1x28x28 | conv 16 3 pad=1 | bn | relu | maxpool 2 | conv 32 3 pad=1 | bn | relu | "
         "maxpool 2 | flatten | dense 10",
         1, 0},
    };
    const char *only = argc > 2 && strcmp(argv[2], "all") != 0 ? argv[2] : NULL;
    if (argc > 3) bucket = atoll(argv[3]);
    if (argc > 4) share = atoi(argv[4]) > 0 ? atoi(argv[4]) : 1;
    weak = argc > 5 && strcmp(argv[5], "weak") == 0;
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        if (only != NULL && strcmp(runs[i].key, only) != 0) continue;
        int64_t steps;
        double s =
            epoch(d, runs[i].teacher, runs[i].student, runs[i].sync_bn, runs[i].cached, &steps);
        if (rank == 0)
            printf("%-56s ranks %d: %7.2f s an epoch (%lld steps of %d), %8.0f images/s\n",
                   runs[i].name, world, s, (long long)steps, weak ? BATCH * world : BATCH,
                   (double)n / s);
        if (world > 1)
            fprintf(
                stderr,
                "  %s, rank %d: %.2f s (%.0f%%) inside %lld all-reduce calls (%.2f MB a step in "
                "all; "
                "the transfer and the wait for the other ranks)\n",
                runs[i].key, rank, in_sum, 100.0 * in_sum / s, (long long)sums,
                4e-6 * (double)summed / (double)steps);
    }
    kd_dataset_destroy(d);
    MPI_Finalize();
    return 0;
}
