/* --threads N: the one place where the tool sets how many threads the library uses (its own
 * OpenMP loops and OpenBLAS's matrix products), through kd_set_threads. */
#include <stdlib.h>
#include <unistd.h>

#include "common.h"
#include "parallel.h"

int set_threads(int n) { return kd_set_threads(n) == KD_OK ? 0 : -1; }

/* Neither --threads nor KD_THREADS: every core this process may run on (kd_set_threads(0) honours
 * the affinity mask, so a rank that mpirun bound to one core gets one), shared among the ranks on
 * this host when the launcher left them unbound. The library's own default stays one thread (an
 * embedded library takes no cores unasked); the tool is a program of its own, and takes the
 * machine as PyTorch does. */
void default_threads(void)
{
    const char *env = getenv("KD_THREADS");
    if (env != NULL && *env != '\0') return;
    int32_t n = 1;
    if (kd_set_threads(0) != KD_OK || kd_get_threads(&n) != KD_OK) return;
    int local = par_local_ranks();
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    if (local > 1 && online > 0 && n >= online) {
        n /= local;
        kd_set_threads(n < 1 ? 1 : n);
    }
}
