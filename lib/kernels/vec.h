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
#if !defined(__AVX512F__) || !defined(__AVX512DQ__) || !defined(__FMA__) || !defined(__AVX512VNNI__)
#error                                                                                             \
    "KD_VEC_AVX512 needs -mavx512f -mavx512dq -mavx512vnni -mfma (CMakeLists.txt sets them per file)"
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
static inline void vf_store(float *p, vf v) { VEC_PS(storeu)(p, v); }
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

/* The first steps of vf_transpose: in every 128-bit lane, the 4 x 4 blocks of rows 4i..4i+3
 * transposed (u[4i + k] holds, lane by lane, column k of those rows). */
static inline void vf_transpose_in_lanes(const vf *r, vf *u)
{
    vf t[VEC_W];
    for (int i = 0; i < VEC_W / 2; i++) {
        t[2 * i] = VEC_PS(unpacklo)(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = VEC_PS(unpackhi)(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < VEC_W / 4; i++) {
        u[4 * i] = VEC_PS(shuffle)(t[4 * i], t[4 * i + 2], 0x44);
        u[4 * i + 1] = VEC_PS(shuffle)(t[4 * i], t[4 * i + 2], 0xEE);
        u[4 * i + 2] = VEC_PS(shuffle)(t[4 * i + 1], t[4 * i + 3], 0x44);
        u[4 * i + 3] = VEC_PS(shuffle)(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
}

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
static inline vmask vf_eq(vf a, vf b) { return _mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ); }
/* The even and the odd lanes of the 2 W values a, b (a first), each in order; and back. */
static inline void vf_deinterleave(vf a, vf b, vf *even, vf *odd)
{
    const __m512i e = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    *even = _mm512_permutex2var_ps(a, e, b);
    *odd = _mm512_permutex2var_ps(a, _mm512_add_epi32(e, _mm512_set1_epi32(1)), b);
}
/* r[i][j] <-> r[j][i]: a W x W block transposed in registers (4 x 4 within lanes, then the
 * 128-bit lanes). */
static inline void vf_transpose(vf r[16])
{
    vf u[16], v[16];
    vf_transpose_in_lanes(r, u);
    for (int k = 0; k < 4; k++) {
        v[k] = _mm512_shuffle_f32x4(u[k], u[4 + k], 0x88);
        v[4 + k] = _mm512_shuffle_f32x4(u[k], u[4 + k], 0xDD);
        v[8 + k] = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0x88);
        v[12 + k] = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0xDD);
    }
    for (int k = 0; k < 4; k++) {
        r[k] = _mm512_shuffle_f32x4(v[k], v[8 + k], 0x88);
        r[8 + k] = _mm512_shuffle_f32x4(v[k], v[8 + k], 0xDD);
        r[4 + k] = _mm512_shuffle_f32x4(v[4 + k], v[12 + k], 0x88);
        r[12 + k] = _mm512_shuffle_f32x4(v[4 + k], v[12 + k], 0xDD);
    }
}
static inline void vf_interleave(vf even, vf odd, vf *a, vf *b)
{
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    *a = _mm512_permutex2var_ps(even, lo, odd);
    *b = _mm512_permutex2var_ps(even, _mm512_add_epi32(lo, _mm512_set1_epi32(8)), odd);
}
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

/* ---- integers, for the int8 kernels: a vector `vq` of VEC_B bytes (VEC_W int32 lanes). */
#define VEC_B 64
typedef __m512i vq;
static inline vq vq_zero(void) { return _mm512_setzero_si512(); }
/* The first `left` bytes at p, zeros past them. */
static inline vq vq_load_bytes_n(const void *p, int64_t left)
{
    __mmask64 m = left >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << left) - 1);
    return _mm512_maskz_loadu_epi8(m, p);
}
/* acc[l] += sum_{t<4} a[4l+t] b[4l+t], a unsigned and b signed bytes, exact in int32 (VNNI's
 * vpdpbusd, which never saturates). */
static inline vq vq_dot_u8s8(vq acc, vq a, vq b)
{
    /* Inline assembly ties the sum to its register: with the intrinsic, GCC 12 copied every sum
     * of qgemm_u8s8's tile through another register each group and spilled two to the stack. */
    __asm__("vpdpbusd %[b], %[a], %[acc]" : [acc] "+v"(acc) : [a] "v"(a), [b] "v"(b));
    return acc;
}
static inline int32_t vq_hsum(vq v) { return _mm512_reduce_add_epi32(v); }
static inline vq vq_load(const void *p) { return _mm512_loadu_si512(p); }
static inline vq vq_set1_i32(int32_t x) { return _mm512_set1_epi32(x); }
/* Stores the first `left` int32 lanes of v. */
static inline void vq_store_i32_n(int32_t *p, int64_t left, vq v)
{
    _mm512_mask_storeu_epi32(p, vmask_first(left), v);
}
/* The first `left` int32 at p as floats (0 past them). */
static inline vf vf_from_i32_n(const int32_t *p, int64_t left)
{
    return _mm512_cvtepi32_ps(_mm512_maskz_loadu_epi32(vmask_first(left), p));
}
static inline vf vf_from_i32_plus_n(const int32_t *p, const int32_t *q, int64_t left)
{
    vmask m = vmask_first(left);
    return _mm512_cvtepi32_ps(
        _mm512_add_epi32(_mm512_maskz_loadu_epi32(m, p), _mm512_maskz_loadu_epi32(m, q)));
}
/* Stores the first `left` lanes of v, integral values in 0..255, as bytes. */
static inline void vf_store_u8_n(uint8_t *p, int64_t left, vf v)
{
    _mm_mask_storeu_epi8(p, (__mmask16)vmask_first(left),
                         _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(v)));
}
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
static inline vmask vf_eq(vf a, vf b) { return _mm256_cmp_ps(a, b, _CMP_EQ_OQ); }
/* The even and the odd lanes of the 2 W values a, b (a first), each in order; and back. */
static inline void vf_deinterleave(vf a, vf b, vf *even, vf *odd)
{
    /* shuffle_ps works within 128-bit halves: a0 a2 b0 b2 | a4 a6 b4 b6, then the 64-bit pairs
     * reordered */
    *even = _mm256_castpd_ps(
        _mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xD8));
    *odd = _mm256_castpd_ps(
        _mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xDD)), 0xD8));
}
/* r[i][j] <-> r[j][i]: a W x W block transposed in registers (4 x 4 within lanes, then the
 * 128-bit lanes). */
