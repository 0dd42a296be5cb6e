/* The vector layer under simd_kernels.h: a float vector `vf` of VEC_W lanes, a double vector `vd` of
 * VEC_W / 2 lanes (a vf widens into two), a lane mask `vmask`, and the operations the kernels use,
 * mapped to one instruction set chosen by KD_VEC_AVX2 or KD_VEC_AVX512 (in the spirit of ggml's
 * simd-mappings.h). Only this file knows intrinsics; the kernels and vec_math.h are written once
 * against it, so the variants cannot drift apart.
 *
 * Operations whose intrinsics differ only by the _mm256 / _mm512 prefix are written once below;
 * the ISA sections hold what really differs: masks and tails, rounding, scaling by 2^n, blends,
 * horizontal reductions and the float / double halves.
 *
 * Tails: vf_load_n / vf_store_n touch the first `left` lanes only (all of them when left >= VEC_W),
 * so every loop has one body and never reads or writes past the end of an array. */
#ifndef KDI_VEC_H
#define KDI_VEC_H

#include <immintrin.h>
#include <stdint.h>

#if defined(KD_VEC_AVX512)
#if !defined(__AVX512F__) || !defined(__AVX512DQ__) || !defined(__FMA__)
#error "KD_VEC_AVX512 needs -mavx512f -mavx512dq -mfma (CMakeLists.txt sets them per file)"
#endif
#define VEC_W 16
typedef __m512 vf;
typedef __m512d vd;
typedef __mmask16 vmask;
#define VEC_PS(op) _mm512_##op##_ps
#define VEC_PD(op) _mm512_##op##_pd

#elif defined(KD_VEC_AVX2)
#if !defined(__AVX2__) || !defined(__FMA__)
#error "KD_VEC_AVX2 needs -mavx2 -mfma (CMakeLists.txt sets them per file)"
#endif
#define VEC_W 8
typedef __m256 vf;
typedef __m256d vd;
typedef __m256 vmask; /* all ones or all zeros in each lane, as the compares return */
#define VEC_PS(op) _mm256_##op##_ps
#define VEC_PD(op) _mm256_##op##_pd

#else
#error "define KD_VEC_AVX2 or KD_VEC_AVX512 before including vec.h"
#endif

/* ---------------------------------------------------------------- the same on every ISA */

static inline vf vf_load(const float *p) { return VEC_PS(loadu)(p); }
static inline vf vf_set1(float x) { return VEC_PS(set1)(x); }
static inline vf vf_zero(void) { return VEC_PS(setzero)(); }
static inline vf vf_add(vf a, vf b) { return VEC_PS(add)(a, b); }
static inline vf vf_sub(vf a, vf b) { return VEC_PS(sub)(a, b); }
static inline vf vf_mul(vf a, vf b) { return VEC_PS(mul)(a, b); }
static inline vf vf_div(vf a, vf b) { return VEC_PS(div)(a, b); }
static inline vf vf_sqrt(vf a) { return VEC_PS(sqrt)(a); }
/* max and min return their second operand when either is NaN (and for max(-0, 0)), as x86 does. */
static inline vf vf_max(vf a, vf b) { return VEC_PS(max)(a, b); }
static inline vf vf_min(vf a, vf b) { return VEC_PS(min)(a, b); }
/* a b + c and c - a b, rounded once. */
static inline vf vf_fmadd(vf a, vf b, vf c) { return VEC_PS(fmadd)(a, b, c); }
static inline vf vf_fnmadd(vf a, vf b, vf c) { return VEC_PS(fnmadd)(a, b, c); }
static inline vf vf_neg(vf a) { return VEC_PS(xor)(a, vf_set1(-0.0f)); }
/* a with the sign bit of s set in it: s's sign on a >= 0. */
static inline vf vf_or_sign(vf a, vf s) { return VEC_PS(or)(a, VEC_PS(and)(s, vf_set1(-0.0f))); }

static inline vd vd_zero(void) { return VEC_PD(setzero)(); }
static inline vd vd_add(vd a, vd b) { return VEC_PD(add)(a, b); }
static inline vd vd_fmadd(vd a, vd b, vd c) { return VEC_PD(fmadd)(a, b, c); }

#if defined(KD_VEC_AVX512)
/* ---------------------------------------------------------------- AVX-512 */

/* All ones in the lanes below `left`. */
static inline vmask vmask_first(int64_t left)
{
    return left >= VEC_W ? (vmask)0xFFFF : (vmask)((1u << left) - 1u);
}

/* Masked for every vector; for the full ones, whose mask is all ones, GCC emits plain loads and
 * stores. */
static inline vf vf_load_n(const float *p, int64_t left)
{
    return _mm512_maskz_loadu_ps(vmask_first(left), p);
}
/* The first `left` values at p, `fill` in the lanes past them. */
static inline vf vf_load_n_or(const float *p, int64_t left, vf fill)
{
    return _mm512_mask_loadu_ps(fill, vmask_first(left), p);
}
static inline void vf_store_n(float *p, int64_t left, vf v)
{
    _mm512_mask_storeu_ps(p, vmask_first(left), v);
}

