/* Shared helpers of the Check suites: finite-difference gradient checks, file fixtures. */
#ifndef KD_TESTUTIL_H
#define KD_TESTUTIL_H

#include <check.h>
#include <stdint.h>

#include "core/tensor.h"
#include "kd.h"

/* Runs a suite and returns the process exit code (0 when every test passed). */
int kdt_run(Suite *s);

/* Deterministic values in [lo, hi) from a seed, for test inputs. */
void kdt_fill(float *x, int64_t n, uint64_t seed, float lo, float hi);

/* Central-difference check of an analytic gradient: f(ctx) evaluates the scalar objective (in
 * double) from the current contents of x; grad holds the analytic gradient with respect to x.
 * Probes up to max_probe evenly spread coordinates with step eps; returns the largest relative error
 * |g - fd| / max(1e-3, |g| + |fd|). */
double kdt_gradcheck(double (*f)(void *ctx), void *ctx, float *x, const float *grad, int64_t n,
                     double eps, int64_t max_probe);

/* d/dt f(v + t u) at t = 0 by central differences (*fd), for a random direction u from seed, and
 * the analytic <g, u> (*want): one number that sums the signal of every coordinate, where a
 * per-coordinate difference of float sums is mostly rounding (normalisation layers make many
 * single-coordinate gradients tiny). v is restored. */
void kdt_directional(double (*f)(void *ctx), void *ctx, float *v, const float *g, int64_t n,
                     uint64_t seed, double *fd, double *want);

/* Gradient check of a chain of layers built from spec for input shape: d/dx and d/d(every trainable
 * parameter) of sum(w * y), w random, against central differences; inputs uniform in [lo, hi), and
 * with lo > 0 every other input negated so kinks at 0 are straddled but never approached. */
void kdt_check_gradients(const char *spec, kdi_shape shape, int64_t batch, float lo, float hi);

/* The same checks along three random directions each, in training mode: one number sums every
 * coordinate's signal, where single-coordinate differences through normalisation layers are mostly
 * rounding. Errors are relative, with a floor tied to the objective's size. */
void kdt_check_directional(const char *spec, kdi_shape shape, int64_t batch);

/* A path under a fresh temporary directory (removed by the OS; tests clean what they make). */
const char *kdt_tmpdir(void);

/* The committed data directory (tests/data). */
#define KDT_DATA KD_TEST_DATA

#endif
