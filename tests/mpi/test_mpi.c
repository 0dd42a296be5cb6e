/* Data-parallel training over MPI equals one process on the global batch (issue 15).
 *
 * Run by tests/mpi/run.sh under mpirun with 2 and 3 ranks. Every rank builds the same models from
 * the same seeds and steps on its slice of each global batch of 13 (slices of unequal sizes with
 * 2 and 3 ranks); rank 0 also trains a lone copy on the whole batch. Checked: the loss of every
 * step and the final students' outputs (eval mode, so batch norm's running statistics count)
 * agree within TOL; every rank's student is bitwise the same.
 *
 * "kill DIR" mode: trains until killed, saving a checkpoint (kd_trainer_save, atomic) each step
 * and writing each rank's pid to DIR, for the killed-rank test. */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kd.h"
#include "kd_mpi.h"

#define BATCH 13
#define STEPS 6
#define TOL 2e-5 /* |parallel - lone| <= TOL * (1 + |lone|): only the order of float sums differs */

static int rank, world;

#define CHECK(call)                                                                                \
    do {                                                                                           \
        kd_status st_ = (call);                                                                    \
        if (st_ != KD_OK) {                                                                        \
            fprintf(stderr, "rank %d: %s failed: %s\n", rank, #call, kd_last_error());             \
            MPI_Abort(MPI_COMM_WORLD, 2);                                                          \
        }                                                                                          \
    } while (0)

typedef struct run {
    kd_model *teacher, *student;
    kd_loss *loss;
    kd_optimizer *opt;
    kd_trainer *t;
} run;

static void make(run *r, const char *tspec, const char *sspec, int parallel, int sync_bn,
                 int cached)
{
    CHECK(kd_model_create(tspec, 7, &r->teacher));
    CHECK(kd_model_create(sspec, 11, &r->student));
    CHECK(kd_loss_create(KD_LOSS_HINTON, &r->loss));
    CHECK(kd_loss_set_float(r->loss, KD_LOSS_TEMPERATURE, 4.0f));
    CHECK(kd_loss_set_float(r->loss, KD_LOSS_ALPHA, 0.7f));
    CHECK(kd_optimizer_create(KD_OPTIMIZER_SGD, r->student, &r->opt));
    CHECK(kd_optimizer_set_float(r->opt, KD_OPT_LEARNING_RATE, 0.1f));
    CHECK(kd_optimizer_set_float(r->opt, KD_OPT_MOMENTUM, 0.9f));
    CHECK(kd_optimizer_set_float(r->opt, KD_OPT_CLIP_NORM, 5.0f));
    CHECK(kd_trainer_create(r->student, r->loss, r->opt, &r->t));
    if (!cached) CHECK(kd_trainer_add_teacher(r->t, r->teacher, 1.0f));
    if (parallel) {
        CHECK(kd_mpi_attach(r->t, NULL));
        if (sync_bn) CHECK(kd_trainer_set_int(r->t, KD_TRAINER_SYNC_BATCHNORM, 1));
        CHECK(kd_trainer_broadcast(r->t));
    }
}

static void destroy(run *r)
{
    kd_trainer_destroy(r->t);
    kd_optimizer_destroy(r->opt);
    kd_loss_destroy(r->loss);
    kd_model_destroy(r->student);
    kd_model_destroy(r->teacher);
}

/* The same pseudo-random data on every rank. */
static float uniform(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((*s >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

static int one_case(const char *name, const char *tspec, const char *sspec, int sync_bn, int cached)
{
    int64_t in, classes;
    run par = {0}, lone = {0};
    make(&par, tspec, sspec, 1, sync_bn, cached);
    if (rank == 0) make(&lone, tspec, sspec, 0, 0, cached);
    kd_model_input_size(par.student, &in);
    kd_model_output_size(par.student, &classes);
    float *x = malloc(sizeof(float) * (size_t)(BATCH * in));
    float *z = malloc(sizeof(float) * (size_t)(BATCH * classes));
    float *out = malloc(sizeof(float) * (size_t)(BATCH * classes));
    float *ref = malloc(sizeof(float) * (size_t)(BATCH * classes));
    float *hi = malloc(sizeof(float) * (size_t)(BATCH * classes));
    int32_t labels[BATCH];
    int64_t lo_row = (int64_t)rank * BATCH / world, hi_row = (int64_t)(rank + 1) * BATCH / world;
    uint64_t seed = 42;
    double worst_loss = 0.0;
    int bad = 0;
    for (int s = 0; s < STEPS; s++) {
        for (int64_t i = 0; i < BATCH * in; i++) x[i] = uniform(&seed);
        for (int i = 0; i < BATCH; i++)
            labels[i] =
                (int32_t)((uniform(&seed) + 1.0f) * 0.5f * (float)classes) % (int32_t)classes;
        if (cached) CHECK(kd_model_predict(par.teacher, x, BATCH, z));
        float lp = 0.0f, ll = 0.0f;
        CHECK(kd_trainer_step(par.t, x + lo_row * in, labels + lo_row,
                              cached ? z + lo_row * classes : NULL, hi_row - lo_row, &lp));
        if (rank == 0) {
            CHECK(kd_trainer_step(lone.t, x, labels, cached ? z : NULL, BATCH, &ll));
            double d = fabs((double)lp - ll) / (1.0 + fabs((double)ll));
            worst_loss = d > worst_loss ? d : worst_loss;
            if (d > TOL) bad = 1;
        }
    }
    for (int64_t i = 0; i < BATCH * in; i++) x[i] = uniform(&seed);
    CHECK(kd_model_predict(par.student, x, BATCH, out));
    /* Bitwise the same on every rank: the max and the min over the ranks equal this rank's. */
    memcpy(hi, out, sizeof(float) * (size_t)(BATCH * classes));
    memcpy(ref, out, sizeof(float) * (size_t)(BATCH * classes));
    MPI_Allreduce(MPI_IN_PLACE, hi, (int)(BATCH * classes), MPI_FLOAT, MPI_MAX, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, ref, (int)(BATCH * classes), MPI_FLOAT, MPI_MIN, MPI_COMM_WORLD);
    int same = memcmp(hi, ref, sizeof(float) * (size_t)(BATCH * classes)) == 0;
    if (rank == 0) {
        CHECK(kd_model_predict(lone.student, x, BATCH, ref));
        double worst = 0.0;
        for (int64_t i = 0; i < BATCH * classes; i++) {
            double d = fabs((double)out[i] - ref[i]) / (1.0 + fabs((double)ref[i]));
            worst = d > worst ? d : worst;
        }
        if (worst > TOL || !same) bad = 1;
        printf("%-28s %d ranks: %s (loss %.2g, outputs %.2g relative; ranks %s)\n", name, world,
               bad ? "FAIL" : "ok", worst_loss, worst, same ? "bitwise equal" : "DIFFER");
        destroy(&lone);
    }
    destroy(&par);
    free(x);
    free(z);
    free(out);
    free(ref);
    free(hi);
    MPI_Bcast(&bad, 1, MPI_INT, 0, MPI_COMM_WORLD);
    return bad;
}

static const char *MLP_T = "input 20 | dense 32 | relu | dense 5";
static const char *MLP_S = "input 20 | dense 16 | relu | dense 5";
static const char *CNN_T = "input 1x6x6 | conv 6 3 pad=1 | relu | flatten | dense 5";
static const char *CNN_S = "input 1x6x6 | conv 4 3 pad=1 | bn | relu | maxpool 2 | flatten | dense "
                           "8 | bn | relu | dense 5";

/* Steps until killed, saving the trainer after each. */
static int until_killed(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/rank%d.pid", dir, rank);
    FILE *f = fopen(path, "w");
    if (f == NULL) MPI_Abort(MPI_COMM_WORLD, 2);
    fprintf(f, "%ld\n", (long)getpid());
    fclose(f);
    run r = {0};
    make(&r, MLP_T, MLP_S, 1, 0, 0);
    float x[BATCH * 20], loss;
    int32_t labels[BATCH] = {0};
    uint64_t seed = 1;
    snprintf(path, sizeof path, "%s/checkpoint.safetensors", dir);
    for (;;) {
        for (int i = 0; i < BATCH * 20; i++) x[i] = uniform(&seed);
        int64_t lo = (int64_t)rank * BATCH / world, hi = (int64_t)(rank + 1) * BATCH / world;
        CHECK(kd_trainer_step(r.t, x + lo * 20, labels + lo, NULL, hi - lo, &loss));
        if (rank == 0) CHECK(kd_trainer_save(r.t, path));
        nanosleep(&(struct timespec){.tv_nsec = 20000000}, NULL);
    }
    return 0;
}

/* Whether the killed job's checkpoint loads into a lone trainer (no MPI needed). */
static int load(const char *path)
{
    run r = {0};
    make(&r, MLP_T, MLP_S, 0, 0, 0);
    kd_status st = kd_trainer_load(r.t, path);
    if (st != KD_OK) fprintf(stderr, "%s: %s\n", path, kd_last_error());
    destroy(&r);
    return st != KD_OK;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "load") == 0) return load(argv[2]);
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    if (argc == 3 && strcmp(argv[1], "kill") == 0) return until_killed(argv[2]);
    int bad = 0;
    bad |= one_case("mlp, live teacher", MLP_T, MLP_S, 0, 0);
    bad |= one_case("mlp, cached logits", MLP_T, MLP_S, 0, 1);
    bad |= one_case("cnn + sync bn, live teacher", CNN_T, CNN_S, 1, 0);
    bad |= one_case("cnn + sync bn, cached logits", CNN_T, CNN_S, 1, 1);
    MPI_Finalize();
    return bad;
}
