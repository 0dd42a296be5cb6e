/* Seeded random numbers (xoshiro256**, seeded through splitmix64): reproducible everywhere. */
#ifndef KDI_RNG_H
#define KDI_RNG_H

#include <stdint.h>

typedef struct kdi_rng { /* also named struct kdi_rng in layer.h */
    uint64_t s[4];
} kdi_rng;

void kdi_rng_seed(kdi_rng *r, uint64_t seed);
uint64_t kdi_rng_next(kdi_rng *r);
/* Uniform in [0, 1). */
float kdi_rng_uniform(kdi_rng *r);
/* Uniform integer in [0, n). */
uint64_t kdi_rng_below(kdi_rng *r, uint64_t n);
/* Standard normal (Box-Muller). */
float kdi_rng_normal(kdi_rng *r);
/* A seed for a sub-stream (a layer, an epoch) derived from a parent seed and an index. */
uint64_t kdi_rng_derive(uint64_t seed, uint64_t index);

#endif
