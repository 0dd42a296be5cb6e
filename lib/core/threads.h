/* libkd's thread count, the one knob of kd_set_threads (default from KD_THREADS), and the macros
 * that parallelise a loop with it through OpenMP.
 *
 * The rules every parallel loop of the library keeps:
 * - Each iteration writes its own outputs: loops run over images, channels, rows or fixed blocks
 *   of elements, never a reduction whose order depends on the thread count, so results are
 *   bitwise equal for every thread count.
 * - BLAS runs either from one thread outside libkd's regions, on OpenBLAS's threads (whose count
 *   kd_set_threads sets to the same knob), or inside a region on each thread's own slice with
 *   OpenBLAS held at one thread (kdi_blas_serial_begin/end): never both pools at once.
 * - Small work stays on the calling thread (kdi_threads_for): waking threads costs microseconds.
 *   Batch-1 GEMVs, too short for an OpenMP region, share libkd's helper thread (core/helper.h). */
#ifndef KDI_THREADS_H
#define KDI_THREADS_H

#include <stdatomic.h>
#include <stdint.h>

/* The threads libkd uses, >= 1: kd_set_threads's value, or KD_THREADS's, or every core. */
int kdi_threads(void);

/* Around a parallel region whose threads each call BLAS on their own slice (convolution's GEMMs
 * split by images): OpenBLAS runs on one thread in between, so the two pools never compete. */
void kdi_blas_serial_begin(void);
void kdi_blas_serial_end(void);

/* Threads worth waking for a loop that touches about `work` floats: 1 below KDI_PARALLEL_MIN
 * (waking a thread costs a few microseconds, the time to stream ~32k floats), else kdi_threads(). */
#define KDI_PARALLEL_MIN 32768
int kdi_threads_for(int64_t work);

/* The threads to run a region of nt parts on: nt, or fewer while other processes keep the cores
 * busy. A region's parts stay the same (loops run over nt parts or over channels), only fewer
 * threads share them, so results do not change. Why: an OpenMP region ends when every thread of
 * its team has run, and on a machine with more runnable threads than cores a woken thread waits
 * for a time slice (milliseconds) at every region: on 2 cores at load 12, 2 threads took 10-15x
 * as long as 1 (issue 11). Every KDI_TEAM_PERIOD_NS the caller counts the runnable threads of the
 * machine (/proc/loadavg) less its own process's (/proc/self/task) and wakes at most the cores
 * left free, at least 1. Without /proc (or not on Linux): nt. */
#define KDI_TEAM_PERIOD_NS 50000000
int kdi_team_for(int nt);
/* Tests: hold the cap at `cap` threads (0: count again), to check that results do not depend on it. */
void kdi_team_force(int cap);

#ifdef _OPENMP
#include <omp.h>
#endif

#define KDI_PRAGMA(x) _Pragma(#x)
#ifdef _OPENMP
/* Before a `for` loop: split its iterations statically over nt threads, or over the fewer that
 * kdi_team_for leaves (nt == 1: a team of one, still a call into libgomp; KDI_FOR avoids it). */
#define KDI_PARALLEL_FOR(nt)                                                                       \
    KDI_PRAGMA(omp parallel for schedule(static) num_threads(kdi_team_for(nt)) if(nt > 1))
/* The calling thread's number in the innermost parallel region, 0 outside one: which slot of a
 * per-thread workspace it owns. */
static inline int kdi_thread_id(void) { return omp_get_thread_num(); }
/* The threads of the innermost region, which may be fewer than asked (nested regions). */
static inline int kdi_team_size(void) { return omp_get_num_threads(); }
/* Whether the caller runs inside a parallel region (then no helper, no nested split). */
static inline int kdi_in_parallel(void) { return omp_in_parallel(); }
#else
#define KDI_PARALLEL_FOR(nt) (void)(nt);
static inline int kdi_thread_id(void) { return 0; }
static inline int kdi_team_size(void) { return 1; }
static inline int kdi_in_parallel(void) { return 0; }
#endif

/* Part t of `parts` of n values, [*lo, *hi): whole blocks of KDI_BLOCK values (a multiple of every
 * vector width), so a SIMD kernel run part by part treats each value as it would in one call (the
 * same values fall in its vector body and its tail), on every thread count. */
#define KDI_BLOCK 64
static inline void kdi_part(int64_t n, int64_t t, int64_t parts, int64_t *lo, int64_t *hi)
{
    int64_t blocks = (n + KDI_BLOCK - 1) / KDI_BLOCK;
    *lo = blocks * t / parts * KDI_BLOCK;
    *hi = blocks * (t + 1) / parts * KDI_BLOCK;
    if (*lo > n) *lo = n;
    if (*hi > n) *hi = n;
}

/* Work stealing, own parts first (as XNNPACK's pthreadpool): a region of nt threads splits its
 * work into up to KDI_STEAL_PARTS parts a thread; each thread runs its own parts in order, then
 * takes the parts the others have not started. The cores of a shared machine do not run at one
 * speed: on the 2-core VM of bench/RESULTS.md one ran 15-45% slower than the other for an hour at a
 * time, and with one part a thread the faster waited at the end of every region. With even cores
 * each thread still runs its own contiguous slice. Which thread runs a part changes no value.
 * Regions of more than KDI_STEAL_QUEUES threads (the queues live on the caller's stack, 64 bytes
 * each, a cache line apiece) run one part a thread instead. */
