/* --threads N: the one place where the tool sets how many threads the library uses (its own
 * OpenMP loops and OpenBLAS's matrix products), through kd_set_threads. */
#include <stdlib.h>
#include <unistd.h>

#include "common.h"
#include "parallel.h"

int set_threads(int n) { return kd_set_threads(n) == KD_OK ? 0 : -1; }

/* Neither --threads nor a thread variable (KD_THREADS, OPENBLAS_NUM_THREADS, OMP_NUM_THREADS: the
 * user chose, and the library follows them as before): every core this process may run on
 * (kd_set_threads(0) honours the affinity mask in OpenMP builds, so a rank that mpirun bound to
 * one core gets one), at most its share of the host's cores when several ranks run on it (bound
 * to a socket, or unbound). The count is fixed once here, not left at 0 (every core), which the
 * library would look up at every loop. The library's own default stays one thread (an embedded
 * library takes no cores unasked); the tool is a program of its own and takes the machine, as
 * PyTorch does. */
void default_threads(void)
{
    static const char *const vars[] = {"KD_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *s = getenv(vars[i]);
        if (s != NULL && *s != '\0') return;
    }
    int32_t n = 1;
    if (kd_set_threads(0) != KD_OK || kd_get_threads(&n) != KD_OK) return;
    int local = par_local_ranks();
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    if (local > 1 && online > 0 && n > online / local) n = (int32_t)(online / local);
    kd_set_threads(n < 1 ? 1 : n);
}
