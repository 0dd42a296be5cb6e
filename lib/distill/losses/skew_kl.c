/* Skew KL and skew reverse KL (DistiLLM, Ko et al. ICML 2024; their losses.py), lambda = w:
 *   SKL  = KL(p || m),  m = w p + (1 - w) q,   dSKL/dq_j  = -(1 - w) p_j / m_j,
 *   SRKL = KL(q || m'), m' = (1 - w) p + w q,  dSRKL/dq_j = log q_j - log m'_j + 1 - w q_j / m'_j
 * (the constant 1 dropped). w = 0 gives the forward and the reverse KL. */
#include <math.h>

#include "distill/losses/losses.h"

static double skew_kl_term(double p, double q, double lq, double w, double *g)
{
    (void)lq;
    double m = w * p + (1.0 - w) * q;
    *g = m > 0.0 ? -(1.0 - w) * p / m : 0.0;
    return p > 0.0 ? p * (log(p) - kdi_log_floor(m)) : 0.0;
}

static double skew_reverse_kl_term(double p, double q, double lq, double w, double *g)
{
    double m = (1.0 - w) * p + w * q, lm = kdi_log_floor(m);
    *g = lq - lm - (m > 0.0 ? w * q / m : 0.0);
    return q * (lq - lm);
}

const kdi_loss_ops kdi_skew_kl_ops = {.name = "skew_kl",
                                      .check = kdi_check_alpha_inputs,
                                      .forward = kdi_divergence_forward,
                                      .uses_soft = kdi_divergence_uses_soft,
                                      .defaults = kdi_divergence_defaults,
                                      .term = skew_kl_term};

const kdi_loss_ops kdi_skew_reverse_kl_ops = {.name = "skew_reverse_kl",
                                              .check = kdi_check_alpha_inputs,
                                              .forward = kdi_divergence_forward,
                                              .uses_soft = kdi_divergence_uses_soft,
                                              .defaults = kdi_divergence_defaults,
                                              .term = skew_reverse_kl_term};