#define KDI_STEAL_PARTS 8
#define KDI_STEAL_QUEUES 32
typedef struct {
    _Alignas(64) _Atomic int64_t next; /* its thread's next part */
    int64_t end;
} kdi_queue;

/* The parts of `blocks` blocks of work for nt threads (nt <= KDI_STEAL_QUEUES), dealt to q[0..nt). */
static inline int64_t kdi_queues_init(kdi_queue *q, int nt, int64_t blocks)
{
    int64_t parts = (int64_t)nt * KDI_STEAL_PARTS < blocks ? (int64_t)nt * KDI_STEAL_PARTS : blocks;
    for (int t = 0; t < nt; t++) {
        atomic_init(&q[t].next, parts * t / nt);
        q[t].end = parts * (t + 1) / nt;
    }
    return parts;
}

/* Thread t's next part: its own, else another's; -1 when none is left. */
static inline int64_t kdi_queues_take(kdi_queue *q, int nt, int t)
{
    for (int v = 0; v < nt; v++) {
        kdi_queue *o = &q[(t + v) % nt];
        if (atomic_load_explicit(&o->next, memory_order_relaxed) >= o->end) continue;
        int64_t p = atomic_fetch_add_explicit(&o->next, 1, memory_order_relaxed);
        if (p < o->end) return p;
    }
    return -1;
}

/* Runs the statement (the rest of the arguments) for each part p of `blocks` blocks of work on nt
 * threads, with int64_t `parts` (their count) and p in scope. The statement is the body of a loop
 * over a thread's parts: a `break` in it would end only that thread's share. */
#define KDI_STEAL(nt, blocks, parts, p, ...)                                                       \
    do {                                                                                           \
        kdi_queue kdi_q_[KDI_STEAL_QUEUES];                                                        \
        const int kdi_snt_ = (nt), kdi_steal_ = kdi_snt_ <= KDI_STEAL_QUEUES;                      \
        const int64_t parts = kdi_steal_ ? kdi_queues_init(kdi_q_, kdi_snt_, (blocks)) : kdi_snt_; \
        (void)parts;                                                                               \
        KDI_PARALLEL_FOR(kdi_snt_)                                                                 \
        for (int kdi_t_ = 0; kdi_t_ < kdi_snt_; kdi_t_++)                                          \
            for (int64_t p, kdi_once_ = 0;                                                         \
                 (p = kdi_steal_    ? kdi_queues_take(kdi_q_, kdi_snt_, kdi_t_)                    \
                      : kdi_once_++ ? -1                                                           \
                                    : kdi_t_) >= 0;)                                               \
                __VA_ARGS__;                                                                       \
    } while (0)

/* Runs the statement (the rest of the arguments) for each int64_t i in [0, n) on nt threads, in
 * parts of consecutive i taken by work stealing (KDI_STEAL); with nt 1 in a plain loop on the
 * calling thread, with no call into libgomp at all: even a region of one costs microseconds
 * (batch-1 latency; the small CNN's prediction on 2 threads went from 21-23 to 17-18 us). The
 * iterations must be independent (no `break`: see KDI_STEAL); the statement may use
 * kdi_thread_id(). */
#define KDI_FOR(nt, i, n, ...)                                                                     \
    do {                                                                                           \
        const int64_t kdi_n_ = (n);                                                                \
        const int kdi_nt_ = (nt);                                                                  \
        if (kdi_nt_ <= 1) {                                                                        \
            for (int64_t i = 0; i < kdi_n_; i++) __VA_ARGS__;                                      \
        } else {                                                                                   \
            KDI_STEAL(kdi_nt_, kdi_n_, kdi_parts_, kdi_p_, {                                       \
                const int64_t kdi_hi_ = kdi_n_ * (kdi_p_ + 1) / kdi_parts_;                        \
                for (int64_t i = kdi_n_ * kdi_p_ / kdi_parts_; i < kdi_hi_; i++) __VA_ARGS__;      \
            });                                                                                    \
        }                                                                                          \
    } while (0)

/* Runs the statement CALL once per part of n values, with int64_t lo and hi in scope: an
 * elementwise kernel over parts of whole KDI_BLOCK blocks, on kdi_threads_for(n) threads. */
#define KDI_PARTS(n, CALL)                                                                         \
    do {                                                                                           \
        const int64_t n_ = (n);                                                                    \
        const int nt_ = kdi_threads_for(n_);                                                       \
        if (nt_ <= 1) {                                                                            \
            int64_t lo = 0, hi = n_;                                                               \
            if (lo < hi) CALL;                                                                     \
        } else {                                                                                   \
            KDI_STEAL(nt_, (n_ + KDI_BLOCK - 1) / KDI_BLOCK, parts_, p_, {                         \
                int64_t lo, hi;                                                                    \
                kdi_part(n_, p_, parts_, &lo, &hi);                                                \
                if (lo < hi) CALL;                                                                 \
            });                                                                                    \
        }                                                                                          \
    } while (0)

#endif
