/* Links kd::kd_mpi through find_package(kd) alone (tests/consumer/CMakeLists.txt): before MPI_Init,
 * kd_mpi_attach says so (KD_ERR_STATE). */
#include <stdio.h>

#include "kd_mpi.h"

int main(void)
{
    kd_status st = kd_mpi_attach(NULL, NULL);
    printf("consumer_mpi: kd_mpi_attach before MPI_Init: %s\n", kd_strerror(st));
    return st == KD_ERR_STATE ? 0 : 1;
}
