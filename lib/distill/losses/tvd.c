/* Total variation distance, TVD = 0.5 sum |p - q| (Wen et al. ACL 2023, among their
 * f-divergences; DistiLLM's tv_distance). |x| has no derivative at 0: the subgradient 0 is
 * taken there, so dTVD/dq_j = 0.5 sign(q_j - p_j) with sign(0) = 0. */
#include <math.h>

#include "distill/losses/losses.h"

static double tvd_term(double p, double q, double lq, double w, double *g)
{
    (void)lq;
    (void)w;
    *g = q > p ? 0.5 : (q < p ? -0.5 : 0.0);
    return 0.5 * fabs(p - q);
}

const kdi_loss_ops kdi_tvd_ops = {.name = "tvd",
                                  .check = kdi_check_alpha_inputs,
                                  .forward = kdi_divergence_forward,
                                  .uses_soft = kdi_divergence_uses_soft,
                                  .defaults = kdi_divergence_defaults,
                                  .term = tvd_term};
