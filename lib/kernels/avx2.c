/* The AVX2 + FMA variant: simd_body.h compiled with -mavx2 -mfma -O3. */
#define KDI_VARIANT_TABLE kdi_kernels_avx2
#define KDI_VARIANT_NAME "avx2"
#include "simd_body.h"
