/* A second core for work too short for an OpenMP region: batch-1 inference's GEMVs and
 * convolutions.
 *
 * Why not OpenMP: on the 2-core Zen 5 host of bench/RESULTS.md an empty libgomp region of 2
 * threads costs 2.8-3.1 us, even with OMP_WAIT_POLICY=active, while the 784 x 256 GEMV of the
 * kd student's first layer takes 7-8 us on one core; handing half of it to a thread that spins on
 * a flag costs 0.06-0.5 us (issue 11). So libkd keeps one helper thread of its own, used only by
 * kdi_helper_parts below.
 *
 * The helper is started by the first call that can use it, spins (with pause) for
 * KDI_HELPER_SPIN_NS after its last part and then sleeps on a condition variable. A caller never
 * waits for it to wake: if it is asleep or serving another caller, the caller runs every part
 * itself (and wakes it for the next call only when calls come closer than its spinning time, so
 * sparse calls do not keep it spinning). Once it has joined, the caller waits for its last part:
 * if that took longer than KDI_HELPER_PATIENCE_NS (the helper lost its core to another thread),
 * calls run alone for a back-off: KDI_HELPER_BACKOFF_MIN_NS after a lone wait (the host took the
 * core once), doubled by each wait that follows the last back-off closely, up to
 * KDI_HELPER_BACKOFF_NS; so on a busy machine about one call in each 0.1 s pays a time slice. (A
 * fixed 0.1 s back-off left a quarter to a half of the calls alone on the quiet benchmark host,
 * which took the helper's core a few times a second.) Nor is it used from a thread pinned to one CPU, or from the CPU it
 * last ran on. It blocks every signal, is named "kd-helper", has a 256 KB stack (glibc's, not
 * through kd_set_allocator's hooks) and is joined when libkd is unloaded; a fork's child starts its
 * own on first use. */
#ifndef KDI_HELPER_H
#define KDI_HELPER_H

#include <stdint.h>

#define KDI_HELPER_SPIN_NS 200000
#define KDI_HELPER_PATIENCE_NS 100000
#define KDI_HELPER_BACKOFF_MIN_NS 1000000
#define KDI_HELPER_BACKOFF_NS 100000000
#define KDI_HELPER_STACK (256 * 1024)

/* Runs fn(arg, p) for every p in [0, parts), each exactly once: the caller takes parts from 0 up,
 * the helper, when it is awake and free, from parts - 1 down, so a part lands on the same core
 * call after call (the helper's share of a layer's weights stays in its core's L2). Returns when
 * every part is done. Parts must write disjoint outputs; each part's result must not depend on
 * which thread runs it (then results are bitwise equal to one thread's). Only for kdi_threads()
 * >= 2 and outside OpenMP regions (the caller checks). */
void kdi_helper_parts(int64_t parts, void (*fn)(void *arg, int64_t part), void *arg);

/* Tests: 1 makes kdi_helper_parts wait (spinning, waking it) for the helper to join every call,
 * so both threads run parts, whatever the back-off and CPUs; 0 restores the default. */
void kdi_helper_force_join(int on);

#endif
