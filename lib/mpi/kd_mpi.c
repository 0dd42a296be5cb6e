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

kd_status kd_mpi_attach(kd_trainer *t, void *comm)
{
    int ready = 0, rank = 0, size = 1;
    MPI_Initialized(&ready);
    if (!ready) return KD_ERR_STATE;
    MPI_Comm c = comm_of(comm);
    if (MPI_Comm_rank(c, &rank) != MPI_SUCCESS || MPI_Comm_size(c, &size) != MPI_SUCCESS)
        return KD_ERR_IO;
    return kd_trainer_set_allreduce(t, kd_mpi_allreduce, comm, rank, size);
}
