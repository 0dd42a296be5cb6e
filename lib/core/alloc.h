/* Every allocation of the library goes through here, so a host's allocator (kd_set_allocator) sees
 * all of it: counting allocators (the zero-allocation test of a warmed-up step), arenas, and the
 * fault-injection tests that fail the Nth allocation. Nothing else in lib/ calls malloc and friends
 * (tests/alloc_check.sh enforces it on the built objects). */
#ifndef KDI_ALLOC_H
#define KDI_ALLOC_H

#include <stddef.h>

void *kdi_malloc(size_t size);
void *kdi_calloc(size_t n, size_t size);
void *kdi_realloc(void *p, size_t size);
void kdi_free(void *p);
/* size bytes aligned to align (a power of two, at most 4096), from the same allocator; freed only
 * by kdi_aligned_free. */
void *kdi_aligned_alloc(size_t align, size_t size);
void kdi_aligned_free(void *p);

#endif
