#include "core/tensor.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/threads.h"

#define KDI_ALIGN 64

int kdi_mul_ok(int64_t n, int64_t m, int64_t *out)
{
    if (n < 0 || m < 0) return 0;
    if (n != 0 && m > INT64_MAX / n) return 0;
    *out = n * m;
    return 1;
}

/* The bytes kdi_alloc_floats(n) takes, 0 when n overflows them. */
static size_t floats_bytes(int64_t n)
{
    int64_t bytes;
    if (n < 0 || !kdi_mul_ok(n, (int64_t)sizeof(float), &bytes)) return 0;
    if (bytes == 0) bytes = KDI_ALIGN;
    bytes = (bytes + KDI_ALIGN - 1) / KDI_ALIGN * KDI_ALIGN;
    return (uint64_t)bytes > SIZE_MAX ? 0 : (size_t)bytes;
}

float *kdi_alloc_floats(int64_t n)
{
    size_t bytes = floats_bytes(n);
    float *p = bytes > 0 ? kdi_aligned_alloc(KDI_ALIGN, bytes) : NULL;
    if (p != NULL) memset(p, 0, bytes);
    return p;
}

float *kdi_alloc_floats_raw(int64_t n)
{
    size_t bytes = floats_bytes(n);
    return bytes > 0 ? kdi_aligned_alloc(KDI_ALIGN, bytes) : NULL;
}

void kdi_free_floats(void *p) { kdi_aligned_free(p); }

kd_status kdi_buf_reserve(kdi_buf *b, int64_t n)
{
    if (n <= b->capacity) return KD_OK;
    float *p = kdi_alloc_floats(n);
    if (p == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot allocate %lld floats", (long long)n);
    kdi_free_floats(b->data);
    b->data = p;
    b->capacity = n;
    return KD_OK;
}

void kdi_buf_free(kdi_buf *b)
{
    kdi_free_floats(b->data);
    b->data = NULL;
    b->capacity = 0;
}

/* Bit 31 of the result is set where some x[i] is infinite or NaN: |x| + 2^23 sets it exactly when
 * the exponent is all ones. Only and, add and or, so the loop vectorises at the baseline ISA (a
 * float reduction would not, its order being fixed). */
static uint32_t nonfinite_bits(const float *x, int64_t n)
{
    uint32_t any = 0;
    for (int64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], sizeof u);
        any |= (u & 0x7fffffffu) + 0x00800000u;
    }
    return any;
}

int kdi_all_finite(const float *x, int64_t n)
{
    /* on libkd's threads: the scan of kd_model_evaluate's whole input (32 MB for 10240 images)
     * ran on one thread while the other waited, 8% of the call on 2 (issue 11) */
    _Atomic uint32_t any = 0;
    KDI_PARTS(
        n, atomic_fetch_or_explicit(&any, nonfinite_bits(x + lo, hi - lo), memory_order_relaxed));
    return (atomic_load(&any) & 0x80000000u) == 0;
}
