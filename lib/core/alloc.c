/* The library's allocator: libc's unless the host set its own with kd_set_allocator. */
#include "core/alloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

static void *libc_malloc(void *user, size_t size)
{
    (void)user;
    return malloc(size);
}
static void *libc_calloc(void *user, size_t n, size_t size)
{
    (void)user;
    return calloc(n, size);
}
static void *libc_realloc(void *user, void *p, size_t size)
{
    (void)user;
    return realloc(p, size);
}
static void libc_free(void *user, void *p)
{
    (void)user;
    free(p);
}

/* Set before any other call (kd.h says so), then only read: no lock needed. */
static struct {
    kd_malloc_fn malloc;
    kd_calloc_fn calloc;
    kd_realloc_fn realloc;
    kd_free_fn free;
    void *user;
} a = {libc_malloc, libc_calloc, libc_realloc, libc_free, NULL};

kd_status kd_set_allocator(kd_malloc_fn m, kd_calloc_fn c, kd_realloc_fn r, kd_free_fn f,
                           void *user)
{
    int given = (m != NULL) + (c != NULL) + (r != NULL) + (f != NULL);
    if (given != 0 && given != 4)
        return kdi_fail(KD_ERR_ARGUMENT,
                        "kd_set_allocator: give all four functions, or none for libc's");
    if (given == 0) {
        m = libc_malloc;
        c = libc_calloc;
        r = libc_realloc;
        f = libc_free;
        user = NULL;
    }
    a.malloc = m;
    a.calloc = c;
    a.realloc = r;
    a.free = f;
    a.user = user;
    return KD_OK;
}

/* A size of 0 asks for 1 byte, so NULL always means failure. */
void *kdi_malloc(size_t size) { return a.malloc(a.user, size ? size : 1); }

void *kdi_calloc(size_t n, size_t size)
{
    if (n == 0 || size == 0) n = size = 1;
    return a.calloc(a.user, n, size);
}

void *kdi_realloc(void *p, size_t size) { return a.realloc(a.user, p, size ? size : 1); }

void kdi_free(void *p)
{
    if (p != NULL) a.free(a.user, p);
}

/* The host's allocator promises no alignment beyond malloc's: over-allocate, align, and keep the
 * block's start just below the aligned pointer. */
void *kdi_aligned_alloc(size_t align, size_t size)
{
    if (size > SIZE_MAX - align - sizeof(void *)) return NULL;
    char *raw = kdi_malloc(size + align + sizeof(void *));
    if (raw == NULL) return NULL;
    uintptr_t at = ((uintptr_t)(raw + sizeof(void *)) + align - 1) & ~(uintptr_t)(align - 1);
    void *p = (void *)at;
    memcpy((char *)p - sizeof(void *), &raw, sizeof raw);
    return p;
}

void kdi_aligned_free(void *p)
{
    if (p == NULL) return;
    void *raw;
    memcpy(&raw, (char *)p - sizeof(void *), sizeof raw);
    kdi_free(raw);
}
