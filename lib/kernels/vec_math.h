/* Vectorised exp, erfc, the normal CDF and tanh, written once against vec.h for every instruction
 * set: the same approximations, accurate to a few ulp, in the AVX2 and the AVX-512 kernels. */
#ifndef KDI_VEC_MATH_H
#define KDI_VEC_MATH_H

#include "kernels/vec.h"

/* exp(x) = 2^n exp(r), n = round(x / ln 2), |r| <= ln 2 / 2, ln 2 split in two so n ln 2 is exact
 * (Cody and Waite); exp(r) by Cephes expf's polynomial (Moshier 1989), about 1 ulp. NaN passes
 * through the clamp (min and max return their second operand for NaN); vf_ldexp overflows to inf
 * and underflows gradually. */
static inline vf v_exp(vf x)
{
    x = vf_max(vf_set1(-104.0f), vf_min(vf_set1(89.0f), x));
    vf n = vf_round(vf_mul(x, vf_set1(1.44269504088896341f)));
    vf r = vf_fnmadd(n, vf_set1(0.693359375f), x);
    r = vf_fnmadd(n, vf_set1(-2.12194440e-4f), r);
    vf p = vf_set1(1.9875691500e-4f);
    p = vf_fmadd(p, r, vf_set1(1.3981999507e-3f));
    p = vf_fmadd(p, r, vf_set1(8.3334519073e-3f));
    p = vf_fmadd(p, r, vf_set1(4.1665795894e-2f));
    p = vf_fmadd(p, r, vf_set1(1.6666665459e-1f));
    p = vf_fmadd(p, r, vf_set1(5.0000001201e-1f));
    p = vf_add(vf_fmadd(p, vf_mul(r, r), r), vf_set1(1.0f));
    return vf_ldexp(p, n);
}

/* erfc(z) for z >= 0 by the Chebyshev fit of Press et al., Numerical Recipes (2nd ed.) 6.2,
 * erfc(z) = t exp(-z^2 + P(t)), t = 1 / (1 + z / 2): relative error below 1.2e-7 for every z. */
static inline vf v_erfc_pos(vf z)
{
    vf t = vf_div(vf_set1(1.0f), vf_fmadd(vf_set1(0.5f), z, vf_set1(1.0f)));
    vf p = vf_set1(0.17087277f);
    p = vf_fmadd(p, t, vf_set1(-0.82215223f));
    p = vf_fmadd(p, t, vf_set1(1.48851587f));
    p = vf_fmadd(p, t, vf_set1(-1.13520398f));
    p = vf_fmadd(p, t, vf_set1(0.27886807f));
    p = vf_fmadd(p, t, vf_set1(-0.18628806f));
    p = vf_fmadd(p, t, vf_set1(0.09678418f));
    p = vf_fmadd(p, t, vf_set1(0.37409196f));
    p = vf_fmadd(p, t, vf_set1(1.00002368f));
    p = vf_fmadd(p, t, vf_set1(-1.26551223f));
    return vf_mul(t, v_exp(vf_fnmadd(z, z, p)));
}

/* The standard normal CDF, Phi(x) = erfc(-x / sqrt 2) / 2, with erfc(u) = 2 - erfc(-u) for u < 0:
 * no cancellation in the lower tail. */
static inline vf v_norm_cdf(vf x)
{
    vf u = vf_mul(x, vf_set1(-0.7071067811865476f));
    vf half = vf_mul(vf_set1(0.5f), v_erfc_pos(vf_abs(u)));
    return vf_select(vf_lt(u, vf_zero()), vf_sub(vf_set1(1.0f), half), half);
}

/* tanh: Cephes tanhf (Moshier 1989), an odd polynomial for |x| < 0.625 and
 * 1 - 2 / (exp(2|x|) + 1) with the sign of x beyond, where that form has no cancellation. */
static inline vf v_tanh(vf x)
{
    vf ax = vf_abs(x);
    vf e = v_exp(vf_add(ax, ax));
    vf big = vf_sub(vf_set1(1.0f), vf_div(vf_set1(2.0f), vf_add(e, vf_set1(1.0f))));
    big = vf_or_sign(big, x);
    vf z = vf_mul(x, x), p = vf_set1(-5.70498872745e-3f);
    p = vf_fmadd(p, z, vf_set1(2.06390887954e-2f));
    p = vf_fmadd(p, z, vf_set1(-5.37397155531e-2f));
    p = vf_fmadd(p, z, vf_set1(1.33314422036e-1f));
    p = vf_fmadd(p, z, vf_set1(-3.33332819422e-1f));
    vf small = vf_fmadd(vf_mul(p, z), x, x);
    return vf_select(vf_lt(ax, vf_set1(0.625f)), small, big);
}

#endif
