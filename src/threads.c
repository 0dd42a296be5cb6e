/* --threads N: the one place where the tool sets how many threads the library uses (its own
 * OpenMP loops and OpenBLAS's matrix products), through kd_set_threads. */
#include <stdlib.h>
#include <unistd.h>

#include "common.h"
#include "parallel.h"

/* s as a thread count: 1 to 1024, or 0 for every core. */
static int thread_count(const char *s, long *n)
{
    char *end;
    *n = strtol(s, &end, 10);
    return end != s && *end == '\0' && *n >= 0 && *n <= 1024;
}

#define EXPECTED "expected a number of threads, 1 to 1024, or 0 for every core"

int threads_option(const char *v)
{
    long n;
    if (!thread_count(v, &n)) {
        fail_msg("--threads %s: " EXPECTED, v);
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
    long v;
    if (s != NULL && *s != '\0') {
        if (thread_count(s, &v)) return 0;
        fail_msg("KD_THREADS=%s: " EXPECTED, s);
        return -1;
    }
    static const char *const vars[] = {"OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        char *end;
        s = getenv(vars[i]);
        v = s != NULL ? strtol(s, &end, 10) : 0;
        if (s != NULL && end != s && v >= 1) {
            set_threads(v > 1024 ? 1024 : (int)v);
            return 0;
        }
    }
    int32_t n = 1;
    if (set_threads(0) != 0 || kd_get_threads(&n) != KD_OK) return 0;
    int local = par_local_ranks();
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    if (local > 1 && online > 0 && n > online / local) set_threads((int)(online / local));
    return 0;
}
