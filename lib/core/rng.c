#include "core/rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void kdi_rng_seed(kdi_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

/* xoshiro256** (Blackman and Vigna 2018). */
uint64_t kdi_rng_next(kdi_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float kdi_rng_uniform(kdi_rng *r) { return (float)(kdi_rng_next(r) >> 40) * 0x1.0p-24f; }

uint64_t kdi_rng_below(kdi_rng *r, uint64_t n)
{
    /* Rejection keeps the result unbiased for any n. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = kdi_rng_next(r);
    while (x >= limit);
    return x % n;
}

float kdi_rng_normal(kdi_rng *r)
{
    double u1 = ((double)(kdi_rng_next(r) >> 11) + 1.0) * 0x1.0p-53;
    double u2 = (double)(kdi_rng_next(r) >> 11) * 0x1.0p-53;
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * 3.14159265358979323846 * u2));
}

uint64_t kdi_rng_derive(uint64_t seed, uint64_t index)
{
    uint64_t x = seed ^ (index * 0xd1b54a32d192ed03ULL);
    splitmix64(&x);
    return splitmix64(&x);
}
