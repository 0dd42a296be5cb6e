/* The tool under mpirun (issue 15): `mpirun -np N kd train|distill ...` trains data-parallel, each
 * rank on its slice of every global batch through kd_mpi. Without MPI in the build, or when not
 * started by mpirun, the tool is one process and these are no-ops (rank 0 of 1). */
#ifndef KD_TOOL_PARALLEL_H
#define KD_TOOL_PARALLEL_H

#include <stdint.h>

#include "kd.h"

/* MPI_Init when started by an MPI launcher (and built with MPI); 0, or -1 with a message. */
int par_init(int *argc, char ***argv);
/* MPI_Finalize after a run that succeeded everywhere; after a failure, MPI_Abort with rc so that
 * no rank is left waiting in an all-reduce. Returns rc. */
int par_end(int rc);
int par_rank(void);
int par_world(void);
/* The ranks of this job on this host, from the launcher's environment (Open MPI, MPICH); 1 when
 * not under a launcher. */
int par_local_ranks(void);
/* Under mpirun each rank takes a slice of every batch, of one `unit` at least: a batch smaller
 * than the job is EXIT_USAGE with a message, from every rank alike; else EXIT_OK. */
int par_check_batch(int64_t batch, const char *unit);
/* This rank's rows [*lo, *hi) of a global batch of rows. */
void par_slice(int64_t rows, int64_t *lo, int64_t *hi);
/* Makes t one rank of the job (synchronised batch norm, rank 0's weights): EXIT_OK or an exit
 * code, with a message. */
int par_attach(kd_trainer *t);
/* Sums v[0 .. n-1] over the ranks, in place (epoch statistics, so every rank decides alike). */
void par_sum(double *v, int n);
/* Says on stdout (rank 0's) that a train or distill run is data-parallel, when it is. */
void par_announce(void);
/* Whether every rank holds the same v[0 .. n-1] (n <= 16, integers below 2^53); every rank gets
 * the same answer. */
int par_agree(const double *v, int n);
/* After --resume: every rank's result rc, the position it resumed at (epochs or steps; 0: from the
 * start) and the checkpoint's fingerprint must be rank 0's; else a line naming path and EXIT_USAGE
 * (or rc) on every rank, instead of ranks training from other points (and hanging at the end).
 * Every rank calls it, whatever its rc. */
int par_agree_resume(int rc, int64_t position, uint64_t fingerprint, const char *path);
/* The same for floats, in pieces that fit MPI's int counts. */
void par_sum_floats(float *v, int64_t n);

#endif
