/* --threads N: the one place where the tool sets how many threads the library uses (its own
 * OpenMP loops and OpenBLAS's matrix products), through kd_set_threads. */
#include "common.h"

int set_threads(int n) { return kd_set_threads(n) == KD_OK ? 0 : -1; }
