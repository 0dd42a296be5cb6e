/* kd_mpi: libkd's data-parallel training over MPI. An optional library (libkd_mpi, built when
 * CMake finds MPI) beside libkd, which itself stays free of MPI: it only gives
 * kd_trainer_set_allreduce an all-reduce (see kd.h, "data-parallel training").
 *
 * Use: MPI_Init as usual; build the same student, loss, optimizer and trainer in every rank (the
 * same seeds); kd_mpi_attach(trainer, NULL); kd_trainer_broadcast(trainer); then every rank calls
 * kd_trainer_step with its slice of each global batch. Link with -lkd_mpi -lkd and MPI's C
 * library (CMake: kd::kd_mpi).
 *
 * Errors: MPI's own error handler decides what a failed MPI call does; MPI's default on
 * MPI_COMM_WORLD, MPI_ERRORS_ARE_FATAL, ends every rank of the job, which is what a data-parallel
 * job wants (a rank that returned instead would leave the others waiting). With
 * MPI_ERRORS_RETURN, a failed call is KD_ERR_IO. */
#ifndef KD_MPI_H
#define KD_MPI_H

#include "kd.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A kd_allreduce_fn: data [count] summed in place over the ranks of *(MPI_Comm *)comm, or of
 * MPI_COMM_WORLD when comm is NULL (MPI_Allreduce, MPI_IN_PLACE, MPI_FLOAT, MPI_SUM, in pieces of
 * at most 2^30 values). */
KD_API kd_status kd_mpi_allreduce(float *data, int64_t count, void *comm);

/* A kd_allreduce_start_fn and its kd_allreduce_wait_fn over MPI_Iallreduce (MPI_IN_PLACE, MPI_FLOAT,
 * MPI_SUM) and MPI_Wait, on *(MPI_Comm *)comm or MPI_COMM_WORLD. Each start also tests the sums
 * still in flight (MPI_Test), which moves them on where MPI progresses only inside its calls. The
 * requests live in one table of KD_ALLREDUCE_TAGS per process: one trainer of a process steps
 * through them at a time. A count above 2^30 is summed at once, in pieces, by the start. */
KD_API kd_status kd_mpi_allreduce_start(float *data, int64_t count, int32_t tag, void *comm);
KD_API kd_status kd_mpi_allreduce_wait(int32_t tag, void *comm);

/* kd_trainer_set_allreduce(t, kd_mpi_allreduce, comm, rank, size) with this rank and the size of
 * *(MPI_Comm *)comm (NULL: MPI_COMM_WORLD), which must outlive t's steps: blocking sums, bucket by
 * bucket (KD_TRAINER_BUCKET_FLOATS). On one host Open MPI's MPI_Iallreduce measured slower than
 * MPI_Allreduce (bench/mpi); a host whose network moves data on its own may choose
 * kd_trainer_set_allreduce_async with kd_mpi_allreduce_start and kd_mpi_allreduce_wait instead.
 * KD_ERR_STATE before MPI_Init. */
KD_API kd_status kd_mpi_attach(kd_trainer *t, void *comm);

#ifdef __cplusplus
}
#endif
#endif /* KD_MPI_H */
