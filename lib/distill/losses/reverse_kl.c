/* Reverse KL, KL(q || p) = sum q (log q - log p) (MiniLLM, Gu et al. 2024): mode seeking.
 * dD/dq_j = log q_j - log p_j + 1; the constant 1 is dropped (see divergence.c). */
#include "distill/losses/losses.h"

static double reverse_kl_term(double p, double q, double lq, double w, double *g)
{
    (void)w;
    double lp = kdi_log_floor(p);
    *g = lq - lp;
    return q * (lq - lp);
}

const kdi_loss_ops kdi_reverse_kl_ops = {.name = "reverse_kl",
                                         .check = kdi_check_alpha_inputs,
                                         .forward = kdi_divergence_forward,
                                         .uses_soft = kdi_divergence_uses_soft,
                                         .defaults = kdi_divergence_defaults,
                                         .term = reverse_kl_term};
