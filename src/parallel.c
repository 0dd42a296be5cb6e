/* The tool's side of data-parallel training: MPI only when the build has kd_mpi (KD_TOOL_MPI) and
 * an MPI launcher started this process, so `kd` alone never initialises MPI. */
#include "parallel.h"

#include <stdio.h>
#include <stdlib.h>

#include "common.h"

#ifdef KD_TOOL_MPI
#include <mpi.h>

#include "kd_mpi.h"
#endif

static int rank, world = 1;

/* Open MPI, MPICH (Hydra) and PMIx launchers set these in every rank's environment. */
static int launched_by_mpi(void)
{
    return getenv("OMPI_COMM_WORLD_SIZE") != NULL || getenv("PMI_SIZE") != NULL ||
           getenv("PMIX_RANK") != NULL;
}

int par_init(int *argc, char ***argv)
{
#ifdef KD_TOOL_MPI
    if (!launched_by_mpi()) return 0;
    if (MPI_Init(argc, argv) != MPI_SUCCESS) {
        fail_msg("MPI_Init failed");
        return -1;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
#else
    (void)argc;
    (void)argv;
    if (launched_by_mpi() && getenv("OMPI_COMM_WORLD_RANK") != NULL &&
        atoi(getenv("OMPI_COMM_WORLD_SIZE")) > 1) {
        fail_msg("this kd was built without MPI, so under mpirun every rank would train alone; "
                 "rebuild with libopenmpi-dev installed (cmake finds it) or run kd without mpirun");
        return -1;
    }
#endif
    return 0;
}

int par_end(int rc)
{
#ifdef KD_TOOL_MPI
    int ready = 0;
    MPI_Initialized(&ready);
    if (!ready) return rc;
    if (rc != 0 && world > 1) MPI_Abort(MPI_COMM_WORLD, rc);
    MPI_Finalize();
#endif
    return rc;
}

int par_local_ranks(void)
{
    static const char *const vars[] = {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS",
                                       "PMIX_LOCAL_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *s = getenv(vars[i]);
        int n = s != NULL ? atoi(s) : 0;
        if (n > 0) return n;
    }
    return 1;
}

int par_rank(void) { return rank; }
int par_world(void) { return world; }

int par_check_batch(int64_t batch, const char *unit)
{
    if (batch >= world) return EXIT_OK;
    fail_msg("--batch %lld is smaller than the job's %d processes: each takes a slice of every "
             "batch, of one %s at least",
             (long long)batch, world, unit);
    return EXIT_USAGE;
}

void par_slice(int64_t rows, int64_t *lo, int64_t *hi)
{
    *lo = rows * rank / world;
    *hi = rows * (rank + 1) / world;
}

int par_attach(kd_trainer *t)
{
    if (world == 1) return EXIT_OK;
#ifdef KD_TOOL_MPI
    kd_status st = kd_mpi_attach(t, NULL);
    if (st == KD_OK) st = kd_trainer_set_int(t, KD_TRAINER_SYNC_BATCHNORM, 1);
    if (st == KD_OK) st = kd_trainer_broadcast(t);
    if (st != KD_OK) return fail_kd("joining the MPI job", st);
#else
    (void)t;
#endif
    return EXIT_OK;
}

void par_sum_floats(float *v, int64_t n)
{
#ifdef KD_TOOL_MPI
    if (world > 1) kd_mpi_allreduce(v, n, NULL);
#else
    (void)v;
    (void)n;
#endif
}

void par_sum(double *v, int n)
{
#ifdef KD_TOOL_MPI
    if (world > 1) MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
#else
    (void)v;
    (void)n;
#endif
}

int par_agree(const double *v, int n)
{
    if (world == 1 || n < 1 || n > 16) return 1;
    double first[16], bad;
    for (int i = 0; i < n; i++) first[i] = rank == 0 ? v[i] : 0.0;
    par_sum(first, n); /* rank 0's values, everywhere */
    int same = 1;
    for (int i = 0; i < n; i++) same &= first[i] == v[i];
    bad = same ? 0.0 : 1.0;
    par_sum(&bad, 1); /* one verdict for every rank */
    return bad == 0.0;
}

int par_agree_resume(int rc, int64_t position, uint64_t fingerprint, const char *path)
{
    if (world == 1) return rc;
    /* the fingerprint in 16-bit pieces: exact in a double */
    double v[6] = {(double)rc, (double)position};
    for (int i = 0; i < 4; i++) v[2 + i] = (double)((fingerprint >> (16 * i)) & 0xffff);
    if (par_agree(v, 6)) return rc;
    if (rc == EXIT_OK)
        fail_msg("the ranks did not resume alike (here %s %s): every rank must read the same "
                 "checkpoint, so copy it to every host",
                 path, position > 0 ? "was read" : "is missing: from the beginning");
    return rc != EXIT_OK ? rc : EXIT_USAGE;
}

void par_announce(void)
{
    if (world > 1)
        printf(
            "data-parallel over %d MPI processes: each steps on its slice of every batch; rank 0 "
            "prints and writes\n",
            world);
}
