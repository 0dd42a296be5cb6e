/* The AVX-512 kernel table: simd_kernels.h on 16-float vectors, compiled with -mavx512f -mavx512dq
 * -mavx512bw -mavx512vl -mfma. */
#define KD_VEC_AVX512
#define KDI_SIMD_TABLE kdi_kernels_avx512
#define KDI_SIMD_NAME "avx512"
#include "kernels/simd_kernels.h"
