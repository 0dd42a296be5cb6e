/* --threads N: the one place where the tool sets how many threads the library's kernels use.
 *
 * MERGE: another branch adds a public kd_set_threads(n) to kd.h; once it is there, this body
 * becomes `return kd_set_threads(n) == KD_OK ? 0 : -1;` and the dlsym below goes away. Until
 * then the threads are OpenBLAS's (the matrix products), set through openblas_set_num_threads,
 * looked up at run time because the tool does not link OpenBLAS itself (libkd does). */
#define _GNU_SOURCE /* RTLD_DEFAULT */
#include <dlfcn.h>

#include "common.h"

int set_threads(int n)
{
    void *sym = dlsym(RTLD_DEFAULT, "openblas_set_num_threads");
    if (sym == NULL) return -1;
    void (*set)(int);
    *(void **)&set = sym; /* ISO C has no function-pointer cast from void * */
    set(n);
    return 0;
}
