/* The thread knob: kd_set_threads / kd_get_threads, KD_THREADS, and OpenBLAS's count kept equal. */
#include "core/threads.h"

#include <cblas.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/error.h"
#include "kd.h"

#define MAX_THREADS 1024

/* The value set (0: every core); -1 until KD_THREADS was read. */
static _Atomic int32_t knob = -1;
static pthread_once_t env_once = PTHREAD_ONCE_INIT;

static int cores(void)
{
#ifdef _OPENMP
    int n = omp_get_num_procs(); /* honours the affinity mask (taskset, cgroups' cpusets) */
#else
    long n = sysconf(_SC_NPROCESSORS_ONLN);
#endif
    return n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : (int)n;
}

static int resolve(int32_t n) { return n == 0 ? cores() : n; }

/* OpenBLAS runs libkd's GEMMs (from one thread, outside libkd's parallel regions) with as many
 * threads as libkd's own loops, so a host that asks for one thread gets one. */
static void apply(int32_t n) { openblas_set_num_threads(resolve(n)); }

/* KD_THREADS=N (0: every core). Unset, empty or malformed: libkd's own loops on one thread, and
 * OpenBLAS's count left as OpenBLAS chose it (OPENBLAS_NUM_THREADS or every core). One thread by
 * default because libgomp's idle threads spin (OMP_WAIT_POLICY=active by default) and contend with
 * OpenBLAS's and other processes' threads: on a busy 2-core machine 2 threads measured 2-3x slower
 * than 1, unless OMP_WAIT_POLICY=passive (issue 11; re-measure on a quiet machine). */
static void read_env(void)
{
    const char *s = getenv("KD_THREADS");
    char *end;
    long v = s != NULL && *s != '\0' ? strtol(s, &end, 10) : -1;
    int32_t expected = -1;
    if (v < 0 || v > MAX_THREADS || *end != '\0') {
        atomic_compare_exchange_strong(&knob, &expected, 1);
        return;
    }
    if (atomic_compare_exchange_strong(&knob, &expected, (int32_t)v)) apply((int32_t)v);
}

int kdi_threads(void)
{
    pthread_once(&env_once, read_env);
    return resolve(atomic_load_explicit(&knob, memory_order_relaxed));
}

int kdi_threads_for(int64_t work) { return work < KDI_PARALLEL_MIN ? 1 : kdi_threads(); }

/* Regions that call BLAS from each of their threads hold OpenBLAS at one thread: the first to
 * enter saves OpenBLAS's count, the last to leave restores it. (Two host threads entering and
 * leaving at once may restore a count late: a matter of speed, never of results.) */
static _Atomic int serial_depth;
static _Atomic int serial_saved = 1;

void kdi_blas_serial_begin(void)
{
    if (atomic_fetch_add(&serial_depth, 1) == 0) {
        atomic_store(&serial_saved, openblas_get_num_threads());
        openblas_set_num_threads(1);
    }
}

void kdi_blas_serial_end(void)
{
    if (atomic_fetch_sub(&serial_depth, 1) == 1)
        openblas_set_num_threads(atomic_load(&serial_saved));
}

kd_status kd_set_threads(int32_t n)
{
    if (n < 0 || n > MAX_THREADS)
        return kdi_fail(KD_ERR_ARGUMENT, "kd_set_threads: n is %d, expected 0 (every core) to %d",
                        (int)n, MAX_THREADS);
    pthread_once(&env_once, read_env); /* the call wins over KD_THREADS, whatever the order */
    atomic_store_explicit(&knob, n, memory_order_relaxed);
    apply(n);
    return KD_OK;
}

kd_status kd_get_threads(int32_t *n)
{
    KDI_CHECK_NULL(n);
    *n = kdi_threads();
    return KD_OK;
}
