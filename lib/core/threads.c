/* The thread knob: kd_set_threads / kd_get_threads, KD_THREADS, and OpenBLAS's count kept equal. */
#if defined(__linux__) && !defined(_OPENMP) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT: cores() without OpenMP */
#endif
#include "core/threads.h"

#include <cblas.h>
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
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
#elif defined(__linux__)
    cpu_set_t set; /* the same mask, as libgomp reads it (a rank mpirun bound to one core: 1) */
    long n = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set)
                                                         : sysconf(_SC_NPROCESSORS_ONLN);
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

/* ---- the team left by other processes (kdi_team_for) */

/* The text of a small /proc file into buf (NUL-terminated), or -1. */
static int read_small(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t got = read(fd, buf, size - 1);
    close(fd);
    if (got <= 0) return -1;
    buf[got] = '\0';
    return 0;
}

/* Runnable threads of the machine: the numerator of /proc/loadavg's "R/T" field; -1 if unknown. */
static int machine_running(void)
{
    char buf[128];
    if (read_small("/proc/loadavg", buf, sizeof buf) != 0) return -1;
    int r;
    char *slash = strchr(buf, '/');
    if (slash == NULL) return -1;
    char *p = slash;
    while (p > buf && p[-1] != ' ') p--;
    r = atoi(p);
    return r;
}

/* Runnable threads of this process (state R in /proc/self/task/TID/stat); -1 if unknown. */
static int own_running(void)
{
    DIR *d = opendir("/proc/self/task");
    if (d == NULL) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        char path[64], buf[256];
        snprintf(path, sizeof path, "/proc/self/task/%.20s/stat", e->d_name);
        if (read_small(path, buf, sizeof buf) != 0) continue;
        const char *close_paren = strrchr(buf, ')'); /* the name may hold spaces and parentheses */
        if (close_paren != NULL && close_paren[1] == ' ' && close_paren[2] == 'R') n++;
    }
    closedir(d);
    return n;
}

static _Atomic int team_cap;         /* 0: no cap known */
static _Atomic int64_t team_next_ns; /* when to count again */

static int64_t coarse_ns(void)
{
    struct timespec ts;
#ifdef CLOCK_MONOTONIC_COARSE
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
#else
    clock_gettime(CLOCK_MONOTONIC, &ts);
#endif
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int kdi_team_for(int nt)
{
    if (nt <= 1) return 1;
    int64_t now = coarse_ns(), next = atomic_load_explicit(&team_next_ns, memory_order_relaxed);
    /* one caller counts a period; the others keep the last cap */
    if (now >= next &&
        atomic_compare_exchange_strong(&team_next_ns, &next, now + KDI_TEAM_PERIOD_NS)) {
        int all = machine_running(), ours = own_running();
        int cap = 0;
        if (all >= 0 && ours >= 0) {
            /* the machine's CPUs, not this process's share: /proc/loadavg counts the runnable
             * threads of every CPU (a container pinned to 4 of 64 busy CPUs keeps its 4) */
            long online = sysconf(_SC_NPROCESSORS_ONLN);
            int free = (online < 1 ? cores() : (int)online) - (all - ours);
            cap = free < 1 ? 1 : free;
        }
        atomic_store_explicit(&team_cap, cap, memory_order_relaxed);
    }
    int cap = atomic_load_explicit(&team_cap, memory_order_relaxed);
    return cap > 0 && cap < nt ? cap : nt;
}

void kdi_team_force(int cap)
{
    atomic_store(&team_next_ns, cap > 0 ? INT64_MAX : 0);
    atomic_store(&team_cap, cap);
}

/* Regions that call BLAS from each of their threads hold OpenBLAS at one thread: the first to
 * enter saves OpenBLAS's count, the last to leave restores it. (Two host threads entering and
 * leaving at once may restore a count late: a matter of speed, never of results.) */
static _Atomic int serial_depth;
static _Atomic int serial_saved = 1;

void kdi_blas_serial_begin(void)
{
    if (atomic_fetch_add(&serial_depth, 1) == 0) {
        int n = openblas_get_num_threads();
        atomic_store(&serial_saved, n);
        if (n != 1) openblas_set_num_threads(1); /* a call costs ~0.2 us: batch-1 latency */
    }
}

void kdi_blas_serial_end(void)
{
    if (atomic_fetch_sub(&serial_depth, 1) == 1) {
        int n = atomic_load(&serial_saved);
        if (n != 1) openblas_set_num_threads(n);
    }
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