static inline void vf_transpose(vf r[8])
{
    vf u[8];
    vf_transpose_in_lanes(r, u);
    for (int k = 0; k < 4; k++) {
        r[k] = _mm256_permute2f128_ps(u[k], u[4 + k], 0x20);
        r[4 + k] = _mm256_permute2f128_ps(u[k], u[4 + k], 0x31);
    }
}
static inline void vf_interleave(vf even, vf odd, vf *a, vf *b)
{
    vf lo = _mm256_unpacklo_ps(even, odd), hi = _mm256_unpackhi_ps(even, odd);
    *a = _mm256_permute2f128_ps(lo, hi, 0x20);
    *b = _mm256_permute2f128_ps(lo, hi, 0x31);
}
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

/* ---- integers, for the int8 kernels: a vector `vq` of VEC_B bytes (VEC_W int32 lanes). */
#define VEC_B 32
typedef __m256i vq;
static inline vq vq_zero(void) { return _mm256_setzero_si256(); }
/* The first `left` bytes at p, zeros past them (the short tail through a zeroed copy). */
static inline vq vq_load_bytes_n(const void *p, int64_t left)
{
    if (left >= 32) return _mm256_loadu_si256((const __m256i *)p);
    uint8_t tmp[32] = {0};
    for (int64_t i = 0; i < left; i++) tmp[i] = ((const uint8_t *)p)[i];
    return _mm256_loadu_si256((const __m256i *)tmp);
}
/* acc[l] += sum_{t<4} a[4l+t] b[4l+t], a unsigned and b signed bytes, exact in int32: the even and
 * odd bytes widened to 16 bits and multiplied by vpmaddwd (no vpmaddubsw: it saturates). */
static inline vq vq_dot_u8s8(vq acc, vq a, vq b)
{
    __m256i lo8 = _mm256_set1_epi16(0x00FF);
    __m256i a_even = _mm256_and_si256(a, lo8), a_odd = _mm256_srli_epi16(a, 8);
    __m256i b_even = _mm256_srai_epi16(_mm256_slli_epi16(b, 8), 8), b_odd = _mm256_srai_epi16(b, 8);
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(a_even, b_even));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(a_odd, b_odd));
}
static inline int32_t vq_hsum(vq v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}
static inline vq vq_load(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }
static inline vq vq_set1_i32(int32_t x) { return _mm256_set1_epi32(x); }
/* Stores the first `left` int32 lanes of v. */
static inline void vq_store_i32_n(int32_t *p, int64_t left, vq v)
{
    if (left >= VEC_W)
        _mm256_storeu_si256((__m256i *)p, v);
    else if (left > 0)
        _mm256_maskstore_epi32(p, _mm256_castps_si256(vmask_first(left)), v);
}
static inline __m256i vq_load_i32_n(const int32_t *p, int64_t left)
{
    return left >= VEC_W ? _mm256_loadu_si256((const __m256i *)p)
                         : _mm256_maskload_epi32(p, _mm256_castps_si256(vmask_first(left)));
}
/* The first `left` int32 at p as floats (0 past them). */
static inline vf vf_from_i32_n(const int32_t *p, int64_t left)
{
    return _mm256_cvtepi32_ps(vq_load_i32_n(p, left));
}
static inline vf vf_from_i32_plus_n(const int32_t *p, const int32_t *q, int64_t left)
{
    return _mm256_cvtepi32_ps(_mm256_add_epi32(vq_load_i32_n(p, left), vq_load_i32_n(q, left)));
}
/* Stores the first `left` lanes of v, integral values in 0..255, as bytes. */
static inline void vf_store_u8_n(uint8_t *p, int64_t left, vf v)
{
    int32_t tmp[8];
    _mm256_storeu_si256((__m256i *)tmp, _mm256_cvtps_epi32(v));
    int64_t n = left >= VEC_W ? VEC_W : left;
    for (int64_t i = 0; i < n; i++) p[i] = (uint8_t)tmp[i];
}
#endif

#endif
