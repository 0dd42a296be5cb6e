/* libkd's helper thread for work too short for an OpenMP region (see helper.h). */
#define _GNU_SOURCE /* sched_getcpu, sched_getaffinity */
#include "core/helper.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

/* The one job in flight. A caller owns it from IDLE -> CLAIMED (writes fn, arg, range) -> OPEN;
 * the helper joins with OPEN -> JOINED and ends with DONE; the caller closes with IDLE, straight
 * from OPEN when the helper never joined (or from CLAIMED when it runs alone after all). */
enum { IDLE, CLAIMED, OPEN, JOINED, DONE };
static _Atomic int state = IDLE;
static void (*job_fn)(void *, int64_t);
static void *job_arg;
/* parts not yet taken: [lo, hi), lo in the low 32 bits, hi in the high 32 */
static _Atomic uint64_t range;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake_cond = PTHREAD_COND_INITIALIZER;
static int wake;           /* under lock */
static _Atomic int stop;   /* set under lock */
static _Atomic int asleep; /* the helper waits on wake_cond */
/* NONE: not yet; STARTING: a caller is creating it; RUNNING; GONE: pthread_create failed, or the
 * library is being unloaded (later calls run alone) */
enum { NONE, STARTING, RUNNING, GONE };
static _Atomic int started = NONE;
static _Atomic int force_join;
static _Atomic int helper_cpu = -1;    /* where the helper last ran a job, or woke */
static _Atomic int64_t last_call_ns;   /* the last call that could have used the helper */
static _Atomic int64_t alone_until_ns; /* back-off: calls run alone until then */
static _Atomic int64_t backoff_ns = KDI_HELPER_BACKOFF_MIN_NS; /* the next back-off's length */
static _Atomic int64_t waited_ns;                              /* the last long wait */
static pthread_t thread;
static pid_t owner; /* the process that created it: a child forked without the atfork handler
                     * (a raw clone) must not join its parent's thread at exit */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Takes the lowest (front) or highest part left; -1 when none is. */
static int64_t take(int front)
{
    uint64_t r = atomic_load_explicit(&range, memory_order_relaxed);
    for (;;) {
        uint64_t lo = r & 0xffffffffu, hi = r >> 32;
        if (lo >= hi) return -1;
        uint64_t next = front ? r + 1 : r - ((uint64_t)1 << 32);
        if (atomic_compare_exchange_weak_explicit(&range, &r, next, memory_order_relaxed,
                                                  memory_order_relaxed))
            return (int64_t)(front ? lo : hi - 1);
    }
}

static void *helper_main(void *unused)
{
    (void)unused;
    int64_t last = now_ns();
    atomic_store_explicit(&helper_cpu, sched_getcpu(), memory_order_relaxed);
    for (unsigned spins = 0;; spins++) {
        int s = atomic_load_explicit(&state, memory_order_acquire);
        if (s == OPEN && atomic_compare_exchange_strong_explicit(
                             &state, &s, JOINED, memory_order_acquire, memory_order_relaxed)) {
            atomic_store_explicit(&helper_cpu, sched_getcpu(), memory_order_relaxed);
            for (int64_t p; (p = take(0)) >= 0;) job_fn(job_arg, p);
            atomic_store_explicit(&state, DONE, memory_order_release);
            last = now_ns();
            continue;
        }
        cpu_relax();
        if (spins % 64 != 0) continue;
        if (atomic_load_explicit(&stop, memory_order_relaxed)) return NULL;
        if (now_ns() - last < KDI_HELPER_SPIN_NS) continue;
        pthread_mutex_lock(&lock);
        atomic_store(&asleep, 1);
        while (!wake && !atomic_load(&stop)) pthread_cond_wait(&wake_cond, &lock);
        wake = 0;
        atomic_store(&asleep, 0);
        int quit = atomic_load(&stop);
        pthread_mutex_unlock(&lock);
        if (quit) return NULL;
        atomic_store_explicit(&helper_cpu, sched_getcpu(), memory_order_relaxed);
        last = now_ns();
    }
}

static void wake_helper(void)
{
    pthread_mutex_lock(&lock);
    wake = 1;
    pthread_cond_signal(&wake_cond);
    pthread_mutex_unlock(&lock);
}

static void stop_thread(void)
{
    pthread_mutex_lock(&lock);
    atomic_store(&stop, 1);
    pthread_cond_signal(&wake_cond);
    pthread_mutex_unlock(&lock);
}

/* A fork's child has no helper: it starts its own on first use. */
static void after_fork_child(void)
{
    pthread_mutex_init(&lock, NULL);
    pthread_cond_init(&wake_cond, NULL);
    wake = 0;
    atomic_store(&stop, 0);
    atomic_store(&asleep, 0);
    atomic_store(&state, IDLE);
    atomic_store(&helper_cpu, -1);
    if (atomic_load(&started) != GONE) atomic_store(&started, NONE);
}

static void start(void)
{
    static _Atomic int atfork_set;
    int expected = NONE;
    if (!atomic_compare_exchange_strong(&started, &expected, STARTING)) return;
    if (!atomic_exchange(&atfork_set, 1) && pthread_atfork(NULL, NULL, after_fork_child) != 0) {
        atomic_store(&started, GONE); /* a fork's child would believe it had a helper */
        return;
    }
    /* the helper inherits a mask blocking every signal: they stay the host's threads' business;
     * a small stack: it runs GEMV and convolution parts (the packed tiles: 16 KB at most) */
    sigset_t all, old;
    sigfillset(&all);
    pthread_attr_t attr;
    int rc = pthread_attr_init(&attr);
    if (rc == 0) {
        pthread_attr_setstacksize(&attr, KDI_HELPER_STACK);
        owner = getpid();
        pthread_sigmask(SIG_SETMASK, &all, &old);
        rc = pthread_create(&thread, &attr, helper_main, NULL);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_attr_destroy(&attr);
    }
    if (rc == 0) pthread_setname_np(thread, "kd-helper");
    expected = STARTING;
    if (!atomic_compare_exchange_strong(&started, &expected, rc == 0 ? RUNNING : GONE) && rc == 0)
        stop_thread(); /* the library was unloaded meanwhile (exit on another thread) */
}

