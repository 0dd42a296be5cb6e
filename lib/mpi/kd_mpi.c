/* kd_mpi: the all-reduce of libkd's data-parallel trainer over MPI (include/kd_mpi.h). Built as
 * its own library so libkd never depends on MPI. */
#include "kd_mpi.h"

#include <mpi.h>

static MPI_Comm comm_of(void *comm) { return comm != NULL ? *(MPI_Comm *)comm : MPI_COMM_WORLD; }

kd_status kd_mpi_allreduce(float *data, int64_t count, void *comm)
{
    if (count < 0 || (data == NULL && count > 0)) return KD_ERR_ARGUMENT;
    MPI_Comm c = comm_of(comm);
    const int64_t piece = (int64_t)1 << 30; /* MPI counts are int */
    for (int64_t done = 0; done < count; done += piece) {
        int n = (int)(count - done < piece ? count - done : piece);
        if (MPI_Allreduce(MPI_IN_PLACE, data + done, n, MPI_FLOAT, MPI_SUM, c) != MPI_SUCCESS)
            return KD_ERR_IO;
    }
    return KD_OK;
}

/* The sums in flight, by tag; MPI_REQUEST_NULL where none is. */
static MPI_Request pending[KD_ALLREDUCE_TAGS];
static int pending_ready;

kd_status kd_mpi_allreduce_start(float *data, int64_t count, int32_t tag, void *comm)
{
    if (tag < 0 || tag >= KD_ALLREDUCE_TAGS || count < 0 || (data == NULL && count > 0))
        return KD_ERR_ARGUMENT;
    if (!pending_ready) {
        for (int i = 0; i < KD_ALLREDUCE_TAGS; i++) pending[i] = MPI_REQUEST_NULL;
        pending_ready = 1;
    }
    if (pending[tag] != MPI_REQUEST_NULL) return KD_ERR_STATE;
    if (count > INT32_MAX) return kd_mpi_allreduce(data, count, comm);
    for (int i = 0; i < KD_ALLREDUCE_TAGS; i++) { /* progress for the sums already started */
        int done;
        if (pending[i] != MPI_REQUEST_NULL &&
            MPI_Test(&pending[i], &done, MPI_STATUS_IGNORE) != MPI_SUCCESS)
            return KD_ERR_IO;
    }
    if (MPI_Iallreduce(MPI_IN_PLACE, data, (int)count, MPI_FLOAT, MPI_SUM, comm_of(comm),
                       &pending[tag]) != MPI_SUCCESS)
        return KD_ERR_IO;
    return KD_OK;
}

kd_status kd_mpi_allreduce_wait(int32_t tag, void *comm)
{
    (void)comm;
    if (tag < 0 || tag >= KD_ALLREDUCE_TAGS) return KD_ERR_ARGUMENT;
    if (!pending_ready || pending[tag] == MPI_REQUEST_NULL) return KD_OK;
    return MPI_Wait(&pending[tag], MPI_STATUS_IGNORE) == MPI_SUCCESS ? KD_OK : KD_ERR_IO;
}

kd_status kd_mpi_attach(kd_trainer *t, void *comm)
{
    int ready = 0, rank = 0, size = 1;
    MPI_Initialized(&ready);
    if (!ready) return KD_ERR_STATE;
    MPI_Comm c = comm_of(comm);
    if (MPI_Comm_rank(c, &rank) != MPI_SUCCESS || MPI_Comm_size(c, &size) != MPI_SUCCESS)
        return KD_ERR_IO;
    /* Blocking: on one host Open MPI's MPI_Iallreduce (libnbc) measured slower than MPI_Allreduce
     * (bench_mpi), and the sums are CPU work there anyway. */
    return kd_trainer_set_allreduce(t, kd_mpi_allreduce, comm, rank, size);
}
