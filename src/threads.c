/* --threads N: the one place where the tool sets how many threads the library uses (its own
 * OpenMP loops and OpenBLAS's matrix products), through kd_set_threads. */
#include <stdlib.h>
#include <unistd.h>

#include "common.h"
#include "parallel.h"

int threads_option(const char *v)
{
    char *end;
    long n = strtol(v, &end, 10);
    if (end == v || *end != '\0' || n < 0 || n > 1024) {
        fail_msg("--threads %s: expected a number of threads, 1 to 1024, or 0 for every core", v);
        return EXIT_USAGE;
    }
    if (set_threads((int)n) != 0) {
        fail_msg("--threads: this libkd cannot set its number of threads");
        return EXIT_RUNTIME;
    }
    return EXIT_OK;
}

/* 0 (every core) is resolved to the count once, not looked up at every loop. */
int set_threads(int n)
{
    int32_t got = 1;
    if (kd_set_threads(n) != KD_OK) return -1;
    if (n == 0 && kd_get_threads(&got) == KD_OK) kd_set_threads(got);
    return 0;
}

/* The default before the options (--threads overrides it), in order:
 *  - KD_THREADS: the library reads it; checked here, as a malformed value would quietly mean one
 *    thread;
 *  - OMP_NUM_THREADS (its first level: "4,2" is 4), else OPENBLAS_NUM_THREADS: that many threads
 *    for libkd's loops and OpenBLAS alike (the HPC way to cap a program);
 *  - else every core this process may run on (kd_set_threads(0) honours the affinity mask, so a
 *    rank that mpirun bound to one core gets one), at most its share of the host's cores when
 *    several ranks run on it (bound to a socket, or unbound).
 * The count is fixed once here, not left at 0 (every core), which the library would look up at
 * every loop. The library's own default stays one thread (an embedded library takes no cores
 * unasked); the tool is a program of its own and takes the machine, as PyTorch does. */
int default_threads(void)
{
    const char *s = getenv("KD_THREADS");
    char *end;
    if (s != NULL && *s != '\0') {
        long v = strtol(s, &end, 10);
        if (*end != '\0' || v < 0 || v > 1024) {
            fail_msg("KD_THREADS=%s: expected a number of threads, 1 to 1024, or 0 for every core",
                     s);
            return -1;
        }
        return 0;
    }
    static const char *const vars[] = {"OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        s = getenv(vars[i]);
        long v = s != NULL ? strtol(s, &end, 10) : 0;
        if (s != NULL && end != s && v >= 1) {
            kd_set_threads(v > 1024 ? 1024 : (int32_t)v);
            return 0;
        }
    }
    int32_t n = 1;
    if (kd_set_threads(0) != KD_OK || kd_get_threads(&n) != KD_OK) return 0;
    int local = par_local_ranks();
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    if (local > 1 && online > 0 && n > online / local) n = (int32_t)(online / local);
    kd_set_threads(n < 1 ? 1 : n);
    return 0;
}