__attribute__((destructor)) static void stop_helper(void)
{
    /* GONE first: a caller still starting one (exit on another thread) stops it itself */
    if (atomic_exchange(&started, GONE) != RUNNING || getpid() != owner) return;
    stop_thread();
    pthread_join(thread, NULL);
}

/* Whether the calling thread may run on one CPU only (taskset, pinning): the helper cannot run
 * beside it then. Asked once a thread: a thread pinned after its first call keeps the answer (the
 * CPU check and the back-off still keep the helper away). */
static int pinned_alone(void)
{
    static _Thread_local int pinned = -1;
    if (pinned < 0) {
        cpu_set_t mask;
        pinned = sched_getaffinity(0, sizeof mask, &mask) == 0 && CPU_COUNT(&mask) < 2;
    }
    return pinned;
}

static void run_alone(int64_t parts, void (*fn)(void *, int64_t), void *arg)
{
    for (int64_t p = 0; p < parts; p++) fn(arg, p);
}

void kdi_helper_parts(int64_t parts, void (*fn)(void *, int64_t), void *arg)
{
    int forced = atomic_load_explicit(&force_join, memory_order_relaxed);
    if (parts < 2 || parts > 0x7fffffff || (!forced && pinned_alone())) {
        run_alone(parts, fn, arg);
        return;
    }
    int64_t now = now_ns();
    int64_t gap = now - atomic_exchange_explicit(&last_call_ns, now, memory_order_relaxed);
    if (atomic_load_explicit(&started, memory_order_relaxed) == NONE) start();
    int expected = IDLE;
    /* Alone while backing off: a recent call waited for the helper, whose core the scheduler had
     * given to another thread, so its parts ran only at its next time slice (0.2 ms at every call
     * on a busy machine, measured). */
    if (atomic_load_explicit(&started, memory_order_acquire) != RUNNING ||
        (!forced && now < atomic_load_explicit(&alone_until_ns, memory_order_relaxed)) ||
        !atomic_compare_exchange_strong_explicit(&state, &expected, CLAIMED, memory_order_acquire,
                                                 memory_order_relaxed)) {
        run_alone(parts, fn, arg); /* or another host thread has it */
        return;
    }
    if (!forced && !atomic_load(&asleep) &&
        sched_getcpu() == atomic_load_explicit(&helper_cpu, memory_order_relaxed)) {
        /* awake on this very CPU (pinned beside the caller): it would run only when the caller
         * yields its time slice */
        atomic_store_explicit(&state, IDLE, memory_order_release);
        run_alone(parts, fn, arg);
        return;
    }
    if (atomic_load(&asleep) && !forced) {
        /* Waking it costs more than the work: run alone. Wake it for the next call only when
         * calls come closer than its spinning time; sparse calls would only make it spin for
         * nothing (74% of a core at 0.25 ms apart, measured). */
        atomic_store_explicit(&state, IDLE, memory_order_release);
        run_alone(parts, fn, arg);
        if (gap < KDI_HELPER_SPIN_NS) wake_helper();
        return;
    }
    job_fn = fn;
    job_arg = arg;
    atomic_store_explicit(&range, (uint64_t)parts << 32, memory_order_relaxed);
    atomic_store_explicit(&state, OPEN, memory_order_release);
    if (forced) /* tests: until it joins, waking it if it fell asleep meanwhile */
        while (atomic_load_explicit(&state, memory_order_acquire) == OPEN &&
               atomic_load_explicit(&started, memory_order_relaxed) == RUNNING) {
            if (atomic_load(&asleep)) wake_helper();
            cpu_relax();
        }
    for (int64_t p; (p = take(1)) >= 0;) fn(arg, p);
    expected = OPEN;
    if (!atomic_compare_exchange_strong_explicit(&state, &expected, IDLE, memory_order_acq_rel,
                                                 memory_order_acquire)) {
        /* the helper joined: wait for its last part */
        int64_t t0 = now_ns(), t1;
        while (atomic_load_explicit(&state, memory_order_acquire) != DONE) cpu_relax();
        atomic_store_explicit(&state, IDLE, memory_order_release);
        if ((t1 = now_ns()) - t0 > KDI_HELPER_PATIENCE_NS) {
            /* A wait soon after the last back-off ended doubles the next one (a busy machine:
             * up to KDI_HELPER_BACKOFF_NS); a wait long after it starts again from the least
             * (the host took the helper's core once) */
            int64_t b = atomic_load_explicit(&backoff_ns, memory_order_relaxed);
            int64_t since = t1 - atomic_exchange_explicit(&waited_ns, t1, memory_order_relaxed);
            b = since < 4 * b ? (2 * b < KDI_HELPER_BACKOFF_NS ? 2 * b : KDI_HELPER_BACKOFF_NS)
                              : KDI_HELPER_BACKOFF_MIN_NS;
            atomic_store_explicit(&backoff_ns, b, memory_order_relaxed);
            atomic_store_explicit(&alone_until_ns, t1 + b, memory_order_relaxed);
        }
    }
}

void kdi_helper_force_join(int on) { atomic_store(&force_join, on != 0); }