static inline vf vf_abs(vf a) { return _mm512_abs_ps(a); }
static inline vf vf_round(vf a)
{
    return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
/* a 2^n for integral n: scalef overflows to inf and underflows gradually, as the exact product. */
static inline vf vf_ldexp(vf a, vf n) { return _mm512_scalef_ps(a, n); }

static inline vmask vf_gt(vf a, vf b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
static inline vmask vf_lt(vf a, vf b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
/* a where m is set, else b; a where m is set, else 0. */
static inline vf vf_select(vmask m, vf a, vf b) { return _mm512_mask_blend_ps(m, b, a); }
static inline vf vf_keep(vmask m, vf a) { return _mm512_maskz_mov_ps(m, a); }
/* v in the first `left` lanes, 0 past them. */
static inline vf vf_keep_n(vf v, int64_t left) { return vf_keep(vmask_first(left), v); }
static inline float vf_hmax(vf v) { return _mm512_reduce_max_ps(v); }
static inline float vf_hsum(vf v) { return _mm512_reduce_add_ps(v); }

/* The low and the high half of v, widened to double. */
static inline vd vd_lo(vf v) { return _mm512_cvtps_pd(_mm512_castps512_ps256(v)); }
static inline vd vd_hi(vf v) { return _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1)); }
/* The float vector of halves lo and hi, each rounded to float. */
static inline vf vf_from_vd(vd lo, vd hi)
{
    return _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(lo)), _mm512_cvtpd_ps(hi), 1);
}
static inline double vd_hsum(vd v) { return _mm512_reduce_add_pd(v); }

#else
/* ---------------------------------------------------------------- AVX2 */

/* All ones in the lanes below `left`. */
static inline vmask vmask_first(int64_t left)
{
    int n = left >= VEC_W ? VEC_W : (int)left;
    return _mm256_castsi256_ps(
        _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
}

/* Masked only for the last vector: vmaskmovps is slow on AMD, its store most of all. */
static inline vf vf_load_n(const float *p, int64_t left)
{
    return left >= VEC_W ? _mm256_loadu_ps(p)
                         : _mm256_maskload_ps(p, _mm256_castps_si256(vmask_first(left)));
}
/* The first `left` values at p, `fill` in the lanes past them. */
static inline vf vf_load_n_or(const float *p, int64_t left, vf fill)
{
    vmask m = vmask_first(left);
    return left >= VEC_W ? _mm256_loadu_ps(p)
                         : _mm256_blendv_ps(fill, _mm256_maskload_ps(p, _mm256_castps_si256(m)), m);
}
static inline void vf_store_n(float *p, int64_t left, vf v)
{
    if (left >= VEC_W)
        _mm256_storeu_ps(p, v);
    else
        _mm256_maskstore_ps(p, _mm256_castps_si256(vmask_first(left)), v);
}

static inline vf vf_abs(vf a) { return _mm256_andnot_ps(vf_set1(-0.0f), a); }
static inline vf vf_round(vf a)
{
    return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
/* a 2^n for integral n in [-252, 254], as two factors that are normal floats, so the product
 * overflows to inf and underflows gradually just as the exact power would. */
static inline vf vf_ldexp(vf a, vf n)
{
    __m256i ni = _mm256_cvtps_epi32(n), half = _mm256_srai_epi32(ni, 1),
            bias = _mm256_set1_epi32(127);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(half, bias), 23));
    __m256i rest = _mm256_sub_epi32(ni, half);
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(rest, bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(a, s1), s2);
}

static inline vmask vf_gt(vf a, vf b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
static inline vmask vf_lt(vf a, vf b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
/* a where m is set, else b; a where m is set, else 0. */
static inline vf vf_select(vmask m, vf a, vf b) { return _mm256_blendv_ps(b, a, m); }
static inline vf vf_keep(vmask m, vf a) { return _mm256_and_ps(m, a); }
/* v in the first `left` lanes, 0 past them. */
static inline vf vf_keep_n(vf v, int64_t left)
{
    return left >= VEC_W ? v : vf_keep(vmask_first(left), v);
}
static inline float vf_hmax(vf v)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
}
static inline float vf_hsum(vf v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

/* The low and the high half of v, widened to double. */
static inline vd vd_lo(vf v) { return _mm256_cvtps_pd(_mm256_castps256_ps128(v)); }
static inline vd vd_hi(vf v) { return _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)); }
/* The float vector of halves lo and hi, each rounded to float. */
static inline vf vf_from_vd(vd lo, vd hi)
{
    return _mm256_set_m128(_mm256_cvtpd_ps(hi), _mm256_cvtpd_ps(lo));
}
static inline double vd_hsum(vd v)
{
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}
#endif

#endif
