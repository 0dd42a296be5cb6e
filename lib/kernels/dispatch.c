/* Chooses the kernel table once: KD_KERNELS=ref|avx2|avx512 when set and supported, else the best
 * the CPU has. An unknown or unsupported KD_KERNELS falls back to the best supported table: the
 * variable is a tuning knob, not a way to make the library fail. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kd.h"
#include "kernels/kernels.h"

static const kdi_kernels *chosen = &kdi_kernels_ref;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static int supports(const char *name)
{
    if (strcmp(name, "ref") == 0) return 1;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (strcmp(name, "avx2") == 0) return avx2;
    if (strcmp(name, "avx512") == 0)
        return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
#endif
    return 0;
}

/* AVX-512 without VNNI (Skylake-X): the avx512 table with the AVX2 int8 kernels, whose VNNI ones
 * would fault there. Built once, under the same pthread_once as the choice. */
static kdi_kernels avx512_no_vnni;
static pthread_once_t no_vnni_once = PTHREAD_ONCE_INIT;

static void build_no_vnni(void)
{
    avx512_no_vnni = kdi_kernels_avx512;
#define KDI_FROM_AVX2(k) avx512_no_vnni.k = kdi_kernels_avx2.k;
    KDI_EACH_INT8_KERNEL(KDI_FROM_AVX2)
#undef KDI_FROM_AVX2
}

static int has_vnni(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512vnni");
#else
    return 0;
#endif
}

const kdi_kernels *kdi_kernels_variant(const char *name)
{
    if (name == NULL || !supports(name)) return NULL;
    if (strcmp(name, "avx512") == 0) {
        if (has_vnni()) return &kdi_kernels_avx512;
        pthread_once(&no_vnni_once, build_no_vnni);
        return &avx512_no_vnni;
    }
    if (strcmp(name, "avx2") == 0) return &kdi_kernels_avx2;
    return &kdi_kernels_ref;
}

static void choose(void)
{
    const char *forced = getenv("KD_KERNELS");
    const kdi_kernels *k = forced != NULL ? kdi_kernels_variant(forced) : NULL;
    if (k == NULL) k = kdi_kernels_variant("avx512");
    if (k == NULL) k = kdi_kernels_variant("avx2");
    chosen = k != NULL ? k : &kdi_kernels_ref;
}

const kdi_kernels *kdi_kernels_get(void)
{
    pthread_once(&once, choose);
    return chosen;
}

const char *kd_kernels_name(void) { return kdi_kernels_get()->name; }
