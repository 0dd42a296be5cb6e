/* The AVX2 kernel table: simd_kernels.h on 8-float vectors, compiled with -mavx2 -mfma. */
#define KD_VEC_AVX2
#define KDI_SIMD_TABLE kdi_kernels_avx2
#define KDI_SIMD_NAME "avx2"
#include "kernels/simd_kernels.h"
