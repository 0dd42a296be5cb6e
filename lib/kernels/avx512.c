/* The AVX-512 variant: simd_body.h compiled with -mavx512f/dq/bw/vl -mfma -O3. */
#define KDI_VARIANT_TABLE kdi_kernels_avx512
#define KDI_VARIANT_NAME "avx512"
#include "simd_body.h"
