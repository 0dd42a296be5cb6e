/* libkd's helper thread for work too short for an OpenMP region (see helper.h). */
#include "core/helper.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>

/* The one job in flight. A caller owns it from IDLE -> CLAIMED (writes fn, arg, range) -> OPEN;
 * the helper joins with OPEN -> JOINED and ends with DONE; the caller closes with IDLE, straight
 * from OPEN when the helper never joined. */
enum { IDLE, CLAIMED, OPEN, JOINED, DONE };
static _Atomic int state = IDLE;
static void (*job_fn)(void *, int64_t);
static void *job_arg;
/* parts not yet taken: [lo, hi), lo in the low 32 bits, hi in the high 32 */
static _Atomic uint64_t range;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake_cond = PTHREAD_COND_INITIALIZER;
static int wake;            /* under lock */
static _Atomic int stop;    /* set under lock */
static _Atomic int asleep;  /* the helper waits on wake_cond */
static _Atomic int started; /* 0: not yet, 1: running, -1: pthread_create failed */
static _Atomic int force_join;
static pthread_t thread;

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
    for (unsigned spins = 0;; spins++) {
        int s = atomic_load_explicit(&state, memory_order_acquire);
        if (s == OPEN && atomic_compare_exchange_strong_explicit(
                             &state, &s, JOINED, memory_order_acquire, memory_order_relaxed)) {
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
        while (!wake && !stop) pthread_cond_wait(&wake_cond, &lock);
        wake = 0;
        atomic_store(&asleep, 0);
        int quit = stop;
        pthread_mutex_unlock(&lock);
        if (quit) return NULL;
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

/* A fork's child has no helper: it starts its own on first use. */
static void after_fork_child(void)
{
    pthread_mutex_init(&lock, NULL);
    pthread_cond_init(&wake_cond, NULL);
    wake = 0;
    atomic_store(&stop, 0);
    atomic_store(&asleep, 0);
    atomic_store(&state, IDLE);
    atomic_store(&started, 0);
}

static void start(void)
{
    static _Atomic int atfork_set;
    int expected = 0;
    if (!atomic_compare_exchange_strong(&started, &expected, 1)) return;
    if (!atomic_exchange(&atfork_set, 1)) pthread_atfork(NULL, NULL, after_fork_child);
    /* the helper inherits a mask blocking every signal: they stay the host's threads' business */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    if (pthread_create(&thread, NULL, helper_main, NULL) != 0) atomic_store(&started, -1);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

__attribute__((destructor)) static void stop_helper(void)
{
    if (atomic_load(&started) != 1) return;
    pthread_mutex_lock(&lock);
    stop = 1;
    pthread_cond_signal(&wake_cond);
    pthread_mutex_unlock(&lock);
    pthread_join(thread, NULL);
    atomic_store(&started, -1); /* later calls (other destructors) run alone */
}

static void run_alone(int64_t parts, void (*fn)(void *, int64_t), void *arg)
{
    for (int64_t p = 0; p < parts; p++) fn(arg, p);
}

void kdi_helper_parts(int64_t parts, void (*fn)(void *, int64_t), void *arg)
{
    int s = atomic_load_explicit(&started, memory_order_relaxed);
    if (s == 0) {
        start();
        s = atomic_load(&started);
    }
    int expected = IDLE;
    if (s != 1 || parts < 2 || parts > 0x7fffffff ||
        !atomic_compare_exchange_strong_explicit(&state, &expected, CLAIMED, memory_order_acquire,
                                                 memory_order_relaxed)) {
        run_alone(parts, fn, arg); /* no helper, or another host thread has it */
        return;
    }
    int forced = atomic_load_explicit(&force_join, memory_order_relaxed);
    if (atomic_load(&asleep) && !forced) {
        /* waking it costs more than the work: run alone, and leave it spinning for the next call */
        atomic_store_explicit(&state, IDLE, memory_order_release);
        run_alone(parts, fn, arg);
        wake_helper();
        return;
    }
    job_fn = fn;
    job_arg = arg;
    atomic_store_explicit(&range, (uint64_t)parts << 32, memory_order_relaxed);
    atomic_store_explicit(&state, OPEN, memory_order_release);
    if (forced) {
        if (atomic_load(&asleep)) wake_helper();
        while (atomic_load_explicit(&state, memory_order_acquire) == OPEN) cpu_relax();
    }
    for (int64_t p; (p = take(1)) >= 0;) fn(arg, p);
    expected = OPEN;
    if (!atomic_compare_exchange_strong_explicit(&state, &expected, IDLE, memory_order_acq_rel,
                                                 memory_order_acquire)) {
        /* the helper joined: wait for its last part */
        while (atomic_load_explicit(&state, memory_order_acquire) != DONE) cpu_relax();
        atomic_store_explicit(&state, IDLE, memory_order_release);
    }
}

void kdi_helper_force_join(int on) { atomic_store(&force_join, on != 0); }
